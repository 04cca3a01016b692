"""The integration API (/api/v1) through the real app, on SQLite and MariaDB, as a marketplace's backend uses it.

What a marketplace relies on: a missing or revoked key gets 401 JSON; people are created and updated with PUT;
a link signs a person in; conversations and messages page through keyset cursors, every item exactly once;
a message or an order notice is stored once however often the request is retried with the same Idempotency-Key,
and reaches the open chat at once; errors are JSON with a stable code and name the field; `kefu apikey` shows a
key once and a revoked key stops working.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from click.testing import CliRunner
from litestar.testing import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app import cli
from app.chat import conversations as convs
from app.chat import messages as msgs
from app.chat.admins import create_admin
from app.chat.api_keys import create_key, revoke_key
from app.chat.people import get_user, upsert_user
from app.db.engine import make_engine, make_sessionmaker
from app.db.models import ApiKey, Conversation, Member
from app.main import create_app
from tests.conftest import make_settings
from tests.support import TEST_SECRET, ServerProcess, free_port, server_env, sign_in

BASE_URL = "http://127.0.0.1"
OPEN_CONVERSATION_RE = re.compile(r'data-open-conversation="(\d+)"')


# --- helpers ---

@contextmanager
def with_session(database_url: str) -> Iterator[Session]:
    """A plain session on the test database (the caller commits); the engine goes with it."""
    engine = make_engine(database_url)
    try:
        with make_sessionmaker(engine)() as session:
            yield session
    finally:
        engine.dispose()


def new_key(database_url: str, name: str = "shop") -> str:
    with with_session(database_url) as session:
        _record, key = create_key(session, name)
        session.commit()
    return key


@dataclass
class Api:
    """The app over ASGI, with one API key; `client` itself carries no key (it is a browser too)."""

    client: TestClient
    key: str
    database_url: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.client.get(path, params=params, headers=self.auth)

    def put(self, path: str, body: Any) -> httpx.Response:
        return self.client.put(path, json=body, headers=self.auth)

    def post(self, path: str, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
        return self.client.post(path, json=body, headers=self.auth | (headers or {}))

    def conversation(self, a: str, b: str) -> int:
        response = self.post("/api/v1/conversations", {"user_ids": [a, b]})
        assert response.status_code in (200, 201), response.text
        return int(response.json()["id"])

    def messages(self, cid: int) -> list[dict[str, Any]]:
        response = self.get(f"/api/v1/conversations/{cid}/messages", limit=100)
        assert response.status_code == 200, response.text
        return response.json()["items"]


@pytest.fixture
def api(database_url: str, tmp_path: Path) -> Iterator[Api]:
    key = new_key(database_url)
    app = create_app(make_settings(database_url, tmp_path))
    with TestClient(app, base_url=BASE_URL) as client:
        yield Api(client, key, database_url)


def assert_error(response: httpx.Response, status: int, code: str, field: str | None = None) -> dict[str, Any]:
    """An error as the API promises it: JSON {"error": {"code", "message"[, "field"]}}."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.headers["content-type"]
    error = response.json()["error"]
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"], error
    if field is not None:
        assert error.get("field") == field, error
    return error


# --- keys ---

def test_requests_without_a_valid_key_get_401_json(api: Api) -> None:
    other = new_key(api.database_url, "old-shop")
    with with_session(api.database_url) as session:
        revoke_key(session, "old-shop")
        session.commit()
    refused = {
        "no header": {},
        "another scheme": {"Authorization": f"Basic {api.key}"},
        "no key": {"Authorization": "Bearer "},
        "a key one character off": {"Authorization": f"Bearer {api.key[:-1]}{'A' if api.key[-1] != 'A' else 'B'}"},
        "a made-up key": {"Authorization": "Bearer kefu_not-a-real-key"},
        "a revoked key": {"Authorization": f"Bearer {other}"},
    }
    for case, headers in refused.items():
        for response in (api.client.get("/api/v1/users/b1", headers=headers),
                         api.client.post("/api/v1/conversations", json={"user_ids": ["b1", "m1"]}, headers=headers)):
            assert response.status_code == 401, f"{case}: {response.status_code} {response.text}"
            assert_error(response, 401, "unauthorized")
            assert response.headers.get("www-authenticate", "").lower().startswith("bearer"), case
    assert api.get("/api/v1/conversations").json()["items"] == []  # no refused request opened one
    assert api.get("/api/v1/users/b1").status_code == 200
    assert api.client.get("/api/v1/users/b1", headers={"Authorization": f"bearer {api.key}"}).status_code == 200

    with with_session(api.database_url) as session:  # revoked while the app runs: refused from the next request
        revoke_key(session, "shop")
        session.commit()
    assert_error(api.get("/api/v1/users/b1"), 401, "unauthorized")
    with with_session(api.database_url) as session:
        assert session.scalar(select(ApiKey.id).where(ApiKey.name == "shop")) is not None  # refused, not deleted


