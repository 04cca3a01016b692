"""Security headers on every response, and Secure cookies behind HTTPS.

The scheme and client address come from X-Forwarded-Proto / X-Forwarded-For only when the connecting peer
is in KEFU_TRUSTED_PROXIES (uvicorn's ProxyHeadersMiddleware does that part, before this one runs).
"""

from __future__ import annotations

from litestar.datastructures import MutableScopeHeaders
from litestar.types import ASGIApp, Message, Receive, Scope, Send


def content_security_policy(frame_ancestors: str) -> str:
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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        https = scope.get("scheme") == "https"
        policy = self.headers
        if scope.get("path", "").startswith(API_DOC_PAGES):
            policy = {**self.headers, "content-security-policy": self.docs_policy}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableScopeHeaders.from_message(message)
                for name, value in policy.items():
                    if name not in headers:  # downloads bring a stricter policy of their own
                        headers[name] = value
                if https:
                    headers["strict-transport-security"] = "max-age=31536000"
                    cookies = headers.getall("set-cookie", [])
                    if cookies:
                        del headers["set-cookie"]
                        for cookie in cookies:
                            secure = "; secure" in cookie.lower()
                            headers.add("set-cookie", cookie if secure else cookie + "; Secure")
            await send(message)

        await self.app(scope, receive, send_with_headers)
