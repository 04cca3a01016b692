"""Searching one's own messages (GET /chat/search) and the admins' monitor matching message text, on SQLite and
MariaDB; opening a conversation at a found message."""

from __future__ import annotations

import pytest
from litestar.testing import TestClient
from sqlalchemy import insert, update
from sqlalchemy.orm import Session

from app.chat import search
from app.db.engine import make_engine, make_sessionmaker
from app.db.migrate import downgrade, upgrade
from app.db.models import Message, utcnow
from tests.admin_support import make_admin, sign_in_admin, use_fast_hashing
from tests.dom import Element, parse
from tests.seeding import converse, say_all
from tests.support import sign_in

HTMX = {"HX-Request": "true"}


@pytest.fixture(autouse=True)
def fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    use_fast_hashing(monkeypatch)


def results(client: TestClient, q: str, **params: str) -> list[Element]:
    response = client.get("/chat/search", params={"q": q, **params}, headers=HTMX)
    assert response.status_code == 200, response.text
    return parse(response.text).find_all(testid="search-result")


def found_ids(client: TestClient, q: str) -> list[int]:
    return [int(r.get("data-message-id") or 0) for r in results(client, q)]


def test_chinese_latin_and_order_numbers_are_found_by_substring_newest_first(
        db: Session, app_client: TestClient) -> None:
    cid = converse(db, "b1", "m1")
    when, order, hello, other, again = say_all(db, cid, "b1", "请问什么时候发货呀", "订单 DD20251128001 已付款",
                                           "Hello World, 你好", "好的谢谢", "今天发货吗")
    sign_in(app_client, "m1")
    assert found_ids(app_client, "发货") == [again, when]
    assert found_ids(app_client, "什么时候发货") == [when]
    assert found_ids(app_client, "DD20251128001") == [order]
    assert found_ids(app_client, "20251128") == [order]
    assert found_ids(app_client, "world") == [hello]  # ignoring case
    assert found_ids(app_client, "好") == [other, hello]  # one character
    assert found_ids(app_client, "谢谢") == [other]  # two characters
    assert found_ids(app_client, "发货了") == []
    assert found_ids(app_client, "%") == []  # not a wildcard

    item = results(app_client, "什么时候发货")[0]
    assert item.get("data-conversation-id") == str(cid)
    assert item.one(tag="mark").text() == "什么时候发货"
    assert item.one(cls="search-snippet").text() == "请问什么时候发货呀"
    assert item.one(cls="conv-name").text() == "保安堂药房"  # the other person
    assert item.get("hx-get") == f"/chat/c/{cid}?at={when}"


def test_only_the_searchers_own_conversations_are_searched(db: Session, app_client: TestClient) -> None:
    mine = converse(db, "b1", "m1")
    theirs = converse(db, "b2", "m2")
    [kept] = say_all(db, mine, "m1", "包裹已经发货")
    say_all(db, theirs, "m2", "包裹已经发货", "包")
    sign_in(app_client, "b1")
    assert found_ids(app_client, "包裹已经发货") == [kept]
    assert found_ids(app_client, "发货") == [kept]
    assert found_ids(app_client, "包") == [kept]


def test_a_recalled_message_is_not_found(db: Session, app_client: TestClient) -> None:
    cid = converse(db, "b1", "m1")
    kept, recalled = say_all(db, cid, "m1", "优惠券已发放", "优惠券发错了")
    db.execute(update(Message).where(Message.id == recalled).values(recalled_at=utcnow()))
    db.commit()
    sign_in(app_client, "b1")
    assert found_ids(app_client, "优惠券") == [kept]
    assert found_ids(app_client, "优") == [kept]


