"""Sends that meet a failing network or a restarting server, in real Chromium through a real (flaky) proxy.

The page gives every message its own Idempotency-Key and tries it until the server answers: a connection cut after
the server stored the message, one cut mid-upload, and nginx's 502 while a process stops all end with the message
stored once and shown once, on both sides. Meanwhile the page says "发送中…/重试中…" in Chinese and never shows
the proxy's English page. Read receipts are tried again the same way.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect
from sqlalchemy import func, select

from app.db.engine import make_engine
from app.db.models import Message
from tests.file_samples import image_bytes
from tests.proxy import FlakyProxy
from tests.support import ServerProcess, open_chat, send

THREAD = '[data-testid="thread"]'


@pytest.fixture
def proxy(server: ServerProcess) -> Iterator[FlakyProxy]:
    flaky = FlakyProxy(server.port).start()
    yield flaky
    flaky.stop()


def stored(database_url: str, body: str) -> int:
    engine = make_engine(database_url)
    with engine.connect() as db:
        found = db.scalar(select(func.count()).select_from(Message).where(Message.body == body)) or 0
    engine.dispose()
    return found


def keys_of_attempts(proxy: FlakyProxy, path: str) -> list[str]:
    return [seen.headers.get("idempotency-key", "") for seen in proxy.seen
            if seen.method == "POST" and re.search(path, seen.path)]


def test_a_send_whose_answer_never_came_is_retried_and_stored_once(  # type: ignore[no-untyped-def]
        browser, server: ServerProcess, proxy: FlakyProxy, sqlite_url: str) -> None:
    b1 = open_chat(browser, proxy, "user_id=b1&target=m1")  # type: ignore[arg-type]
    m1 = open_chat(browser, server, "user_id=m1&target=b1")
    proxy.fail("POST", r"/messages$", "drop", times=2)  # stored by the server twice over; answered neither time

    send(b1, "回答丢了两次也只存一条")
    b1.locator(f'{THREAD} [data-testid="message"]', has_text="回答丢了两次也只存一条").wait_for()
    expect(b1.locator('[data-testid="pending-message"]')).to_have_count(0)
    m1.locator(f'{THREAD} [data-testid="message"]', has_text="回答丢了两次也只存一条").wait_for()
    send(b1, "之后的一条")  # a later message as a marker: everything before it has arrived
    m1.locator(f'{THREAD} [data-testid="message"]', has_text="之后的一条").wait_for()

    for page in (b1, m1):
        texts = page.locator(f'{THREAD} [data-testid="message"] .msg-bubble').all_inner_texts()
        assert texts == ["回答丢了两次也只存一条", "之后的一条"]
    assert stored(sqlite_url, "回答丢了两次也只存一条") == 1
    attempts = keys_of_attempts(proxy, r"/messages$")
    assert len(attempts) == 4 and len(set(attempts[:3])) == 1 and attempts[3] != attempts[0]
    assert b1.js_errors == [] and m1.js_errors == []


def test_an_upload_cut_mid_request_is_sent_again_whole(  # type: ignore[no-untyped-def]
        browser, server: ServerProcess, proxy: FlakyProxy, tmp_path: Path) -> None:
    photo = tmp_path / "断线照片.png"
    photo.write_bytes(image_bytes("PNG", size=(800, 600)))
    b1 = open_chat(browser, proxy, "user_id=b1&target=m1")  # type: ignore[arg-type]
    m1 = open_chat(browser, server, "user_id=m1&target=b1")
    proxy.fail("POST", r"/files$", "cut", times=1)

    b1.set_input_files('[data-testid="upload"]', str(photo))
    b1.locator(f'{THREAD} [data-testid="message"] img').wait_for()
    m1.locator(f'{THREAD} [data-testid="message"] img').wait_for()
    assert b1.locator(f'{THREAD} [data-testid="message"]').count() == 1
    attempts = keys_of_attempts(proxy, r"/files$")
    assert len(attempts) == 2 and attempts[0] == attempts[1]
    assert b1.js_errors == [] and m1.js_errors == []


def test_while_the_server_is_away_the_page_says_retrying_in_chinese_then_sends_and_reads(  # type: ignore[no-untyped-def]
        browser, server: ServerProcess, proxy: FlakyProxy, sqlite_url: str) -> None:
    b1 = open_chat(browser, proxy, "user_id=b1&target=m1")  # type: ignore[arg-type]
    m1 = open_chat(browser, server, "user_id=m1&target=b1")
    proxy.fail("POST", r"/messages$", "bad-gateway", times=None)
    proxy.fail("POST", r"/read$", "bad-gateway", times=None)

    send(b1, "服务器重启时发的")
    pending = b1.locator('[data-testid="pending-message"]', has_text="服务器重启时发的")
    expect(pending).to_have_attribute("data-send-state", "retrying")
    expect(pending.get_by_test_id("send-state")).to_have_text("重试中…")
    expect(b1.locator("textarea[name=body]")).to_have_value("")  # the text lives in the pending message
    send(m1, "商家这时也发了一条")  # b1 sees it (the stream still works), and its read receipt fails
    b1.locator(f'{THREAD} [data-testid="message"]', has_text="商家这时也发了一条").wait_for()
    body_text = b1.locator("body").inner_text()
    assert "Bad Gateway" not in body_text and "nginx" not in body_text
    assert stored(sqlite_url, "服务器重启时发的") == 0

    proxy.heal()  # the process is back: the send and the read receipt go through by themselves
    b1.locator(f'{THREAD} [data-testid="message"]', has_text="服务器重启时发的").wait_for()
    expect(pending).to_have_count(0)
    m1.locator(f'{THREAD} [data-testid="message"]', has_text="服务器重启时发的").wait_for()
    m1.locator(".msg-row.mine.is-read", has_text="商家这时也发了一条").wait_for()
    assert stored(sqlite_url, "服务器重启时发的") == 1
    assert len(set(keys_of_attempts(proxy, r"/messages$"))) == 1
    assert b1.js_errors == [] and m1.js_errors == []


def test_a_refused_send_gives_the_text_back_with_the_reason(  # type: ignore[no-untyped-def]
        browser, server: ServerProcess) -> None:
    b1 = open_chat(browser, server, "user_id=b1&target=m1")
    b1.fill("textarea[name=body]", "\u200b\u2800\u200b")  # nothing a reader could see: the server says no
    b1.keyboard.press("Enter")
    expect(b1.locator(".composer-error")).to_contain_text("看不见的字符")
    expect(b1.locator('[data-testid="pending-message"]')).to_have_count(0)
    expect(b1.locator("textarea[name=body]")).to_have_value("\u200b\u2800\u200b")
    assert b1.locator(f'{THREAD} [data-testid="message"]').count() == 0
    assert b1.js_errors == []
