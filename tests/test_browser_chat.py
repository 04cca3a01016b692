"""Chatting in real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright) against a served app.

What people rely on: b1 and m1 talk live, each message shown once in each window, with unread counts, the title's
total and read receipts; markup is shown as text and never run; presence follows tabs opening and closing (one tab
of two closing changes nothing); a new conversation appears in the list live; messages sent while the server was
down arrive after the reconnect; an empty message is refused in the composer; scrolling up loads older messages;
the layout fits a desk, a tablet and a phone.
"""

from __future__ import annotations

import os
import re

import httpx
import pytest
from playwright.sync_api import expect

from tests.seeding import converse, say, with_session
from tests.support import ROOT, ServerProcess, open_chat, open_conversation_id, send, sign_in

pytestmark = pytest.mark.browser
SCREENSHOTS = ROOT / "docs" / "screenshots"
DESK, TABLET, PHONE = (1280, 800), (800, 900), (375, 740)

def test_b1_and_m1_chat_live_with_unread_counts_and_read_receipts(browser, server: ServerProcess) -> None:  # type: ignore[no-untyped-def]
    b1 = open_chat(browser, server, "user_id=b1&target=m1")
    m1 = open_chat(browser, server, "user_id=m1")

    send(b1, "你好，请问板蓝根颗粒还有货吗？🙂")
    mine = b1.locator('[data-testid="thread"] [data-testid="message"][data-sender-id="b1"]')
    mine.wait_for()
    expect(b1.locator("textarea[name=body]")).to_have_value("")  # cleared once the POST is answered

    # m1 did not reload: the conversation shows the message and an unread count, and the title the total.
    item = m1.locator('[data-testid="conversation"][data-peer-id="b1"]')
    item.locator('[data-testid="unread"]', has_text="1").wait_for()
    assert "板蓝根颗粒" in item.inner_text()
    expect(m1).to_have_title(re.compile(r"^\(1\) "))

    item.click()
    m1.locator('[data-testid="thread"] [data-testid="message"]', has_text="板蓝根颗粒").wait_for()
    expect(m1).to_have_title(re.compile(r"^[^(]"))
    assert item.locator('[data-testid="unread"]').is_hidden()
    # b1 sees the read receipt live
    b1.locator(".msg-row.mine.is-read", has_text="板蓝根颗粒").wait_for()

    with m1.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/messages")) as answer:
        send(m1, "有货的，今天下单明天发。")
    assert answer.value.status == 201
    b1.locator('[data-testid="message"][data-sender-id="m1"]', has_text="今天下单").wait_for()
    # exactly once in each window, though it reached the sender both by the POST answer and the stream: a sentinel
    # from the other side comes over each window's stream after anything still to come of it
    send(b1, "好的，谢谢")
    m1.locator('[data-testid="message"][data-sender-id="b1"]', has_text="好的，谢谢").wait_for()
    assert m1.locator('[data-testid="message"]', has_text="今天下单").count() == 1
    send(m1, "不客气")
    b1.locator('[data-testid="message"][data-sender-id="m1"]', has_text="不客气").wait_for()
    assert b1.locator('[data-testid="message"]', has_text="今天下单").count() == 1
    assert b1.js_errors == [] and m1.js_errors == []


def test_markup_is_shown_as_text(browser, server: ServerProcess) -> None:  # type: ignore[no-untyped-def]
    b1 = open_chat(browser, server, "user_id=b1&target=m1")
    m1 = open_chat(browser, server, "user_id=m1")
    send(b1, '<img src=x onerror="window.hacked=1"><b>粗体</b>')
    message = m1.locator('[data-testid="conversation"] .conv-preview', has_text="<b>粗体</b>")
    message.wait_for()
    m1.locator('[data-testid="conversation"]').first.click()
    bubble = m1.locator('[data-testid="message"] .msg-bubble').last
    bubble.wait_for()
    assert bubble.inner_text() == '<img src=x onerror="window.hacked=1"><b>粗体</b>'
    assert m1.evaluate("window.hacked") is None and b1.evaluate("window.hacked") is None
    send(b1, '<a href="javascript:window.hacked=2">点我领券</a> javascript:window.hacked=3')
    link_text = m1.locator('[data-testid="message"] .msg-bubble', has_text="点我领券")
    link_text.wait_for()
    assert link_text.locator("a").count() == 0  # shown as text: no link to click
    assert link_text.inner_text() == '<a href="javascript:window.hacked=2">点我领券</a> javascript:window.hacked=3'
    link_text.click()
    assert m1.evaluate("window.hacked") is None