def test_unknown_api_paths_and_methods_get_json_errors_too(sqlite_url: str, tmp_path: Path) -> None:
    """A client with a typo in its path or method gets the API's JSON error, not the chat's HTML page."""
    key = new_key(sqlite_url)
    with TestClient(create_app(make_settings(sqlite_url, tmp_path)), base_url=BASE_URL) as client:
        auth = {"Authorization": f"Bearer {key}"}
        assert_error(client.get("/api/v1/user/b1", headers=auth), 404, "not_found")
        assert_error(client.get("/api/v1/nothing-here"), 404, "not_found")
        assert_error(client.delete("/api/v1/users/b1", headers=auth), 405, "method_not_allowed")
        assert client.get("/api/v1/users/b1", headers=auth).json()["id"] == "b1"  # still there


# --- people ---

def test_put_creates_and_then_updates_buyers_merchants_and_support_people(api: Api) -> None:
    for role in ("buyer", "merchant", "support"):
        uid = f"shop-{role}-1"
        person = {"name": f"🧧新{role}药房", "role": role, "avatar_url": f"https://shop.example/a/{role}.png",
                  "description": "连锁药房，采购常用药品"}
        created = api.put(f"/api/v1/users/{uid}", person)
        assert created.status_code == 201, created.text
        assert created.json() == {"id": uid, **person}
        assert api.get(f"/api/v1/users/{uid}").json() == {"id": uid, **person}

        changed = {**person, "name": f"{role}（已改名）", "avatar_url": "https://shop.example/new.png"}
        updated = api.put(f"/api/v1/users/{uid}", changed)
        assert updated.status_code == 200, updated.text
        assert api.get(f"/api/v1/users/{uid}").json() == {"id": uid, **changed}
    # the demo people are there too, with the names of the contract
    assert api.get("/api/v1/users/m1").json()["name"] == "保和堂医药集团"
    # a person made over the API can talk at once
    assert api.post("/api/v1/conversations", {"user_ids": ["shop-buyer-1", "shop-merchant-1"]}).status_code == 201


def test_people_errors_are_json_with_a_stable_code_and_name_the_field(api: Api) -> None:
    good = {"name": "新药房", "role": "buyer"}
    assert_error(api.put("/api/v1/users/x1", {**good, "role": "boss"}), 400, "invalid_request", "role")
    assert_error(api.put("/api/v1/users/x1", {**good, "role": "admin"}), 400, "invalid_request", "role")
    assert_error(api.put("/api/v1/users/x1", {"role": "buyer"}), 400, "invalid_request", "name")
    assert_error(api.put("/api/v1/users/x1", {**good, "name": 5}), 400, "invalid_request", "name")
    assert_error(api.put("/api/v1/users/x1", {**good, "name": "   "}), 422, "invalid", "name")
    assert_error(api.put("/api/v1/users/x1", {**good, "name": "长" * 101}), 422, "invalid", "name")
    assert_error(api.put("/api/v1/users/bad%20id", good), 400, "invalid_request", "user_id")
    assert_error(api.put("/api/v1/users/" + "x" * 65, good), 400, "invalid_request", "user_id")
    malformed = api.client.put("/api/v1/users/x1", content=b"{not json", headers=api.auth)
    assert_error(malformed, 400, "bad_request")
    assert_error(api.get("/api/v1/users/x1"), 404, "not_found")  # none of the above created them

    with with_session(api.database_url) as session:
        create_admin(session, "boss1", "boss", "correct horse battery staple")
        session.commit()
    assert_error(api.put("/api/v1/users/boss1", good), 403, "forbidden")  # an admin is never taken over
    assert_error(api.get("/api/v1/users/boss1"), 404, "not_found")
    with with_session(api.database_url) as session:
        admin = get_user(session, "boss1")
        assert admin is not None and admin.role == "admin"


