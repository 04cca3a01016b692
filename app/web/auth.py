"""Admin sign-in and sign-out."""

from __future__ import annotations

from typing import Annotated

from anyio import to_thread
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.enums import MediaType, RequestEncodingType
from litestar.params import Body, QueryParameter
from litestar.response import Redirect, Template

from app.chat import audit
from app.chat.admins import Throttled, authenticate
from app.chat.sessions import end_sessions, start_session
from app.i18n import gettext as _
from app.realtime import signout
from app.templating import render
from app.web import bodies
from app.web.audit_gate import record_unauthenticated
from app.web.deps import Db, current_admin
from app.web.identity import (
    BROWSER_SESSION_SECONDS,
    REMEMBER_SECONDS,
    admin_cookie,
    clear_cookies,
    device_cookie,
    read_admin_cookie,
    read_device,
    read_session,
)

LOGIN_FIELD_LIMIT = 1024


def safe_next(target: str | None) -> str:
    """Only a local path: never an open redirect to another site."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target[:500]
    return "/admin"


def login_form(request: Request, status: int, error: str | None = None, username: str = "",
               next_url: str = "/admin", headers: dict[str, str] | None = None) -> Response:
    """The sign-in page answered with `status` (401, 429), an `error` line, the username typed, where to go next, and
    `headers` (Retry-After)."""
    body = render("login.html", request=request, error=error, username=username, next_url=next_url)
    return Response(body, status_code=status, media_type=MediaType.HTML, headers=headers or {})


class AuthController(Controller):
    path = "/"
    include_in_schema = False  # web pages; the OpenAPI document is for /api/v1

    @get("/login", sync_to_thread=True, name="login")
    def login_page(self, request: Request, db: Db,
                   next_url: Annotated[str | None, QueryParameter(name="next", required=False, max_length=500)] = None,
                   ) -> Response:
        """GET /login: the admins' sign-in form; an admin already signed in gets 303 to `next` (a local path, else
        /admin)."""
        if current_admin(request, db) is not None:
            return Redirect(safe_next(next_url), status_code=303)
        return Template("login.html", context={"next_url": safe_next(next_url), "username": "", "error": None})

    @post("/login", sync_to_thread=True, request_max_body_size=bodies.SMALL_FORM, name="login:submit")
    def login(
        self,
        request: Request,
        db: Db,
        data: Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)],
    ) -> Response:
        """POST /login (`username`, `password`, `remember`, `next`): 303 to `next` (a local path, else /admin) with the
        admin cookie (a session of 7 days with `remember`, else 12 hours) and a device cookie; the form again with 401
        for a wrong username or password, or 429 with Retry-After (seconds) while sign-ins are throttled. Each outcome
        goes to the audit log (failures within audit_gate's bound)."""
        username = (data.get("username") or "")[:LOGIN_FIELD_LIMIT]
        password = (data.get("password") or "")[:LOGIN_FIELD_LIMIT]
        remember = data.get("remember") in {"1", "on", "true", "yes"}
        next_url = safe_next(data.get("next"))
        client = request.client.host if request.client else "unknown"
        try:
            account = authenticate(db, username, password, client, read_device(request, username))
        except Throttled as throttled:
            db.rollback()
            record_unauthenticated(request.app.state, db, "admin.sign_in_throttled", username, client)
            db.commit()
            minutes = max(1, round(throttled.retry_after / 60))
            error = _("登录失败次数过多，请 {minutes} 分钟后再试。").format(minutes=minutes)
            return login_form(request, 429, error, username, next_url, {"Retry-After": str(throttled.retry_after)})
        if account is None:
            record_unauthenticated(request.app.state, db, "admin.sign_in_failed", username, client)
            db.commit()
            return login_form(request, 401, _("用户名或密码错误。"), username, next_url)
        audit.record(db, "admin.sign_in", account.user_id, client, "remember" if remember else "")
        token = start_session(db, account.user_id, REMEMBER_SECONDS if remember else BROWSER_SESSION_SECONDS)
        db.commit()
        response = Redirect(next_url, status_code=303)
        response.set_cookie(admin_cookie(request, account.user_id, token, remember))
        response.set_cookie(device_cookie(request, username))  # this browser's failures count apart from then on
        return response

    @post("/logout", request_max_body_size=bodies.SMALL_FORM, name="logout")
    async def logout(self, request: Request, state: State) -> Response:
        """Ends, on the server, the sessions of everyone signed in in this browser (people and admin), closes
        their open streams, and clears the cookies: a copy of them opens nothing any more."""
        keys, channels = await to_thread.run_sync(end_browser_sessions, request, state)
        await signout.announce(state.bus, keys, channels)
        return clear_cookies(Redirect("/login", status_code=303))


def end_browser_sessions(request: Request, state: State) -> tuple[list[str], list[str]]:
    """Deletes the sessions this browser's cookies name (committed); returns their keys and the channels their
    streams listen on."""
    admin = read_admin_cookie(request)
    with state.sessions() as db:
        people = end_sessions(db, read_session(request).tokens)
        admins = end_sessions(db, [admin[1]]) if admin else []
        db.commit()
    keys = [key for _user_id, key in people + admins]
    return keys, signout.channels_of((user_id for user_id, _key in people), admins=bool(admins))
