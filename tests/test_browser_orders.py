"""The buyer's orders beside the thread in real Chromium: the merchant sees them in the third column (desk) or the
info sheet (phone), a status change pushed by the marketplace shows without a reload, and one click sends an order
as a card that both sides see."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.api_support import new_key
from tests.support import ServerProcess, open_chat

pytestmark = pytest.mark.browser


def order(status: str, updated: str, placed: str = "2026-12-01T10:00:00+08:00") -> dict[str, Any]:
    return {"buyer_id": "b1", "merchant_id": "m1", "status": status, "total_fen": 5980, "currency": "CNY",
            "items": [{"title": "连花清瘟胶囊", "quantity": 2, "price_fen": 2990, "image_url": None}], "url": None,
            "placed_at": placed, "updated_at": updated}


@pytest.mark.parametrize("size", [(375, 812), (1440, 900)], ids=["phone", "desk"])
def test_the_merchant_sees_the_buyers_orders_live_and_sends_one_as_a_card(  # type: ignore[no-untyped-def]
        browser, server: ServerProcess, sqlite_url: str, size: tuple[int, int]) -> None:
    auth = {"Authorization": f"Bearer {new_key(sqlite_url)}"}
    with httpx.Client(base_url=server.url, timeout=10, headers=auth) as shop:
        assert shop.put("/api/v1/orders/SO-7", json=order("待发货", "2026-12-05T10:00:00+08:00")).status_code == 201
        assert shop.put("/api/v1/orders/SO-OTHER", json={**order("已完成", "2026-12-05T10:00:00+08:00"),
                                                           "buyer_id": "b2"}).status_code == 201
        merchant = open_chat(browser, server, "user_id=m1&target=b1", size)
        buyer = open_chat(browser, server, "user_id=b1&target=m1", size)
        if size[0] < 1000:
            merchant.get_by_test_id("info-toggle").click()  # the other person, and their orders, as a sheet
        panel = merchant.get_by_test_id("orders")
        row = panel.locator('[data-testid="order"][data-order-no="SO-7"]')
        expect(row).to_be_visible()
        expect(panel.locator('[data-testid="order"]')).to_have_count(1)  # never another buyer's
        expect(row.get_by_test_id("order-status")).to_have_text("待发货")
        assert shop.put("/api/v1/orders/SO-7", json=order("已发货", "2026-12-05T11:00:00+08:00")).status_code == 200
        expect(panel.locator('[data-testid="order"][data-order-no="SO-7"] [data-testid="order-status"]')
               ).to_have_text("已发货")  # live, without a reload
    panel.locator('[data-testid="order"][data-order-no="SO-7"] [data-testid="order-send"]').click()
    if size[0] < 1000:
        merchant.locator('[data-testid="col-info"] [data-testid="sheet-close"]').click()  # back to the thread
    for page in (buyer, merchant):
        card = page.locator('[data-testid="message"][data-kind="order"] [data-testid="card"]')
        expect(card).to_be_visible()
        expect(card).to_contain_text("SO-7")
    assert buyer.js_errors == [] and merchant.js_errors == []
