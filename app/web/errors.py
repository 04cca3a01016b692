"""Friendly, translated error pages (and short fragments for htmx requests): never a traceback."""

from __future__ import annotations

import logging

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException
from litestar.plugins.htmx import HTMXDetails
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from app.chat.errors import ChatError, Forbidden, NotFound, TooFrequent
from app.i18n import gettext as _
from app.templating import render

log = logging.getLogger("kefu.web")


def _titles() -> dict[int, tuple[str, str]]:
    return {
        400: (_("请求有误"), _("这个请求无法处理，请检查链接或输入后再试。")),
        401: (_("请先登录"), _("你还没有登录。请通过商城给你的链接进入客服。")),
        403: (_("没有权限"), _("你无权查看或操作这个页面。")),
        404: (_("找不到页面"), _("你要找的会话或页面不存在。")),
        405: (_("不支持的操作"), _("这个页面不支持该操作。")),
        413: (_("内容太大"), _("提交的内容超过了允许的大小。")),
        415: (_("类型不支持"), _("不支持这种文件类型。")),
        422: (_("输入有误"), _("提交的内容无法接受。")),
        429: (_("操作太频繁"), _("请稍后再试。")),
        500: (_("服务器出错了"), _("抱歉，服务器遇到了问题。我们已记录下来，请稍后再试。")),
        503: (_("服务暂不可用"), _("服务暂时不可用，请稍后再试。")),
    }


def error_response(request: Request, status: int, detail: str | None = None) -> Response:
    """The error answer for `status`: JSON {"error": {"code", "message"}} under /api/, else the translated error page
    (htmx: a fragment) with `detail` or the status's own text. A status without a text of its own gets the 400 or 500
    one; 405 says Allow: GET, POST."""
    title, default_text = _titles().get(status, _titles()[500 if status >= 500 else 400])
    if request.url.path.startswith("/api/"):  # the API's callers read JSON, whatever went wrong
        return Response({"error": {"code": api_code(status), "message": detail or title}}, status_code=status)
    text = detail or default_text
    template = "_error_fragment.html" if HTMXDetails(request) else "error.html"  # htmx swaps a fragment in
    # a 401 page links nowhere that would answer 401 again: people come back through their marketplace's link (the
    # text says so), admins through /login
    admin_area = request.url.path.startswith(("/admin", "/login", "/logout"))
    body = render(template, request=request, status=status, title=title, text=text, detail=detail,
                  admin_area=admin_area)
    headers = {}
    if status == 405:
        headers["Allow"] = "GET, POST"
    return Response(body, status_code=status, media_type=MediaType.HTML, headers=headers)


# The one table of a domain error's HTTP status, by its `code` (app/chat/errors.py); what is not here is a 400.
STATUS_OF_CODE = {"not_found": 404, "forbidden": 403, "invalid": 422, "idempotency_key_reused": 422,
                  "too_large": 413, "unsupported_type": 415, "rate_limited": 429, "unavailable": 503,
                  "recall_too_late": 409, "recall_locked": 409, "conflict": 409}
# The API's stable error code of an HTTP status, for errors that are not the domain's (Litestar's own).
API_CODE_OF_STATUS = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                      405: "method_not_allowed", 409: "conflict", 413: "too_large", 415: "unsupported_type",
                      422: "invalid", 429: "rate_limited", 503: "unavailable"}


def status_of(error: ChatError) -> int:
    """The HTTP status of a domain error, by its code (STATUS_OF_CODE): 404, 403, 422, 413, 415, 429, 503, else 400."""
    return STATUS_OF_CODE.get(error.code, 400)


def api_code(status: int) -> str:
    """The API's stable error code for an HTTP status (API_CODE_OF_STATUS; `error` for any 5xx not in it)."""
    return API_CODE_OF_STATUS.get(status, "error" if status >= 500 else "bad_request")


def http_exception_handler(request: Request, exc: HTTPException) -> Response:
    """Litestar's HTTP errors as `error_response`, with their headers (Retry-After…); their detail is shown only when
    marked public (`public_error`: extra={"public": True}), otherwise the status's own text."""
    detail = exc.detail if isinstance(exc.detail, str) and exc.extra == {"public": True} else None
    response = error_response(request, exc.status_code, detail)
    for key, value in (exc.headers or {}).items():
        response.headers[key] = value
    return response


def chat_error_handler(request: Request, exc: ChatError) -> Response:
    """Domain errors outside the API (pages, fragments): the status of its kind (`status_of`), except that invalid
    input in a page's request is a bad request (400, as CONTRACT.md says of a pair that may not talk); the error's
    own text is shown, but for "not found" and "forbidden" (whose texts are not written for people); a rate limit
    says when to come back (Retry-After)."""
    status = 400 if exc.code == "invalid" else status_of(exc)
    detail = None if isinstance(exc, NotFound | Forbidden) else str(exc) or None
    response = error_response(request, status, detail)
    if isinstance(exc, TooFrequent):
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


def internal_error_handler(request: Request, exc: Exception) -> Response:
    """Any other exception: logged with its traceback, answered 500 (the error page, or JSON under /api/)."""
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(request, HTTP_500_INTERNAL_SERVER_ERROR)


def public_error(exc_class: type[HTTPException], text: str) -> HTTPException:
    """An HTTP error whose text is written for the person reading the page."""
    return exc_class(detail=text, extra={"public": True})


EXCEPTION_HANDLERS = {
    HTTPException: http_exception_handler,
    ChatError: chat_error_handler,
    Exception: internal_error_handler,
}


def composer_error(text: str, status: int, headers: dict[str, str] | None = None) -> Response:
    """A refusal shown in place in the composer (htmx requests)."""
    body = render("_composer_error.html", text=text)
    return Response(body, status_code=status, media_type=MediaType.HTML, headers=headers or {})