def test_presence_follows_tabs_opening_and_closing(browser, server: ServerProcess,  # type: ignore[no-untyped-def]
                                                    sqlite_url: str) -> None:
    with with_session(sqlite_url) as db:  # b1 hears m2 come and go too: the sentinel below
        say(db, converse(db, "b1", "m2"), "m2", "您好")
    b1 = open_chat(browser, server, "user_id=b1&target=m1")
    dot = b1.locator('.thread-head [data-testid="presence"][data-user-id="m1"]')
    assert dot.get_attribute("data-online") == "false"
    first_tab = open_chat(browser, server, "user_id=m1")
    second_tab = first_tab.context.new_page()
    second_tab.goto(f"{server.url}/chat")
    second_tab.wait_for_selector('[data-testid="connection"][data-state="open"]')
    b1.wait_for_selector('.thread-head [data-testid="presence"][data-user-id="m1"][data-online="true"]')
    first_tab.close()
    # m1 still has a tab open: nothing changes, even past the offline grace period. The sentinel: m2 comes and goes
    # after m1's tab closed, so m2 is shown offline (a grace period after m2's tab closed) after anything m1's closed
    # tab could have set off
    m2_dot = b1.locator('[data-testid="conversation"] [data-testid="presence"][data-user-id="m2"]')
    m2_tab = open_chat(browser, server, "user_id=m2")
    expect(m2_dot).to_have_attribute("data-online", "true")
    m2_tab.close()
    expect(m2_dot).to_have_attribute("data-online", "false", timeout=10_000)
    assert dot.get_attribute("data-online") == "true"
    second_tab.close()
    b1.wait_for_selector('.thread-head [data-testid="presence"][data-user-id="m1"][data-online="false"]',
                         timeout=10_000)


def test_a_new_conversation_appears_in_the_list_live(browser, server: ServerProcess) -> None:  # type: ignore[no-untyped-def]
    m1 = open_chat(browser, server, "user_id=m1")
    assert m1.locator('[data-testid="conversation"]').count() == 0
    with httpx.Client(base_url=server.url) as b2:
        token = sign_in(b2, "b2", target="m1")
        cid = open_conversation_id(b2, "m1")
        assert b2.post(f"/chat/c/{cid}/messages", data={"body": "第一次来，请多关照"},
                       headers={"X-CSRFToken": token}).status_code == 201
    item = m1.locator(f'[data-testid="conversation"][data-conversation-id="{cid}"]')
    item.locator('[data-testid="unread"]', has_text="1").wait_for()
    assert "第一次来" in item.inner_text()
    expect(m1).to_have_title(re.compile(r"^\(1\) "))


def test_messages_sent_while_the_server_was_down_arrive_after_reconnect(  # type: ignore[no-untyped-def]
    browser, server: ServerProcess
) -> None:
    b1 = open_chat(browser, server, "user_id=b1&target=m1")
    cid = b1.locator('[data-testid="thread"]').get_attribute("data-conversation-id")
    server.stop()
    b1.wait_for_selector('[data-testid="connection"]:not([data-state="open"])')
    server.start()
    with httpx.Client(base_url=server.url) as m1:
        token = sign_in(m1, "m1")
        for text in ("断线期间的第一条", "断线期间的第二条"):
            m1.post(f"/chat/c/{cid}/messages", data={"body": text}, headers={"X-CSRFToken": token})
        b1.wait_for_selector('[data-testid="connection"][data-state="open"]', timeout=20_000)
        m1.post(f"/chat/c/{cid}/messages", data={"body": "重连之后的一条"}, headers={"X-CSRFToken": token})
    thread = b1.locator('[data-testid="thread"]')
    thread.locator('[data-testid="message"]', has_text="重连之后的一条").wait_for()
    texts = thread.locator('[data-testid="message"] .msg-bubble').all_inner_texts()
    assert texts == ["断线期间的第一条", "断线期间的第二条", "重连之后的一条"]


def test_empty_message_shows_an_error_in_the_composer_and_keeps_nothing(browser, server: ServerProcess) -> None:  # type: ignore[no-untyped-def]
    b1 = open_chat(browser, server, "user_id=b1&target=m1")
    b1.fill("textarea[name=body]", "    ")
    b1.locator('[data-testid="composer"]').evaluate("form => form.requestSubmit()")
    b1.locator(".composer-error", has_text="消息不能为空").wait_for()
    assert b1.locator('[data-testid="message"]').count() == 0


