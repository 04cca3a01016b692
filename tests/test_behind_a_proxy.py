"""Kefu behind a reverse proxy (nginx, as the deploy guide sets it up): what ops rely on.

Cookies are Secure when a trusted proxy (KEFU_TRUSTED_PROXIES) says the request came over HTTPS, and never on the
word of a proxy not trusted; forwarded headers from a proxy that is not trusted are pointed out in the log (every
client would otherwise have the proxy's address)."""

from __future__ import annotations

from pathlib import Path

import pytest
from litestar.testing import TestClient

from app.main import create_app
from tests.conftest import make_settings


def test_cookies_are_secure_only_behind_a_trusted_https_proxy(database_url: str, tmp_path: Path) -> None:
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}
    trusted = create_app(make_settings(database_url, tmp_path, trusted_proxies=("testclient",)))
    with TestClient(trusted, base_url="http://127.0.0.1") as client:
        response = client.get("/chat", params={"user_id": "b1"}, headers=forwarded, follow_redirects=False)
        cookies = response.headers.get_list("set-cookie")
        assert cookies and all("secure" in c.lower() for c in cookies)
    untrusted = create_app(make_settings(database_url, tmp_path))
    with TestClient(untrusted, base_url="http://127.0.0.1") as client:
        response = client.get("/chat", params={"user_id": "b1"}, headers=forwarded, follow_redirects=False)
        assert not any("secure" in c.lower() for c in response.headers.get_list("set-cookie"))


def test_forwarded_headers_from_a_proxy_not_trusted_are_pointed_out_in_the_log(
        app_client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    """Behind nginx without KEFU_TRUSTED_PROXIES every client has the proxy's address: the log says so."""
    with caplog.at_level("WARNING", logger="kefu.security"):
        assert app_client.get("/healthz").status_code == 200
        assert "KEFU_TRUSTED_PROXIES" not in caplog.text
        assert app_client.get("/healthz", headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 200
    assert "KEFU_TRUSTED_PROXIES" in caplog.text
