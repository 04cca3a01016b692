"""Pick the language of each request (zh-CN first)."""

from __future__ import annotations

from litestar import Request

from app.i18n import current_locale, pick_locale


async def set_locale(request: Request) -> None:
    """Before each request: the language of its answer, from Accept-Language (`app.i18n.pick_locale`)."""
    current_locale.set(pick_locale(request.headers.get("accept-language")))
