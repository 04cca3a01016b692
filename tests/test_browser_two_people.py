"""Two people in one browser (real headless Chromium): README's demo opens b2 and m2 in two tabs of the same
browser. Each tab keeps acting for the person it was opened for, whoever signs in later; a tab whose person is
signed out says so instead of acting for someone else.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from app.chat.links import LinkIdentity, make_token
from app.db.engine import make_engine, make_sessionmaker
from app.db.models import Message
from tests.support import TEST_SECRET, ServerProcess, send

pytestmark = pytest.mark.browser


def links() -> tuple[str, str]:
    """Signed links, made when the test runs (they expire in five minutes)."""
    return ("token=" + make_token(TEST_SECRET, LinkIdentity("b2", "异世界药局", "buyer", "m2")),
            "token=" + make_token(TEST_SECRET, LinkIdentity("m2", "阿纳斯蒂制药", "merchant")))


SIGN_IN = {  # how each tab signs its person in: README's demo sign-in, or the marketplace's signed links
    "demo": lambda: ("user_id=b2&target=m2", "user_id=m2"),
    "links": links,
}


def open_tab(context, server: ServerProcess, query: str):  # type: ignore[no-untyped-def]
    """A new tab in `context` (one browser: one cookie jar for all its tabs), its stream open."""
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{server.url}/chat?{query}")
    page.wait_for_selector('[data-testid="connection"][data-state="open"]')
    page.js_errors = errors
    return page


def senders(database_url: str) -> dict[str, str]:
    """Each stored message's body and its sender."""
    engine = make_engine(database_url)
    try:
        with make_sessionmaker(engine)() as session:
            return {m.body: m.sender_id for m in session.scalars(select(Message))}
    finally:
        engine.dispose()


@pytest.mark.parametrize("how", SIGN_IN)
def test_two_people_in_one_browser_each_tab_writes_as_its_own_person(  # type: ignore[no-untyped-def]
        how: str, browser, server: ServerProcess, sqlite_url: str) -> None:
    one_browser = browser.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN")
    buyer_query, merchant_query = SIGN_IN[how]()
    buyer = open_tab(one_browser, server, buyer_query)  # the browser held only b2 then
    merchant = open_tab(one_browser, server, merchant_query)  # m2 signs in later, in the same browser

    send(buyer, "我是异世界药局")
    buyer.locator('[data-testid="thread"] [data-testid="message"][data-sender-id="b2"]',
                  has_text="我是异世界药局").wait_for()
    item = merchant.locator('[data-testid="conversation"][data-peer-id="b2"]')
    item.click()
    merchant.locator('[data-testid="thread"] [data-testid="message"][data-sender-id="b2"]',
                     has_text="我是异世界药局").wait_for()

    send(merchant, "您好，我是阿纳斯蒂制药")
    buyer.locator('[data-testid="message"][data-sender-id="m2"]', has_text="阿纳斯蒂制药").wait_for()
    assert senders(sqlite_url) == {"我是异世界药局": "b2", "您好，我是阿纳斯蒂制药": "m2"}
    assert buyer.js_errors == [] and merchant.js_errors == []


def test_a_tab_whose_person_logged_out_says_so_and_sends_nothing(  # type: ignore[no-untyped-def]
        browser, server: ServerProcess, sqlite_url: str) -> None:
    one_browser = browser.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN")
    buyer = open_tab(one_browser, server, "user_id=b2&target=m2")
    merchant = open_tab(one_browser, server, "user_id=m2")
    status = merchant.evaluate("""async () => (await fetch("/logout", {method: "POST", headers: {
        "X-CSRFToken": document.querySelector('meta[name="csrf-token"]').content}})).status""")
    assert status == 200  # the redirect to /login, followed

    # Both tabs' streams end at once: this browser signed both people out.
    expect(buyer.get_by_test_id("connection")).to_have_attribute("data-state", "signed-out")
    expect(buyer.get_by_test_id("connection")).to_contain_text("已退出登录")
    expect(merchant.get_by_test_id("connection")).to_have_attribute("data-state", "signed-out")

    send(buyer, "还能发吗")
    expect(buyer.locator(".composer-error")).to_contain_text("b2 已不在这个浏览器登录")
    expect(buyer.locator("textarea[name=body]")).to_have_value("还能发吗")  # the text is kept
    assert senders(sqlite_url) == {}
    assert buyer.js_errors == [] and merchant.js_errors == []
