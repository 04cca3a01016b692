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
from tests.seeding import converse, say_all, with_session
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


def test_a_send_whose_answer_never_came_is_stored_and_shown_once(  # type: ignore[no-untyped-def]
        browser, server: ServerProcess, proxy: FlakyProxy, sqlite_url: str) -> None:
    b1 = open_chat(browser, proxy, "user_id=b1&target=m1")  # type: ignore[arg-type]
    m1 = open_chat(browser, server, "user_id=m1&target=b1")
    proxy.fail("POST", r"/messages$", "drop", times=1)  # the server stores it; its answer never comes

    send(b1, "回答丢了也只存一条")
    b1.locator(f'{THREAD} [data-testid="message"]', has_text="回答丢了也只存一条").wait_for()
    expect(b1.locator('[data-testid="pending-message"]')).to_have_count(0)
    m1.locator(f'{THREAD} [data-testid="message"]', has_text="回答丢了也只存一条").wait_for()
    send(b1, "之后的一条")  # a later message as a marker: everything before it has arrived
    m1.locator(f'{THREAD} [data-testid="message"]', has_text="之后的一条").wait_for()

    for page in (b1, m1):
        texts = page.locator(f'{THREAD} [data-testid="message"] .msg-bubble').all_inner_texts()
        assert texts == ["回答丢了也只存一条", "之后的一条"]
    assert stored(sqlite_url, "回答丢了也只存一条") == 1
    attempts = keys_of_attempts(proxy, r"/messages$")
    # no answer came, but the stream showed the message stored: it is not sent again; the next has its own key
    assert len(attempts) == 2 and attempts[0] != attempts[1]
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
    with with_session(sqlite_url) as db:  # a thread longer than the screen: it stands at its end
        say_all(db, converse(db, "b1", "m1"), "m1", *(f"之前的消息 {n}" for n in range(40)))
    b1 = open_chat(browser, proxy, "user_id=b1&target=m1")  # type: ignore[arg-type]
    m1 = open_chat(browser, server, "user_id=m1&target=b1")
    proxy.fail("POST", r"/messages$", "bad-gateway", times=None)
    proxy.fail("POST", r"/read$", "bad-gateway", times=None)

    send(b1, "服务器重启时发的")
    pending = b1.locator('[data-testid="pending-message"]', has_text="服务器重启时发的")
    expect(pending).to_have_attribute("data-send-state", "retrying")
    expect(pending.get_by_test_id("send-state")).to_have_text("重试中…")
    expect(b1.get_by_test_id("send-status")).to_contain_text("消息会自动重发")
    expect(pending).to_be_in_viewport(ratio=1)  # the status line took room from the thread, not the message's
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
    expect(b1.locator(".composer-error")).to_have_text(re.compile(r"^没有发出「.*」：消息只有看不见的字符"))
    expect(b1.locator('[data-testid="pending-message"]')).to_have_count(0)
    expect(b1.locator("textarea[name=body]")).to_have_value("\u200b\u2800\u200b")
    assert b1.locator(f'{THREAD} [data-testid="message"]').count() == 0
    assert b1.js_errors == []


def open_conversation(page, peer: str) -> None:  # type: ignore[no-untyped-def]
    item = page.locator(f'[data-testid="conversation"][data-peer-id="{peer}"]')
    cid = item.get_attribute("data-conversation-id")
    item.click()
    page.locator(f'[data-testid="thread"][data-conversation-id="{cid}"]').wait_for()


def with_m1_unreachable(browser, proxy: FlakyProxy):  # type: ignore[no-untyped-def]
    """b1's page (through the proxy) with conversations with m2 and m1, m1's open; sends to m1 answered by nginx's 502
    until the proxy heals."""
    b1 = open_chat(browser, proxy, "user_id=b1&target=m2")  # type: ignore[arg-type]
    b1.goto(f"{proxy.url}/chat?target=m1")
    b1.wait_for_selector('[data-testid="connection"][data-state="open"]', state="attached")
    m1_cid = b1.get_by_test_id("thread").get_attribute("data-conversation-id")
    proxy.fail("POST", rf"/c/{m1_cid}/messages$", "bad-gateway", times=None)
    return b1


def test_a_burst_past_the_rate_limit_waits_and_then_sends_everything_in_order(  # type: ignore[no-untyped-def]
        browser, server: ServerProcess, sqlite_url: str) -> None:
    b1 = open_chat(browser, server, "user_id=b1&target=m1")
    bodies = [f"连发 {n:02d}" for n in range(1, 36)]  # 35: five past the 30 a person may send in 10 s
    b1.evaluate("""(bodies) => {
      const form = document.querySelector('[data-testid="composer"]');
      for (const text of bodies) { form.querySelector("textarea").value = text; form.requestSubmit(); }
    }""", bodies)
    expect(b1.get_by_test_id("send-status")).to_have_text("发送太频繁了：消息会在稍后自动发出。")
    expect(b1.locator('[data-testid="pending-message"][data-send-state="waiting"]')).not_to_have_count(0)
    expect(b1.locator('[data-testid="pending-message"]')).to_have_count(0, timeout=30_000)
    texts = b1.locator(f'{THREAD} [data-testid="message"] .msg-bubble').all_inner_texts()
    assert texts == bodies
    assert all(stored(sqlite_url, body) == 1 for body in bodies)
    expect(b1.get_by_test_id("send-status")).to_have_text("")
    expect(b1.locator(".composer-error")).to_have_text("")
    assert b1.js_errors == []