# --- sign-in links ---

def test_a_link_signs_the_person_in_and_opens_the_target(api: Api) -> None:
    assert api.put("/api/v1/users/shop-b9", {"name": "第九药房", "role": "buyer"}).status_code == 201
    before = datetime.now(UTC)
    response = api.post("/api/v1/links", {"user_id": "shop-b9", "target": "m1", "ttl": 120})
    assert response.status_code == 201, response.text
    link = response.json()
    assert link["url"].startswith(f"{BASE_URL}/chat?token=")
    assert parse_qs(urlsplit(link["url"]).query)["token"] == [link["token"]]
    expires = datetime.fromisoformat(link["expires_at"].replace("Z", "+00:00"))
    assert before + timedelta(seconds=110) < expires < datetime.now(UTC) + timedelta(seconds=130)

    browser = TestClient(api.client.app, base_url=BASE_URL)  # its own cookie jar, no API key
    page = browser.get(link["url"], follow_redirects=True)
    assert page.status_code == 200, page.text
    assert urlsplit(str(page.url)).path == "/chat"
    assert "token" not in str(page.url)  # dropped from the address bar
    assert 'data-user-id="shop-b9"' in page.text
    opened = OPEN_CONVERSATION_RE.search(page.text)
    assert opened, "the link's target conversation is not open"
    conversation = api.get(f"/api/v1/conversations/{opened.group(1)}").json()
    assert sorted(conversation["participants"]) == ["m1", "shop-b9"]
    assert browser.get("/chat").status_code == 200  # still signed in without the token

    head, _, signature = link["url"].rpartition(".")  # the signature's first character: all its bits count
    forged = f"{head}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"
    tampered = TestClient(api.client.app, base_url=BASE_URL).get(forged, follow_redirects=True)
    assert tampered.status_code == 403

    assert_error(api.post("/api/v1/links", {"user_id": "nobody"}), 404, "not_found")
    assert_error(api.post("/api/v1/links", {"user_id": "shop-b9", "target": "nobody"}), 404, "not_found")
    assert_error(api.post("/api/v1/links", {"user_id": "shop-b9", "ttl": 0}), 422, "invalid", "ttl")
    assert_error(api.post("/api/v1/links", {"user_id": "shop-b9", "ttl": "soon"}), 400, "invalid_request", "ttl")
    assert_error(api.post("/api/v1/links", {}), 400, "invalid_request", "user_id")


# --- conversations ---

def test_opening_a_conversation_finds_the_pairs_one_conversation(api: Api) -> None:
    created = api.post("/api/v1/conversations", {"user_ids": ["b1", "m1"]})
    assert created.status_code == 201, created.text
    conversation = created.json()
    assert sorted(conversation["participants"]) == ["b1", "m1"]
    assert conversation["message_count"] == 0 and conversation["last_message_id"] is None
    found = api.post("/api/v1/conversations", {"user_ids": ["m1", "b1"]})
    assert found.status_code == 200
    assert found.json()["id"] == conversation["id"]
    assert api.get(f"/api/v1/conversations/{conversation['id']}").json() == conversation

    assert_error(api.post("/api/v1/conversations", {"user_ids": ["b1", "b2"]}), 403, "forbidden")
    assert_error(api.post("/api/v1/conversations", {"user_ids": ["b1", "b1"]}), 403, "forbidden")
    assert_error(api.post("/api/v1/conversations", {"user_ids": ["b1"]}), 422, "invalid", "user_ids")
    assert_error(api.post("/api/v1/conversations", {"user_ids": "b1"}), 400, "invalid_request", "user_ids")
    assert_error(api.post("/api/v1/conversations", {"user_ids": ["b1", "nobody"]}), 404, "not_found")
    for cid in ("999999", "0", "abc", "-1", "99999999999999999999"):
        assert_error(api.get(f"/api/v1/conversations/{cid}"), 404, "not_found")
        assert_error(api.get(f"/api/v1/conversations/{cid}/messages"), 404, "not_found")
        assert_error(api.post(f"/api/v1/conversations/{cid}/messages", {"body": "hi"}), 404, "not_found")


