"""The buyer's orders beside the thread: the marketplace pushes orders (PUT /api/v1/orders/{order_no}); the
merchant sees the buyer's orders with their shop, the platform's support every shop's, the buyer their own; nobody
another buyer's; a change shows live and may post a notice. On SQLite and MariaDB."""

from __future__ import annotations

from typing import Any

import httpx
from litestar.testing import TestClient

from tests.api_support import Api, assert_error, new_key
from tests.dom import parse
from tests.streams import OpenBrowser, json_data
from tests.support import ServerProcess, open_conversation_id, other_browser, sign_in


def order(buyer: str = "b1", merchant: str = "m1", status: str = "待发货", updated: str = "2026-12-05T10:00:00+08:00",
          placed: str = "2026-12-05T09:30:00+08:00", **extra: Any) -> dict[str, Any]:
    return {"buyer_id": buyer, "merchant_id": merchant, "status": status, "total_fen": 2590, "currency": "CNY",
            "items": [{"title": "板蓝根颗粒", "quantity": 2, "price_fen": 1295, "image_url": None}],
            "url": "https://shop.example/o/1", "placed_at": placed, "updated_at": updated, **extra}


def test_an_order_is_created_replaced_repeated_and_an_older_version_refused(api: Api) -> None:
    created = api.put("/api/v1/orders/SO-1001", order())
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "待发货" and created.json()["items"][0]["quantity"] == 2
    assert api.put("/api/v1/orders/SO-1001", order()).status_code == 200  # the same again: nothing changes
    shipped = api.put("/api/v1/orders/SO-1001", order(status="已发货", updated="2026-12-05T11:00:00+08:00"))
    assert shipped.status_code == 200 and shipped.json()["status"] == "已发货"
    stale = api.put("/api/v1/orders/SO-1001", order(status="待发货", updated="2026-12-05T10:30:00+08:00"))
    assert_error(stale, 409, "conflict")
    assert api.get("/api/v1/orders/SO-1001").json()["status"] == "已发货"
    moved = api.put("/api/v1/orders/SO-1001", order(buyer="b2", updated="2026-12-05T12:00:00+08:00"))
    assert_error(moved, 409, "conflict")
    assert_error(api.get("/api/v1/orders/SO-404"), 404, "not_found")


def test_every_field_is_checked_and_named(api: Api) -> None:
    cases = [
        ("SO-2", order(buyer="m1"), "buyer_id"), ("SO-2", order(merchant="b2"), "merchant_id"),
        ("SO-2", order(buyer="nobody-here"), "buyer_id"), ("SO-2", order(status=None), "status"),  # type: ignore[arg-type]
        ("SO-2", order(total_fen=12.5), "total_fen"), ("SO-2", order(currency="JPY"), "currency"),
        ("SO-2", order(url="javascript:alert(1)"), "url"), ("SO-2", order(placed="yesterday"), "placed_at"),
        ("SO-2", order(updated="2026-12-05T10:00:00"), "updated_at"), ("SO-2", order(items=[]), "items"),
        ("SO-2", order(items=[{"title": "x", "quantity": 0, "price_fen": 1}]), "items[0].quantity"),
        ("SO-2", order(notify="yes"), "notify"), ("SO-2", order(owner="m2"), "owner"),
        ("bad no!", order(), "order_no"), ("x" * 65, order(), "order_no"),
    ]
    for order_no, body, field in cases:
        assert_error(api.put(f"/api/v1/orders/{order_no}", body), 422, "invalid", field)
    assert_error(api.get("/api/v1/orders/SO-2"), 404, "not_found")  # nothing was stored
    assert api.client.put("/api/v1/orders/SO-2", json=order()).status_code == 401  # no key


def panel_orders(client: TestClient, cid: int) -> list[str]:
    page = parse(client.get(f"/chat/c/{cid}").text)
    panels = page.find_all(testid="orders")
    return [] if not panels else [o.get("data-order-no") for o in panels[0].find_all(testid="order")]


