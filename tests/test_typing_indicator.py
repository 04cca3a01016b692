"""Typing (对方正在输入…): the other participant and the admins hear that someone types, at most once every three
seconds, and nobody else does (real sockets: `kefu serve` in a child process, on SQLite and MariaDB).

What people rely on: the indicator reaches the person they talk to at once, never a stranger nor the typist; it is
never stored; a flood of keystrokes costs one event per three seconds.
"""

from __future__ import annotations

import httpx
import pytest
from litestar.testing import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.models import Message
from tests.admin_support import make_admin, sign_in_admin, use_fast_hashing
from tests.streams import OpenBrowser, Stream, json_data
from tests.support import ServerProcess, csrf_of, sign_in_to


@pytest.fixture(autouse=True)
def fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    use_fast_hashing(monkeypatch)


def typing(client: httpx.Client, token: str, cid: int) -> httpx.Response:
    return client.post(f"/chat/c/{cid}/typing", headers={"X-CSRFToken": token})


def test_the_other_side_and_the_admins_hear_typing_once_per_three_seconds(
        kefu_server: ServerProcess, open_browser: OpenBrowser, db: Session) -> None:
    b1, m1 = open_browser(kefu_server, "b1", target="m1"), open_browser(kefu_server, "m1")
    cid = b1.conversation_with("m1")
    make_admin(db)
    with httpx.Client(base_url=kefu_server.url, timeout=10) as admin:
        sign_in_admin(admin)
        with m1.events() as peer, b1.events() as own, admin.stream("GET", "/events") as monitor_response:
            peer.opened(), own.opened()
            monitor = Stream(monitor_response).opened()
            for _ in range(5):  # keystrokes: one event
                assert typing(b1.client, b1.token, cid).status_code == 204
            sentinel = b1.post(cid, "在吗")
            heard = peer.until("message")
            assert [json_data(e) for e in heard if e.event == "typing"] == [{"conversation_id": cid, "user_id": "b1"}]
            assert [e.event for e in own.until("message")].count("typing") == 0  # the typist hears nothing
            watched = monitor.until("message", where=lambda e: f'data-message-id="{sentinel}"' in e.data)
            assert [json_data(e) for e in watched if e.event == "typing"] == [{"conversation_id": cid,
                                                                               "user_id": "b1"}]
    assert db.scalar(select(func.count()).select_from(Message)) == 1  # never stored: only the sentinel


def test_no_one_else_may_say_they_type_here(kefu_server: ServerProcess, open_browser: OpenBrowser,
                                           db: Session) -> None:
    b1 = open_browser(kefu_server, "b1", target="m1")
    cid = b1.conversation_with("m1")
    b2 = open_browser(kefu_server, "b2", target="m1")
    assert typing(b2.client, b2.token, cid).status_code == 403
    assert typing(b1.client, b1.token, 987654).status_code == 404
    assert typing(b1.client, b1.token, "abc").status_code == 404  # type: ignore[arg-type]
    assert b1.client.post(f"/chat/c/{cid}/typing").status_code == 403  # no CSRF token
    with httpx.Client(base_url=kefu_server.url, timeout=10) as stranger:  # signed in as no one
        assert typing(stranger, csrf_of(stranger.get("/login").text), cid).status_code == 401
    make_admin(db)
    with httpx.Client(base_url=kefu_server.url, timeout=10) as admin:
        token = sign_in_admin(admin)
        assert typing(admin, token, cid).status_code == 403


def test_a_flood_of_typing_notices_is_refused_before_it_costs_anything(app_client: TestClient) -> None:
    token, cid = sign_in_to(app_client, "b1", "m1")
    answers = [typing(app_client, token, cid).status_code for _ in range(25)]  # type: ignore[arg-type]
    assert answers == [204] * 20 + [429] * 5  # 20 in any 10 s (a page sends one per 3 s per conversation)
    refused = typing(app_client, token, cid)  # type: ignore[arg-type]
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert "输入状态发送太频繁" in refused.text
