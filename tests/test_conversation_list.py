"""The conversation list: newest activity first, what each item shows, and paging through a long list."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from litestar.testing import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session

from app.chat.people import upsert_user
from app.db.models import Member
from tests.dom import Element, parse
from tests.seeding import converse, say
from tests.streams import Stream
from tests.support import ServerProcess, free_port, server_env, sign_in

PAGE_SIZE = 30


def items_of(html: str) -> list[Element]:
    return parse(html).find_all(testid="conversation")


def peers_of(html: str) -> list[str]:
    return [item.get("data-peer-id") or "" for item in items_of(html)]


def item_for(html: str, peer_id: str) -> Element:
    return parse(html).one(testid="conversation", data_peer_id=peer_id)


def load_more(html: str) -> Element | None:
    """The "load more" control at the end of a list page, if there is one."""
    found = [e for e in parse(html).iter() if (e.get("hx-get") or "").startswith("/chat/list?cursor=")]
    assert len(found) <= 1
    return found[0] if found else None


def many_merchants(db: Session, count: int) -> list[int]:
    """`count` merchants lm1…lmN, each with a conversation with b1 and one message, lm1 first, lmN last."""
    cids = []
    for n in range(1, count + 1):
        upsert_user(db, f"lm{n}", f"压测商家{n}", "merchant")
        db.commit()
        cid = converse(db, "b1", f"lm{n}")
        say(db, cid, f"lm{n}", f"第{n}条询价")
        cids.append(cid)
    return cids


def walk_list(client: TestClient) -> tuple[list[int], list[int]]:
    """Every conversation id of the signed-in person by following "load more", and each page's size."""
    page = client.get("/chat")
    assert page.status_code == 200
    seen = [int(item.get("data-conversation-id") or 0) for item in items_of(page.text)]
    sizes = [len(seen)]
    more = load_more(page.text)
    while more is not None:
        response = client.get(more.get("hx-get") or "", headers={"HX-Request": "true"})
        assert response.status_code == 200
        ids = [int(item.get("data-conversation-id") or 0) for item in items_of(response.text)]
        assert ids, "a load-more page with nothing in it"
        assert "<html" not in response.text
        seen += ids
        sizes.append(len(ids))
        more = load_more(response.text)
        assert len(sizes) < 20, "the cursors go round in circles"
    return seen, sizes


def test_newest_activity_comes_first_and_a_message_moves_a_conversation_to_the_top(
    db: Session, app_client: TestClient
) -> None:
    with_m1, with_m2, with_m3 = converse(db, "b1", "m1"), converse(db, "b1", "m2"), converse(db, "b1", "m3")
    say(db, with_m1, "b1", "一")
    say(db, with_m2, "m2", "二")
    say(db, with_m3, "b1", "三")
    token = sign_in(app_client, "b1")
    assert peers_of(app_client.get("/chat").text) == ["m3", "m2", "m1"]

    sent = app_client.post(f"/chat/c/{with_m1}/messages", data={"body": "我又来了"}, headers={"X-CSRFToken": token})
    assert sent.status_code == 201
    assert peers_of(app_client.get("/chat").text) == ["m1", "m3", "m2"]

    say(db, with_m2, "m2", "有货")  # a message from the other side moves it up too
    assert peers_of(app_client.get("/chat").text) == ["m2", "m1", "m3"]

    app_client.cookies.clear()
    sign_in(app_client, "m2")
    assert peers_of(app_client.get("/chat").text) == ["b1"]


def test_a_new_conversation_without_messages_is_listed_with_an_empty_preview(
    db: Session, app_client: TestClient
) -> None:
    sign_in(app_client, "b1", target="p1")
    page = app_client.get("/chat").text
    item = item_for(page, "p1")
    assert item.one(cls="conv-name").text() == "官方客服"
    assert item.one(cls="conv-preview").text() == ""
    assert item.one(testid="unread").has("hidden")


