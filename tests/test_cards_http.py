"""Cards as messages over HTTP, on SQLite and MariaDB: previews in the list, unread counts, the admin monitor, search,
the `message.created` webhook, replay after a reconnect; asking about a product (正在咨询) through a signed link,
sent once; migration 0013 upgrades a database holding messages and goes down again."""

from __future__ import annotations

import json
import random
import secrets
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from litestar.testing import TestClient
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from app.chat.webhooks import add_webhook
from app.cli import main
from app.db.engine import make_engine, make_sessionmaker
from app.db.migrate import downgrade, upgrade
from app.db.models import Message, WebhookDelivery, utcnow
from tests.admin_support import make_admin, sign_in_admin, use_fast_hashing
from tests.api_support import BASE_URL, Api, assert_error, new_key
from tests.dom import parse
from tests.seeding import converse
from tests.streams import OpenBrowser, message_ids, only_messages
from tests.support import TEST_SECRET, ServerProcess, csrf_of, sign_in
from tests.test_cards_api import order, post_card, product
from tests.test_read_conversation import unread_of

HTMX = {"HX-Request": "true"}
ASKED = {"title": "板蓝根颗粒 20 袋", "price_fen": 1550, "url": "https://shop.example.com/p/2002", "sku": "2002"}


@pytest.fixture(autouse=True)
def fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    use_fast_hashing(monkeypatch)


def browser_of(api: Api, user_id: str, target: str) -> TestClient:
    client = TestClient(api.client.app, base_url=BASE_URL)
    sign_in(client, user_id, target=target)
    return client


def test_a_card_is_previewed_counted_unread_searchable_and_seen_in_the_monitor(api: Api, db: Session) -> None:
    cid = api.conversation("b1", "m1")
    buyer = browser_of(api, "b1", "m1")
    assert post_card(api, cid, product(sender_id="m1", title="六味地黄丸 200 丸")).status_code == 201
    item = parse(buyer.get(f"/chat/c/{cid}/item").text)
    assert "[商品] 六味地黄丸 200 丸" in item.text()
    assert unread_of(buyer, cid) == 1
    assert post_card(api, cid, order(sender_id="m1")).status_code == 201
    assert unread_of(buyer, cid) == 2
    assert "[订单] 订单号 DD20251128001" in parse(buyer.get(f"/chat/c/{cid}/item").text).text()

    found = parse(buyer.get("/chat/search", params={"q": "地黄丸"}, headers=HTMX).text)
    assert len(found.find_all(testid="search-result")) == 1
    found = parse(buyer.get("/chat/search", params={"q": "DD20251128001"}, headers=HTMX).text)
    assert len(found.find_all(testid="search-result")) == 1

    make_admin(db)
    admin = TestClient(api.client.app, base_url=BASE_URL)
    sign_in_admin(admin)
    thread = parse(admin.get(f"/admin/c/{cid}").text)
    kinds = [m.get("data-kind") for m in thread.find_all(testid="message")]
    assert kinds == ["product", "order"]
    assert thread.one(testid="card", data_card_kind="order").one(testid="card-total").text() == "合计 ¥60.00"


def test_the_webhook_tells_of_a_card_with_its_fields(api: Api, db: Session) -> None:
    add_webhook(db, "http://127.0.0.1:9/hook", ["message.created"], private_allowed=True)
    db.commit()
    cid = api.conversation("b1", "m1")
    sent = post_card(api, cid, order(sender_id="m1")).json()
    db.expire_all()
    payloads = [json.loads(d.payload) for d in db.scalars(select(WebhookDelivery))]
    [told] = [p["data"] for p in payloads if p["type"] == "message.created"]
    assert told == sent and told["card"]["order_no"] == "DD20251128001"


def test_a_card_is_replayed_after_a_reconnect(database_url: str, kefu_server: ServerProcess,
                                              open_browser: OpenBrowser) -> None:
    import httpx

    auth = {"Authorization": f"Bearer {new_key(database_url)}"}
    b1, m1 = open_browser(kefu_server, "b1", target="m1"), open_browser(kefu_server, "m1")
    cid = b1.conversation_with("m1")
    with m1.events() as stream:
        stream.opened()
        seen = b1.post(cid, "在吗")
        assert stream.wait_for("message").id == str(seen)
        last_event_id = stream.last_id
    with httpx.Client(base_url=kefu_server.url, timeout=10, headers=auth) as backend:
        card = backend.post(f"/api/v1/conversations/{cid}/cards", json=product(sender_id="b1"))
        assert card.status_code == 201, card.text
    with m1.events(last_event_id=last_event_id) as stream:
        replayed = only_messages(stream.until_ping())
    assert message_ids(replayed) == [seen, card.json()["id"]]
    assert 'data-kind="product"' in replayed[-1].data and "¥35.80" in replayed[-1].data


def link_token(api: Api, body: dict[str, Any]) -> Any:
    return api.post("/api/v1/links", body)


