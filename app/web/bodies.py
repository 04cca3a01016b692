"""The largest request body each kind of route accepts, in bytes. Litestar enforces it before anything is parsed:
from Content-Length at once, and on the bytes as they arrive for a body without one (413). Uploads alone get the
upload limit (KEFU_MAX_UPLOAD_MB and 64 KiB for the multipart envelope), set on their router in app.main."""

from litestar.exceptions import HTTPException
from litestar.types import ASGIApp, Receive, Scope, Send

from app.i18n import gettext as _

MB = 1024 * 1024

SMALL_FORM = 4 * 1024  # sign-in, sign-out, read receipts, deleting or moving a quick reply: a few short fields
QUICK_REPLY_FORM = 16 * 1024  # 500 characters percent-encoded (9 bytes each at most) and the CSRF token
REASON_FORM = QUICK_REPLY_FORM  # an intervention's reason: 500 characters too
MESSAGE = 96 * 1024  # 5,000 characters percent-encoded, or as JSON escapes (12 bytes a character at most)
DEFAULT = MESSAGE  # every other route (the API's JSON bodies among them)
UPLOAD_ENVELOPE = 64 * 1024


def too_large(limit: int) -> HTTPException:
    """413 whose text says the limit: a file's in whole MB (the upload envelope rounds away), else in KB."""
    if limit >= MB:
        text = _("文件太大：最大 {mb} MB。").format(mb=limit // MB)
    else:
        text = _("提交的内容太大：最多 {kb} KB。").format(kb=limit // 1024)
    return HTTPException(status_code=413, detail=text, extra={"public": True})


class AnnouncedBodyLimit:
    """413 at once for a request whose Content-Length exceeds its route's limit, whether or not the route reads its
    body (Litestar itself checks only when a body is read). Bodies without a length are cut off as they arrive."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, unless its announced length is over the limit."""
        handler = scope.get("route_handler")
        if scope["type"] == "http" and handler is not None:
            length = dict(scope["headers"]).get(b"content-length", b"")
            limit = handler.resolve_request_max_body_size()
            if length.isdigit() and limit is not None and int(length) > limit:
                raise too_large(limit)
        await self.app(scope, receive, send)
