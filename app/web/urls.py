"""`url_for` for the templates: a named route's path, its other arguments as the query string.

Litestar's own `url_for` needs the request in the template's context, but message fragments are also rendered for
the event stream outside any request; this one asks the app's router (`Litestar.route_reverse`) instead.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from urllib.parse import urlencode

from litestar import Litestar
from litestar.exceptions import NoRouteMatchFoundException

_PATH_PARAMETER = re.compile(r"\{(\w+)(?::\w+)?\}")

UrlFor = Callable[..., str]


def url_maker(app: Litestar) -> UrlFor:
    """A `url_for(name, **arguments)` bound to `app`'s routes: arguments named in the route's path fill it (as
    strings: every id in our paths is a `str` parameter), the rest that are not None become the query string, in the
    order given ("/chat/c/7?as=b1"). Raises NoRouteMatchFoundException for a name no route has."""

    @cache
    def path_parameters(name: str) -> frozenset[str]:
        """The names of route `name`'s path parameters (NoRouteMatchFoundException for no such route)."""
        index = app.get_handler_index_by_name(name)
        if index is None:
            raise NoRouteMatchFoundException(f"no route is named {name!r}")
        return frozenset(found for path in index["paths"] for found in _PATH_PARAMETER.findall(path))

    def url_for(name: str, /, **arguments: object) -> str:
        """The path of route `name` with `arguments` filled in, the rest as its query string (see url_maker)."""
        in_path = path_parameters(name)
        path = app.route_reverse(name, **{key: str(value) for key, value in arguments.items() if key in in_path})
        query = {key: str(value) for key, value in arguments.items() if key not in in_path and value is not None}
        return f"{path}?{urlencode(query)}" if query else path

    return url_for