def test_who_sees_which_orders_beside_the_thread(api: Api) -> None:
    api.put("/api/v1/orders/M1-B1-OLD", order(placed="2026-11-01T10:00:00+08:00"))
    api.put("/api/v1/orders/M1-B1-NEW", order(placed="2026-12-01T10:00:00+08:00"))
    api.put("/api/v1/orders/M2-B1", order(merchant="m2"))
    api.put("/api/v1/orders/M1-B2", order(buyer="b2"))
    people = {}
    for user_id, target in (("m1", "b1"), ("m2", "b1"), ("b1", "m1"), ("b2", "m1"), ("p1", "b1"), ("m1", "b2")):
        browser = other_browser(api.client)
        sign_in(browser, user_id, target=target)
        people[(user_id, target)] = panel_orders(browser, open_conversation_id(browser, target))
    assert people[("m1", "b1")] == ["M1-B1-NEW", "M1-B1-OLD"]  # the buyer's orders with this shop, newest first
    assert people[("m2", "b1")] == ["M2-B1"]
    assert people[("b1", "m1")] == ["M1-B1-NEW", "M1-B1-OLD"]  # one's own, with the shop one talks to
    assert people[("b2", "m1")] == ["M1-B2"]
    assert people[("p1", "b1")] == ["M2-B1", "M1-B1-NEW", "M1-B1-OLD"]  # the platform: every shop's
    assert people[("m1", "b2")] == ["M1-B2"]


def test_the_panel_pages_and_strangers_get_nothing(api: Api) -> None:
    for n in range(12):
        api.put(f"/api/v1/orders/P-{n:02d}", order(placed=f"2026-11-{n + 1:02d}T10:00:00+08:00"))
    m1 = other_browser(api.client)
    sign_in(m1, "m1", target="b1")
    cid = open_conversation_id(m1, "b1")
    first = parse(m1.get(f"/chat/c/{cid}").text).one(testid="orders")
    assert [o.get("data-order-no") for o in first.find_all(testid="order")] == [f"P-{n:02d}" for n in range(11, 1, -1)]
    rest = parse(m1.get(f"/chat/c/{cid}/orders", params={"before": "P-02"}).text)
    assert [o.get("data-order-no") for o in rest.find_all(testid="order")] == ["P-01", "P-00"]
    b2 = other_browser(api.client)
    sign_in(b2, "b2", target="m1")
    assert b2.get(f"/chat/c/{cid}/orders").status_code == 403  # not a member of that conversation
    with TestClient(api.client.app, base_url="http://127.0.0.1") as stranger:
        assert stranger.get(f"/chat/c/{cid}/orders").status_code == 401


def test_a_change_shows_live_and_may_post_a_notice(kefu_server: ServerProcess, open_browser: OpenBrowser,
                                                   database_url: str) -> None:
    key = new_key(database_url)
    b1, m1 = open_browser(kefu_server, "b1", target="m1"), open_browser(kefu_server, "m1", target="b1")
    cid = b1.conversation_with("m1")
    with httpx.Client(base_url=kefu_server.url, headers={"Authorization": f"Bearer {key}"}, timeout=10) as shop, \
            m1.events() as merchant, b1.events() as buyer:
        merchant.opened(), buyer.opened()
        assert shop.put("/api/v1/orders/LIVE-1", json=order()).status_code == 201
        for stream in (merchant, buyer):
            assert json_data(stream.wait_for("order")) == {"order_no": "LIVE-1", "status": "待发货",
                                                           "buyer_id": "b1", "merchant_id": "m1"}
        shipped = order(status="已发货", updated="2026-12-05T11:00:00+08:00", notify=True)
        assert shop.put("/api/v1/orders/LIVE-1", json=shipped).status_code == 200
        assert json_data(buyer.wait_for("order"))["status"] == "已发货"
        notice = buyer.wait_for("message")
        assert "订单 LIVE-1 状态更新：已发货" in notice.data and 'data-sender-role="system"' in notice.data
        repeated = shop.put("/api/v1/orders/LIVE-1", json=shipped)  # nothing changed: no event, no second notice
        assert repeated.status_code == 200
        sentinel = m1.post(cid, "已经发了")
        heard = buyer.until("message", where=lambda e: f'data-message-id="{sentinel}"' in e.data)
        assert [e.event for e in heard].count("order") == 0 and "状态更新" not in "".join(e.data for e in heard)


def test_an_order_is_sent_as_a_card_only_by_those_who_see_it(api: Api) -> None:
    api.put("/api/v1/orders/SEND-1", order())
    sent: dict[tuple[str, str], int] = {}
    for user_id, target in (("m1", "b1"), ("m2", "b1"), ("b1", "m1"), ("b2", "m1")):
        browser = other_browser(api.client)
        token = sign_in(browser, user_id, target=target)
        cid = open_conversation_id(browser, target)
        answer = browser.post(f"/chat/c/{cid}/orders/SEND-1/card", headers={"X-CSRFToken": token})
        sent[(user_id, target)] = answer.status_code
        if answer.status_code == 201:
            assert 'data-kind="order"' in answer.text and "SEND-1" in answer.text
    assert sent == {("m1", "b1"): 201, ("m2", "b1"): 404, ("b1", "m1"): 201, ("b2", "m1"): 404}
