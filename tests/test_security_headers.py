"""Every response carries the headers that keep a page from being turned against its reader: a Content-Security-Policy
without inline or eval'd script and with the configured frame-ancestors, nosniff and a referrer policy, on pages,
errors, static files and /healthz alike."""

from __future__ import annotations

from pathlib import Path

from litestar.testing import TestClient

from app.main import create_app
from tests.conftest import make_settings


def test_security_headers_on_pages_errors_and_static_files(database_url: str, tmp_path: Path) -> None:
    app = create_app(make_settings(database_url, tmp_path, frame_ancestors="'self' https://shop.example"))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        for path in ("/login", "/chat", "/static/js/kefu.js", "/healthz"):
            response = client.get(path)
            csp = response.headers["content-security-policy"]
            script_src = next(p for p in csp.split(";") if p.strip().startswith("script-src"))
            assert "'unsafe-inline'" not in script_src and "'unsafe-eval'" not in csp
            assert "frame-ancestors 'self' https://shop.example" in csp
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["referrer-policy"]
