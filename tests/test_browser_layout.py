"""A phone, a tablet and a desk that work, in real headless Chromium (issue 15, items 10–14 and 16).

What people rely on: buyers and merchants reach the platform's support from the list; an image's or a file's time and
receipt stand under it, on its bubble's side; on a touch screen Enter makes a new line and the send button sends, the
composer grows to five lines, the newest message stays in view when the keyboard takes half the screen, a thread has
no bottom navigation and every control is at least 44×44 CSS px; a tablet opens the other person's profile, the
notification switch and the quick replies in a drawer; the admin pages fit a phone; an error goes once the next send
succeeds. Sizes: a phone 375×812 (touch), a tablet 820×1180 (touch), a desk 1440×900.
"""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import expect

from app.chat.admins import create_admin
from tests.file_samples import image_bytes, pdf_bytes, upload
from tests.seeding import converse, say, with_session
from tests.support import ServerProcess, open_chat, open_conversation_id, send, sign_in

pytestmark = pytest.mark.browser
PHONE, TABLET, DESK = (375, 812), (820, 1180), (1440, 900)
WIDTHS = {"phone": (PHONE, True), "tablet": (TABLET, True), "desk": (DESK, False)}

# Every visible control a finger may tap (a file input's label stands for the input, which is hidden on purpose), and
# its size in CSS px.
CONTROLS = """() => {
  const selector = 'button, a[href], summary, label:has(input[type=file]), select, textarea, '
    + 'input:not([type=hidden]):not([type=file])';
  return [...document.querySelectorAll(selector)]
    .filter((el) => el.checkVisibility({ opacityProperty: true, visibilityProperty: true }))
    .map((el) => {
      const r = el.getBoundingClientRect();
      const name = el.dataset.testid || el.className || el.tagName.toLowerCase();
      return { name: `${el.tagName.toLowerCase()}.${name} "${(el.textContent || '').trim().slice(0, 12)}"`,
               width: r.width, height: r.height };
    });
}"""


def too_small(page) -> list[dict]:  # type: ignore[no-untyped-def]
    controls = page.evaluate(CONTROLS)
    assert controls, "nothing to tap was found"
    return [c for c in controls if c["width"] < 44 - 0.01 or c["height"] < 44 - 0.01]


def box(locator) -> dict[str, float]:  # type: ignore[no-untyped-def]
    found = locator.bounding_box()
    assert found is not None
    return found


def overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    return (a["x"] < b["x"] + b["width"] and b["x"] < a["x"] + a["width"]
            and a["y"] < b["y"] + b["height"] and b["y"] < a["y"] + a["height"])


def conversation_with_files(server: ServerProcess) -> None:
    """b1 and m1 have each sent a text, an image and a PDF."""
    for sender, peer in (("b1", "m1"), ("m1", "b1")):
        with httpx.Client(base_url=server.url) as client:
            token = sign_in(client, sender, target=peer)
            cid = open_conversation_id(client, peer)
            assert client.post(f"/chat/c/{cid}/messages", data={"body": f"{sender} 的文字"},
                               headers={"X-CSRFToken": token}).status_code == 201
            assert upload(client, cid, token, f"{sender}.png", image_bytes("PNG", (300, 200))).status_code == 201
            assert upload(client, cid, token, f"{sender} 报价单.pdf", pdf_bytes()).status_code == 201


def many_messages(sqlite_url: str, count: int = 40) -> None:
    with with_session(sqlite_url) as db:
        cid = converse(db, "b1", "m1")
        for n in range(1, count + 1):
            say(db, cid, "m1" if n % 2 else "b1", f"第{n}条消息")


# --- 10. reaching the platform ---

