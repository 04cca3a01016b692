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
        people = tuple(p for p in data.get("p", []) if isinstance(p, str) and valid_user_id(p))
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