# --- messages and notices ---

def test_post_a_message_as_a_participant_and_an_order_notice(api: Api) -> None:
    cid = api.conversation("b1", "m1")
    sent = api.post(f"/api/v1/conversations/{cid}/messages", {"body": "  请问板蓝根还有货吗？🙂 ", "sender_id": "b1"})
    assert sent.status_code == 201, sent.text
    message = sent.json()
    assert message["conversation_id"] == cid and message["sender_id"] == "b1"
    assert message["kind"] == "text" and message["body"] == "请问板蓝根还有货吗？🙂"

    notice = api.post(f"/api/v1/conversations/{cid}/messages", {"body": "订单已发货", "kind": "system"})
    assert notice.status_code == 201, notice.text
    assert notice.json()["kind"] == "system" and notice.json()["body"] == "订单已发货"
    assert notice.json()["sender_id"] not in ("b1", "m1")
    no_sender = api.post(f"/api/v1/conversations/{cid}/messages", {"body": "已签收"})
    assert no_sender.status_code == 201 and no_sender.json()["kind"] == "system"

    assert [m["id"] for m in api.messages(cid)] == [message["id"], notice.json()["id"], no_sender.json()["id"]]
    assert api.messages(cid)[1] == notice.json()
    conversation = api.get(f"/api/v1/conversations/{cid}").json()
    assert conversation["message_count"] == 3 and conversation["last_message_id"] == no_sender.json()["id"]

    browser = TestClient(api.client.app, base_url=BASE_URL)  # the buyer sees the notice in their chat
    sign_in(browser, "b1", target="m1")
    page = browser.get(f"/chat/c/{cid}")
    assert page.status_code == 200 and "订单已发货" in page.text
    assert f'data-message-id="{notice.json()["id"]}"' in page.text

    path = f"/api/v1/conversations/{cid}/messages"
    assert_error(api.post(path, {"body": "hi", "sender_id": "b2"}), 403, "forbidden")  # not a participant
    assert_error(api.post(path, {"body": "hi", "sender_id": "nobody"}), 403, "forbidden")
    assert_error(api.post(path, {"body": "   ", "sender_id": "b1"}), 422, "invalid", "body")
    assert_error(api.post(path, {"body": "长" * 5001, "sender_id": "b1"}), 422, "invalid", "body")
    assert_error(api.post(path, {"body": "", "kind": "system"}), 422, "invalid", "body")
    assert_error(api.post(path, {"sender_id": "b1"}), 400, "invalid_request", "body")
    assert_error(api.post(path, {"body": "hi", "kind": "shout"}), 400, "invalid_request", "kind")
    assert len(api.messages(cid)) == 3  # none of the refused ones was stored


def test_the_same_idempotency_key_stores_one_message(api: Api) -> None:
    cid = api.conversation("b1", "m1")
    path = f"/api/v1/conversations/{cid}/messages"
    notice = {"body": "订单已发货", "kind": "system"}
    first = api.post(path, notice, {"Idempotency-Key": "order-1001-shipped"})
    retry = api.post(path, notice, {"Idempotency-Key": "order-1001-shipped"})
    assert first.status_code == 201, first.text
    assert retry.status_code == 200, retry.text
    assert retry.json() == first.json()
    assert [m["id"] for m in api.messages(cid)] == [first.json()["id"]]

    other = api.post(path, notice, {"Idempotency-Key": "order-1002-shipped"})
    plain = api.post(path, {"body": "在吗", "sender_id": "b1"})
    assert other.status_code == 201 and plain.status_code == 201
    assert other.json()["id"] != first.json()["id"]
    assert len(api.messages(cid)) == 3

    # another integration's key has its own Idempotency-Keys: it never gets this shop's message back
    second_shop = {"Authorization": f"Bearer {new_key(api.database_url, 'second-shop')}"}
    theirs = api.client.post(path, json=notice, headers=second_shop | {"Idempotency-Key": "order-1001-shipped"})
    assert theirs.status_code == 201 and theirs.json()["id"] != first.json()["id"]
    assert len(api.messages(cid)) == 4


