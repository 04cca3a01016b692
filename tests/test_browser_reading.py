"""Reading in real headless Chromium: only what has been on the reader's screen is 已读 for the sender."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.seeding import converse, say_all, with_session
from tests.support import ServerProcess, hide_page, open_chat, send

pytestmark = pytest.mark.browser
PHONE = (375, 740)


def thirty_messages_from_b1(url: str) -> int:
    """A conversation whose 30 messages (one page: no older ones to load) fill more than a screen."""
    with with_session(url) as db:
        cid = converse(db, "b1", "m1")
        say_all(db, cid, "b1", *(f"第{n}条：请问这批货什么时候发？" for n in range(1, 31)))
    return cid


def received(page, text: str):  # type: ignore[no-untyped-def]
    """The message in the reader's open thread once their page has processed it (shown or not)."""
    message = page.locator('[data-testid="thread"] [data-testid="message"]', has_text=text)
    message.wait_for(state="attached")
    return message


def test_a_message_that_arrives_while_the_reader_is_scrolled_up_is_read_only_after_jumping_down(  # type: ignore[no-untyped-def]
    browser, server: ServerProcess, sqlite_url: str
) -> None:
    thirty_messages_from_b1(sqlite_url)
    m1 = open_chat(browser, server, "user_id=m1&target=b1")
    b1 = open_chat(browser, server, "user_id=b1&target=m1")
    b1.locator(".msg-row.mine.is-read", has_text="第30条").wait_for()  # m1's screen showed the newest one
    expect(m1).to_have_title(re.compile(r"^[^(]"))

    m1.locator(".thread-scroll").evaluate("el => el.scrollTop = 0")  # m1 reads back through the history
    jump = m1.locator('[data-testid="jump-new"]')
    expect(jump).to_be_hidden()
    send(b1, "新消息在下面")
    received(m1, "新消息在下面")
    expect(jump).to_be_visible()
    expect(jump).to_contain_text("新消息")
    expect(m1).to_have_title(re.compile(r"^\(1\) "))  # and the list says it is unread
    expect(m1.locator('[data-testid="conversation"][data-peer-id="b1"] [data-testid="unread"]')).to_have_text("1")
    new_row = b1.locator(".msg-row.mine", has_text="新消息在下面")
    expect(new_row).not_to_have_class(re.compile(r"\bis-read\b"))
    assert m1.locator(".thread-scroll").evaluate("el => el.scrollTop") == 0  # the reader was not moved

    jump.click()
    expect(new_row).to_have_class(re.compile(r"\bis-read\b"))
    expect(jump).to_be_hidden()
    expect(m1).to_have_title(re.compile(r"^[^(]"))
    assert m1.js_errors == [] and b1.js_errors == []


def test_messages_in_a_tab_opened_in_the_background_are_read_when_the_tab_is_shown(  # type: ignore[no-untyped-def]
    browser, server: ServerProcess
) -> None:
    b1 = open_chat(browser, server, "user_id=b1&target=m1")
    send(b1, "在吗？想问下价格")
    first = b1.locator(".msg-row.mine", has_text="想问下价格")
    first.wait_for()

    def in_the_background(page) -> None:  # type: ignore[no-untyped-def]
        page.add_init_script("""
          Object.defineProperty(document, "visibilityState", { configurable: true, get: () => "hidden" });
          Object.defineProperty(document, "hidden", { configurable: true, get: () => true });
        """)

    # e.g. a link opened in a new tab
    m1 = open_chat(browser, server, "user_id=m1&target=b1", prepare=in_the_background)
    received(m1, "想问下价格")
    send(b1, "你在吗？")
    received(m1, "你在吗？")
    expect(m1).to_have_title(re.compile(r"^\(2\) "))
    second = b1.locator(".msg-row.mine", has_text="你在吗？")
    expect(first).not_to_have_class(re.compile(r"\bis-read\b"))
    expect(second).not_to_have_class(re.compile(r"\bis-read\b"))

    hide_page(m1, False)  # the person switches to the tab
    expect(second).to_have_class(re.compile(r"\bis-read\b"))
    expect(first).to_have_class(re.compile(r"\bis-read\b"))
    expect(m1).to_have_title(re.compile(r"^[^(]"))

    hide_page(m1, True)  # and away again: a new message waits
    send(b1, "那我先下单了")
    received(m1, "那我先下单了")
    expect(m1).to_have_title(re.compile(r"^\(1\) "))
    expect(b1.locator(".msg-row.mine", has_text="先下单")).not_to_have_class(re.compile(r"\bis-read\b"))
    assert m1.js_errors == [] and b1.js_errors == []


def test_a_message_that_arrives_while_a_phone_shows_the_list_is_read_when_the_thread_is_shown(  # type: ignore[no-untyped-def]
    browser, server: ServerProcess
) -> None:
    m1 = open_chat(browser, server, "user_id=m1&target=b1", PHONE)
    b1 = open_chat(browser, server, "user_id=b1&target=m1")
    m1.locator(".thread-head .back").click()  # back to the list; the conversation stays open behind it
    expect(m1.locator('[data-testid="col-list"]')).to_be_visible()
    send(b1, "手机上看得到吗？")
    received(m1, "手机上看得到吗？")
    item = m1.locator('[data-testid="conversation"][data-peer-id="b1"]')
    expect(item.locator('[data-testid="unread"]')).to_have_text("1")
    new_row = b1.locator(".msg-row.mine", has_text="手机上看得到吗？")
    expect(new_row).not_to_have_class(re.compile(r"\bis-read\b"))

    m1.locator('[data-testid="bottom-nav"] [data-show-view="thread"]').click()
    expect(new_row).to_have_class(re.compile(r"\bis-read\b"))
    expect(item.locator('[data-testid="unread"]')).to_be_hidden()
    assert m1.js_errors == [] and b1.js_errors == []