def test_buyers_and_merchants_reach_the_platforms_support_from_the_list(browser, server: ServerProcess) -> None:  # type: ignore[no-untyped-def]
    for who, size, touch in (("b1", DESK, False), ("m2", PHONE, True)):
        page = open_chat(browser, server, f"user_id={who}", size, touch=touch)
        entry = page.locator('[data-testid="col-list"] [data-testid="contact-support"]')
        expect(entry).to_be_visible()
        assert entry.inner_text().strip().endswith("联系平台客服")
        entry.click()
        thread = page.locator('[data-testid="thread"]')
        thread.wait_for()
        expect(page.locator(".thread-head h2")).to_have_text("官方客服")
        assert page.locator('[data-testid="conversation"][data-peer-id="p1"]').count() == 1
        page.fill("textarea[name=body]", f"{who} 找平台客服")
        page.locator('[data-testid="composer"] button[type=submit]').click()
        thread.locator('[data-testid="message"]', has_text=f"{who} 找平台客服").wait_for()
        assert page.js_errors == []
    support = open_chat(browser, server, "user_id=p1")  # the support person has no such entry
    assert support.locator('[data-testid="contact-support"]').count() == 0
    assert support.locator('[data-testid="conversation"]').count() == 2


# --- 11. an image's and a file's time and receipt ---

@pytest.mark.parametrize("width", WIDTHS)
def test_time_and_receipt_stand_under_images_and_files_on_their_bubbles_side(browser, server: ServerProcess,  # type: ignore[no-untyped-def]
                                                                             width: str) -> None:
    conversation_with_files(server)
    size, touch = WIDTHS[width]
    page = open_chat(browser, server, "user_id=b1&target=m1", size, touch=touch)
    page.locator('[data-testid="message"] img[data-testid="image"]').last.wait_for()
    page.wait_for_function("() => [...document.images].every((i) => i.complete)")
    for sender in ("b1", "m1"):
        mine = sender == "b1"
        text = page.locator(f'[data-testid="message"][data-sender-id="{sender}"]:has(.msg-bubble:not(.msg-file))')
        image = page.locator(f'[data-testid="message"][data-sender-id="{sender}"]:has([data-testid="image"])')
        file = page.locator(f'[data-testid="message"][data-sender-id="{sender}"]:has([data-testid="file-link"])')
        for message in (image, file):
            # the message's own element is not styled as its content
            assert not {"msg-image", "msg-file"} & set(message.get_attribute("class").split())
        image.scroll_into_view_if_needed()
        picture, meta = box(image.locator('[data-testid="image"]')), box(image.locator(".msg-meta"))
        assert not overlap(picture, meta) and meta["y"] >= picture["y"] + picture["height"] - 0.5
        if mine:  # 已读: b1's messages have been read by m1 (m1 answered)
            receipt = image.locator(".receipt-read")
            assert receipt.is_visible() and not overlap(picture, box(receipt))
        file.scroll_into_view_if_needed()
        card, file_meta = box(file.locator('[data-testid="file-link"]')), box(file.locator(".msg-meta"))
        assert file_meta["y"] >= card["y"] + card["height"] - 0.5
        text.scroll_into_view_if_needed()
        bubble, text_meta = box(text.locator(".msg-bubble")), box(text.locator(".msg-meta"))
        # like a text message's: at the bubble's right edge for one's own, its left edge for the other side's
        for content, meta in ((picture, box(image.locator(".msg-meta"))), (card, file_meta), (bubble, text_meta)):
            if mine:
                assert abs((meta["x"] + meta["width"]) - (content["x"] + content["width"])) < 1
            else:
                assert abs(meta["x"] - content["x"]) < 1
            assert meta["width"] < content["width"] or content is bubble  # not a full-width, centred line
    assert page.js_errors == []


# --- 12. a phone ---

