"""The app's Request class: Litestar's, with form and JSON parsing that refuse what they cannot decode with 400.

Litestar decodes every text field of a multipart form strictly (UTF-8 or the part's declared charset) and lets the
error escape; it runs in the CSRF middleware too, before any route. So a field of raw bytes such as b"\\x89\\xff", or
a part that names an unknown charset, gave a 500. Litestar's middleware builds requests from `request_class`, so this
covers every route, the CSRF check included.
"""

from __future__ import annotations

from typing import Any

from litestar.datastructures import FormMultiDict
from litestar.exceptions import ClientException
from litestar.plugins.htmx import HTMXRequest

from app.i18n import gettext as _
from app.web.errors import public_error


class KefuRequest(HTMXRequest):
    """Litestar's HTMX request (`request.htmx`: whether htmx sent it, and its headers), whose `form()` raises 400
    (ClientException) for a field it cannot decode, and whose `json()` does for a document nested deeper than the
    decoder goes (msgspec raised RecursionError, a 500)."""

    async def json(self) -> Any:
        """The decoded JSON body, or a 400 when it is nested too deeply to decode."""
        try:
            return await super().json()
        except RecursionError as error:
            raise public_error(ClientException, _("JSON 嵌套太深，无法读取。")) from error

    async def form(self) -> FormMultiDict:
        """The parsed form, or a 400 naming the problem when a text field is not valid in its charset."""
        try:
            return await super().form()
        except (UnicodeDecodeError, LookupError) as error:
            raise public_error(ClientException, _("表单内容无法读取：文字必须是 UTF-8 编码。")) from error
