"""The admin monitor in real headless Chromium: sign in with the form, watch b1 and m1 talk, live."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from app.chat.admins import create_admin
from app.db.engine import make_engine, make_sessionmaker
from tests.seeding import converse, say, with_session
from tests.support import ServerProcess, open_chat, send

pytestmark = pytest.mark.browser


@pytest.fixture
def admin_account(sqlite_url: str) -> tuple[str, str]:
    engine = make_engine(sqlite_url)
    with make_sessionmaker(engine)() as session:
        create_admin(session, "a1", "ops", "correct horse battery")
        session.commit()
    engine.dispose()
    return "ops", "correct horse battery"


def test_the_monitor_shows_a_message_from_b1_to_m1_live(browser, server: ServerProcess, admin_account) -> None:  # type: ignore[no-untyped-def]
    username, password = admin_account
    b1 = open_chat(browser, server, "user_id=b1&target=m1")
    send(b1, "第一条，管理员打开监控前发送")
    b1.locator('[data-testid="message"]', has_text="第一条").wait_for()

    admin = browser.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN").new_page()
    errors: list[str] = []
    admin.on("pageerror", lambda error: errors.append(str(error)))
    admin.goto(f"{server.url}/admin")
    assert "/login" in admin.url  # not signed in: sent to the sign-in page
    admin.fill("input[name=username]", username)
    admin.fill("input[name=password]", password)
    admin.click("button[type=submit]")
    admin.locator('[data-testid="monitor"]').wait_for()
    admin.wait_for_selector('[data-testid="connection"][data-state="open"]')
    row = admin.locator('[data-testid="conversation"][data-user-a="b1"][data-user-b="m1"]')
    assert row.locator('[data-testid="message-count"]').inner_text() == "1"
    row.click()
    thread = admin.locator('[data-testid="thread"]')
    thread.locator('[data-testid="message"]', has_text="第一条").wait_for()
    assert admin.locator('[data-testid="composer"]').count() == 0

    send(b1, "第二条，管理员应当实时看到")
    thread.locator('[data-testid="message"]', has_text="第二条").wait_for()
    assert row.locator('[data-testid="message-count"]').inner_text() == "2"
    assert "第二条" in row.locator(".conv-preview").inner_text()

    # a conversation that did not exist when the monitor opened appears at the top, live
    b2 = open_chat(browser, server, "user_id=b2&target=p1")
    send(b2, "新会话：请问怎么申请退款？")
    new_row = admin.locator('[data-testid="conversation"][data-user-a="b2"][data-user-b="p1"]')
    new_row.wait_for()
    assert admin.locator('[data-testid="conversation"]').first.get_attribute("data-user-a") == "b2"
    # m1 has not read anything: the admin's viewing marked nothing read
    m1 = open_chat(browser, server, "user_id=m1")
    assert m1.locator('[data-testid="conversation"][data-peer-id="b1"] [data-testid="unread"]').inner_text() == "2"
    assert errors == []


def test_the_monitor_fits_a_phone_and_a_tablet(browser, server: ServerProcess, admin_account) -> None:  # type: ignore[no-untyped-def]
    username, password = admin_account
    b1 = open_chat(browser, server, "user_id=b1&target=m1")
    send(b1, "手机上的监控台")
    b1.locator('[data-testid="message"]', has_text="手机上的监控台").wait_for()
    for width, expected in ((375, (True, False, False, True)), (800, (True, True, False, False))):
        page = browser.new_context(viewport={"width": width, "height": 800}, locale="zh-CN").new_page()
        page.goto(f"{server.url}/login")
        page.fill("input[name=username]", username)
        page.fill("input[name=password]", password)
        page.click("button[type=submit]")
        page.locator('[data-testid="monitor"]').wait_for()
        shown = tuple(page.locator(f'[data-testid="{name}"]').is_visible()
                      for name in ("col-list", "col-thread", "col-info", "bottom-nav"))
        assert shown == expected, width
        page.locator('[data-testid="conversation"]').first.click()
        page.locator('[data-testid="thread"] [data-testid="message"]', has_text="手机上的监控台").wait_for()
        assert page.locator('[data-testid="col-thread"]').is_visible()
        assert page.locator('[data-testid="composer"]').count() == 0


def test_the_monitor_shows_who_types_and_the_original_of_a_recall(browser, server: ServerProcess,  # type: ignore[no-untyped-def]
                                                                 admin_account, sqlite_url: str) -> None:
    username, password = admin_account
    with with_session(sqlite_url) as db:  # stored before anyone types (typing is said at most once per 3 s)
        say(db, converse(db, "b1", "m1"), "b1", "先说一句")
    b1 = open_chat(browser, server, "user_id=b1&target=m1")
    admin = browser.new_context(viewport={"width": 1440, "height": 900}, locale="zh-CN").new_page()
    errors: list[str] = []
    admin.on("pageerror", lambda error: errors.append(str(error)))
    admin.goto(f"{server.url}/login")
    admin.fill("input[name=username]", username)
    admin.fill("input[name=password]", password)
    admin.click("button[type=submit]")
    admin.wait_for_selector('[data-testid="connection"][data-state="open"]')
    admin.locator('[data-testid="conversation"][data-user-a="b1"][data-user-b="m1"]').click()
    admin.locator('[data-testid="thread"] [data-testid="message"]', has_text="先说一句").wait_for()

    b1.locator("textarea[name=body]").press_sequentially("写错了", delay=20)
    expect(admin.get_by_test_id("typing")).to_have_text("保安堂药房正在输入…")
    b1.keyboard.press("Enter")
    wrong = admin.locator('[data-testid="thread"] [data-testid="message"]', has_text="写错了")
    wrong.wait_for()
    b1.locator('[data-testid="message"]', has_text="写错了").locator(".msg-bubble").click()
    b1.get_by_test_id("recall-button").click()
    expect(wrong).to_have_attribute("data-recalled", "true")
    expect(wrong.get_by_test_id("recalled-original")).to_contain_text("写错了")  # the admin still reads it
    assert errors == []
