"""The audit log: admin sign-ins, failed sign-ins, account changes and link sign-ins, shown at /admin/audit."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from litestar.testing import TestClient
from sqlalchemy import update

from app.chat.links import LinkIdentity, make_token
from app.db.models import AuditEntry
from app.main import create_app
from tests.admin_support import PASSWORD, make_admin, post_login, use_fast_hashing
from tests.cli_support import command_env, run_kefu
from tests.conftest import make_settings
from tests.dom import parse
from tests.support import TEST_SECRET


def audit_rows(client: TestClient) -> list[tuple[str, str]]:
    page = client.get("/admin/audit")
    assert page.status_code == 200
    return [(row.attrs["data-action"], row.text()) for row in parse(page.text).find_all(testid="audit-entry")]


def test_sign_ins_failures_and_link_sign_ins_are_audited(app_client: TestClient, db, monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
                                                         ) -> None:
    use_fast_hashing(monkeypatch)
    make_admin(db)
    assert post_login(app_client, "ops", "wrong-password").status_code == 401
    assert post_login(app_client, "nobody", "whatever-1").status_code == 401
    token = make_token(TEST_SECRET, LinkIdentity("shop-7", "七号药店", "buyer"))
    assert app_client.get("/chat", params={"token": token}).status_code == 200
    assert app_client.get("/chat", params={"token": token[:-4] + "AAAA"}).status_code == 403
    assert post_login(app_client, "ops", PASSWORD).status_code == 303
    rows = audit_rows(app_client)
    actions = [action for action, _ in rows]
    # newest first
    assert actions[:5] == ["admin.sign_in", "link.refused", "link.sign_in", "admin.sign_in_failed",
                           "admin.sign_in_failed"]
    assert "shop-7" in rows[2][1] and "nobody" in rows[3][1] and "ops" in rows[4][1]
    assert PASSWORD not in app_client.get("/admin/audit").text
    filtered = app_client.get("/admin/audit", params={"action": "link.sign_in"}).text
    assert "shop-7" in filtered and "nobody" not in filtered


def test_audit_times_are_shown_in_kefu_timezone(database_url: str, tmp_path: Path, db,  # type: ignore[no-untyped-def]
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    use_fast_hashing(monkeypatch)
    make_admin(db)
    for settings, zone, shown in (({}, "Asia/Shanghai", "2025-04-01 07:30:00"),
                                  ({"timezone": "UTC"}, "UTC", "2025-03-31 23:30:00"),
                                  ({"timezone": "America/New_York"}, "America/New_York", "2025-03-31 19:30:00")):
        app = create_app(make_settings(database_url, tmp_path, **settings))
        with TestClient(app, base_url="http://127.0.0.1") as client:
            assert post_login(client, "ops", PASSWORD).status_code == 303
            db.execute(update(AuditEntry).values(created_at=datetime(2025, 3, 31, 23, 30, tzinfo=UTC)))
            db.commit()
            page = parse(client.get("/admin/audit").text)
        times = {row.one(tag="time").text() for row in page.find_all(testid="audit-entry")}
        assert times == {shown}, zone
        header = page.one(testid="audit-zone")
        assert header.get("data-zone") == zone and zone in header.text()


def test_the_audit_log_is_for_admins_only(app_client: TestClient) -> None:
    response = app_client.get("/admin/audit", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].startswith("/login")


def test_admin_account_changes_from_the_command_line_are_audited(sqlite_url: str, tmp_path: Path) -> None:
    def kefu(*args: str) -> None:
        ran = run_kefu(command_env(sqlite_url, tmp_path), *args)
        assert ran.code == 0, ran.err

    kefu("admin", "create", "a9", "auditor", "long-enough-pw")
    kefu("admin", "passwd", "a9", "another-long-pw")
    kefu("admin", "disable", "a9")
    kefu("admin", "enable", "a9")
    from app.chat.audit import entries
    from app.db.engine import make_engine, make_sessionmaker

    engine = make_engine(sqlite_url)
    with make_sessionmaker(engine)() as session:
        rows, _ = entries(session)
        assert [(e.action, e.actor) for e in rows] == [
            ("admin.enabled", "a9"), ("admin.disabled", "a9"), ("admin.password_changed", "a9"),
            ("admin.created", "a9"),
        ]
        assert all("long-enough-pw" not in e.detail and "another-long-pw" not in e.detail for e in rows)
    engine.dispose()


def test_startup_warns_about_demo_mode_and_the_generated_key(sqlite_url: str, tmp_path: Path) -> None:
    from tests.support import ServerProcess, free_port, server_env

    env = server_env(sqlite_url, tmp_path)
    del env["KEFU_SECRET_KEY"]
    server = ServerProcess(env, free_port()).start()
    server.stop()
    log = (tmp_path / f"server-{server.port}.log").read_text()
    assert "demo mode is ON" in log
    assert "KEFU_SECRET_KEY is not set" in log


def test_requests_from_no_one_signed_in_cannot_flood_the_audit_log(app_client: TestClient, db,  # type: ignore[no-untyped-def]
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """300 garbage links and 60 wrong passwords from one address: a bounded number of rows, the rest counted."""
    use_fast_hashing(monkeypatch)
    for _ in range(300):
        assert app_client.get("/chat", params={"token": "garbage"}).status_code == 403
    for n in range(60):
        post_login(app_client, f"\x1b[31m{'x' * 300}{n}", "wrong-password")
    rows = db.query(AuditEntry).all()
    refused = [r for r in rows if r.action == "link.refused"]
    failed = [r for r in rows if r.action in ("admin.sign_in_failed", "admin.sign_in_throttled")]
    assert 1 <= len(refused) <= 20 and 1 <= len(failed) <= 40
    assert all(len(r.actor) <= 64 and "\x1b" not in r.actor for r in failed)