def test_results_come_in_pages_newest_first(db: Session, app_client: TestClient) -> None:
    cid = converse(db, "b1", "m1")
    ids = say_all(db, cid, "b1", *(f"第{n}次问发货" for n in range(1, 46)))
    sign_in(app_client, "m1")
    seen: list[int] = []
    params: dict[str, str] = {}
    pages = 0
    while True:
        response = app_client.get("/chat/search", params={"q": "问发货", **params}, headers=HTMX)
        page = parse(response.text)
        seen += [int(r.get("data-message-id") or 0) for r in page.find_all(testid="search-result")]
        pages += 1
        more = page.find_all(testid="search-more")
        if not more:
            break
        params = {"before": more[0].get("hx-get").split("before=")[1].split("&")[0]}  # type: ignore[union-attr]
    assert seen == list(reversed(ids))
    assert pages == 3  # 20, 20 and 5


def test_the_search_page_lists_results_in_the_list_column(db: Session, app_client: TestClient) -> None:
    cid = converse(db, "b1", "m1")
    [mid] = say_all(db, cid, "b1", "<b>发票</b>什么时候开")
    sign_in(app_client, "m1")
    response = app_client.get("/chat/search", params={"q": "发票"})
    assert response.status_code == 200
    page = parse(response.text)
    column = page.one(testid="col-list")
    assert "searching" in column.classes
    assert column.one(testid="search-box").get("value") == "发票"
    [item] = column.find_all(testid="search-result")
    assert item.get("data-message-id") == str(mid)
    assert item.one(tag="mark").text() == "发票"
    assert "<b>发票</b>" in item.one(cls="search-snippet").text()  # shown as text, never as markup
    assert "&lt;b&gt;" in response.text

    empty = app_client.get("/chat/search", params={"q": "没有这句话"}, headers=HTMX)
    assert parse(empty.text).one(testid="search-empty").text() == "没有找到包含“没有这句话”的消息。"


def test_a_query_longer_than_100_characters_is_refused_clearly(db: Session, app_client: TestClient) -> None:
    sign_in(app_client, "b1")
    assert app_client.get("/chat/search", params={"q": "发" * 100}, headers=HTMX).status_code == 200
    page = app_client.get("/chat/search", params={"q": "发" * 101})
    assert page.status_code == 400
    assert "搜索内容太长：最多 100 个字。" in page.text
    fragment = app_client.get("/chat/search", params={"q": "发" * 101}, headers=HTMX)
    assert fragment.status_code == 422
    assert parse(fragment.text).one(testid="error").one(cls="error-text").text() == "搜索内容太长：最多 100 个字。"
    assert app_client.get("/chat/search", params={"q": "发", "before": "x"}, headers=HTMX).status_code == 404


def test_a_query_with_a_control_character_is_refused_not_matched_to_everything(db: Session,
                                                                             app_client: TestClient) -> None:
    cid = converse(db, "b1", "m1")
    say_all(db, cid, "b1", "第一条", "第二条")
    sign_in(app_client, "b1")
    for query in ("\x00", "发\x00", "a\x07", "\x1b[31m"):
        fragment = app_client.get("/chat/search", params={"q": query}, headers=HTMX)
        assert fragment.status_code == 422, query
        said = parse(fragment.text).one(testid="error").one(cls="error-text").text()
        assert said == "搜索内容含有无法显示的控制字符。"
        assert 'data-testid="search-result"' not in fragment.text


def test_an_admin_cannot_search_as_a_person_and_nobody_unsigned_can(db: Session, app_client: TestClient) -> None:
    assert app_client.get("/chat/search", params={"q": "发货"}).status_code == 401
    make_admin(db)
    sign_in_admin(app_client)
    assert app_client.get("/chat/search", params={"q": "发货"}).status_code == 403  # admins search in the monitor