def test_on_a_touch_screen_enter_is_a_new_line_and_the_send_button_sends(browser, server: ServerProcess) -> None:  # type: ignore[no-untyped-def]
    phone = open_chat(browser, server, "user_id=b1&target=m1", PHONE, touch=True)
    area = phone.locator("textarea[name=body]")
    placeholder = area.get_attribute("placeholder")
    assert "Enter 换行" in placeholder and "Enter 发送" not in placeholder
    empty = box(area)["height"]  # room for the placeholder
    area.click()
    area.press_sequentially("第一行")
    one_line = box(area)["height"]
    area.press("Enter")
    area.press_sequentially("第二行")
    expect(area).to_have_value("第一行\n第二行")
    assert phone.locator('[data-testid="message"]').count() == 0  # Enter sent nothing
    two_lines = box(area)["height"]
    assert two_lines > one_line  # the box grew with the text
    for n in range(3, 9):
        area.press("Enter")
        area.press_sequentially(f"第{n}行")
    grown = box(area)["height"]
    line = area.evaluate("a => parseFloat(getComputedStyle(a).lineHeight)")
    assert 4.5 * line < grown < 6.5 * line  # five lines, then it scrolls
    assert area.evaluate("a => a.scrollHeight > a.clientHeight && getComputedStyle(a).overflowY === 'auto'")
    phone.locator('[data-testid="composer"] button[type=submit]').tap()
    sent = phone.locator('[data-testid="message"][data-sender-id="b1"]')
    sent.wait_for()
    lines = ["第一行", "第二行"] + [f"第{n}行" for n in range(3, 9)]
    assert sent.locator(".msg-bubble").inner_text() == "\n".join(lines)
    expect(area).to_have_value("")
    phone.wait_for_function("(h) => document.querySelector('textarea[name=body]').getBoundingClientRect().height === h",
                            arg=empty)  # back to its empty size

    desk = open_chat(browser, server, "user_id=m1&target=b1", DESK)  # a keyboard: Enter still sends
    assert "Enter 发送" in desk.locator(".composer textarea").get_attribute("placeholder")
    send(desk, "桌面上回车发送")
    desk.locator('[data-testid="message"][data-sender-id="m1"]', has_text="桌面上回车发送").wait_for()
    assert phone.js_errors == [] and desk.js_errors == []


def test_a_phones_thread_has_no_bottom_navigation_and_every_control_is_44px(browser, server: ServerProcess,  # type: ignore[no-untyped-def]
                                                                           sqlite_url: str) -> None:
    many_messages(sqlite_url)
    for who, peer in (("m1", "b1"), ("b1", "m1")):
        phone = open_chat(browser, server, f"user_id={who}", PHONE, touch=True)
        expect(phone.locator('[data-testid="bottom-nav"]')).to_be_visible()  # the list
        assert too_small(phone) == []
        phone.locator(f'[data-testid="conversation"][data-peer-id="{peer}"]').tap()
        phone.locator('[data-testid="thread"]').wait_for()
        expect(phone.locator('[data-testid="bottom-nav"]')).to_be_hidden()
        composer = box(phone.locator('[data-testid="composer"]'))
        assert composer["y"] + composer["height"] <= PHONE[1]  # at the bottom of the screen, not under anything
        phone.locator(".thread-scroll").evaluate("el => el.scrollTop = 0")  # the loader or the start at the top
        assert too_small(phone) == []
        back = phone.locator('[data-testid="back"]')
        assert box(back)["width"] >= 44 and box(back)["height"] >= 44
        if who == "m1":  # the quick replies' sheet, with its 编辑
            phone.locator('[data-testid="quick-reply-toggle"]').tap()
            expect(phone.locator('[data-testid="quick-replies"]')).to_be_visible()
            assert too_small(phone) == []
            phone.locator(".qr-head .sheet-close").tap()
            expect(phone.locator('[data-testid="quick-replies"]')).to_be_hidden()
        phone.locator('[data-testid="info-toggle"]').tap()  # the other person, as a sheet
        expect(phone.locator('[data-testid="col-info"]')).to_be_visible()
        assert too_small(phone) == []
        phone.locator('[data-testid="col-info"] [data-testid="sheet-close"]').tap()
        expect(phone.locator('[data-testid="col-info"]')).to_be_hidden()
        back.tap()
        expect(phone.locator('[data-testid="col-list"]')).to_be_visible()
        expect(phone.locator('[data-testid="bottom-nav"]')).to_be_visible()
        assert phone.js_errors == []


