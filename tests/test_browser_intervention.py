"""Platform intervention as people do it in real Chromium: the buyer asks the platform in from the thread, the
support person's tab gets the conversation live and writes into it, everyone sees who is speaking, and support ends
it; at phone and desk widths."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.support import ServerProcess, open_chat, send

pytestmark = pytest.mark.browser

SIZES = {"phone": (375, 812), "desk": (1440, 900)}


@pytest.mark.parametrize("size", SIZES)
def test_the_buyer_asks_the_platform_in_and_all_three_talk_until_support_ends_it(  # type: ignore[no-untyped-def]
        browser, server: ServerProcess, size: str) -> None:
    buyer = open_chat(browser, server, "user_id=b1&target=m1", SIZES[size])
    merchant = open_chat(browser, server, "user_id=m1&target=b1", SIZES[size])
    support = open_chat(browser, server, "user_id=p1", SIZES[size])
    send(buyer, "说好的包邮，现在要加运费")
    expect(merchant.locator('[data-testid="message"]', has_text="包邮")).to_be_visible()

    buyer.get_by_test_id("intervention-button").click()
    buyer.get_by_test_id("intervention-reason").fill("商家临时加运费")
    buyer.get_by_test_id("intervention-submit").click()
    expect(buyer.get_by_test_id("intervention-banner")).to_be_visible()
    expect(buyer.get_by_test_id("intervention-button")).to_have_count(0)
    for page in (buyer, merchant):
        expect(page.get_by_test_id("notice").filter(has_text="商家临时加运费")).to_be_visible()
    expect(merchant.get_by_test_id("intervention-banner")).to_be_visible()  # its thread came again on `member`

    arrived = support.locator('[data-testid="conversation"][data-peer-id="b1"]')
    expect(arrived).to_be_visible()  # live, from the notices
    expect(arrived.get_by_test_id("intervention-tag")).to_have_text("平台介入")  # not the direct conversation
    arrived.click()
    expect(support.get_by_test_id("leave-button")).to_be_visible()
    send(support, "平台客服已介入，请商家说明")
    for page in (buyer, merchant):
        said = page.locator('[data-testid="message"][data-sender-role="support"]', has_text="请商家说明")
        expect(said).to_be_visible()
    send(merchant, "是我们弄错了，包邮")
    expect(support.locator('[data-testid="message"][data-sender-role="merchant"]', has_text="包邮")).to_be_visible()

    support.get_by_test_id("leave-button").click()
    expect(support.locator('[data-testid="conversation"][data-peer-id="b1"]')).to_have_count(0)
    for page in (buyer, merchant):
        expect(page.get_by_test_id("notice").filter(has_text="已结束介入")).to_be_visible()
        expect(page.get_by_test_id("intervention-banner")).to_have_count(0)
        expect(page.get_by_test_id("intervention-button")).to_be_visible()
    assert buyer.js_errors == [] and merchant.js_errors == [] and support.js_errors == []
