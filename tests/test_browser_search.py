"""Searching in real headless Chromium: type in the list column's search box, see the hits marked, open one far back
in history and find it on screen."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from playwright.sync_api import expect
from sqlalchemy import update

from app.db.models import Message, utcnow
from tests.seeding import converse, say_all, with_session
from tests.support import ServerProcess, open_chat, send

pytestmark = pytest.mark.browser
DESK, PHONE = (1280, 800), (375, 740)


@pytest.mark.parametrize("size", [DESK, PHONE], ids=["desk", "phone"])
def test_a_search_result_far_back_opens_the_thread_at_that_message(  # type: ignore[no-untyped-def]
    browser, server: ServerProcess, sqlite_url: str, size: tuple[int, int]
) -> None:
    with with_session(sqlite_url) as db:
        cid = converse(db, "b1", "m1")
        [old] = say_all(db, cid, "b1", "请问订单 DD20251128001 什么时候发货呀")
        say_all(db, cid, "m1", *(f"第{n}条回复" for n in range(1, 121)))
        other = converse(db, "b1", "m2")
        say_all(db, other, "m2", "新品到了")
    b1 = open_chat(browser, server, "user_id=b1", size)
    box = b1.locator('[data-testid="search-box"]')
    box.fill("发货")
    result = b1.locator(f'[data-testid="search-result"][data-message-id="{old}"]')
    expect(result).to_be_visible()
    expect(result.locator("mark")).to_have_text("发货")
    expect(b1.locator('[data-testid="search-result"]')).to_have_count(1)
    expect(b1.locator('[data-testid="conversation-list"]')).to_be_hidden()

    result.click()
    target = b1.locator(f'[data-testid="thread"][data-conversation-id="{cid}"] '
                        f'[data-testid="message"][data-message-id="{old}"]')
    expect(target).to_be_in_viewport()
    expect(target).to_have_class(re.compile(r"\bmsg-target\b"))  # marked for a moment
    expect(b1).to_have_url(f"{server.url}/chat/c/{cid}?at={old}&as=b1")

    b1.locator('[data-testid="back-to-latest"]').click()
    newest = b1.locator('[data-testid="message"]', has_text="第120条回复")
    expect(newest).to_be_in_viewport()
    assert b1.js_errors == []


def test_sending_from_a_thread_opened_far_back_shows_the_message_at_the_newest(  # type: ignore[no-untyped-def]
    browser, server: ServerProcess, sqlite_url: str
) -> None:
    with with_session(sqlite_url) as db:
        cid = converse(db, "b1", "m1")
        [old] = say_all(db, cid, "b1", "请问订单 DD20251128001 什么时候发货呀")
        replies = say_all(db, cid, "m1", *(f"第{n}条回复" for n in range(1, 121)))
        for n, mid in enumerate(replies):  # over the last 60 days: a day separator every other message
            days_ago = timedelta(days=60 - n // 2)
            db.execute(update(Message).where(Message.id == mid).values(created_at=utcnow() - days_ago))
        db.commit()
    b1 = open_chat(browser, server, "user_id=b1&target=m1", DESK)
    b1.locator('[data-testid="search-box"]').fill("发货")
    b1.locator(f'[data-testid="search-result"][data-message-id="{old}"]').click()
    expect(b1.locator('[data-testid="back-to-latest"]')).to_be_visible()
    send(b1, "那就麻烦快点")
    mine = b1.locator('[data-testid="message"]', has_text="那就麻烦快点")
    expect(mine).to_be_in_viewport(ratio=1)  # whole, not left behind the "newer" loader nor under the composer
    expect(b1.locator('[data-testid="back-to-latest"]')).to_have_count(0)
    expect(b1.locator('[data-testid="message"]', has_text="第120条回复")).to_have_count(1)
    assert b1.js_errors == []
