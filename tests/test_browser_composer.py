"""The composer's toolkit in real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright) against a
served app: the emoji picker, quick replies put into the composer to edit, drafts that outlive switching, reloading
and closing, and the sound and notification switches."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import expect

from tests.support import MESSAGE_ID_RE, ServerProcess, hide_page, open_chat, post_message, send, sign_in

pytestmark = pytest.mark.browser
INVOICE = "可以开增值税专用发票，下单时请备注开票信息。"
FROM_B1 = '[data-testid="thread"] [data-testid="message"][data-sender-id="b1"]'
FROM_M1 = '[data-testid="thread"] [data-testid="message"][data-sender-id="m1"]'
COMPOSER = '[data-testid="composer"] textarea[name=body]'
PICKER = '[data-testid="emoji-picker"]'
VS16 = "\ufe0f"


def test_the_emoji_picker_loads_on_first_use_finds_by_chinese_and_english_and_inserts_at_the_caret(  # type: ignore[no-untyped-def]
    browser, server: ServerProcess
) -> None:
    fetched: list[str] = []
    b1 = open_chat(browser, server, "user_id=b1&target=m1",
                   prepare=lambda page: page.on("request", lambda r: fetched.append(r.url)))
    m1 = open_chat(browser, server, "user_id=m1&target=b1")
    assert not [url for url in fetched if "emojibase" in url]  # nothing more for those who never open it
    composer = b1.locator(COMPOSER)
    composer.fill("你好世界")
    composer.evaluate("area => area.setSelectionRange(2, 2)")  # the caret after 你好

    b1.click('[data-testid="emoji-button"]')
    picker = b1.locator(PICKER)
    picker.wait_for()
    assert b1.evaluate("document.activeElement.dataset.testid") == "emoji-search"  # type at once
    b1.keyboard.type("大笑")
    grin = picker.locator('[data-testid="emoji"][data-emoji="😄"]')
    grin.wait_for()
    assert picker.locator('[data-testid="emoji"][data-emoji="🐶"]').count() == 0  # only what matches
    grin.click()
    assert composer.input_value() == "你好😄世界"
    assert len([url for url in fetched if "emojibase" in url]) == 2  # the Chinese and English names, once

    # the best match first: the emoji whose name it is, before those that merely mention it
    for query, first in (("ok", "👌"), ("大笑", "😄")):
        picker.locator('[data-testid="emoji-search"]').fill(query)
        best = picker.locator('[data-testid="emoji-results"] [data-testid="emoji"]').first
        expect(best).to_have_attribute("data-emoji", first)
    picker.locator('[data-testid="emoji-search"]').fill("thumbs up")  # English names and keywords too
    b1.keyboard.press("Enter")  # the first match
    assert composer.input_value().replace(VS16, "") == "你好😄👍世界"  # (emojibase writes 👍 with VS16)
    b1.keyboard.press("Escape")
    assert picker.is_hidden()
    assert b1.evaluate("document.activeElement.name") == "body"  # back in the composer

    # reopened: the recently used come first, the latest before the earlier one
    b1.click('[data-testid="emoji-button"]')
    recent = picker.locator('[data-testid="emoji-recent"] [data-testid="emoji"]')
    recent.first.wait_for()
    shown = [(recent.nth(i).get_attribute("data-emoji") or "").replace(VS16, "") for i in range(recent.count())]
    assert shown == ["👍", "😄"]
    # the keyboard alone: down into the grid, right to the next one, Enter (the button) inserts it
    b1.keyboard.press("ArrowDown")
    b1.keyboard.press("ArrowRight")
    b1.keyboard.press("Enter")
    assert composer.input_value().replace(VS16, "") == "你好😄👍😄世界"
    assert len([url for url in fetched if "emojibase" in url]) == 2  # not fetched again
    b1.keyboard.press("Escape")

    # a message of one to three emoji is shown large, for both; a sentence with an emoji is not
    send(b1, "👍👍")
    send(b1, "好的👍")
    big = m1.locator(f"{FROM_B1} .msg-bubble", has_text="👍👍")
    sentence = m1.locator(f"{FROM_B1} .msg-bubble", has_text="好的👍")
    sentence.wait_for()
    size = "el => parseFloat(getComputedStyle(el).fontSize)"
    assert big.evaluate(size) >= 2 * sentence.evaluate(size)
    assert big.get_attribute("data-emoji-only") == "true" and sentence.get_attribute("data-emoji-only") is None
    assert b1.js_errors == [] and m1.js_errors == []


def test_the_emoji_picker_fits_a_phone(browser, server: ServerProcess) -> None:  # type: ignore[no-untyped-def]
    b1 = open_chat(browser, server, "user_id=b1&target=m1", size=(375, 740))
    b1.click('[data-testid="emoji-button"]')
    b1.locator(f'{PICKER} [data-testid="emoji"]').first.wait_for()
    box = b1.locator(PICKER).bounding_box()
    assert box and box["x"] >= 0 and box["x"] + box["width"] <= 375 and box["y"] >= 0
    cell = b1.locator(f'{PICKER} [data-testid="emoji"]').first.bounding_box()
    assert cell and cell["width"] >= 44 and cell["height"] >= 44
    b1.locator(f'{PICKER} [data-testid="emoji"]').first.click()
    assert b1.locator(COMPOSER).input_value() != ""
    assert b1.js_errors == []


def test_a_quick_reply_can_be_put_into_the_composer_to_edit_instead_of_sent(  # type: ignore[no-untyped-def]
    browser, server: ServerProcess
) -> None:
    b1 = open_chat(browser, server, "user_id=b1&target=m1")
    m1 = open_chat(browser, server, "user_id=m1&target=b1")
    composer = m1.locator(COMPOSER)
    reply = m1.locator('.qr', has=m1.locator('[data-testid="quick-reply"]', has_text=INVOICE))
    reply.locator('[data-testid="quick-reply-insert"]').click()
    assert composer.input_value() == INVOICE
    assert m1.evaluate("document.activeElement.name") == "body"
    composer.press("End")
    m1.keyboard.type("抬头写公司全称。")
    m1.keyboard.press("Enter")
    edited = INVOICE + "抬头写公司全称。"
    b1.locator(FROM_M1, has_text="抬头写公司全称").wait_for()
    assert b1.locator(f"{FROM_M1} .msg-bubble").all_inner_texts() == [edited]  # the edited text, once

    # in the "/" menu: the hint says how; Tab puts the chosen reply into the composer, nothing is sent
    composer.fill("/发票")
    menu = m1.locator('[data-testid="slash-menu"]')
    m1.wait_for_function("() => document.querySelectorAll('[data-testid=slash-item]').length === 1")
    hint = menu.evaluate("el => getComputedStyle(el, '::before').content")
    assert "Tab" in hint and "Enter" in hint
    m1.keyboard.press("Tab")
    assert composer.input_value() == INVOICE
    assert menu.is_hidden()
    assert m1.evaluate("document.activeElement.name") == "body"  # Tab did not move the focus away
    m1.keyboard.type("好的")  # the caret is after the inserted text
    m1.keyboard.press("Enter")  # the sentinel: had the quick reply gone, it would have reached b1 first
    b1.locator(FROM_M1, has_text="好的").wait_for()
    assert b1.locator(f"{FROM_M1} .msg-bubble").all_inner_texts() == [edited, INVOICE + "好的"]
    # a click on the reply itself still sends it at once
    reply.locator('[data-testid="quick-reply"]').click()
    b1.locator(f"{FROM_M1} .msg-bubble", has_text=INVOICE).nth(2).wait_for()
    assert b1.js_errors == [] and m1.js_errors == []


def test_drafts_are_kept_per_conversation_across_switching_reloading_and_closing_the_tab(  # type: ignore[no-untyped-def]
    browser, server: ServerProcess
) -> None:
    m2_first = open_chat(browser, server, "user_id=b1&target=m2")  # b1 has a conversation with m2 too
    b1 = open_chat(browser, server, "user_id=b1&target=m1")
    m2_first.context.close()
    m1 = open_chat(browser, server, "user_id=m1&target=b1")
    composer = b1.locator(COMPOSER)
    composer.fill("请问这批货\n什么时候")  # two lines, not sent
    b1.click('[data-testid="conversation"][data-peer-id="m2"]')
    b1.wait_for_function("() => document.querySelector('[data-testid=thread]').dataset.peerId === 'm2'")
    assert composer.input_value() == ""  # another conversation, its own (empty) draft
    composer.fill("给 m2 的草稿")
    b1.click('[data-testid="conversation"][data-peer-id="m1"]')
    b1.wait_for_function("() => document.querySelector('[data-testid=thread]').dataset.peerId === 'm1'")
    assert composer.input_value() == "请问这批货\n什么时候"

    b1.reload()
    b1.wait_for_selector('[data-testid="connection"][data-state="open"]', state="attached")
    assert b1.locator(COMPOSER).input_value() == "请问这批货\n什么时候"
    context = b1.context
    url = b1.url
    b1.close()  # the tab is closed; the person comes back later in the same browser
    again = context.new_page()
    again.goto(url)
    again.wait_for_selector('[data-testid="connection"][data-state="open"]', state="attached")
    assert again.locator(COMPOSER).input_value() == "请问这批货\n什么时候"
    again.locator(COMPOSER).press("End")
    again.keyboard.type("发货？")
    again.keyboard.press("Enter")  # sent: no longer a draft
    m1.locator(FROM_B1, has_text="什么时候发货？").wait_for()
    assert again.locator(COMPOSER).input_value() == ""
    again.reload()
    again.wait_for_selector('[data-testid="connection"][data-state="open"]', state="attached")
    assert again.locator(COMPOSER).input_value() == ""
    again.click('[data-testid="conversation"][data-peer-id="m2"]')
    again.wait_for_function("() => document.querySelector('[data-testid=thread]').dataset.peerId === 'm2'")
    assert again.locator(COMPOSER).input_value() == "给 m2 的草稿"  # the other draft is still there
    assert m1.js_errors == []


ALERT_PROBE = """
(() => {
  window.__dings = 0;
  window.__notifications = [];
  const Osc = AudioContext.prototype.createOscillator;
  AudioContext.prototype.createOscillator = function () { window.__dings += 1; return Osc.call(this); };
  const Native = window.Notification;
  window.Notification = class extends Native {
    constructor(title, options) { super(title, options); window.__notifications.push(options && options.body); }
  };
})();
"""


def test_sound_and_notifications_switch_off_and_stay_off_for_this_person_on_this_device(  # type: ignore[no-untyped-def]
    browser, server: ServerProcess
) -> None:
    m1 = open_chat(browser, server, "user_id=m1&target=b1", permissions=["notifications"],
                   prepare=lambda page: page.add_init_script(ALERT_PROBE))
    cid = m1.locator('[data-testid="thread"]').get_attribute("data-conversation-id")
    notify, sound = m1.locator('[data-testid="notify-toggle"]'), m1.locator('[data-testid="sound-toggle"]')
    # the browser allows notifications: the switch says they are on (not "开启消息提醒" any more)
    assert notify.inner_text() == "消息提醒：开" and notify.get_attribute("aria-checked") == "true"
    assert sound.inner_text() == "提示音：开" and sound.get_attribute("aria-checked") == "true"
    m1.click(COMPOSER)  # a gesture: the page may play sound from now on

    hide_page(m1, True)
    post_message(server, "b1", cid, "第一条")  # type: ignore[arg-type]
    m1.locator(FROM_B1, has_text="第一条").wait_for()
    m1.wait_for_function("() => window.__dings === 1 && window.__notifications.length === 1")

    hide_page(m1, False)
    notify.click()
    sound.click()
    assert notify.inner_text() == "消息提醒：关" and notify.get_attribute("aria-checked") == "false"
    assert sound.inner_text() == "提示音：关" and sound.get_attribute("aria-checked") == "false"
    m1.reload()  # kept on this device
    m1.wait_for_selector('[data-testid="connection"][data-state="open"]', state="attached")
    assert notify.inner_text() == "消息提醒：关" and sound.inner_text() == "提示音：关"
    m1.click(COMPOSER)
    hide_page(m1, True)
    post_message(server, "b1", cid, "第二条")  # type: ignore[arg-type]
    m1.locator(FROM_B1, has_text="第二条").wait_for()
    post_message(server, "b1", cid, "第三条")  # type: ignore[arg-type]
    m1.locator(FROM_B1, has_text="第三条").wait_for()  # both handled: neither made a sound nor a notification
    assert m1.evaluate("[window.__dings, window.__notifications.length]") == [0, 0]

    # another person in the same browser has switches of their own
    m1.goto(f"{server.url}/chat?user_id=m2&target=b1")
    m1.wait_for_selector('[data-testid="connection"][data-state="open"]', state="attached")
    assert notify.inner_text() == "消息提醒：开" and sound.inner_text() == "提示音：开"

    m1.goto(f"{server.url}/chat?user_id=m1&target=b1")
    m1.wait_for_selector('[data-testid="connection"][data-state="open"]', state="attached")
    notify.click()
    sound.click()  # on again
    assert notify.inner_text() == "消息提醒：开" and sound.inner_text() == "提示音：开"
    assert m1.js_errors == []


CLOSE_PROBE = """
(() => {
  window.__notifications = [];
  const Native = window.Notification;
  window.Notification = class extends Native {
    constructor(title, options) {
      super(title, options);
      this.__entry = { body: options && options.body, closed: false };
      window.__notifications.push(this.__entry);
    }
    close() { this.__entry.closed = true; super.close(); }
  };
})();
"""


def test_a_notification_of_a_message_that_is_then_recalled_is_taken_back(  # type: ignore[no-untyped-def]
    browser, server: ServerProcess
) -> None:
    m1 = open_chat(browser, server, "user_id=m1&target=b1", permissions=["notifications"],
                   prepare=lambda page: page.add_init_script(CLOSE_PROBE))
    cid = m1.locator('[data-testid="thread"]').get_attribute("data-conversation-id")
    hide_page(m1, True)
    with httpx.Client(base_url=server.url, timeout=10) as b1:
        token = sign_in(b1, "b1")
        kept = b1.post(f"/chat/c/{cid}/messages", data={"body": "留着的"}, headers={"X-CSRFToken": token})
        m1.wait_for_function("() => window.__notifications.length === 1")
        taken = b1.post(f"/chat/c/{cid}/messages", data={"body": "说错了"}, headers={"X-CSRFToken": token})
        m1.wait_for_function("() => window.__notifications.length === 2")
        mid = MESSAGE_ID_RE.search(taken.text).group(1)  # type: ignore[union-attr]
        assert kept.status_code == 201
        assert b1.post(f"/chat/c/{cid}/messages/{mid}/recall", headers={"X-CSRFToken": token}).status_code == 200
    m1.locator(f'[data-message-id="{mid}"][data-recalled="true"]').wait_for()
    m1.wait_for_function("() => window.__notifications[1].closed")
    assert m1.evaluate("window.__notifications.map(n => [n.body, n.closed])") == [["留着的", False], ["说错了", True]]
    assert m1.js_errors == []


def test_without_the_browsers_permission_the_notification_switch_says_it_is_off(  # type: ignore[no-untyped-def]
    browser, server: ServerProcess
) -> None:
    b1 = open_chat(browser, server, "user_id=b1&target=m1")
    notify = b1.locator('[data-testid="notify-toggle"]')
    assert b1.evaluate("Notification.permission") != "granted"
    assert notify.inner_text() == "消息提醒：关" and notify.get_attribute("aria-checked") == "false"
    assert b1.js_errors == []


def test_on_a_touch_screen_the_slash_menu_offers_insert_beside_each_reply(  # type: ignore[no-untyped-def]
    browser, server: ServerProcess
) -> None:
    m1 = open_chat(browser, server, "user_id=m1&target=b1", (820, 1180), touch=True)
    composer = m1.locator(COMPOSER)
    composer.fill("/发票")
    menu = m1.locator('[data-testid="slash-menu"]')
    expect(menu.get_by_test_id("slash-item")).to_have_count(1)
    hint = menu.evaluate("el => getComputedStyle(el, '::before').content")
    assert "Tab" not in hint and "插入" in hint  # no Tab key on a touch keyboard
    insert = menu.get_by_test_id("slash-insert")
    box = insert.bounding_box()
    assert box is not None and box["height"] >= 44 and box["width"] >= 44
    insert.tap()
    expect(composer).to_have_value(INVOICE)  # into the composer to edit, nothing sent
    expect(menu).to_be_hidden()
    expect(m1.locator('[data-testid="thread"] [data-testid="message"]')).to_have_count(0)
    assert m1.js_errors == []