def test_an_item_shows_the_peer_name_last_message_and_unread_count(db: Session, app_client: TestClient) -> None:
    with_m1, with_m2 = converse(db, "b1", "m1"), converse(db, "b1", "m2")
    say(db, with_m1, "b1", "请问板蓝根还有货吗？")
    for text in ("有的", "要多少？", "今天   可以\n发货 🚚"):
        say(db, with_m1, "m1", text)
    say(db, with_m2, "b1", "我先问问")
    sign_in(app_client, "b1")
    page = app_client.get("/chat").text

    m1 = item_for(page, "m1")
    assert m1.get("data-conversation-id") == str(with_m1)
    assert m1.one(cls="conv-name").text() == "保和堂医药集团"
    assert m1.one(cls="conv-preview").text() == "今天 可以 发货 🚚"
    unread = m1.one(testid="unread")
    assert unread.text() == "3"
    assert not unread.has("hidden")

    m2 = item_for(page, "m2")
    assert m2.one(cls="conv-name").text() == "阿纳斯蒂制药"
    assert m2.one(cls="conv-preview").text() == "我先问问"  # one's own last message
    assert m2.one(testid="unread").text() == "0"
    assert m2.one(testid="unread").has("hidden")  # no badge when nothing is unread


def test_a_long_last_message_is_shortened_in_the_preview(db: Session, app_client: TestClient) -> None:
    cid = converse(db, "b1", "m1")
    long_text = "很长的消息" * 40
    say(db, cid, "m1", long_text)
    sign_in(app_client, "b1")
    preview = item_for(app_client.get("/chat").text, "m1").one(cls="conv-preview").text()
    assert preview.endswith("…")
    assert long_text.startswith(preview[:-1])
    assert len(preview) < len(long_text)


def test_each_item_has_an_offline_presence_dot_for_its_peer(db: Session, app_client: TestClient) -> None:
    converse(db, "b1", "m1")
    converse(db, "b1", "p1")
    sign_in(app_client, "b1")
    page = app_client.get("/chat").text
    for peer in ("m1", "p1"):
        dot = item_for(page, peer).one(testid="presence")
        assert dot.get("data-user-id") == peer
        assert dot.get("data-online") == "false"


def test_the_dot_turns_online_while_the_peer_has_the_app_open(database_url: str, tmp_path: Path) -> None:
    """Through a real `kefu serve`: m1 opens the event stream, b1's list shows m1 online, then offline again."""
    server = ServerProcess(server_env(database_url, tmp_path), free_port()).start()
    try:
        with (
            httpx.Client(base_url=server.url, timeout=10) as buyer,
            httpx.Client(base_url=server.url, timeout=10) as merchant,
        ):
            sign_in(buyer, "b1", target="m1")
            sign_in(merchant, "m1")

            def m1_dot() -> str | None:
                return item_for(buyer.get("/chat").text, "m1").one(testid="presence").get("data-online")

            assert m1_dot() == "false"
            with merchant.stream("GET", "/events") as stream:
                assert stream.status_code == 200
                events = Stream(stream)  # kept: dropping the reader would close the stream
                events.opened()  # the first thing the stream sends: from here on m1 is online
                assert m1_dot() == "true"
                cid = item_for(buyer.get("/chat").text, "m1").get("data-conversation-id")
                item = buyer.get(f"/chat/c/{cid}/item").text
                assert parse(item).one(testid="presence").get("data-online") == "true"
            deadline = time.monotonic() + 15
            while m1_dot() != "false":
                assert time.monotonic() < deadline, "m1 still shown online long after closing the app"
                time.sleep(0.2)
    finally:
        server.stop()


def test_a_long_list_comes_in_pages_of_30_and_every_conversation_appears_once_in_order(
    db: Session, app_client: TestClient
) -> None:
    cids = many_merchants(db, 75)
    sign_in(app_client, "b1")
    first = app_client.get("/chat").text
    assert len(items_of(first)) == PAGE_SIZE
    more = load_more(first)
    assert more is not None
    assert more.text() == "加载更多会话"
    assert (more.get("hx-get") or "").startswith("/chat/list?cursor=")

    seen, sizes = walk_list(app_client)
    assert sizes == [30, 30, 15]
    assert seen == list(reversed(cids))  # newest activity first, each exactly once


def test_exactly_one_page_has_no_load_more(db: Session, app_client: TestClient) -> None:
    cids = many_merchants(db, PAGE_SIZE)
    sign_in(app_client, "b1")
    page = app_client.get("/chat").text
    assert len(items_of(page)) == PAGE_SIZE
    assert load_more(page) is None
    assert walk_list(app_client)[0] == list(reversed(cids))


