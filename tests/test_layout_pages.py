"""What the pages say, over HTTP, on SQLite and MariaDB (issue 15, items 10 and 16): the support entry; a conversation
someone opened without writing is not in the other side's list; avatars show whole graphemes and tell the demo parties
apart; a truthful start of the thread; the 401 page links nowhere that answers 401; an upload error said once; audit
events in words."""

from __future__ import annotations

from pathlib import Path

import pytest
from litestar.testing import TestClient

from app.config import Settings
from app.main import create_app
from app.templating import initials
from tests.admin_support import PASSWORD, make_admin, post_login, use_fast_hashing
from tests.conftest import make_settings
from tests.dom import parse
from tests.support import TEST_SECRET, open_conversation_id, other_browser, sign_in


def listed_peers(client: TestClient) -> list[str]:
    page = parse(client.get("/chat").text)
    return [item.get("data-peer-id") for item in page.find_all(testid="conversation")]


def total_unread(client: TestClient) -> str | None:
    return parse(client.get("/chat").text).one(tag="body").get("data-total-unread")


def test_a_conversation_without_a_message_is_listed_for_its_opener_only(app_client: TestClient) -> None:
    sign_in(app_client, "b1", target="m1")  # b1 opens the chat with m1 and writes nothing
    cid = open_conversation_id(app_client, "m1")
    assert listed_peers(app_client) == ["m1"]  # the opener sees it
    merchant = other_browser(app_client)
    token = sign_in(merchant, "m1")
    assert listed_peers(merchant) == []  # no empty row for the merchant
    assert parse(merchant.get("/chat/list").text).find_all(testid="conversation") == []
    assert total_unread(merchant) == "0"
    # the first message brings it to the merchant's list (the live list fetches the item the same way)
    buyer_token = sign_in(app_client, "b1")
    assert app_client.post(f"/chat/c/{cid}/messages", data={"body": "在吗"},
                           headers={"X-CSRFToken": buyer_token}).status_code == 201
    assert listed_peers(merchant) == ["b1"]
    assert total_unread(merchant) == "1"
    item = parse(merchant.get(f"/chat/c/{cid}/item").text).one(testid="conversation")
    assert item.get("data-peer-id") == "b1"
    # and the merchant who opens a chat with b2 without writing: in the merchant's list, not in b2's
    sign_in(merchant, "m1", target="b2")
    assert sorted(listed_peers(merchant)) == ["b1", "b2"]
    assert token
    other = other_browser(app_client)
    sign_in(other, "b2")
    assert listed_peers(other) == []


def test_buyers_and_merchants_have_the_support_entry_and_support_has_none(app_client: TestClient) -> None:
    for who in ("b1", "m2"):
        client = other_browser(app_client)
        sign_in(client, who)
        entry = parse(client.get("/chat").text).one(testid="contact-support")
        assert entry.get("href") == f"/chat?target=p1&as={who}"
        assert entry.text().strip().endswith("联系平台客服")
    sign_in(app_client, "p1")
    assert parse(app_client.get("/chat").text).find_all(testid="contact-support") == []


@pytest.mark.parametrize(("configured", "shown"), [("p1", "p1"), ("m1", None), ("nobody", None)])
def test_kefu_support_user_names_the_platforms_support_person(database_url: str, tmp_path: Path, configured: str,
                                                              shown: str | None) -> None:
    settings = Settings.from_env({"KEFU_SUPPORT_USER": configured, "KEFU_SECRET_KEY": TEST_SECRET,
                                  "KEFU_DATABASE_URL": database_url, "KEFU_DEMO": "1", "KEFU_VAR_DIR": str(tmp_path)})
    assert settings.support_user == configured
    assert Settings.from_env({"KEFU_SECRET_KEY": TEST_SECRET, "KEFU_VAR_DIR": str(tmp_path)}).support_user == "p1"
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        sign_in(client, "b1")
        entries = parse(client.get("/chat").text).find_all(testid="contact-support")
    # only a person of role support is the platform's support: a merchant or an unknown id shows no entry
    assert [e.get("data-support-id") for e in entries] == ([shown] if shown else [])