def test_a_conversation_opens_at_a_message_far_back(db: Session, app_client: TestClient) -> None:
    cid = converse(db, "b1", "m1")
    ids = say_all(db, cid, "b1", *(f"第{n}条" for n in range(1, 101)))
    sign_in(app_client, "m1")
    target = ids[9]  # 第10条
    page = app_client.get(f"/chat/c/{cid}", params={"at": str(target)}, headers=HTMX)
    assert page.status_code == 200
    thread = parse(page.text).one(testid="thread")
    shown = [int(m.get("data-message-id") or 0) for m in thread.find_all(testid="message")]
    assert shown == ids[4:34]  # a page of 30: 5 before, itself, 24 after
    assert thread.one(testid="load-older").get("hx-get") == f"/chat/c/{cid}/messages?before={ids[4]}"
    newer = thread.one(testid="load-newer")
    assert newer.one(cls="newer-more").get("hx-get") == f"/chat/c/{cid}/newer?after={ids[33]}"
    assert newer.one(testid="back-to-latest").get("hx-get") == f"/chat/c/{cid}"

    following = parse(app_client.get(f"/chat/c/{cid}/newer", params={"after": str(ids[33])}, headers=HTMX).text)
    assert [int(m.get("data-message-id") or 0) for m in following.find_all(testid="message")] == ids[34:64]
    last = parse(app_client.get(f"/chat/c/{cid}/newer", params={"after": str(ids[83])}, headers=HTMX).text)
    assert [int(m.get("data-message-id") or 0) for m in last.find_all(testid="message")] == ids[84:]
    assert not last.find_all(testid="load-newer")

    other = converse(db, "b2", "m2")
    [elsewhere] = say_all(db, other, "b2", "别人的消息")
    assert app_client.get(f"/chat/c/{cid}", params={"at": str(elsewhere)}).status_code == 404
    assert app_client.get(f"/chat/c/{other}/newer", params={"after": str(elsewhere)}).status_code == 403


def test_the_admin_monitor_search_matches_message_text(db: Session, app_client: TestClient) -> None:
    shop = converse(db, "b1", "m1")
    fees = converse(db, "m2", "p1")
    say_all(db, shop, "b1", "订单 DD20251128001 什么时候发货")
    say_all(db, fees, "m2", "平台服务费怎么算")
    [recalled] = say_all(db, fees, "m2", "退款凭证已上传")
    db.execute(update(Message).where(Message.id == recalled).values(recalled_at=utcnow()))
    db.commit()
    make_admin(db)
    sign_in_admin(app_client)

    def listed(q: str) -> list[int]:
        page = parse(app_client.get("/admin", params={"q": q}).text)
        return [int(row.get("data-conversation-id") or 0) for row in page.find_all(testid="conversation")]

    assert listed("DD20251128001") == [shop]
    assert listed("dd2025") == [shop]
    assert listed("服务费") == [fees]
    assert listed("退款凭证") == [fees]  # admins still see recalled originals
    assert listed("保和堂") == [shop]  # names still match
    assert listed("没有这句话") == []


def test_upgrading_a_database_that_holds_messages_makes_them_searchable(database_url: str) -> None:
    """Migration 0012 indexes the messages already stored, and goes down again (SQLite, then MariaDB)."""
    try:
        engine = make_engine(database_url)
        with make_sessionmaker(engine)() as db:
            cid = converse(db, "b1", "m1")  # made by today's code; the messages come in below as 0011 stored them
        downgrade(database_url, "0011_conversation_opener")
        with make_sessionmaker(engine)() as db:
            db.execute(insert(Message), [
                {"conversation_id": cid, "sender_id": "b1", "kind": "text", "body": body, "created_at": utcnow()}
                for body in ("升级以前的发货问题", "Order DD20251128001")])
            db.commit()
            upgrade(database_url)
            hits, _ = search.search_messages(db, "m1", "发货问题")
            assert [hit.message.body for hit in hits] == ["升级以前的发货问题"]
            assert [hit.message.body for hit in search.search_messages(db, "m1", "dd2025112800", strategy="index")[0]] \
                == ["Order DD20251128001"]
        engine.dispose()
    finally:
        upgrade(database_url)
