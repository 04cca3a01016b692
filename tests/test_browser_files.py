"""Files, images and quick replies in real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright)
against a served app: what two people see in their own windows, live."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.file_samples import image_bytes, pdf_bytes
from tests.support import ServerProcess, open_chat, send

pytestmark = pytest.mark.browser
INVOICE = "可以开增值税专用发票，下单时请备注开票信息。"
IN_STOCK = "现货充足，今天下单明天发货。"
FROM_B1 = '[data-testid="thread"] [data-testid="message"][data-sender-id="b1"]'
FROM_M1 = '[data-testid="thread"] [data-testid="message"][data-sender-id="m1"]'


def test_an_uploaded_image_appears_live_as_a_thumbnail_that_links_to_the_full_size(  # type: ignore[no-untyped-def]
    browser, server: ServerProcess, tmp_path: Path
) -> None:
    photo = tmp_path / "包装照片.png"
    photo.write_bytes(image_bytes("PNG", size=(1200, 900)))
    b1 = open_chat(browser, server, "user_id=b1&target=m1")
    m1 = open_chat(browser, server, "user_id=m1&target=b1")
    progress = b1.locator('[data-testid="upload-progress"]')
    assert progress.count() == 1

    b1.set_input_files('[data-testid="upload"]', str(photo))
    b1.locator(f"{FROM_B1} img").wait_for()
    image = m1.locator(f"{FROM_B1} img")
    image.wait_for()  # m1 did not reload
    assert image.get_attribute("loading") == "lazy"
    width, height = int(image.get_attribute("width") or 0), int(image.get_attribute("height") or 0)
    assert width > 0 and height > 0 and abs(width / height - 4 / 3) < 0.05
    m1.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    assert m1.evaluate("img => img.naturalWidth", image.element_handle()) <= 480
    assert m1.locator(FROM_B1).count() == 1 and b1.locator(FROM_B1).count() == 1
    picture, meta = m1.locator(f"{FROM_B1} img").bounding_box(), m1.locator(f"{FROM_B1} .msg-meta").bounding_box()
    assert picture and meta and meta["y"] >= picture["y"] + picture["height"] - 1  # the time is under the picture
    assert meta["height"] > 0
    progress.wait_for(state="hidden")
    assert m1.locator('[data-testid="conversation"][data-peer-id="b1"] .conv-preview').inner_text() == "[图片]"

    message_id = m1.locator(FROM_B1).get_attribute("data-message-id")
    with m1.context.expect_page() as opened:  # a click opens it in the page (test_browser_viewing); the link is kept
        image.click(modifiers=["Control"])
    full = opened.value
    full.wait_for_load_state()
    assert full.url == f"{server.url}/files/{message_id}"
    assert full.evaluate("document.contentType") == "image/png"
    assert full.evaluate("document.images[0].naturalWidth") == 1200
    assert b1.js_errors == [] and m1.js_errors == []


def test_a_document_arrives_as_a_file_to_download(browser, server: ServerProcess, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    quote = tmp_path / "报价单.pdf"
    quote.write_bytes(pdf_bytes())
    b1 = open_chat(browser, server, "user_id=b1&target=m1")
    m1 = open_chat(browser, server, "user_id=m1&target=b1")
    b1.set_input_files('[data-testid="upload"]', str(quote))
    link = m1.locator(f"{FROM_B1} a", has_text="报价单.pdf")
    link.wait_for()
    with m1.expect_download() as download:
        link.click()
    assert download.value.suggested_filename == "报价单.pdf"
    assert Path(download.value.path()).read_bytes() == pdf_bytes()
    assert b1.locator('[data-testid="conversation"][data-peer-id="m1"] .conv-preview').inner_text() == "[文件]"
    assert b1.js_errors == [] and m1.js_errors == []


def test_a_refused_file_shows_why_and_sends_nothing(browser, server: ServerProcess, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    fake = tmp_path / "photo.png"
    fake.write_bytes(b"<!DOCTYPE html><html><script>window.hacked = 1</script></html>")
    b1 = open_chat(browser, server, "user_id=b1&target=m1")
    b1.set_input_files('[data-testid="upload"]', str(fake))
    b1.locator(".composer-error", has_text="不支持").wait_for()
    assert b1.locator('[data-testid="message"]').count() == 0
    b1.locator('[data-testid="upload-progress"]').wait_for(state="hidden")
    # the paperclip still works afterwards
    real = tmp_path / "real.png"
    real.write_bytes(image_bytes("PNG"))
    b1.set_input_files('[data-testid="upload"]', str(real))
    b1.locator(f"{FROM_B1} img").wait_for()
    expect(b1.locator(".composer-error")).to_have_text("")  # cleared when the upload's answer comes
    assert b1.evaluate("window.hacked") is None


def test_m1_clicks_a_quick_reply_and_b1_sees_it(browser, server: ServerProcess) -> None:  # type: ignore[no-untyped-def]
    b1 = open_chat(browser, server, "user_id=b1&target=m1")
    m1 = open_chat(browser, server, "user_id=m1&target=b1")
    buttons = m1.locator('[data-testid="col-info"] [data-testid="quick-reply"]')
    assert buttons.all_inner_texts() == ["您好，欢迎光临！请问需要什么药品？", "现货充足，今天下单明天发货。",
                                         "可以开增值税专用发票，下单时请备注开票信息。"]
    assert all((buttons.nth(i).get_attribute("data-quick-reply-id") or "").isdigit() for i in range(3))
    with m1.expect_response(lambda r: r.request.method == "POST" and "/quick-replies/" in r.url) as answer:
        buttons.filter(has_text=IN_STOCK).click()
    assert answer.value.status == 201
    b1.locator(FROM_M1, has_text=IN_STOCK).wait_for()
    m1.locator(FROM_M1, has_text=IN_STOCK).wait_for()
    # once in each window: a sentinel from the other side comes over each window's stream after anything still to
    # come of the quick reply
    send(b1, "收到")
    m1.locator(FROM_B1, has_text="收到").wait_for()
    assert m1.locator(FROM_M1).count() == 1
    send(m1, "不客气")
    b1.locator(FROM_M1, has_text="不客气").wait_for()
    assert b1.locator(f"{FROM_M1} .msg-bubble").all_inner_texts() == [IN_STOCK, "不客气"]
    assert b1.js_errors == [] and m1.js_errors == []


def test_m1_types_slash_and_a_word_and_enter_sends_the_matching_quick_reply(  # type: ignore[no-untyped-def]
    browser, server: ServerProcess
) -> None:
    b1 = open_chat(browser, server, "user_id=b1&target=m1")
    m1 = open_chat(browser, server, "user_id=m1&target=b1")
    composer = m1.locator('[data-testid="composer"] textarea[name=body]')
    composer.fill("/")
    items = m1.locator('[data-testid="slash-item"]')
    items.first.wait_for()
    assert items.count() == 3  # "/" alone offers them all
    composer.fill("/发票")
    m1.wait_for_function("document.querySelectorAll('[data-testid=slash-item]').length === 1")
    assert items.inner_text() == INVOICE
    m1.keyboard.press("Enter")

    received = b1.locator(FROM_M1)
    received.wait_for()
    assert received.locator(".msg-bubble").inner_text() == INVOICE
    assert composer.input_value() == ""
    assert items.count() == 0 or not m1.locator('[data-testid="slash-menu"]').is_visible()

    send(m1, "好的")  # Enter sends typed text again once the menu is gone
    b1.locator(FROM_M1, has_text="好的").wait_for()
    # "好的" is the sentinel: had "/发票" been sent as well, it would have reached b1 before it
    assert b1.locator(f"{FROM_M1} .msg-bubble").all_inner_texts() == [INVOICE, "好的"]  # the quick reply only
    assert m1.locator(FROM_M1).all_inner_texts()[0].count(INVOICE) == 1
    assert b1.js_errors == [] and m1.js_errors == []


DROP_OR_PASTE = """([kind, base64, name]) => {
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  const data = new DataTransfer();
  data.items.add(new File([bytes], name, { type: "image/png" }));
  if (kind === "drop") {
    const zone = document.querySelector(".thread-scroll");
    for (const type of ["dragenter", "dragover", "drop"]) {
      zone.dispatchEvent(new DragEvent(type, { bubbles: true, cancelable: true, dataTransfer: data }));
    }
  } else {
    const area = document.querySelector('[data-testid="composer"] textarea');
    area.dispatchEvent(new ClipboardEvent("paste", { bubbles: true, cancelable: true, clipboardData: data }));
  }
}"""


@pytest.mark.parametrize("kind", ["drop", "paste"])
def test_an_image_dropped_on_the_thread_or_pasted_in_the_composer_is_sent(  # type: ignore[no-untyped-def]
    browser, server: ServerProcess, kind: str
) -> None:
    import base64

    b1 = open_chat(browser, server, "user_id=b1&target=m1")
    m1 = open_chat(browser, server, "user_id=m1&target=b1")
    payload = base64.b64encode(image_bytes("PNG", size=(300, 200))).decode()
    b1.evaluate(DROP_OR_PASTE, [kind, payload, f"{kind}.png"])
    image = m1.locator(f"{FROM_B1} img")
    image.wait_for()  # arrived live in the other window
    assert image.get_attribute("alt") == f"{kind}.png"
    assert b1.locator(f"{FROM_B1} img").count() == 1
    assert b1.js_errors == [] and m1.js_errors == []
