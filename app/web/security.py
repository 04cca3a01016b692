"""Security headers on every response, and Secure cookies behind HTTPS.

The scheme and client address come from X-Forwarded-Proto / X-Forwarded-For only when the connecting peer
is in KEFU_TRUSTED_PROXIES (uvicorn's ProxyHeadersMiddleware does that part, before this one runs).
"""

from __future__ import annotations

import logging

from litestar.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("kefu.security")
FORWARDED = {b"x-forwarded-for", b"x-forwarded-proto"}


def content_security_policy(frame_ancestors: str) -> str:
    """The Content-Security-Policy of the app's pages: scripts, styles, fonts and connections from this origin only (no
    inline script, no eval), images also from data: and blob:, no plugins, forms posting here only, and framed only by
    `frame_ancestors` (KEFU_FRAME_ANCESTORS)."""
    return "; ".join([
        "default-src 'self'",
        "script-src 'self'",  # no inline scripts, no eval: htmx runs with allowEval off
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        f"frame-ancestors {frame_ancestors}",
    ])


API_DOC_PAGES = ("/api/docs", "/api/redoc")
STATIC = "/static/"
NO_STORE = (b"cache-control", b"no-store")  # a response's own Cache-Control (the event stream's no-cache) wins


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, frame_ancestors: str = "'self'") -> None:
        self.app = app
        self.headers = {
            "content-security-policy": content_security_policy(frame_ancestors),
            "x-content-type-options": "nosniff",
            "referrer-policy": "strict-origin-when-cross-origin",
            "permissions-policy": "camera=(), microphone=(), geolocation=()",
        }
        # Swagger UI and ReDoc start with an inline script and use workers; only their two pages get this
        self.docs_policy = (
            "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
            f"img-src 'self' data:; worker-src 'self' blob:; frame-ancestors {frame_ancestors}"
        )
        self.raw = [(name.encode(), value.encode()) for name, value in self.headers.items()]
        docs = {**self.headers, "content-security-policy": self.docs_policy}
        self.docs_raw = [(name.encode(), value.encode()) for name, value in docs.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Adds to each HTTP response the security headers it lacks (the CSP, a looser one on the API's doc pages;
        nosniff, Referrer-Policy, Permissions-Policy), Cache-Control: no-store outside /static/, and behind HTTPS the
        Secure flag on cookies and HSTS (one year)."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        https = scope.get("scheme") == "https"
        path = scope.get("path", "")
        policy = self.docs_raw if path.startswith(API_DOC_PAGES) else self.raw
        if not path.startswith(STATIC):  # pages, fragments, files and JSON: never kept by a shared browser's cache
            policy = [*policy, NO_STORE]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = with_security_headers(list(message.get("headers", ())), policy, https)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def with_security_headers(headers: list[tuple[bytes, bytes]], policy: list[tuple[bytes, bytes]],
                          https: bool) -> list[tuple[bytes, bytes]]:
    """Raw ASGI header pairs (this runs for every response, so no header objects are built)."""
    present = {name.lower() for name, _ in headers}
    headers.extend(pair for pair in policy if pair[0] not in present)  # downloads bring a stricter policy
    if https:
        headers = [
            (name, value + b"; Secure")
            if name.lower() == b"set-cookie" and b"; secure" not in value.lower() else (name, value)
            for name, value in headers
        ]
        headers.append((b"strict-transport-security", b"max-age=31536000"))
    return headers


class UntrustedForwardingWarning:
    """Logs a warning (once per process) when a request carries X-Forwarded-For or -Proto from a peer that is not in
    KEFU_TRUSTED_PROXIES: Kefu stands behind a proxy it does not believe, so every client shares the proxy's address
    (one person's failed sign-ins lock everyone out), cookies lack Secure and links say http://."""

    def __init__(self, app: ASGIApp, trusted: tuple[str, ...] = ()) -> None:
        self.app = app
        self.trusted = set(trusted)
        self.warned = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, noticing forwarded headers from a peer not trusted."""
        if not self.warned and scope["type"] == "http":
            names = {name for name, _ in scope["headers"]}
            peer = (scope.get("client") or ("", 0))[0]
            if names & FORWARDED and peer not in self.trusted and "*" not in self.trusted:
                self.warned = True
                log.warning("a request from %s carries X-Forwarded-* headers, but %s is not in KEFU_TRUSTED_PROXIES: "
                            "they are ignored (every client looks like the proxy, cookies are not Secure). Set "
                            "KEFU_TRUSTED_PROXIES to the proxy's address (docs/deploy.md).", peer, peer)
        await self.app(scope, receive, send)