def test_scrolling_up_loads_older_messages_page_by_page(browser, server: ServerProcess,  # type: ignore[no-untyped-def]
                                                        sqlite_url: str) -> None:
    # 70 messages stored directly: over HTTP the rate limit (30 in 10 s) would rightly refuse them
    from app.chat.conversations import get_or_create_conversation
    from app.chat.messages import send_message
    from app.chat.people import get_user
    from app.db.engine import make_engine, make_sessionmaker

    engine = make_engine(sqlite_url)
    with make_sessionmaker(engine)() as session:
        conversation = get_or_create_conversation(session, get_user(session, "b1"), get_user(session, "m1"))
        for n in range(1, 71):
            send_message(session, conversation.id, "b1", f"第{n}条")
        session.commit()
    engine.dispose()
    b1 = open_chat(browser, server, "user_id=b1&target=m1")
    messages = b1.locator('[data-testid="thread"] [data-testid="message"]')
    assert messages.count() == 30
    for expected in (60, 70):
        b1.locator(".thread-scroll").evaluate("el => el.scrollTop = 0")
        expect(messages).to_have_count(expected, timeout=20_000)
    texts = b1.locator('[data-testid="message"] .msg-bubble').all_inner_texts()
    assert texts == [f"第{n}条" for n in range(1, 71)]
    b1.locator(".thread-start").wait_for()


def visible_columns(page) -> dict[str, bool]:  # type: ignore[no-untyped-def]
    return {
        name: page.locator(f'[data-testid="{name}"]').is_visible()
        for name in ("col-list", "col-thread", "col-info", "bottom-nav")
    }


CONVERSATION = (
    ("b1", "m1", "您好，请问板蓝根颗粒（10袋装）还有现货吗？我们需要 200 盒。"),
    ("m1", "b1", "有现货的 🙂 200 盒今天下单，明天上午发货。"),
    ("b1", "m1", "好的，发票可以开增值税专用发票吗？"),
    ("m1", "b1", "可以，下单时备注开票信息即可。"),
    ("b2", "m1", "你好，连花清瘟胶囊什么时候到货？"),
    ("b1", "p1", "订单 #20261125-0042 的物流一直没有更新，麻烦帮忙查一下。"),
)


def seed_conversation(server: ServerProcess) -> None:
    for sender, peer, text in CONVERSATION:
        with httpx.Client(base_url=server.url) as client:
            token = sign_in(client, sender, target=peer)
            cid = open_conversation_id(client, peer)
            response = client.post(f"/chat/c/{cid}/messages", data={"body": text}, headers={"X-CSRFToken": token})
            assert response.status_code == 201


def test_layout_by_width(browser, server: ServerProcess) -> None:  # type: ignore[no-untyped-def]
    seed_conversation(server)
    m1 = open_chat(browser, server, "user_id=m1&target=b1", DESK)
    desk = open_chat(browser, server, "user_id=b1&target=m1", DESK)
    assert visible_columns(desk) == {"col-list": True, "col-thread": True, "col-info": True, "bottom-nav": False}
    assert desk.locator('[data-testid="message"]').count() == 4
    # the open conversation is read: no unread badge on it, none in the title
    assert desk.locator('[data-testid="conversation"][data-peer-id="m1"] [data-testid="unread"]').is_hidden()
    assert not desk.title().startswith("(")

    tablet = open_chat(browser, server, "user_id=b1&target=m1", TABLET)
    assert visible_columns(tablet) == {"col-list": True, "col-thread": True, "col-info": False, "bottom-nav": False}
    assert tablet.locator('[data-testid="info-toggle"]').is_visible()  # the third column as a drawer

    phone = open_chat(browser, server, "user_id=b1", PHONE)
    assert visible_columns(phone) == {"col-list": True, "col-thread": False, "col-info": False, "bottom-nav": True}
    phone.locator('[data-testid="conversation"][data-peer-id="m1"]').click()
    phone.locator('[data-testid="thread"]').wait_for()
    # inside a thread the whole screen is the thread's: no bottom navigation; back goes to the list
    assert visible_columns(phone) == {"col-list": False, "col-thread": True, "col-info": False, "bottom-nav": False}
    phone.locator('[data-testid="back"]').click()
    assert visible_columns(phone) == {"col-list": True, "col-thread": False, "col-info": False, "bottom-nav": True}
    phone.locator('[data-testid="bottom-nav"] [data-show-view="info"]').click()
    assert visible_columns(phone) == {"col-list": False, "col-thread": False, "col-info": True, "bottom-nav": True}
    phone.locator('[data-testid="bottom-nav"] [data-show-view="thread"]').click()
    assert visible_columns(phone) == {"col-list": False, "col-thread": True, "col-info": False, "bottom-nav": False}

    if os.environ.get("KEFU_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        desk.screenshot(path=SCREENSHOTS / "desk.png")
        m1.close()
        phone.screenshot(path=SCREENSHOTS / "phone.png")
        tablet.locator('[data-testid="info-toggle"]').click()
        tablet.locator('[data-testid="col-info"]').wait_for()
        tablet.screenshot(path=SCREENSHOTS / "tablet.png")
