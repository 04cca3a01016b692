"""Who is asking: the signed session cookies (itsdangerous) and the acting person of a request.

One browser may hold several people at once (two demo windows, b1 and m1, share one cookie jar). The cookie
lists them, each with the random token of their server-side session (app/chat/sessions.py: logging out ends it
for every copy of the cookie). Every page names the person it acts for (`as` in its links and the
`<meta name="kefu-as">` that static/js/kefu.js turns into the `X-Kefu-As` header of every htmx request and the
`as` of the event stream), so a tab keeps acting for the person it was opened for whoever signs in later.
Without `as` (a bookmark of /chat), the person who signed in last acts.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from itsdangerous import BadSignature, URLSafeTimedSerializer
from litestar import Request, Response
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie

from app.chat.people import valid_user_id
from app.chat.sessions import MAX_TOKEN_LENGTH

COOKIE_NAME = "kefu_session"
SESSION_MAX_AGE = 30 * 24 * 3600
MAX_PEOPLE = 8
AS_HEADER = "x-kefu-as"


def _valid_entry(entry: Any) -> bool:
    return (isinstance(entry, list) and len(entry) == 2 and all(isinstance(part, str) for part in entry)
            and valid_user_id(entry[0]) and 0 < len(entry[1]) <= MAX_TOKEN_LENGTH)


@dataclass(frozen=True)
class SessionData:
    """The people signed in in one browser, oldest first: (user id, session token) pairs."""

    entries: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    @property
    def people(self) -> tuple[str, ...]:
        """The user ids, oldest sign-in first."""
        return tuple(user_id for user_id, _token in self.entries)

    @property
    def tokens(self) -> tuple[str, ...]:
        """The session tokens, in the same order as `people`."""
        return tuple(token for _user_id, token in self.entries)

    def token_of(self, user_id: str) -> str | None:
        """The session token this browser holds for `user_id`, or None."""
        return next((token for uid, token in self.entries if uid == user_id), None)

    def with_person(self, user_id: str, token: str) -> tuple[SessionData, list[str]]:
        """This browser with `user_id` signed in last, and the tokens it no longer holds (the person's earlier
        token, if another, and the oldest people past MAX_PEOPLE)."""
        kept = [(uid, t) for uid, t in self.entries if uid != user_id]
        dropped = [t for uid, t in self.entries if uid == user_id and t != token]
        kept.append((user_id, token))
        dropped += [t for _uid, t in kept[:-MAX_PEOPLE]]
        return SessionData(entries=tuple(kept[-MAX_PEOPLE:])), dropped

    def to_json(self) -> dict[str, Any]:
        """The cookie's payload: {"s": [[user id, token], …]}, oldest first."""
        return {"s": [list(entry) for entry in self.entries]}

    @classmethod
    def from_json(cls, data: Any) -> SessionData:
        """The people of a cookie's payload, invalid entries dropped and the newest MAX_PEOPLE (8) kept; empty for a
        payload of another shape."""
        if not isinstance(data, dict) or not isinstance(data.get("s"), list):
            return cls()
        entries = tuple((e[0], e[1]) for e in data["s"] if _valid_entry(e))
        return cls(entries=entries[-MAX_PEOPLE:])


def serializer(secret_key: str) -> URLSafeTimedSerializer:
    """The signer of the people's cookie (itsdangerous, timed, salt "kefu-session")."""
    return URLSafeTimedSerializer(secret_key, salt="kefu-session")


def read_session(request: Request) -> SessionData:
    """The people this browser's cookie holds (signature and age checked, sessions not): empty when none. Decoded
    once per request (SessionData is immutable): the typing route asks three times, and the signature check is most
    of a typing notice's own cost (docs/performance.md §6)."""
    raw = request.cookies.get(COOKIE_NAME)
    if not raw or len(raw) > 4096:
        return SessionData()
    cached = request.scope.get(_DECODED)
    if cached is not None and cached[0] == raw:
        return cached[1]
    try:
        payload = serializer(request.app.state.settings.secret_key).loads(raw, max_age=SESSION_MAX_AGE)
        data = SessionData.from_json(payload)
    except BadSignature:
        data = SessionData()
    request.scope[_DECODED] = (raw, data)  # type: ignore[literal-required]
    return data


_DECODED = "kefu.session"  # the scope key of a request's decoded cookie: (the raw value, its SessionData)


def session_cookie(request: Request, data: SessionData) -> Cookie:
    """The people's cookie: HttpOnly, SameSite=Lax, Secure behind HTTPS, for SESSION_MAX_AGE seconds."""
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
    """`response` with the people's cookie set to `data`."""
    response.set_cookie(session_cookie(request, data))
    return response


