"""/healthz says ok only when the database answers with its schema at the code's revision: a load balancer must not
send people to a process whose database was never migrated (or is a revision behind)."""

from __future__ import annotations

from pathlib import Path

from litestar.testing import TestClient

from app.db.migrate import head_revision, upgrade
from app.main import create_app
from tests.conftest import make_settings


def health(url: str, tmp_path: Path) -> tuple[int, dict]:
    with TestClient(create_app(make_settings(url, tmp_path)), base_url="http://127.0.0.1") as client:
        response = client.get("/healthz")
        return response.status_code, response.json()


def test_health_is_503_until_the_schema_is_at_the_codes_revision(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    status, body = health(url, tmp_path)
    assert status == 503 and "not migrated" in body["database"] and "kefu db upgrade" in body["database"]
    upgrade(url, "0007_webhook_ids")  # one revision behind
    status, body = health(url, tmp_path)
    assert status == 503 and "0007_webhook_ids" in body["database"] and head_revision() in body["database"]
    upgrade(url)
    assert health(url, tmp_path) == (200, {"status": "ok", "database": "ok", "broker": "memory"})