def test_an_idempotency_key_reused_for_another_request_is_refused_and_stores_nothing(api: Api) -> None:
    """The IETF Idempotency-Key draft: the same key with a different payload is a client error (422), never the
    earlier message in place of the new one."""
    cid = api.conversation("b1", "m1")
    other_cid = api.conversation("b2", "m1")
    path = f"/api/v1/conversations/{cid}/messages"
    key = {"Idempotency-Key": "order-2001"}
    first = api.post(path, {"body": "订单已发货", "kind": "system"}, key)
    assert first.status_code == 201, first.text
    for variant_path, body in (
        (path, {"body": "订单已签收", "kind": "system"}),  # another body
        (path, {"body": "订单已发货", "sender_id": "m1"}),  # another sender and kind
        (f"/api/v1/conversations/{other_cid}/messages", {"body": "订单已发货", "kind": "system"}),  # elsewhere
    ):
        assert_error(api.post(variant_path, body, key), 422, "idempotency_key_reused", "Idempotency-Key")
    assert [m["id"] for m in api.messages(cid)] == [first.json()["id"]]
    assert api.messages(other_cid) == []
    # the same request again is still answered with the original
    retry = api.post(path, {"body": "  订单已发货\n", "kind": "system"}, key)  # the same body once trimmed
    assert retry.status_code == 200 and retry.json() == first.json()