@pytest.mark.parametrize(("name", "shown"), [
    ("🇨🇳药房", "🇨🇳"), ("保安堂药房", "保安"), ("保和堂医药集团", "保和"), ("élodie", "É"), ("e\u0301cole", "E\u0301"),
    ("👨\u200d👩\u200d👧 家", "👨\u200d👩\u200d👧"), ("kefu", "K"), ("   ", "?"), ("A", "A"),
])
def test_an_avatar_shows_whole_graphemes(name: str, shown: str) -> None:
    assert initials(name) == shown


def test_the_demo_parties_avatars_differ(app_client: TestClient) -> None:
    sign_in(app_client, "b1", target="m1")
    page = parse(app_client.get("/chat", params={"target": "m1"}).text)
    mine = page.one(cls="list-head").one(testid="avatar").text()
    theirs = page.one(cls="thread-head").one(testid="avatar").text()
    assert (mine, theirs) == ("保安", "保和")


def test_the_start_of_a_thread_says_so(app_client: TestClient) -> None:
    token = sign_in(app_client, "b1", target="m1")
    cid = open_conversation_id(app_client, "m1")
    assert app_client.post(f"/chat/c/{cid}/messages", data={"body": "你好"},
                           headers={"X-CSRFToken": token}).status_code == 201
    thread = parse(app_client.get(f"/chat/c/{cid}").text).one(testid="thread")
    assert thread.one(testid="thread-start").text() == "会话从这里开始"
    assert "以上是全部消息" not in thread.text()


def test_the_401_page_links_nowhere_that_answers_401(app_client: TestClient) -> None:
    response = app_client.get("/chat")
    assert response.status_code == 401
    page = parse(response.text)
    assert "商城给你的链接" in page.one(testid="error").text()
    for link in page.find_all(tag="a"):  # nothing leads back to this 401
        assert not (link.get("href") or "").startswith("/chat"), link.get("href")
    assert page.find_all(testid="error-link") == []
    # other errors keep their way home
    sign_in(app_client, "b1")
    missing = parse(app_client.get("/chat", params={"target": "no-such-person"}).text)
    assert missing.one(testid="error-link").get("href") == "/chat"


def test_an_upload_too_large_is_said_once(database_url: str, tmp_path: Path) -> None:
    app = create_app(make_settings(database_url, tmp_path, max_upload_mb=1))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        token = sign_in(client, "b1", target="m1")
        cid = open_conversation_id(client, "m1")
        response = client.post(f"/chat/c/{cid}/files", files={"file": ("big.pdf", b"%PDF-1.4\n" + b"0" * (2 << 20))},
                               headers={"X-CSRFToken": token, "HX-Request": "true"})
    assert response.status_code == 413
    error = parse(response.text).one(testid="error")
    assert error.text() == "文件太大：最大 1 MB。"  # not "内容太大：文件太大：…"
    assert error.one(cls="error-text").text() == "文件太大：最大 1 MB。"


def test_audit_events_are_shown_in_words(app_client: TestClient, db, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    use_fast_hashing(monkeypatch)
    make_admin(db)
    assert post_login(app_client, "ops", "wrong-password").status_code == 401
    assert post_login(app_client, "ops", PASSWORD).status_code == 303
    page = parse(app_client.get("/admin/audit").text)
    shown = [(row.get("data-action"), row.one(testid="audit-action").text())
             for row in page.find_all(testid="audit-entry")]
    assert shown[:2] == [("admin.sign_in", "管理员登录"), ("admin.sign_in_failed", "管理员登录失败")]
    options = {o.get("value"): o.text() for o in page.find_all(tag="option") if o.get("value")}
    assert options["link.sign_in"] == "通过链接登录" and options["admin.sign_in"] == "管理员登录"
