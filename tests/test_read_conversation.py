"""Reading a conversation: unread counts fall, the title counts what is unread, read receipts for the sender."""

from __future__ import annotations

import re

from litestar.testing import TestClient
from sqlalchemy.orm import Session

from app.db.models import Member
from tests.dom import Element, parse
from tests.seeding import converse, say_all
from tests.support import sign_in

TITLE_RE = re.compile(r"<title>(.*?)</title>", re.S)


def title_of(html: str) -> str:
    match = TITLE_RE.search(html)
    assert match, "the page has no <title>"
    return match.group(1).strip()


def unread_of(client: TestClient, cid: int) -> int:
    """The unread count the reader's list item shows (looking at the item does not read the conversation)."""
    response = client.get(f"/chat/c/{cid}/item")
    assert response.status_code == 200
    badge = parse(response.text).one(testid="unread")
    assert badge.has("hidden") == (badge.text() == "0")
    return int(badge.text())


def watermark(db: Session, cid: int, user_id: str) -> int:
    db.rollback()  # a fresh snapshot (MariaDB's repeatable read), and nothing cached
    member = db.get(Member, (cid, user_id))
    assert member is not None
    return member.last_read_message_id


def rows_of(html: str) -> dict[int, Element]:
    """Each message of a thread page or fragment by id, mapped to its `.msg-row`."""
    rows = {}
    for row in parse(html).find_all(cls="msg-row"):
        message = row.one(testid="message")
        rows[int(message.get("data-message-id") or 0)] = row
    return rows


def read_up_to(client: TestClient, token: str, cid: int, up_to: int | str) -> int:
    response = client.post(f"/chat/c/{cid}/read", data={"up_to": str(up_to)}, headers={"X-CSRFToken": token})
    return response.status_code


def test_opening_a_conversation_reads_nothing_until_the_page_says_what_was_seen(
    db: Session, app_client: TestClient
) -> None:
    # A page may be rendered in a hidden tab or scrolled away from the new messages: only the page's script
    # knows what was on the screen, and tells the server with POST /read.
    with_m1, with_m2 = converse(db, "b1", "m1"), converse(db, "b1", "m2")
    ids = say_all(db, with_m1, "m1", "您好", "有货", "要多少？")
    say_all(db, with_m2, "m2", "新品到了")
    token = sign_in(app_client, "b1")

    page = app_client.get("/chat").text
    assert parse(page).one(testid="conversation", data_peer_id="m1").one(testid="unread").text() == "3"
    assert parse(page).one(testid="conversation", data_peer_id="m2").one(testid="unread").text() == "1"
    assert parse(page).one(testid="total-unread").text() == "4"

    opened = app_client.get(f"/chat/c/{with_m1}")
    assert opened.status_code == 200
    assert parse(opened.text).one(testid="thread").get("data-my-last-read") == "0"
    assert title_of(opened.text) == "(4) 客服 · Kefu"
    assert unread_of(app_client, with_m1) == 3
    assert watermark(db, with_m1, "b1") == 0

    response = app_client.post(f"/chat/c/{with_m1}/read", data={"up_to": str(ids[1])},
                               headers={"X-CSRFToken": token})
    assert response.status_code == 204
    assert response.headers["X-Kefu-Total-Unread"] == "2"  # the page's new title, from the server
    assert unread_of(app_client, with_m1) == 1
    assert unread_of(app_client, with_m2) == 1
    item = parse(app_client.get("/chat").text).one(testid="conversation", data_peer_id="m1")
    assert item.one(testid="unread").text() == "1"

    say_all(db, with_m1, "m1", "还在吗？")
    assert unread_of(app_client, with_m1) == 2


def test_opening_with_htmx_reads_nothing_either(db: Session, app_client: TestClient) -> None:
    cid = converse(db, "b1", "m1")
    ids = say_all(db, cid, "m1", "一", "二")
    sign_in(app_client, "b1")
    fragment = app_client.get(f"/chat/c/{cid}", headers={"HX-Request": "true"})
    assert fragment.status_code == 200
    assert "<html" not in fragment.text
    thread = parse(fragment.text).one(testid="thread")
    assert thread.get("data-conversation-id") == str(cid)
    assert thread.get("data-my-last-read") == "0"
    assert unread_of(app_client, cid) == 2
    assert watermark(db, cid, "b1") == 0
    assert len(thread.find_all(testid="message")) == len(ids)


def test_opening_with_target_reads_nothing(db: Session, app_client: TestClient) -> None:
    cid = converse(db, "b1", "m1")
    say_all(db, cid, "m1", "一", "二")
    sign_in(app_client, "b1", target="m1")
    assert unread_of(app_client, cid) == 2
    assert title_of(app_client.get("/chat").text) == "(2) 客服 · Kefu"


def test_the_title_shows_the_total_unread_and_no_number_at_zero(db: Session, app_client: TestClient) -> None:
    with_m1, with_m2 = converse(db, "b1", "m1"), converse(db, "b1", "m2")
    token = sign_in(app_client, "b1")
    page = app_client.get("/chat").text
    assert title_of(page) == "客服 · Kefu"
    assert parse(page).one(testid="total-unread").has("hidden")

    say_all(db, with_m2, "b1", "我自己的话不算未读")
    say_all(db, with_m1, "m1", "一", "二")
    say_all(db, with_m2, "m2", "三")
    page = app_client.get("/chat").text
    assert title_of(page) == "(3) 客服 · Kefu"
    assert not parse(page).one(testid="total-unread").has("hidden")

    assert app_client.post(f"/chat/c/{with_m2}/read", data={}, headers={"X-CSRFToken": token}).status_code == 204
    assert title_of(app_client.get("/chat").text) == "(2) 客服 · Kefu"
    assert app_client.post(f"/chat/c/{with_m1}/read", data={}, headers={"X-CSRFToken": token}).status_code == 204
    assert title_of(app_client.get("/chat").text) == "客服 · Kefu"