def test_messages_racing_into_one_conversation_are_each_stored_once(api: Api) -> None:
    """Six retries of one notice with the same Idempotency-Key and eight other messages, all at the same moment."""
    cid = api.conversation("b1", "m1")
    results: dict[int, httpx.Response] = {}
    barrier = threading.Barrier(14)

    def post(i: int) -> None:
        retry = i < 6
        body = {"body": "订单已付款", "kind": "system"} if retry else {"body": f"第{i}条", "sender_id": "b1"}
        barrier.wait()
        results[i] = api.post(f"/api/v1/conversations/{cid}/messages", body,
                              {"Idempotency-Key": "pay-77"} if retry else None)

    threads = [threading.Thread(target=post, args=(i,)) for i in range(14)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == 14
    statuses = {i: (r.status_code, r.text[:200]) for i, r in results.items()}
    retries = [results[i] for i in range(6)]
    assert sorted(r.status_code for r in retries) == [200] * 5 + [201], statuses
    assert len({r.json()["id"] for r in retries}) == 1
    assert all(results[i].status_code == 201 for i in range(6, 14)), statuses
    stored = api.messages(cid)
    assert len(stored) == 9
    assert sorted(m["body"] for m in stored) == sorted(["订单已付款"] + [f"第{i}条" for i in range(6, 14)])
    assert api.get(f"/api/v1/conversations/{cid}").json()["message_count"] == 9


# --- pagination ---

def test_75_conversations_page_by_10_each_exactly_once_newest_first(api: Api) -> None:
    base = datetime(2021, 5, 1, 8, 0, tzinfo=UTC)  # before any conversation made now
    with with_session(api.database_url) as session:
        buyer = get_user(session, "b1")
        for i in range(75):
            merchant = upsert_user(session, f"lm{i}", f"商家{i}", "merchant")
            conversation = convs.get_or_create_conversation(session, buyer, merchant)
            # three conversations share each moment: the cursor must tell them apart by id
            activity = base + timedelta(seconds=i // 3)
            session.execute(update(Conversation).where(Conversation.id == conversation.id)
                            .values(last_activity_at=activity))
            session.execute(update(Member).where(Member.conversation_id == conversation.id)
                            .values(last_activity_at=activity))
        session.commit()
        rows = session.execute(select(Conversation.id, Conversation.last_activity_at)).all()
    expected = [cid for cid, _at in sorted(rows, key=lambda row: (row[1], row[0]), reverse=True)]
    assert len(expected) == 75

    started: list[int] = []

    def page_through(**params: Any) -> tuple[list[int], int]:
        seen: list[int] = []
        cursor, pages = None, 0
        while True:
            response = api.get("/api/v1/conversations", limit=10, **params, **({"cursor": cursor} if cursor else {}))
            assert response.status_code == 200, response.text
            body = response.json()
            pages += 1
            assert len(body["items"]) == (10 if pages < 8 else 5 if pages == 8 else 1), body
            seen += [item["id"] for item in body["items"]]
            if pages == 1 and params:  # a conversation that starts while the marketplace pages: at the end, once
                with with_session(api.database_url) as session:
                    b1, p1 = get_user(session, "b1"), get_user(session, "p1")
                    started.append(convs.get_or_create_conversation(session, b1, p1).id)
                    session.commit()
            cursor = body["next_cursor"]
            if cursor is None:
                return seen, pages
            assert pages < 20, "the cursor never ends"

    seen, pages = page_through(user_id="b1")
    assert pages == 9
    assert seen == expected + started
    # every conversation (there are now 76, the newest first), without user_id
    everything = [item["id"] for item in api.get("/api/v1/conversations", limit=100).json()["items"]]
    assert len(everything) == 76 and everything[1:] == expected
    assert api.get("/api/v1/conversations", user_id="b1").json()["next_cursor"] is not None  # default page: 30

    assert_error(api.get("/api/v1/conversations", cursor="not-a-cursor"), 422, "invalid", "cursor")
    assert_error(api.get("/api/v1/conversations", limit=0), 400, "invalid_request", "limit")
    assert_error(api.get("/api/v1/conversations", limit=101), 400, "invalid_request", "limit")


def test_250_messages_page_with_after_and_limit_oldest_first(api: Api) -> None:
    cid = api.conversation("b1", "m1")
    with with_session(api.database_url) as session:
        stored = [msgs.send_message(session, cid, ("b1", "m1")[i % 2], f"第{i}条").id for i in range(250)]
    assert stored == sorted(stored)

    def page_through(limit: int) -> tuple[list[dict[str, Any]], int]:
        items: list[dict[str, Any]] = []
        after, pages = 0, 0
        while True:
            response = api.get(f"/api/v1/conversations/{cid}/messages", after=after, limit=limit)
            assert response.status_code == 200, response.text
            body = response.json()
            pages += 1
            items += body["items"]
            if body["next_after"] is None:
                return items, pages
            assert body["next_after"] == body["items"][-1]["id"]
            after = body["next_after"]
            assert pages < 100, "next_after never ends"

    for limit, expected_pages in ((100, 3), (7, 36)):
        items, pages = page_through(limit)
        assert pages == expected_pages
        assert [m["id"] for m in items] == stored
        assert [m["body"] for m in items] == [f"第{i}条" for i in range(250)]

    first = api.get(f"/api/v1/conversations/{cid}/messages").json()  # default: 50, oldest first
    assert [m["id"] for m in first["items"]] == stored[:50] and first["next_after"] == stored[49]
    tail = api.get(f"/api/v1/conversations/{cid}/messages", after=stored[199]).json()
    assert [m["id"] for m in tail["items"]] == stored[200:] and tail["next_after"] is None
    # polling with `after` = the last id seen brings what is new, and only that
    assert api.get(f"/api/v1/conversations/{cid}/messages", after=stored[-1]).json() == {"items": [],
                                                                                        "next_after": None}
    new = api.post(f"/api/v1/conversations/{cid}/messages", {"body": "新消息", "sender_id": "m1"}).json()
    assert api.get(f"/api/v1/conversations/{cid}/messages", after=stored[-1]).json()["items"] == [new]

    path = f"/api/v1/conversations/{cid}/messages"
    assert_error(api.get(path, limit=0), 400, "invalid_request", "limit")
    assert_error(api.get(path, limit=101), 400, "invalid_request", "limit")
    assert_error(api.get(path, after=-1), 400, "invalid_request", "after")
    assert_error(api.get(path, after="abc"), 400, "invalid_request", "after")


# --- live delivery, over a real server ---

def test_a_notice_over_the_api_reaches_the_open_chat_at_once(database_url: str, tmp_path: Path) -> None:
    key = new_key(database_url)
    server = ServerProcess(server_env(database_url, tmp_path), free_port()).start()
    try:
        auth = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=server.url, timeout=10) as browser, \
                httpx.Client(base_url=server.url, timeout=10, headers=auth) as backend:
            sign_in(browser, "b1", target="m1")
            cid = backend.post("/api/v1/conversations", json={"user_ids": ["b1", "m1"]}).json()["id"]
            with browser.stream("GET", "/events") as stream:
                lines = stream.iter_lines()
                for line in lines:  # subscribed once the opening comment arrives
                    if line.startswith(":"):
                        break
                posted = backend.post(f"/api/v1/conversations/{cid}/messages",
                                      json={"body": "订单已发货", "kind": "system"})
                assert posted.status_code == 201, posted.text
                mid = posted.json()["id"]
                deadline = time.monotonic() + 5
                for line in lines:
                    if line.startswith("data:") and f'data-message-id="{mid}"' in line:
                        assert f'data-conversation-id="{cid}"' in line and "订单已发货" in line
                        break
                    assert time.monotonic() < deadline, "the notice did not reach the buyer's stream within 5 s"
    finally:
        server.stop()


# --- kefu apikey ---

@dataclass
class Ran:
    code: int
    out: str
    err: str


def error_lines(err: str) -> list[str]:
    """What a command said on standard error, less the line that names its database."""
    return [line for line in err.splitlines() if line.strip() and not line.startswith("database: ")]


def kefu(database_url: str, tmp_path: Path, *args: str) -> Ran:
    """`kefu ARGS` on the test database, run in this process by click's runner (a child process per call would
    cost a second or two each): its exit status, standard output and standard error. A traceback fails the test."""
    env: dict[str, str | None] = {name: None for name in os.environ if name.startswith("KEFU_")}
    env |= {"KEFU_DATABASE_URL": database_url, "KEFU_SECRET_KEY": TEST_SECRET, "KEFU_VAR_DIR": str(tmp_path),
            "KEFU_WEBHOOK_PRIVATE_TARGETS": "1"}  # the tests' receivers listen on 127.0.0.1
    result = CliRunner(env=env).invoke(cli.main, list(args), catch_exceptions=False)
    return Ran(result.exit_code, result.stdout, result.stderr)


def test_apikey_create_prints_the_key_once_list_never_shows_it_and_revoke_stops_it(
        database_url: str, tmp_path: Path) -> None:
    created = kefu(database_url, tmp_path, "apikey", "create", "shop")
    assert created.code == 0, created.err
    key = created.out.strip()
    assert "\n" not in key and key.startswith("kefu_") and len(key) >= 40
    with with_session(database_url) as session:  # stored hashed, never as itself
        record = session.scalar(select(ApiKey).where(ApiKey.name == "shop"))
        assert record is not None
        assert record.key_hash == hashlib.sha256(key.encode()).hexdigest()
        assert key not in (record.name, record.prefix, record.key_hash)

    again = kefu(database_url, tmp_path, "apikey", "create", "shop")
    assert again.code != 0 and "shop" in again.err and len(error_lines(again.err)) == 1

    app = create_app(make_settings(database_url, tmp_path))
    with TestClient(app, base_url=BASE_URL) as client:
        auth = {"Authorization": f"Bearer {key}"}
        assert client.get("/api/v1/users/b1", headers=auth).status_code == 200

        listed = kefu(database_url, tmp_path, "apikey", "list")
        assert listed.code == 0, listed.err
        assert "shop" in listed.out and "active" in listed.out
        assert key not in listed.out and key[12:24] not in listed.out  # at most the public prefix

        revoked = kefu(database_url, tmp_path, "apikey", "revoke", "shop")
        assert revoked.code == 0, revoked.err
        assert_error(client.get("/api/v1/users/b1", headers=auth), 401, "unauthorized")

    listed = kefu(database_url, tmp_path, "apikey", "list")
    assert "shop" in listed.out and "revoked" in listed.out and key not in listed.out
    unknown = kefu(database_url, tmp_path, "apikey", "revoke", "nosuch")
    assert unknown.code != 0 and "nosuch" in unknown.err and len(error_lines(unknown.err)) == 1