@pytest.mark.parametrize(
    "instant",
    [
        datetime(2025, 6, 1, 9, 30, 0, 123456, tzinfo=UTC),
        datetime(2040, 4, 12, 1, 23, 45, 3, tzinfo=UTC),  # past 2038: a float timestamp loses the microsecond
    ],
    ids=["today", "after-2038"],
)
def test_conversations_with_the_same_activity_time_are_each_listed_once(
    db: Session, app_client: TestClient, instant: datetime
) -> None:
    """A batch import (or a coarse clock) gives many conversations one activity time; paging must not lose any."""
    cids = many_merchants(db, 65)
    db.execute(update(Member).where(Member.user_id == "b1").values(last_activity_at=instant))
    db.commit()
    sign_in(app_client, "b1")
    seen, sizes = walk_list(app_client)
    assert sizes == [30, 30, 5]
    assert seen == sorted(cids, reverse=True)  # ties: the newer conversation first


GARBAGE_CURSORS = [
    "abc", "123", "_", "1_", "_1", "1_x", "x_1", "1.5_2", "1_2_3", "99999999999999999999999999_1",
    "1_99999999999999999999999999", "1_0", "1_-5", "-1_5", "%00", "１２_３", " 1_2",
]


def test_a_garbage_cursor_is_not_found_not_a_server_error(db: Session, app_client: TestClient) -> None:
    many_merchants(db, 2)
    sign_in(app_client, "b1")
    for cursor in GARBAGE_CURSORS:
        response = app_client.get("/chat/list", params={"cursor": cursor}, headers={"HX-Request": "true"})
        assert response.status_code == 404, (cursor, response.text)
        assert "Traceback" not in response.text
        assert 'data-testid="conversation"' not in response.text


def test_the_list_needs_someone_signed_in(app_client: TestClient) -> None:
    response = app_client.get("/chat/list")
    assert response.status_code == 401
    assert "请先登录" in response.text


def test_the_item_fragment_is_one_conversation_as_its_reader_sees_it(db: Session, app_client: TestClient) -> None:
    cid = converse(db, "b1", "m1")
    converse(db, "b1", "m2")
    say(db, cid, "m1", "您好")
    say(db, cid, "m1", "在吗")
    sign_in(app_client, "b1")
    response = app_client.get(f"/chat/c/{cid}/item", headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "<html" not in response.text
    item = parse(response.text).one(testid="conversation")
    assert item.get("data-conversation-id") == str(cid)
    assert item.get("data-peer-id") == "m1"
    assert item.one(cls="conv-name").text() == "保和堂医药集团"
    assert item.one(cls="conv-preview").text() == "在吗"
    assert item.one(testid="unread").text() == "2"
    assert item.one(testid="presence").get("data-user-id") == "m1"
    again = parse(app_client.get(f"/chat/c/{cid}/item").text).one(testid="unread")
    assert again.text() == "2"  # looking at the item does not read the conversation

    app_client.cookies.clear()
    sign_in(app_client, "m1")
    other_side = parse(app_client.get(f"/chat/c/{cid}/item").text).one(testid="conversation")
    assert other_side.get("data-peer-id") == "b1"
    assert other_side.one(cls="conv-name").text() == "保安堂药房"
    assert other_side.one(testid="unread").text() == "0"


def test_the_refreshed_list_and_an_item_carry_the_true_unread_total_beyond_the_first_page(
    db: Session, app_client: TestClient
) -> None:
    """After a reconnect the page takes its title from here: the total counts every conversation, not the 30 shown."""
    cids = many_merchants(db, 40)  # one unread message each; lm1…lm10 are beyond the first page
    sign_in(app_client, "b1")
    refreshed = app_client.get("/chat/list", headers={"HX-Request": "true"})
    assert refreshed.status_code == 200
    assert len(items_of(refreshed.text)) == PAGE_SIZE
    total = parse(refreshed.text).one(testid="list-total")
    assert total.get("data-total-unread") == "40"
    newest = int(items_of(refreshed.text)[0].get("data-last-message-id") or 0)
    assert total.get("data-as-of") == str(newest)  # the newest message the total accounts for
    assert items_of(refreshed.text)[0].get("data-unread-through") == str(newest)

    more = load_more(refreshed.text)
    assert more is not None
    second = app_client.get(more.get("hx-get") or "", headers={"HX-Request": "true"}).text
    assert parse(second).find_all(testid="list-total") == []  # only the first page says it

    oldest = parse(app_client.get(f"/chat/c/{cids[0]}/item").text).one(testid="conversation")
    assert oldest.get("data-total-unread") == "40"
    assert oldest.get("data-as-of") == str(newest)
    assert oldest.one(testid="unread").text() == "1"