def test_the_newest_message_stays_in_view_when_the_keyboard_opens(browser, server: ServerProcess,  # type: ignore[no-untyped-def]
                                                                  sqlite_url: str) -> None:
    many_messages(sqlite_url)
    phone = open_chat(browser, server, "user_id=b1&target=m1", PHONE, touch=True)
    newest = phone.locator('[data-testid="message"]', has_text="第40条消息")
    phone.locator("textarea[name=body]").tap()
    scroller = phone.locator(".thread-scroll")
    expect(newest).to_be_in_viewport()
    # the on-screen keyboard takes the lower half: the visual viewport shrinks (Chromium's keyboard does this)
    phone.set_viewport_size({"width": PHONE[0], "height": 420})
    phone.wait_for_function("() => window.visualViewport.height <= 420")
    phone.wait_for_function("""() => {
      const s = document.querySelector('.thread-scroll').getBoundingClientRect();
      const m = [...document.querySelectorAll('[data-testid="message"]')].pop().getBoundingClientRect();
      return m.bottom <= s.bottom + 1 && m.top >= s.top;
    }""")
    composer = box(phone.locator('[data-testid="composer"]'))
    assert composer["y"] + composer["height"] <= 420  # above the keyboard
    assert box(scroller)["height"] > 100
    assert phone.js_errors == []


# --- 13. a tablet ---

def test_a_tablet_opens_the_other_persons_profile_in_a_drawer(browser, server: ServerProcess) -> None:  # type: ignore[no-untyped-def]
    seed = open_chat(browser, server, "user_id=b1&target=m1", DESK)
    send(seed, "在吗？")
    seed.locator('[data-testid="message"]').wait_for()
    tablet = open_chat(browser, server, "user_id=m1&target=b1", TABLET, touch=True)
    info = tablet.locator('[data-testid="col-info"]')
    toggle = tablet.locator('[data-testid="info-toggle"]')
    expect(info).to_be_hidden()
    expect(toggle).to_have_attribute("aria-expanded", "false")
    for close in ("button", "escape", "outside"):
        toggle.tap()
        expect(info).to_be_visible()
        expect(toggle).to_have_attribute("aria-expanded", "true")
        expect(info.locator(".info-card h3")).to_have_text("保安堂药房")  # the profile,
        expect(info.locator('[data-testid="notify-toggle"]')).to_be_visible()  # the reminder switch
        expect(info.locator('[data-testid="quick-reply"]').first).to_be_visible()  # and the quick replies
        assert too_small(tablet) == []
        if close == "button":
            info.locator('[data-testid="sheet-close"]').tap()
        elif close == "escape":
            tablet.keyboard.press("Escape")
        else:
            tablet.mouse.click(150, 600)  # on the list, beside the drawer
        expect(info).to_be_hidden()
        expect(toggle).to_have_attribute("aria-expanded", "false")
    # a quick reply from the drawer sends and closes it
    toggle.tap()
    reply = info.locator('[data-testid="quick-reply"]').first
    text = reply.inner_text().strip()
    reply.tap()
    expect(info).to_be_hidden()
    tablet.locator('[data-testid="message"][data-sender-id="m1"]', has_text=text[:10]).wait_for()

    desk = open_chat(browser, server, "user_id=m1&target=b1", DESK)  # the third column is on the screen
    expect(desk.locator('[data-testid="col-info"]')).to_be_visible()
    expect(desk.locator('[data-testid="info-toggle"]')).to_be_hidden()
    assert tablet.js_errors == [] and desk.js_errors == []


# --- 14. the admin pages on a phone ---