def test_the_read_watermark_moves_forward_only_and_stops_at_the_latest_message(
    db: Session, app_client: TestClient
) -> None:
    cid = converse(db, "b1", "m1")
    ids = say_all(db, cid, "m1", "1", "2", "3", "4", "5")
    token = sign_in(app_client, "b1")
    assert unread_of(app_client, cid) == 5

    assert read_up_to(app_client, token, cid, ids[1]) == 204
    assert unread_of(app_client, cid) == 3
    assert watermark(db, cid, "b1") == ids[1]

    assert read_up_to(app_client, token, cid, ids[0]) == 204  # never back
    assert unread_of(app_client, cid) == 3
    assert watermark(db, cid, "b1") == ids[1]

    assert read_up_to(app_client, token, cid, ids[-1] + 1000) == 204  # clamped to the latest message
    assert unread_of(app_client, cid) == 0
    assert watermark(db, cid, "b1") == ids[-1]

    say_all(db, cid, "m1", "6")  # so a message stored after the clamp is unread again
    assert unread_of(app_client, cid) == 1


def test_read_without_up_to_reads_everything(db: Session, app_client: TestClient) -> None:
    cid = converse(db, "b1", "m1")
    ids = say_all(db, cid, "m1", "1", "2", "3")
    token = sign_in(app_client, "b1")
    response = app_client.post(f"/chat/c/{cid}/read", data={}, headers={"X-CSRFToken": token})
    assert response.status_code == 204
    assert unread_of(app_client, cid) == 0
    assert watermark(db, cid, "b1") == ids[-1]


def test_a_nonsense_watermark_is_refused_and_changes_nothing(db: Session, app_client: TestClient) -> None:
    cid = converse(db, "b1", "m1")
    say_all(db, cid, "m1", "1", "2")
    token = sign_in(app_client, "b1")
    for up_to in ("abc", "0", "-1", "1.5", "99999999999999999999999"):
        assert read_up_to(app_client, token, cid, up_to) == 404, up_to
    assert unread_of(app_client, cid) == 2
    assert watermark(db, cid, "b1") == 0


def test_reading_needs_the_csrf_token(db: Session, app_client: TestClient) -> None:
    cid = converse(db, "b1", "m1")
    say_all(db, cid, "m1", "1")
    sign_in(app_client, "b1")
    assert app_client.post(f"/chat/c/{cid}/read", data={"up_to": "1"}).status_code == 403
    assert unread_of(app_client, cid) == 1


def test_the_sender_sees_their_messages_as_read_up_to_the_readers_watermark(
    db: Session, app_client: TestClient
) -> None:
    cid = converse(db, "b1", "m1")
    [theirs] = say_all(db, cid, "m1", "您好，请问需要什么？")  # (a reply would read everything before it)
    token = sign_in(app_client, "b1")
    mine = []
    for text in ("第一条", "第二条", "第三条"):
        response = app_client.post(f"/chat/c/{cid}/messages", data={"body": text}, headers={"X-CSRFToken": token})
        assert response.status_code == 201
        mine.append(int(parse(response.text).one(testid="message").get("data-message-id") or 0))

    rows = rows_of(app_client.get(f"/chat/c/{cid}").text)
    assert sorted(rows) == [theirs, *mine]
    assert not any("is-read" in row.classes for row in rows.values())  # m1 has not read anything yet
    assert all("mine" in rows[mid].classes for mid in mine)
    assert "mine" not in rows[theirs].classes

    app_client.cookies.clear()
    m1_token = sign_in(app_client, "m1")
    assert read_up_to(app_client, m1_token, cid, mine[1]) == 204

    app_client.cookies.clear()
    sign_in(app_client, "b1")
    rows = rows_of(app_client.get(f"/chat/c/{cid}").text)
    assert "is-read" in rows[mine[0]].classes
    assert "is-read" in rows[mine[1]].classes
    assert "is-read" not in rows[mine[2]].classes
    assert "is-read" not in rows[theirs].classes  # receipts are for one's own messages

    app_client.cookies.clear()
    m1_token = sign_in(app_client, "m1")
    assert app_client.post(f"/chat/c/{cid}/read", data={}, headers={"X-CSRFToken": m1_token}).status_code == 204

    app_client.cookies.clear()
    sign_in(app_client, "b1")
    rows = rows_of(app_client.get(f"/chat/c/{cid}").text)
    assert all("is-read" in rows[mid].classes for mid in mine)
    older = app_client.get(f"/chat/c/{cid}/messages", params={"before": str(mine[-1] + 1)})
    assert older.status_code == 200
    older_rows = rows_of(older.text)
    assert sorted(older_rows) == [theirs, *mine]
    assert all("is-read" in older_rows[mid].classes for mid in mine)


def test_replying_reads_what_came_before(db: Session, app_client: TestClient) -> None:
    cid = converse(db, "b1", "m1")
    say_all(db, cid, "m1", "一", "二")
    token = sign_in(app_client, "b1")
    assert unread_of(app_client, cid) == 2
    reply = app_client.post(f"/chat/c/{cid}/messages", data={"body": "好的"}, headers={"X-CSRFToken": token})
    assert reply.status_code == 201
    assert unread_of(app_client, cid) == 0
