"""Who is asking: the signed session cookie (itsdangerous) and the acting person of a request.

One browser may hold several people at once (two demo windows, b1 and m1, share one cookie jar).
The cookie lists them; each page says whom it acts for (`as` query value, or the `X-Kefu-As` header that
static/js/kefu.js adds to every htmx request and the event stream), and the server checks that person
against the cookie on every request. Without `as`, the person who signed in last acts.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from litestar import Request, Response
from litestar.datastructures import Cookie

from app.chat.people import valid_user_id

COOKIE_NAME = "kefu_session"
SESSION_MAX_AGE = 30 * 24 * 3600
MAX_PEOPLE = 8
AS_HEADER = "x-kefu-as"


@dataclass(frozen=True)
class SessionData:
    people: tuple[str, ...] = field(default_factory=tuple)

    def with_person(self, user_id: str) -> SessionData:
        people = (*(p for p in self.people if p != user_id), user_id)
        return replace(self, people=people[-MAX_PEOPLE:])

    def to_json(self) -> dict[str, Any]:
        return {"p": list(self.people)}

    @classmethod
    def from_json(cls, data: Any) -> SessionData:
        if not isinstance(data, dict):
            return cls()
        raw = data.get("p")
        if not isinstance(raw, list):
            return cls()
        people = tuple(p for p in raw if isinstance(p, str) and valid_user_id(p))
        return cls(people=people[-MAX_PEOPLE:])


def serializer(secret_key: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_key, salt="kefu-session")


def read_session(request: Request) -> SessionData:
    raw = request.cookies.get(COOKIE_NAME)
    if not raw or len(raw) > 4096:
        return SessionData()
    try:
        data = serializer(request.app.state.settings.secret_key).loads(raw, max_age=SESSION_MAX_AGE)
    except BadSignature:
        return SessionData()
    return SessionData.from_json(data)


def session_cookie(request: Request, data: SessionData) -> Cookie:
    value = serializer(request.app.state.settings.secret_key).dumps(data.to_json())
    return Cookie(
        key=COOKIE_NAME,
        value=value,
        max_age=SESSION_MAX_AGE,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
    )


def set_session(response: Response, request: Request, data: SessionData) -> Response:
    response.set_cookie(session_cookie(request, data))
    return response


def acting_person_id(request: Request) -> str | None:
    """The signed-in person this request acts for, or None when no one (or not that one) is signed in."""
    people = read_session(request).people
    if not people:
        return None
    wanted = request.headers.get(AS_HEADER) or request.query_params.get("as")
    if wanted:
        return wanted if wanted in people else None
    return people[-1]


def needs_as(request: Request) -> bool:
    """Links must name the acting person only when the browser holds more than one."""
    return len(read_session(request).people) > 1


# --- admins: a cookie of their own, so "remember me" and session endings apply to them alone ---

ADMIN_COOKIE = "kefu_admin"
REMEMBER_SECONDS = 7 * 24 * 3600
BROWSER_SESSION_SECONDS = 12 * 3600  # a cap on the signature even when the browser keeps its session cookies


def _admin_serializer(secret_key: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_key, salt="kefu-admin")


def admin_cookie(request: Request, user_id: str, session_version: int, remember: bool) -> Cookie:
    value = _admin_serializer(request.app.state.settings.secret_key).dumps(
        {"a": user_id, "v": session_version, "r": int(remember)}
    )
    return Cookie(
        key=ADMIN_COOKIE,
        value=value,
        max_age=REMEMBER_SECONDS if remember else None,  # without "remember": ends with the browser
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
    )


def read_admin_cookie(request: Request) -> tuple[str, int] | None:
    """(admin user id, session version) from a valid, unexpired admin cookie."""
    raw = request.cookies.get(ADMIN_COOKIE)
    if not raw or len(raw) > 4096:
        return None
    serializer_ = _admin_serializer(request.app.state.settings.secret_key)
    try:
        data = serializer_.loads(raw, max_age=REMEMBER_SECONDS)
    except BadSignature:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("a"), str) or not isinstance(data.get("v"), int):
        return None
    if not data.get("r"):
        try:
            serializer_.loads(raw, max_age=BROWSER_SESSION_SECONDS)
        except BadSignature:
            return None
    return data["a"], data["v"]


def clear_cookies(response: Response) -> Response:
    response.delete_cookie(COOKIE_NAME, path="/")
    response.delete_cookie(ADMIN_COOKIE, path="/")
    return response
