"""The web side of sending: rate limits as the send use case's `admit`, the composer's answer to a refusal, and the
one delivery step every controller that sends uses (store in a worker thread, publish from the event loop)."""

from __future__ import annotations

import re
from collections.abc import Callable

from anyio import to_thread
from litestar import Request, Response
from litestar.datastructures import State
from litestar.enums import MediaType

from app.chat.errors import ChatError, Forbidden, InvalidInput, NotFound, TooFrequent
from app.chat.messages import Admit, SendTooSlow, Sent
from app.db.models import User
from app.i18n import gettext as _
from app.realtime.bus import Delivery
from app.web.errors import composer_error, status_of
from app.web.stopping import send_in_progress

Work = Callable[[], tuple[Sent, User | None]]
CLIENT_KEY = re.compile(r"[A-Za-z0-9_-]{8,64}")  # the page sends 22 characters of base64url (128 random bits)


def client_key(request: Request) -> str | None:
    """The page's Idempotency-Key for this send (None when it sends none), which makes its retries store one message
    (`Outgoing.client_key`). Raises InvalidInput (422, naming the header) unless it is 8–64 characters of
    A–Z a–z 0–9 _ -."""
    raw = request.headers.get("idempotency-key")
    if raw is None:
        return None
    if not CLIENT_KEY.fullmatch(raw):
        raise InvalidInput(_("Idempotency-Key 无效：应为 8–64 个字母、数字、_ 或 -。"))
    return raw


def admit(state: State, kind: str) -> Admit:
    """The rate limit of `kind` ("message", "upload", or "decode": images decoded, accepted or not) as an `admit`:
    raises TooFrequent. `send` calls it only once the work is valid, so refused messages and uploads never count."""
    limit, window = {"message": state.settings.message_limit, "upload": state.settings.upload_limit,
                     "decode": state.settings.decode_limit}[kind]

    def _check(user_id: str) -> None:
        wait = state.limiter.retry_after(f"{kind}:{user_id}", limit, window)
        if wait is None:
            return
        if kind == "message":
            text = _("发送太频繁了：{window} 秒内最多 {limit} 条消息，请 {wait} 秒后再试。")
        elif kind == "decode":
            text = _("图片发送太频繁了：{window} 秒内最多 {limit} 张，请 {wait} 秒后再试。")
        else:
            text = _("上传太频繁了：{window} 秒内最多 {limit} 个文件，请 {wait} 秒后再试。")
        raise TooFrequent(text.format(window=int(window), limit=limit, wait=wait), wait)

    return _check


def composer_refusal(error: ChatError) -> Response | None:
    """The composer's answer to a refused send, in place: the status of the error's kind (`status_of`: 422, 413,
    415, 429 with Retry-After, 503), or None for NotFound and Forbidden, which the app's handlers answer (404, 403)."""
    if isinstance(error, NotFound | Forbidden):
        return None
    if isinstance(error, SendTooSlow):
        return composer_error(_("发送超时，消息没有发出。请重试。"), status_of(error))
    headers = {"Retry-After": str(error.retry_after)} if isinstance(error, TooFrequent) else None
    return composer_error(str(error), status_of(error), headers)


async def send_and_deliver(state: State, work: Work) -> Response:
    """Run `work` (which calls the send use case and returns what it sent and its sender) in a worker thread, render
    the message there, publish it from the event loop, and answer the composer: 201 with the message's HTML, or the
    refusal in place."""

    def _in_thread() -> Delivery | Response:
        try:
            with send_in_progress():  # a stop waits for it (app.web.stopping)
                sent, sender = work()
        except ChatError as error:
            if (refusal := composer_refusal(error)) is None:
                raise
            return refusal
        return state.bus.delivery(sent, sender)

    outcome = await to_thread.run_sync(_in_thread)
    if isinstance(outcome, Response):
        return outcome
    await state.bus.deliver(outcome)
    return Response(outcome.html, status_code=201, media_type=MediaType.HTML)