def test_a_reload_while_sends_wait_keeps_them_and_sends_them_once(  # type: ignore[no-untyped-def]
        browser, server: ServerProcess, proxy: FlakyProxy, sqlite_url: str) -> None:
    b1 = open_chat(browser, proxy, "user_id=b1&target=m1")  # type: ignore[arg-type]
    proxy.fail("POST", r"/messages$", "bad-gateway", times=None)
    send(b1, "刷新前没发出去的")
    send(b1, "刷新前的第二条")
    expect(b1.locator('[data-testid="pending-message"][data-send-state="retrying"]')).to_have_count(1)
    expect(b1.get_by_test_id("send-status")).to_contain_text("消息会自动重发")
    b1.once("dialog", lambda dialog: dialog.accept())  # "leave the page?" asked; the person says yes
    b1.reload()
    b1.wait_for_selector('[data-testid="connection"][data-state="open"]', state="attached")
    expect(b1.locator('[data-testid="pending-message"]')).to_have_count(2)  # still there after the reload
    proxy.heal()
    expect(b1.locator('[data-testid="pending-message"]')).to_have_count(0)
    texts = b1.locator(f'{THREAD} [data-testid="message"] .msg-bubble').all_inner_texts()
    assert texts == ["刷新前没发出去的", "刷新前的第二条"]
    assert stored(sqlite_url, "刷新前没发出去的") == 1 and stored(sqlite_url, "刷新前的第二条") == 1
    assert b1.js_errors == []


def test_one_conversations_trouble_holds_up_no_other_and_a_refusal_waits_in_its_own(  # type: ignore[no-untyped-def]
        browser, server: ServerProcess, proxy: FlakyProxy, sqlite_url: str) -> None:
    b1 = with_m1_unreachable(browser, proxy)
    b1.fill("textarea[name=body]", "\u200b\u200b")  # refused once it reaches the server
    b1.keyboard.press("Enter")
    expect(b1.locator('[data-testid="pending-message"][data-send-state="retrying"]')).to_have_count(1)

    open_conversation(b1, "m2")
    send(b1, "给 m2 的消息不用等")
    b1.locator(f'{THREAD} [data-testid="message"]', has_text="给 m2 的消息不用等").wait_for()
    b1.fill("textarea[name=body]", "正在给 m2 写的草稿")
    proxy.heal()
    b1.wait_for_function("() => sessionStorage.getItem('kefu-outbox:b1') === null")  # the m1 send was answered
    expect(b1.locator(".composer-error")).to_have_text("")  # not m2's business
    expect(b1.locator("textarea[name=body]")).to_have_value("正在给 m2 写的草稿")

    open_conversation(b1, "m1")
    expect(b1.locator(".composer-error")).to_have_text(re.compile(r"^没有发出「.*」：.*看不见的字符.*文字已放回输入框"))
    expect(b1.locator("textarea[name=body]")).to_have_value("\u200b\u200b")
    assert stored(sqlite_url, "给 m2 的消息不用等") == 1
    assert b1.js_errors == []


def test_opening_a_conversation_while_the_server_is_away_says_so(  # type: ignore[no-untyped-def]
        browser, server: ServerProcess, proxy: FlakyProxy) -> None:
    b1 = open_chat(browser, proxy, "user_id=b1&target=m2")  # type: ignore[arg-type]
    b1.goto(f"{proxy.url}/chat?target=m1")
    b1.wait_for_selector('[data-testid="connection"][data-state="open"]', state="attached")
    proxy.fail("GET", r"^/chat/c/\d+", "bad-gateway", times=None)
    b1.locator('[data-testid="conversation"][data-peer-id="m2"]').click()
    expect(b1.get_by_test_id("toast")).to_have_text("没能打开：服务器暂时没有回应，请稍后再试。")
    assert "Bad Gateway" not in b1.locator("body").inner_text()
    proxy.heal()
    open_conversation(b1, "m2")  # and it opens once the server is back
    assert b1.js_errors == []


def test_refusals_wait_for_their_conversation_named_all_of_them_even_across_a_reload(  # type: ignore[no-untyped-def]
        browser, server: ServerProcess, proxy: FlakyProxy, sqlite_url: str) -> None:
    b1 = with_m1_unreachable(browser, proxy)
    for text in ("\u200b", "这条能发出去", "\u200b\u200b"):  # the first and the last are refused once they arrive
        b1.fill("textarea[name=body]", text)
        b1.keyboard.press("Enter")
    expect(b1.locator('[data-testid="pending-message"]')).to_have_count(3)
    open_conversation(b1, "m2")
    proxy.heal()
    b1.wait_for_function("() => sessionStorage.getItem('kefu-outbox:b1') === null")  # all three answered
    expect(b1.locator(".composer-error")).to_have_text("")
    b1.once("dialog", lambda dialog: dialog.accept())
    b1.reload()
    b1.wait_for_selector('[data-testid="connection"][data-state="open"]', state="attached")

    open_conversation(b1, "m1")
    error = b1.locator(".composer-error")
    expect(error).to_contain_text("文字已放回输入框")
    assert error.inner_text().count("没有发出「") == 2
    expect(b1.locator("textarea[name=body]")).to_have_value("\u200b\n\u200b\u200b")
    b1.locator(f'{THREAD} [data-testid="message"]', has_text="这条能发出去").wait_for()
    assert stored(sqlite_url, "这条能发出去") == 1
    assert b1.js_errors == []
