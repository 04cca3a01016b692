"""No one can become Kefu's own system sender, on SQLite and MariaDB, by any path.

Order notices are sent by `kefu-system`; ids starting with `kefu-` (in any case) are Kefu's own. None of them can be
signed in (link, token however well signed, demo sign-in) or created or renamed (the API, `kefu link`, `kefu admin
create`), so no one can write as the system or change the name shown on its notices.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from itsdangerous import URLSafeTimedSerializer
from litestar.testing import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.chat import messages as msgs
from app.db.models import User
from tests.api_support import Api
from tests.cli_support import Kefu, assert_one_line_error
from tests.seeding import converse
from tests.support import TEST_SECRET

SYSTEM = "kefu-system"
RESERVED = (SYSTEM, "KEFU-System", "kefu-helper")


@pytest.fixture
def notice_sent(db: Session) -> None:
    """An order notice exists, so the system sender is a stored person with a name to protect."""
    msgs.post_notice(db, converse(db, "b1", "m1"), "订单已发货")
    db.add(User(id="kefu-helper", name="旧数据里的用户", role="buyer"))  # a reserved id stored before the rule
    db.commit()


def names(db: Session) -> dict[str, tuple[str, str]]:
    db.rollback()  # a fresh snapshot
    return {user.id: (user.name, user.role) for user in db.scalars(select(User).where(User.id.like("kefu%")))}


def signed_token(user_id: str, name: str = "官方通知", role: str = "support") -> str:
    """A token for `user_id` signed with the server's own key, as a leaked key or a careless marketplace makes."""
    return URLSafeTimedSerializer(TEST_SECRET, salt="kefu-link").dumps({"u": user_id, "n": name, "r": role,
                                                                        "ttl": 300})


def test_a_signed_link_for_a_reserved_id_signs_no_one_in(notice_sent: None, db: Session,
                                                          app_client: TestClient) -> None:
    before = names(db)
    for user_id in RESERVED:
        response = app_client.get("/chat", params={"token": signed_token(user_id)}, follow_redirects=False)
        assert response.status_code == 403, user_id
        assert app_client.get("/chat").status_code == 401, user_id
    assert names(db) == before


def test_demo_sign_in_as_a_reserved_id_is_refused(notice_sent: None, app_client: TestClient) -> None:
    for user_id in (SYSTEM, "kefu-helper"):
        response = app_client.get("/chat", params={"user_id": user_id}, follow_redirects=False)
        assert response.status_code == 404, user_id
        assert app_client.get("/chat").status_code == 401


def test_the_api_neither_creates_renames_nor_links_a_reserved_id(notice_sent: None, db: Session, api: Api) -> None:
    before = names(db)
    for user_id in (*RESERVED, "kefu-new"):
        put = api.put(f"/api/v1/users/{user_id}", {"name": "官方通知", "role": "support"})
        assert put.status_code == 403, (user_id, put.text)
        assert put.json()["error"]["code"] == "forbidden"
        link = api.post("/api/v1/links", {"user_id": user_id})
        assert link.status_code == 403, (user_id, link.text)
    assert names(db) == before


@pytest.fixture
def kefu_at(tmp_path: Path) -> Kefu:
    kefu = Kefu(tmp_path)
    assert kefu("db", "upgrade").code == 0
    return kefu


@pytest.mark.parametrize("user_id", RESERVED)
def test_kefu_link_refuses_a_reserved_id(user_id: str, kefu_at: Kefu) -> None:
    result = kefu_at("link", user_id, "--name", "官方通知", "--role", "support")
    assert_one_line_error(result, "reserved")
    assert "token=" not in result.out


def test_kefu_admin_create_refuses_a_reserved_id(kefu_at: Kefu) -> None:
    assert_one_line_error(kefu_at("admin", "create", SYSTEM, "ops", "password123"), "系统保留")
    assert "no admins" in kefu_at("admin", "list").out