def test_a_product_link_shows_the_product_to_the_buyer_only_and_it_is_sent_once(api: Api) -> None:
    made = link_token(api, {"user_id": "b1", "target": "m1", "product": ASKED})
    assert made.status_code == 201, made.text
    buyer = TestClient(api.client.app, base_url=BASE_URL)
    page = buyer.get("/chat", params={"token": made.json()["token"]}, follow_redirects=True)
    assert page.status_code == 200
    offer = parse(page.text).one(testid="consulting-card")
    assert offer.one(testid="consulting-title").text() == "板蓝根颗粒 20 袋" and "¥15.50" in offer.text()
    cid = int(parse(page.text).one(testid="thread").get("data-conversation-id") or 0)
    seller = browser_of(api, "m1", "b1")
    assert parse(seller.get(f"/chat/c/{cid}").text).find_all(testid="consulting-card") == []

    key = offer.get("data-consulting-key")
    headers = HTMX | {"X-CSRFToken": csrf_of(page.text)}
    sent = buyer.post(f"/chat/c/{cid}/consulting", data={"key": key}, headers=headers)
    assert sent.status_code == 201, sent.text
    again = buyer.post(f"/chat/c/{cid}/consulting", data={"key": key}, headers=headers)  # another tab, or twice
    assert again.status_code == 404
    stored = api.messages(cid)
    assert [(m["kind"], m["sender_id"], m["body"]) for m in stored] == [("product", "b1", "板蓝根颗粒 20 袋")]
    assert stored[0]["card"] == {"kind": "product", **ASKED, "currency": "CNY", "image_url": None, "image": None}
    assert parse(buyer.get(f"/chat/c/{cid}").text).find_all(testid="consulting-card") == []  # gone after a reload
    assert parse(seller.get(f"/chat/c/{cid}").text).one(testid="card").one(testid="card-title").text() == \
        "板蓝根颗粒 20 袋"


def test_a_second_product_link_replaces_the_first(api: Api) -> None:
    buyer = TestClient(api.client.app, base_url=BASE_URL)
    for title in ("第一件商品", "第二件商品"):
        token = link_token(api, {"user_id": "b1", "target": "m1", "product": ASKED | {"title": title}}).json()["token"]
        page = buyer.get("/chat", params={"token": token}, follow_redirects=True)
    assert parse(page.text).one(testid="consulting-card").one(testid="consulting-title").text() == "第二件商品"


def test_a_product_link_not_accepted_is_refused_naming_the_field(api: Api) -> None:
    assert_error(link_token(api, {"user_id": "b1", "target": "m1", "product": ASKED | {"price_fen": -5}}),
                 422, "invalid", "product.price_fen")
    assert_error(link_token(api, {"user_id": "b1", "target": "m1", "product": ASKED | {"url": "javascript:x"}}),
                 422, "invalid", "product.url")
    assert_error(link_token(api, {"user_id": "b1", "product": ASKED}), 422, "invalid", "target")
    varied = random.Random(7)  # text that does not compress: each field is accepted, all of them make too long a link
    too_long = ASKED | {"title": "".join(chr(0x4E00 + varied.randrange(20000)) for _ in range(200)),
                        "url": "https://e.com/" + secrets.token_urlsafe(720)[:980],
                        "image_url": "https://e.com/" + secrets.token_urlsafe(720)[:900]}
    assert_error(link_token(api, {"user_id": "b1", "target": "m1", "product": too_long}), 422, "invalid", "product")


def test_kefu_link_signs_a_product(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEFU_DATABASE_URL", database_url)
    monkeypatch.setenv("KEFU_SECRET_KEY", TEST_SECRET)
    runner = CliRunner()
    made = runner.invoke(main, ["link", "b1", "--target", "m1", "--product", json.dumps(ASKED)])
    assert made.exit_code == 0, made.output
    bad = runner.invoke(main, ["link", "b1", "--target", "m1", "--product", json.dumps(ASKED | {"price_fen": "1"})])
    assert bad.exit_code != 0 and "product.price_fen" in bad.output
    from app.chat.links import read_token

    token = made.output.strip().split("token=")[1]
    assert read_token(TEST_SECRET, token).product == {"kind": "product", **ASKED, "currency": "CNY",
                                                      "image_url": None}


def test_upgrading_a_database_that_holds_messages_keeps_them_and_goes_down_again(database_url: str) -> None:
    """Migration 0014 on a database filled at 0013 (SQLite, then MariaDB)."""
    try:
        downgrade(database_url, "0013_members")
        engine = make_engine(database_url)
        with make_sessionmaker(engine)() as db:
            cid = converse(db, "b1", "m1")
            db.execute(insert(Message.__table__).values(
                conversation_id=cid, sender_id="b1", kind="text", body="升级以前的消息", created_at=utcnow()))
            db.commit()
        upgrade(database_url)
        with make_sessionmaker(engine)() as db:
            [kept] = db.scalars(select(Message).where(Message.conversation_id == cid)).all()
            assert (kept.body, kept.card) == ("升级以前的消息", None)
        downgrade(database_url, "0013_members")
        with engine.connect() as connection:
            rows = connection.exec_driver_sql("SELECT body FROM messages").all()
        assert [r[0] for r in rows] == ["升级以前的消息"]
        engine.dispose()
    finally:
        upgrade(database_url)
