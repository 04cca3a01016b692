"""Reading a conversation in real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright) against a served
app: messages grouped by the reader's own local day (browsers in Los Angeles and Shanghai, messages stored around
midnight), and pictures opened in the page, with the keyboard, clicks and swipes."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import update

from app.db.models import Message
from tests.file_samples import image_bytes
from tests.seeding import converse, say_all, with_session
from tests.support import MESSAGE_ID_RE, ServerProcess, open_chat, post_message, sign_in

pytestmark = pytest.mark.browser
SEPARATORS = '[data-testid="thread"] [data-testid="day-separator"]'
MESSAGES = '[data-testid="thread"] [data-testid="message"]'


def day_label(day: date, today: date) -> str:
    """What the issue asks a separator to say."""
    if day == today:
        return "今天"
    if day == today - timedelta(days=1):
        return "昨天"
    return f"{day.month}月{day.day}日" if day.year == today.year else f"{day.year}年{day.month}月{day.day}日"


def days_in_order(moments: list[datetime], zone: ZoneInfo) -> list[date]:
    """The local days of messages in the order shown, each once where it starts."""
    days: list[date] = []
    for moment in moments:
        local = moment.astimezone(zone).date()
        if not days or days[-1] != local:
            days.append(local)
    return days


def shown_separators(page) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    separators = page.locator(SEPARATORS)
    return [(separators.nth(i).get_attribute("data-day") or "", separators.nth(i).inner_text())
            for i in range(separators.count())]


def expected_separators(days: list[date], today: date) -> list[tuple[str, str]]:
    return [(day.isoformat(), day_label(day, today)) for day in days]


@pytest.mark.parametrize("zone_name", ["America/Los_Angeles", "Asia/Shanghai"])
def test_messages_are_grouped_by_the_readers_local_day(  # type: ignore[no-untyped-def]
    browser, server: ServerProcess, sqlite_url: str, zone_name: str
) -> None:
    zone = ZoneInfo(zone_name)
    now = datetime.now(UTC)
    today = now.astimezone(zone).date()
    yesterday_noon = datetime.combine(today - timedelta(days=1), time(12), zone).astimezone(UTC)
    moments = (
        [datetime(2025, 11, 20, 20, 0, tzinfo=UTC) + timedelta(minutes=i) for i in range(5)]
        # 07:50 to 08:19 UTC on 28 November: midnight in Los Angeles, mid-afternoon in Shanghai
        + [datetime(2025, 11, 28, 7, 50, tzinfo=UTC) + timedelta(minutes=i) for i in range(30)]
        + [now - timedelta(days=4, minutes=10 - i) for i in range(3)]
        + [yesterday_noon + timedelta(minutes=i) for i in range(2)]
    )
    with with_session(sqlite_url) as db:
        cid = converse(db, "b1", "m1")
        ids = say_all(db, cid, "m1", *[f"第{n}条" for n in range(1, len(moments) + 1)])
        for mid, moment in zip(ids, moments, strict=True):
            db.execute(update(Message).where(Message.id == mid).values(created_at=moment))
        db.commit()

    b1 = open_chat(browser, server, "user_id=b1&target=m1", timezone_id=zone_name)
    assert b1.evaluate("Intl.DateTimeFormat().resolvedOptions().timeZone") == zone_name
    assert b1.locator(MESSAGES).count() == 30  # the newest page
    b1.wait_for_function("() => document.querySelector('[data-testid=day-separator]') !== null")
    assert shown_separators(b1) == expected_separators(days_in_order(moments[-30:], zone), today)

    # older pages come in above: their days get separators, the day that continues across pages only one
    while b1.locator('[data-testid="load-older"]').count():
        before = b1.locator(MESSAGES).count()
        b1.locator('[data-testid="load-older"]').click()
        b1.wait_for_function("(n) => document.querySelectorAll('#thread [data-testid=message]').length > n",
                             arg=before)
    assert b1.locator(MESSAGES).count() == len(moments)
    b1.wait_for_function("(n) => document.querySelectorAll('[data-testid=day-separator]').length === n",
                         arg=len(days_in_order(moments, zone)))
    assert shown_separators(b1) == expected_separators(days_in_order(moments, zone), today)
    # each separator stands right before the first message of its day
    assert b1.evaluate("""() => [...document.querySelectorAll('[data-testid=day-separator]')]
        .every((s) => s.nextElementSibling.matches('.msg-row'))""")
    # the time's tooltip has the full date
    first_local = moments[0].astimezone(zone)
    title = b1.locator(f"{MESSAGES} time").first.get_attribute("title") or ""
    assert f"{first_local.year}年{first_local.month}月{first_local.day}日" in title

    # live messages of today: one 今天, once
    post_message(server, "m1", cid, "今天的第一条")
    b1.locator(MESSAGES, has_text="今天的第一条").wait_for()
    post_message(server, "m1", cid, "今天的第二条")
    b1.locator(MESSAGES, has_text="今天的第二条").wait_for()
    expected = expected_separators(days_in_order([*moments, now], zone), today)
    b1.wait_for_function("(n) => document.querySelectorAll('[data-testid=day-separator]').length === n",
                         arg=len(expected))
    assert shown_separators(b1) == expected
    assert expected[-1][1] == "今天"
    assert b1.js_errors == []


def send_image(server: ServerProcess, cid: int, size: tuple[int, int], name: str) -> int:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        token = sign_in(client, "b1")
        response = client.post(f"/chat/c/{cid}/files", files={"file": (name, image_bytes("PNG", size), "image/png")},
                               headers={"X-CSRFToken": token})
        assert response.status_code == 201, response.text
        return int(MESSAGE_ID_RE.search(response.text).group(1))  # type: ignore[union-attr]


def natural_width(page) -> int:  # type: ignore[no-untyped-def]
    image = page.locator('[data-testid="lightbox-image"]')
    page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    return int(image.evaluate("img => img.naturalWidth"))


def test_pictures_open_in_the_page_and_the_arrows_go_between_them(  # type: ignore[no-untyped-def]
    browser, server: ServerProcess, sqlite_url: str
) -> None:
    with with_session(sqlite_url) as db:
        cid = converse(db, "b1", "m1")
    first = send_image(server, cid, (1200, 900), "包装.png")
    post_message(server, "b1", cid, "两张图")
    second = send_image(server, cid, (800, 600), "批号.png")
    m1 = open_chat(browser, server, "user_id=m1&target=b1")
    links = m1.locator('[data-testid="image-link"]')
    assert [links.nth(i).get_attribute("href") for i in range(2)] == [f"/files/{first}", f"/files/{second}"]

    links.first.click()
    viewer = m1.locator('[data-testid="lightbox"]')
    viewer.wait_for()
    assert len(m1.context.pages) == 1  # no new tab
    image = m1.locator('[data-testid="lightbox-image"]')
    assert image.get_attribute("src") == f"/files/{first}" and natural_width(m1) == 1200  # the original, not the thumb
    assert m1.locator('[data-testid="lightbox-count"]').inner_text() == "1 / 2"
    m1.keyboard.press("ArrowRight")
    assert image.get_attribute("src") == f"/files/{second}" and natural_width(m1) == 800
    m1.keyboard.press("ArrowRight")  # the last one: stays
    assert image.get_attribute("src") == f"/files/{second}"
    m1.keyboard.press("ArrowLeft")
    assert image.get_attribute("src") == f"/files/{first}"
    m1.keyboard.press("Escape")
    viewer.wait_for(state="hidden")

    links.nth(1).click()
    viewer.wait_for()
    assert image.get_attribute("src") == f"/files/{second}"
    m1.mouse.click(8, 400)  # beside the picture
    viewer.wait_for(state="hidden")
    assert m1.js_errors == []


def swipe(page, start: tuple[int, int], end: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    """A finger on the screen, moved and lifted (Chromium's own touch input, through the DevTools protocol)."""
    cdp = page.context.new_cdp_session(page)
    steps = 6
    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": start[0], "y": start[1]}]})
    for n in range(1, steps + 1):
        x = start[0] + (end[0] - start[0]) * n / steps
        y = start[1] + (end[1] - start[1]) * n / steps
        cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]})
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    cdp.detach()


