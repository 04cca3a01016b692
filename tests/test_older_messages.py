"""Scrolling back through a long conversation: the newest page first, then older pages until the start."""

from __future__ import annotations

import pytest
from litestar.testing import TestClient
from sqlalchemy.orm import Session

from app.chat import conversations as convs
from app.chat import messages as msgs
from app.chat.people import get_user
from tests.dom import Element, parse
from tests.support import sign_in

PAGE_SIZE = 30
THE_START = "会话从这里开始"


def conversation_of(db: Session, count: int) -> tuple[int, list[int]]:
    """b1 and m1 with `count` messages "第1条"…, taking turns; returns the conversation id and message ids."""
    b1, m1 = get_user(db, "b1"), get_user(db, "m1")
    assert b1 is not None and m1 is not None
    cid = convs.get_or_create_conversation(db, b1, m1).id
    ids = [msgs.send_message(db, cid, ("m1", "b1")[n % 2], f"第{n}条").id for n in range(1, count + 1)]
    db.commit()
    return cid, ids


def shown(html: str) -> list[Element]:
    return parse(html).find_all(testid="message")


def shown_ids(html: str) -> list[int]:
    return [int(m.get("data-message-id") or 0) for m in shown(html)]


def loader_of(html: str) -> Element | None:
    found = parse(html).find_all(testid="load-older")
    assert len(found) <= 1
    return found[0] if found else None


def test_the_thread_shows_the_newest_30_in_order_with_a_loader_for_older_ones(
    db: Session, app_client: TestClient
) -> None:
    cid, ids = conversation_of(db, 75)
    sign_in(app_client, "b1")
    page = app_client.get(f"/chat/c/{cid}").text
    thread = parse(page).one(testid="thread")
    assert thread.get("data-conversation-id") == str(cid)
    messages = thread.find_all(testid="message")
    assert [int(m.get("data-message-id") or 0) for m in messages] == ids[-PAGE_SIZE:]
    assert [m.one(cls="msg-bubble").text() for m in messages] == [f"第{n}条" for n in range(46, 76)]
    assert all(m.get("data-conversation-id") == str(cid) for m in messages)
    assert [m.get("data-sender-id") for m in messages[:2]] == ["m1", "b1"]  # 第46条 is m1's, 第47条 b1's

    loader = thread.one(testid="load-older")
    assert loader.get("hx-get") == f"/chat/c/{cid}/messages?before={ids[-PAGE_SIZE]}"
    assert THE_START not in page


def test_walking_back_returns_every_message_once_and_ends_at_the_start(db: Session, app_client: TestClient) -> None:
    cid, ids = conversation_of(db, 75)
    sign_in(app_client, "m1")
    page = app_client.get(f"/chat/c/{cid}").text
    pages = [shown_ids(page)]
    loader = loader_of(page)
    while loader is not None:
        response = app_client.get(loader.get("hx-get") or "", headers={"HX-Request": "true"})
        assert response.status_code == 200
        assert "<html" not in response.text
        older = shown_ids(response.text)
        assert older and max(older) < min(pages[0]), "an older page must be older than what is shown"
        pages.insert(0, older)
        last = response.text
        loader = loader_of(last)
        assert len(pages) < 10, "the loaders go round in circles"

    assert [len(p) for p in pages] == [15, 30, 30]
    assert [mid for p in pages for mid in p] == ids  # all 75, exactly once, oldest first
    assert THE_START in parse(last).text()
    assert [m.one(cls="msg-bubble").text() for m in shown(last)] == [f"第{n}条" for n in range(1, 16)]


@pytest.mark.parametrize(("count", "has_loader"), [(29, False), (30, False), (31, True)])
def test_the_loader_appears_only_when_there_is_more(
    db: Session, app_client: TestClient, count: int, has_loader: bool
) -> None:
    cid, ids = conversation_of(db, count)
    sign_in(app_client, "b1")
    page = app_client.get(f"/chat/c/{cid}").text
    assert shown_ids(page) == ids[-PAGE_SIZE:]
    assert (loader_of(page) is not None) == has_loader
    assert (THE_START in parse(page).one(testid="thread").text()) == (not has_loader)
    if has_loader:
        older = app_client.get(f"/chat/c/{cid}/messages", params={"before": str(ids[1])})
        assert shown_ids(older.text) == ids[:1]
        assert loader_of(older.text) is None
        assert THE_START in parse(older.text).text()


def test_an_empty_conversation_says_hello_instead(db: Session, app_client: TestClient) -> None:
    sign_in(app_client, "b1", target="m1")
    page = app_client.get("/chat", params={"target": "m1"}).text
    thread = parse(page).one(testid="thread")
    assert thread.find_all(testid="message") == []
    assert thread.one(testid="thread-empty").text() == "还没有消息，说声你好吧。"
    assert loader_of(page) is None


def test_before_the_first_message_there_is_nothing(db: Session, app_client: TestClient) -> None:
    cid, ids = conversation_of(db, 5)
    sign_in(app_client, "b1")
    response = app_client.get(f"/chat/c/{cid}/messages", params={"before": str(ids[0])})
    assert response.status_code == 200
    assert shown_ids(response.text) == []
    assert loader_of(response.text) is None


def test_before_an_id_in_another_conversation_still_shows_only_this_one(
    db: Session, app_client: TestClient
) -> None:
    cid, ids = conversation_of(db, 3)
    m2, b1 = get_user(db, "m2"), get_user(db, "b1")
    assert m2 is not None and b1 is not None
    other = convs.get_or_create_conversation(db, b1, m2).id
    foreign = msgs.send_message(db, other, "m2", "别处的消息").id
    db.commit()
    sign_in(app_client, "b1")
    response = app_client.get(f"/chat/c/{cid}/messages", params={"before": str(foreign + 1)})
    assert shown_ids(response.text) == ids
    assert "别处的消息" not in response.text


def test_a_nonsense_before_is_not_found(db: Session, app_client: TestClient) -> None:
    cid, _ids = conversation_of(db, 3)
    sign_in(app_client, "b1")
    for before in ("abc", "0", "-1", "1.5", " 1", "1_0", "99999999999999999999", "9223372036854775808", "١٢"):
        response = app_client.get(f"/chat/c/{cid}/messages", params={"before": before},
                                  headers={"HX-Request": "true"})
        assert response.status_code == 404, before
        assert "Traceback" not in response.text
        assert 'data-testid="message"' not in response.text


def test_the_largest_possible_id_is_fine(db: Session, app_client: TestClient) -> None:
    cid, ids = conversation_of(db, 3)
    sign_in(app_client, "b1")
    response = app_client.get(f"/chat/c/{cid}/messages", params={"before": str(2**63 - 1)})
    assert response.status_code == 200
    assert shown_ids(response.text) == ids
