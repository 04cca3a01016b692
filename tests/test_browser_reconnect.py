"""The tab's event stream in real headless Chromium: reconnects keep the counts true and open one stream only."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from app.chat import conversations as convs
from app.chat.people import upsert_user
from tests.seeding import converse, say, with_session
from tests.support import OPEN_STREAMS, STREAM_PROBE, ServerProcess, hide_page, open_chat, post_message, send

pytestmark = pytest.mark.browser


def unread_badge(page, cid: int | str):  # type: ignore[no-untyped-def]
    return page.locator(f'[data-testid="conversation"][data-conversation-id="{cid}"] [data-testid="unread"]')


def test_the_title_keeps_the_true_unread_total_after_the_stream_reconnects(  # type: ignore[no-untyped-def]
    browser, server: ServerProcess, sqlite_url: str
) -> None:
    # 40 merchants wrote to b1 once each: the list shows 30 of them, the title counts all 40.
    with with_session(sqlite_url) as db:
        cids = []
        for n in range(1, 41):
            upsert_user(db, f"lm{n}", f"压测商家{n}", "merchant")
            db.commit()
            cids.append(converse(db, "b1", f"lm{n}"))
            say(db, cids[-1], f"lm{n}", f"第{n}条询价")
    b1 = open_chat(browser, server, "user_id=b1")
    expect(b1.locator('[data-testid="conversation"]')).to_have_count(30)
    expect(b1).to_have_title(re.compile(r"^\(40\) "))

    server.stop()
    b1.wait_for_selector('[data-testid="connection"]:not([data-state="open"])')
    with with_session(sqlite_url) as db:  # while b1 is away: read in another device, and one more message
        convs.mark_read(db, cids[-1], "b1")
        db.commit()
        say(db, cids[0], "lm1", "还在吗？")  # lm1 is beyond the first page until this message
    server.start()

    b1.wait_for_selector('[data-testid="connection"][data-state="open"]', timeout=20_000)
    expect(unread_badge(b1, cids[-1])).to_be_hidden(timeout=10_000)  # the list was refreshed
    expect(unread_badge(b1, cids[0])).to_have_text("2")  # the message missed meanwhile was replayed
    expect(b1).to_have_title(re.compile(r"^\(40\) "))  # 40 - 1 read + 1 new, not the sum of 30 badges
    expect(b1.locator('[data-testid="total-unread"]')).to_have_text("40")
    assert b1.js_errors == []


def test_a_storm_of_reconnect_reasons_opens_one_stream_and_a_message_counts_once(  # type: ignore[no-untyped-def]
    browser, server: ServerProcess, sqlite_url: str
) -> None:
    with with_session(sqlite_url) as db:
        cid = converse(db, "b1", "m1")

    def prepare(page) -> None:  # type: ignore[no-untyped-def]
        page.add_init_script(STREAM_PROBE)
        page.clock.install()  # so that every reconnect the page schedules can be made to happen now

    b1 = open_chat(browser, server, "user_id=b1", prepare=prepare)
    assert b1.evaluate(OPEN_STREAMS) == 1
    # the stream fails, the network comes back and the tab is shown, all at once
    b1.evaluate("""() => {
      const stream = window.__streams.at(-1);
      stream.close();
      stream.dispatchEvent(new Event("error"));
      window.dispatchEvent(new Event("online"));
      document.dispatchEvent(new Event("visibilitychange"));
      window.dispatchEvent(new Event("online"));
    }""")
    b1.clock.run_for(60_000)  # every reconnect that was scheduled, however far off
    b1.wait_for_selector('[data-testid="connection"][data-state="open"]', timeout=10_000)
    b1.wait_for_function("() => window.__streams.at(-1).readyState === EventSource.OPEN")

    mid = post_message(server, "m1", cid, "风暴之后的一条")
    # every stream still open has delivered it (an orphaned one would deliver it too)
    b1.wait_for_function("""(mid) => window.__streams.filter((s) => s.readyState !== EventSource.CLOSED)
      .every((s) => s.__messages.some((m) => m.data.includes(`data-message-id="${mid}"`)))""", arg=mid)
    assert b1.evaluate(OPEN_STREAMS) == 1
    expect(unread_badge(b1, cid)).to_have_text("1")
    expect(b1).to_have_title(re.compile(r"^\(1\) "))
    assert b1.js_errors == []


def test_a_message_delivered_twice_counts_and_notifies_once(  # type: ignore[no-untyped-def]
    browser, server: ServerProcess, sqlite_url: str
) -> None:
    with with_session(sqlite_url) as db:
        cid = converse(db, "b1", "m1")

    def prepare(page) -> None:  # type: ignore[no-untyped-def]
        page.context.grant_permissions(["notifications"])
        page.add_init_script(STREAM_PROBE)
        page.add_init_script("""(() => {
          window.__notifications = 0;
          const Native = window.Notification;
          window.Notification = class extends Native {
            constructor(...args) { super(...args); window.__notifications += 1; }
          };
        })();""")

    b1 = open_chat(browser, server, "user_id=b1", prepare=prepare)
    hide_page(b1, True)  # a tab in the background: a new message rings and shows a notification
    mid = post_message(server, "m1", cid, "只应提醒一次")
    expect(unread_badge(b1, cid)).to_have_text("1")
    assert b1.evaluate("window.__notifications") == 1

    # the same event again, as a replay after a reconnect delivers it (listeners run before this returns)
    b1.evaluate("""(mid) => {
      const stream = window.__streams.at(-1);
      const event = stream.__messages.find((m) => m.data.includes(`data-message-id="${mid}"`));
      stream.dispatchEvent(new MessageEvent("message", { data: event.data, lastEventId: event.lastEventId }));
    }""", mid)
    expect(unread_badge(b1, cid)).to_have_text("1")
    expect(b1).to_have_title(re.compile(r"^\(1\) "))
    assert b1.evaluate("window.__notifications") == 1
    preview = b1.locator(f'[data-testid="conversation"][data-conversation-id="{cid}"] .conv-preview')
    assert preview.inner_text() == "只应提醒一次"
    assert b1.js_errors == []


def test_read_receipts_missed_while_disconnected_show_after_the_reconnect(  # type: ignore[no-untyped-def]
    browser, server: ServerProcess, sqlite_url: str
) -> None:
    b1 = open_chat(browser, server, "user_id=b1&target=m1")
    send(b1, "您好，请问有货吗？")
    mine = b1.locator(".msg-row.mine", has_text="请问有货吗")
    mine.wait_for()
    cid = int(b1.locator('[data-testid="thread"]').get_attribute("data-conversation-id") or 0)

    server.stop()
    b1.wait_for_selector('[data-testid="connection"]:not([data-state="open"])')
    with with_session(sqlite_url) as db:  # m1 reads it while b1's stream is down: the read event is missed
        assert convs.mark_read(db, cid, "m1") is not None
        db.commit()
    server.start()
    b1.wait_for_selector('[data-testid="connection"][data-state="open"]', timeout=20_000)
    expect(mine).to_have_class(re.compile(r"\bis-read\b"), timeout=10_000)
    assert b1.js_errors == []


def test_a_person_who_left_while_the_stream_was_away_shows_offline_everywhere_after_it_returns(  # type: ignore[no-untyped-def]
    browser, server: ServerProcess
) -> None:
    m1 = open_chat(browser, server, "user_id=m1&target=b1")
    b1 = open_chat(browser, server, "user_id=b1&target=m1")
    dots = m1.locator('[data-testid="presence"][data-user-id="b1"]')
    expect(dots.first).to_have_attribute("data-online", "true")
    assert dots.count() >= 2  # the list, the thread's head (and the info card)
    server.stop()
    m1.wait_for_selector('[data-testid="connection"]:not([data-state="open"])', state="attached")
    # while m1's page hears nothing, it claims nobody is online: no green dot, no 在线
    head = m1.locator('[data-testid="col-thread"] .thread-sub')
    expect(head.locator(".online-text")).to_be_hidden()
    green = m1.evaluate("""() => [...document.querySelectorAll('[data-testid="presence"]')]
        .filter((d) => getComputedStyle(d).backgroundColor === "rgb(82, 196, 26)").length""")
    assert green == 0
    b1.context.close()  # b1 leaves while m1's page cannot hear it
    server.start()
    m1.wait_for_selector('[data-testid="connection"][data-state="open"]', state="attached", timeout=20_000)
    for n in range(dots.count()):
        expect(dots.nth(n)).to_have_attribute("data-online", "false")
    assert m1.js_errors == []