def test_the_admin_pages_fit_a_phone(browser, server: ServerProcess, sqlite_url: str) -> None:  # type: ignore[no-untyped-def]
    from app.db.engine import make_engine, make_sessionmaker

    engine = make_engine(sqlite_url)
    with make_sessionmaker(engine)() as session:
        create_admin(session, "a1", "ops", "correct horse battery")
        session.commit()
    engine.dispose()
    many_messages(sqlite_url, 12)
    context = browser.new_context(viewport={"width": PHONE[0], "height": PHONE[1]}, locale="zh-CN",
                                  has_touch=True, is_mobile=True)
    admin = context.new_page()
    errors: list[str] = []
    admin.on("pageerror", lambda error: errors.append(str(error)))
    admin.goto(f"{server.url}/login")
    admin.fill("input[name=username]", "ops")
    admin.fill("input[name=password]", "correct horse battery")
    admin.click("button[type=submit]")
    admin.locator('[data-testid="monitor"]').wait_for()
    no_overflow = "() => document.documentElement.scrollWidth <= window.innerWidth"

    def nav_on_one_line() -> None:
        links = admin.locator(".admin-bar nav a")
        heights = [box(links.nth(i))["height"] for i in range(links.count())]
        tops = {round(box(links.nth(i))["y"]) for i in range(links.count())}
        assert len(tops) == 1 and max(heights) < 60  # side by side, each on one line
        for i in range(links.count()):
            assert box(links.nth(i))["width"] >= 44  # not one character per line

    nav_on_one_line()
    assert admin.evaluate(no_overflow)
    admin.locator('[data-testid="conversation"]').first.tap()
    thread = admin.locator('[data-testid="thread"]')
    thread.locator('[data-testid="message"]', has_text="第12条消息").wait_for()
    note = box(admin.locator('[data-testid="readonly"]'))
    assert note["y"] + note["height"] <= PHONE[1]
    nav = admin.locator('[data-testid="bottom-nav"]')
    if nav.is_visible():  # nothing hides behind the bottom bar
        assert note["y"] + note["height"] <= box(nav)["y"] + 0.5
    newest = box(thread.locator('[data-testid="message"]').last)
    assert newest["y"] + newest["height"] <= note["y"] + 0.5
    assert admin.evaluate(no_overflow)

    admin.goto(f"{server.url}/admin/audit")
    nav_on_one_line()
    assert admin.evaluate(no_overflow)
    entry = admin.locator('[data-testid="audit-entry"]').first
    event = entry.locator('[data-testid="audit-action"]')
    expect(event).to_be_visible()
    assert event.inner_text() == "管理员登录"
    for cell in range(entry.locator("td").count()):
        b = box(entry.locator("td").nth(cell))
        assert b["x"] >= 0 and b["x"] + b["width"] <= PHONE[0]
    admin.goto(f"{server.url}/admin/stats")
    nav_on_one_line()
    assert errors == []


# --- 16. errors go once the next send succeeds ---

def test_an_upload_error_goes_when_the_next_message_is_sent(browser, server: ServerProcess, tmp_path) -> None:  # type: ignore[no-untyped-def]
    page = open_chat(browser, server, "user_id=b1&target=m1", PHONE, touch=True)
    not_allowed = tmp_path / "脚本.exe"
    not_allowed.write_bytes(b"MZ\x90\x00" + b"\x00" * 64)
    page.locator('[data-testid="upload"]').set_input_files(str(not_allowed))
    error = page.locator(".composer-error")
    expect(error).to_contain_text("脚本.exe")
    assert "内容太大" not in error.inner_text() and error.inner_text().count("：") <= 2
    page.fill("textarea[name=body]", "换一种方式发")
    page.locator('[data-testid="composer"] button[type=submit]').tap()
    page.locator('[data-testid="message"]', has_text="换一种方式发").wait_for()
    expect(error).to_be_hidden()
    expect(error).to_have_text("")
    assert page.js_errors == []
