"""Typing, recalling and quoting as two people do it in real Chromium, side by side, with the admin watching.

What people rely on: "对方正在输入…" shows while the other side writes and goes when their message comes; a recall
turns the message into "你撤回了一条消息" here and "对方撤回了一条消息" there at once; a reply shows what it quotes, and
a click on the quote goes to the original even when it is pages back.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from playwright.sync_api import expect
from sqlalchemy import update

from app.chat import messages as msgs
from app.db.models import Message, utcnow
from tests.seeding import converse, say, say_all, with_session
from tests.support import ServerProcess, open_chat, send

pytestmark = pytest.mark.browser

SIZES = {"phone": (375, 812), "desk": (1440, 900)}


def message(page, text: str):  # type: ignore[no-untyped-def]
    """The message whose text is `text`, on `page`."""
    return page.locator('[data-testid="message"]', has_text=text)


@pytest.mark.parametrize("size", SIZES)
def test_typing_shows_on_the_other_side_until_the_message_comes(browser, server: ServerProcess,  # type: ignore[no-untyped-def]
                                                                size: str, sqlite_url: str) -> None:
    with with_session(sqlite_url) as db:  # a thread longer than the screen, standing at its newest message
        say_all(db, converse(db, "b1", "m1"), "b1", *(f"之前的消息 {n}" for n in range(40)))
    buyer = open_chat(browser, server, "user_id=b1&target=m1", SIZES[size])
    merchant = open_chat(browser, server, "user_id=m1&target=b1", SIZES[size])
    buyer.fill("textarea[name=body]", "请问")
    buyer.locator("textarea[name=body]").press_sequentially("有货吗", delay=20)
    typing = merchant.get_by_test_id("typing")
    expect(typing).to_be_visible()
    expect(typing).to_have_text("对方正在输入…")
    expect(message(merchant, "之前的消息 39")).to_be_in_viewport(ratio=1)  # the line took room, not the message
    expect(buyer.get_by_test_id("typing")).to_have_count(0)  # one's own typing shows nowhere on one's page
    buyer.keyboard.press("Enter")
    expect(message(merchant, "请问有货吗")).to_be_visible()
    expect(typing).to_be_hidden()
    assert buyer.js_errors == [] and merchant.js_errors == []


@pytest.mark.parametrize("size", SIZES)
def test_recall_turns_the_message_into_a_tombstone_on_both_sides(browser, server: ServerProcess,  # type: ignore[no-untyped-def]
                                                                 size: str) -> None:
    buyer = open_chat(browser, server, "user_id=b1&target=m1", SIZES[size])
    merchant = open_chat(browser, server, "user_id=m1&target=b1", SIZES[size])
    send(buyer, "地址写错了：某某路 1 号")
    expect(message(merchant, "某某路 1 号")).to_be_visible()
    message(buyer, "某某路 1 号").locator(".msg-bubble").click()
    buyer.get_by_test_id("recall-button").click()
    mine = buyer.locator('[data-testid="message"][data-recalled="true"]')
    expect(mine).to_have_text("你撤回了一条消息", use_inner_text=True)
    theirs = merchant.locator('[data-testid="message"][data-recalled="true"]')
    expect(theirs).to_have_text("对方撤回了一条消息", use_inner_text=True)
    expect(merchant.get_by_text("某某路 1 号")).to_have_count(0)
    buyer.reload()  # from the database, too
    expect(mine).to_have_text("你撤回了一条消息", use_inner_text=True)
    expect(buyer.get_by_text("某某路 1 号")).to_have_count(0)
    assert buyer.js_errors == [] and merchant.js_errors == []


def test_a_reply_quotes_and_a_click_on_the_quote_goes_to_the_original_pages_back(  # type: ignore[no-untyped-def]
        browser, server: ServerProcess, sqlite_url: str) -> None:
    with with_session(sqlite_url) as db:
        cid = converse(db, "b1", "m1")
        first = say(db, cid, "m1", "第一条：处方药需要上传处方")
        say_all(db, cid, "b1", *(f"中间的消息 {i}" for i in range(120)))  # pages of history after it
    buyer = open_chat(browser, server, "user_id=b1&target=m1", SIZES["desk"])
    expect(message(buyer, "中间的消息 119")).to_be_visible()
    expect(buyer.locator(f'[data-message-id="{first}"]')).to_have_count(0)  # not on the first page
    # reply to the newest message, quoting it
    message(buyer, "中间的消息 119").locator(".msg-bubble").click()
    buyer.get_by_test_id("quote-button").click()
    expect(buyer.get_by_test_id("quote-draft")).to_contain_text("中间的消息 119")
    send(buyer, "收到")
    reply = message(buyer, "收到")
    expect(reply.get_by_test_id("quote")).to_contain_text("中间的消息 119")
    expect(buyer.get_by_test_id("quote-draft")).to_have_count(0)

    # a quote of the first message, from the database: a click loads older pages until it is there
    with with_session(sqlite_url) as db:
        msgs.send(db, msgs.Outgoing(cid, "m1", "请看第一条", reply_to=first))
    buyer.reload()  # stored behind the app's back: the page shows it from the database
    quote = message(buyer, "请看第一条").get_by_test_id("quote")
    expect(quote).to_contain_text("第一条：处方药需要上传处方")
    quote.click()
    original = buyer.locator(f'[data-testid="message"][data-message-id="{first}"]')
    expect(original).to_be_in_viewport()
    assert buyer.js_errors == []


def test_a_recall_too_late_says_why_and_the_message_stays(browser, server: ServerProcess,  # type: ignore[no-untyped-def]
                                                           sqlite_url: str) -> None:
    buyer = open_chat(browser, server, "user_id=b1&target=m1", SIZES["desk"])
    send(buyer, "这条留着")
    expect(message(buyer, "这条留着")).to_have_attribute("data-message-id", re.compile(r"\d+"))
    with with_session(sqlite_url) as db:  # the page still thinks it is fresh; the server knows better
        db.execute(update(Message).values(created_at=utcnow() - timedelta(minutes=5)))
        db.commit()
    message(buyer, "这条留着").locator(".msg-bubble").click()
    buyer.get_by_test_id("recall-button").click()
    expect(buyer.get_by_test_id("toast")).to_have_text("发出超过 2 分钟的消息不能撤回。")
    expect(message(buyer, "这条留着")).not_to_have_attribute("data-recalled", "true")
    expect(buyer.get_by_test_id("recall-button")).to_have_count(0)  # the button goes with the window
    assert buyer.js_errors == []