def test_on_a_phone_a_swipe_goes_to_the_next_picture_and_a_swipe_down_closes(  # type: ignore[no-untyped-def]
    browser, server: ServerProcess, sqlite_url: str
) -> None:
    with with_session(sqlite_url) as db:
        cid = converse(db, "b1", "m1")
    first = send_image(server, cid, (1200, 900), "包装.png")
    second = send_image(server, cid, (800, 600), "批号.png")
    m1 = open_chat(browser, server, "user_id=m1&target=b1", size=(375, 740), touch=True)
    m1.locator('[data-testid="image-link"]').first.tap()
    viewer = m1.locator('[data-testid="lightbox"]')
    viewer.wait_for()
    image = m1.locator('[data-testid="lightbox-image"]')
    assert image.get_attribute("src") == f"/files/{first}"
    swipe(m1, (300, 380), (60, 390))  # to the left: the next one
    m1.wait_for_function("(src) => document.querySelector('[data-testid=lightbox-image]').getAttribute('src') === src",
                         arg=f"/files/{second}")
    swipe(m1, (60, 380), (300, 370))  # to the right: back
    m1.wait_for_function("(src) => document.querySelector('[data-testid=lightbox-image]').getAttribute('src') === src",
                         arg=f"/files/{first}")
    assert viewer.is_visible()
    swipe(m1, (180, 250), (190, 600))  # down: closed
    viewer.wait_for(state="hidden")
    assert m1.js_errors == []
