"""GET /events: the Server-Sent Events stream of the signed-in person the tab acts for, or of the signed-in admin
(the monitor: `?monitor=1`, or any request with an admin session and no person acting)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from anyio import to_thread
from litestar import Request, get
from litestar.background_tasks import BackgroundTask
from litestar.datastructures import State
from litestar.exceptions import NotAuthorizedException, TooManyRequestsException
from litestar.response import Stream
from sqlalchemy.orm import Session

from app.chat.messages import latest_message_id
from app.chat.sessions import session_key
from app.i18n import gettext as _
from app.realtime.stream import EventStream, Viewer
from app.templating import render_message
from app.web.deps import current_admin, signed_in_as
from app.web.identity import read_admin_cookie, requested_person


def _resume_point(request: Request) -> int | None:
    """Last-Event-ID (sent by the browser on reconnect) wins over the page's `last_event_id`.
    None (neither given, or not a number): no replay, live events only."""
    raw = (request.headers.get("last-event-id") or request.query_params.get("last_event_id") or "").strip()
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19:
        return None
    return int(raw)


def _admin_viewer(request: Request, session: Session) -> Viewer | None:
    admin = current_admin(request, session)
    cookie = read_admin_cookie(request)
    if admin is None or cookie is None:
        return None
    return Viewer(user_id=admin.user_id, is_admin=True, session=session_key(cookie[1]))


def _viewer(request: Request, session: Session) -> Viewer | None:
    """Whose stream this is: with `?monitor=1`, the signed-in admin's (who sees everything); else the person the
    tab acts for; else, when the tab names no person, the signed-in admin's. None: 401."""
    if request.query_params.get("monitor") == "1":
        return _admin_viewer(request, session)
    found = signed_in_as(request, session)
    if found is not None:
        user, token = found
        return Viewer(user_id=user.id, session=session_key(token))
    if requested_person(request) is None:
        return _admin_viewer(request, session)
    return None


def _viewer_and_latest(request: Request, state: State) -> tuple[Viewer | None, int]:
    """Who is asking, and the newest stored message id, in one trip to a worker thread."""
    with state.sessions() as session:
        viewer = _viewer(request, session)
        return viewer, (latest_message_id(session) if viewer else 0)


def _revalidation(request: Request, state: State, viewer: Viewer) -> Callable[[], Awaitable[bool]]:
    """Whether this request would still get the same stream: its session not ended (logout, an admin's password
    changed or account disabled), the same rule as at the start (`_viewer`)."""

    def _same_viewer() -> bool:
        with state.sessions() as session:
            return _viewer(request, session) == viewer

    async def _still_allowed() -> bool:
        return await to_thread.run_sync(_same_viewer)

    return _still_allowed


@get("/events", include_in_schema=False)
async def events(request: Request, state: State) -> Stream:
    """GET /events: the Server-Sent Events stream (text/event-stream) of the person the tab acts for, or of the admin
    (`?monitor=1`, or no person named), replaying first what was stored after Last-Event-ID (or `last_event_id`). 401
    when no one is signed in; 429 with Retry-After (seconds) past the limit of stream opens (60 a minute, by
    default)."""
    viewer, latest = await to_thread.run_sync(_viewer_and_latest, request, state)
    if viewer is None:
        raise NotAuthorizedException()
    limit, window = state.settings.stream_limit
    wait = await state.limiter.retry_after_async(f"stream:{viewer.user_id}", limit, window)
    if wait is not None:  # every open costs a query and a replay: a reconnect loop gets told to wait
        text = _("连接太频繁了：{window} 秒内最多 {limit} 次，请 {wait} 秒后再试。").format(
            window=int(window), limit=limit, wait=wait)
        raise TooManyRequestsException(detail=text, headers={"Retry-After": str(wait)}, extra={"public": True})
    resume_from = _resume_point(request)
    # An id beyond every stored message (a database restored from a backup, a number too big for the column) would
    # hold back every live message up to it, or fail the replay query: the client has at most everything there is.
    stream = EventStream(
        viewer=viewer,
        last_event_id=latest if resume_from is None else min(resume_from, latest),
        # Live only when the client names no point to resume from, or one beyond every stored message.
        look_back=resume_from is not None and resume_from <= latest,
        channels=state.channels,
        presence=state.presence,
        sessions=state.sessions,
        render_message=render_message,
        registry=state.streams,
        still_allowed=_revalidation(request, state, viewer),
        recheck_pings=round(state.settings.session_recheck_seconds / state.settings.sse_ping_seconds),
    )
    body = stream.__aiter__()
    # Closed explicitly once the response is over (the client gone): a generator left suspended at a `yield` would
    # otherwise release its presence and subscription only when the garbage collector finds it.
    return Stream(
        body,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        background=BackgroundTask(body.aclose),
    )