def requested_person(request: Request) -> str | None:
    """The person the page names (`X-Kefu-As` header or `as` query value), or None when it names no one."""
    return request.headers.get(AS_HEADER) or request.query_params.get("as") or None


def acting_entry(request: Request) -> tuple[str, str] | None:
    """(user id, session token) of the person this request acts for according to the cookie alone: the one
    the page names, else the last to sign in; None when no one (or not the one named) is in the cookie. The
    session itself is checked against the database by app.web.deps."""
    session = read_session(request)
    wanted = requested_person(request)
    if wanted:
        token = session.token_of(wanted)
        return (wanted, token) if token else None
    return session.entries[-1] if session.entries else None


def navigation_from_this_site(request: Request) -> bool:
    """Whether a page request comes from this origin or from the person (typed, bookmarked), not from another
    site's page: Sec-Fetch-Site when the browser sends it, else a Referer or Origin of our own origin. A sibling
    subdomain ("same-site") is another site here: it may be anyone's shop page."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    own = (request.url.scheme, request.url.netloc)
    for header in ("origin", "referer"):
        value = request.headers.get(header)
        if value:
            parts = urlsplit(value)
            return (parts.scheme, parts.netloc) == own
    return False


# --- admins: a cookie of their own, so "remember me" and session endings apply to them alone ---

ADMIN_COOKIE = "kefu_admin"
REMEMBER_SECONDS = 7 * 24 * 3600
BROWSER_SESSION_SECONDS = 12 * 3600  # without "remember me": the server ends it even if the browser keeps it


def _admin_serializer(secret_key: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_key, salt="kefu-admin")


def admin_cookie(request: Request, user_id: str, token: str, remember: bool) -> Cookie:
    """The admin's cookie: their id and session token, signed; kept by the browser for REMEMBER_SECONDS with
    "remember me", else until it closes."""
    value = _admin_serializer(request.app.state.settings.secret_key).dumps({"a": user_id, "t": token})
    return Cookie(
        key=ADMIN_COOKIE,
        value=value,
        max_age=REMEMBER_SECONDS if remember else None,  # without "remember": ends with the browser
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
    )


def read_admin_cookie(request: ASGIConnection) -> tuple[str, str] | None:
    """(admin user id, session token) from a validly signed admin cookie; whether that session is still live is
    for the database to say (app.chat.admins.admin_of_session)."""
    raw = request.cookies.get(ADMIN_COOKIE)
    if not raw or len(raw) > 4096:
        return None
    serializer_ = _admin_serializer(request.app.state.settings.secret_key)
    try:
        data = serializer_.loads(raw, max_age=REMEMBER_SECONDS)
    except BadSignature:
        return None
    if not isinstance(data, dict) or not _valid_entry([data.get("a"), data.get("t")]):
        return None
    return data["a"], data["t"]


def clear_cookies(response: Response) -> Response:
    """`response` telling the browser to forget both cookies (the sessions are ended by the caller)."""
    response.delete_cookie(COOKIE_NAME, path="/")
    response.delete_cookie(ADMIN_COOKIE, path="/")
    return response


# --- device cookies: a browser that signed in as an admin before keeps its own failure count ---

DEVICE_COOKIE = "kefu_device"
DEVICE_SECONDS = 365 * 24 * 3600


def _device_serializer(secret_key: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_key, salt="kefu-device")


def device_cookie(request: Request, username: str) -> Cookie:
    """A signed cookie naming this browser as one `username` signed in from (a random device id), for a year;
    sent to /login only."""
    value = _device_serializer(request.app.state.settings.secret_key).dumps(
        {"u": username.strip().lower(), "d": secrets.token_urlsafe(12)})
    return Cookie(key=DEVICE_COOKIE, value=value, max_age=DEVICE_SECONDS, httponly=True, samesite="lax",
                  secure=request.url.scheme == "https", path="/login")


def read_device(request: Request, username: str) -> str | None:
    """The device id of a valid device cookie for `username`, or None (none, forged, expired, another username)."""
    raw = request.cookies.get(DEVICE_COOKIE)
    if not raw or len(raw) > 512:
        return None
    try:
        data = _device_serializer(request.app.state.settings.secret_key).loads(raw, max_age=DEVICE_SECONDS)
    except BadSignature:
        return None
    if not isinstance(data, dict) or data.get("u") != username.strip().lower() or not isinstance(data.get("d"), str):
        return None
    return data["d"]
