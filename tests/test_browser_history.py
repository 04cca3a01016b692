"""Back and Forward in real headless Chromium: a page one returns to shows what arrived meanwhile."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.seeding import converse, say, with_session
from tests.support import ServerProcess, open_chat, post_message

pytestmark = pytest.mark.browser
DESK, PHONE = (1280, 800), (375, 740)


def two_conversations(url: str) -> tuple[int, int]:
    with with_session(url) as db:
        with_m1, with_m2 = converse(db, "b1", "m1"), converse(db, "b1", "m2")
        say(db, with_m1, "m1", "您好，有什么可以帮您？")
        say(db, with_m2, "m2", "新品到了")
    return with_m1, with_m2


@pytest.mark.parametrize("size", [DESK, PHONE], ids=["desk", "phone"])
def test_back_shows_the_list_and_forward_the_thread_with_what_arrived_meanwhile(  # type: ignore[no-untyped-def]
    browser, server: ServerProcess, sqlite_url: str, size: tuple[int, int]
) -> None:
    with_m1, _ = two_conversations(sqlite_url)
    b1 = open_chat(browser, server, "user_id=b1", size)
    item = b1.locator(f'[data-testid="conversation"][data-conversation-id="{with_m1}"]')
    item.click()
    thread = b1.locator(f'[data-testid="thread"][data-conversation-id="{with_m1}"]')
    expect(thread).to_be_visible()
    expect(b1).to_have_url(f"{server.url}/chat/c/{with_m1}?as=b1")  # every link names the tab's person

    b1.go_back()
    expect(b1).to_have_url(f"{server.url}/chat?as=b1")
    list_column = b1.locator('[data-testid="col-list"]')
    expect(list_column).to_be_visible()  # on a phone too: the list, not an empty "选择左侧的会话" screen
    expect(item).to_be_visible()
    b1.wait_for_selector('[data-testid="connection"][data-state="open"]', state="attached")
    post_message(server, "m1", with_m1, "你离开对话时发的")
    expect(item.locator(".conv-preview")).to_have_text("你离开对话时发的")

    b1.go_forward()
    expect(b1).to_have_url(f"{server.url}/chat/c/{with_m1}?as=b1")  # every link names the tab's person
    expect(thread.locator('[data-testid="message"]', has_text="你离开对话时发的")).to_be_visible()
    expect(item.locator(".conv-preview")).to_have_text("你离开对话时发的")
    assert b1.locator('[data-testid="col-list"]').is_visible() == (size == DESK)
    b1.wait_for_selector('[data-testid="connection"][data-state="open"]', state="attached")
    post_message(server, "m1", with_m1, "回来以后发的")  # and the page is live
    expect(thread.locator('[data-testid="message"]', has_text="回来以后发的")).to_be_visible()
    assert b1.js_errors == []
