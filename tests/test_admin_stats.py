"""An admin reads the statistics at /admin/stats, on SQLite and MariaDB: numbers worked out by hand from known messages.

What admins rely on: messages and new conversations per day over the last 30 days (days in KEFU_TIMEZONE,
Asia/Shanghai unless set: the `known` month is checked in UTC, other tests in other zones), and for each
merchant and support person how fast they first answer: the median time from the customer's first message to the
agent's first reply after it, and the share of those conversations answered within five minutes (unanswered ones
count against it). In buyer–support and merchant–support conversations support answers; a merchant who writes
first is timed from the customer's first message.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from litestar.testing import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session

from app.chat import conversations as convs
from app.chat import messages as msgs
from app.chat import stats
from app.chat.people import get_user
from app.db.models import Conversation, Message, utcnow
from app.main import create_app
from tests.admin_support import login_location, make_admin, sign_in_admin, use_fast_hashing
from tests.cli_support import run_kefu
from tests.conftest import make_settings
from tests.dom import Element, parse
from tests.support import free_port, server_env

NOW = datetime(2025, 3, 31, 12, 0, tzinfo=UTC)
SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture(autouse=True)
def fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    use_fast_hashing(monkeypatch)


def march(day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2025, 3, day, hour, minute, second, tzinfo=UTC)


def start(db: Session, a: str, b: str, when: datetime) -> int:
    """A conversation between a and b, started at `when`."""
    me, peer = get_user(db, a), get_user(db, b)
    assert me is not None and peer is not None
    cid = convs.get_or_create_conversation(db, me, peer).id
    db.execute(update(Conversation).where(Conversation.id == cid).values(created_at=when, last_activity_at=when))
    db.commit()
    return cid


def write(db: Session, cid: int, sender: str, when: datetime) -> None:
    """A message sent as people send them, then dated `when` (each conversation's messages in time order)."""
    message = msgs.send_message(db, cid, sender, f"{sender} {when.isoformat()}")
    db.flush()
    db.execute(update(Message).where(Message.id == message.id).values(created_at=when))
    db.execute(update(Conversation).where(Conversation.id == cid).values(last_activity_at=when))
    db.commit()


@pytest.fixture
def known(db: Session) -> None:
    """The month of March 2025, seen on the 31st at noon UTC."""
    # b1 asks m1, m1 answers after 90 s (later messages do not matter).
    a = start(db, "b1", "m1", march(10, 9))
    write(db, a, "b1", march(10, 9))
    write(db, a, "m1", march(10, 9, 1, 30))
    write(db, a, "b1", march(10, 9, 3, 20))
    write(db, a, "m1", march(10, 9, 3, 30))
    # b2 asks m1, m1 answers after 10 minutes.
    b = start(db, "b2", "m1", march(11, 10))
    write(db, b, "b2", march(11, 10))
    write(db, b, "m1", march(11, 10, 10))
    # b1 asks m2 twice, one second either side of the charts' first day; m2 never answers.
    c = start(db, "b1", "m2", march(1, 23, 59, 59))
    write(db, c, "b1", march(1, 23, 59, 59))
    write(db, c, "b1", march(2, 0, 0, 0))
    # m3 writes first; b2 asks an hour later; m3 answers 4 minutes after the question.
    d = start(db, "b2", "m3", march(20, 8))
    write(db, d, "m3", march(20, 8))
    write(db, d, "b2", march(20, 9))
    write(db, d, "m3", march(20, 9, 4))
    # m3 writes first again; b1 asks; m3 never answers.
    e = start(db, "b1", "m3", march(25, 10))
    write(db, e, "m3", march(25, 10))
    write(db, e, "b1", march(25, 10, 5))
    # Support answers b1 after 2 minutes, m1 (a customer here) after 30 s, b2 after an hour.
    f = start(db, "b1", "p1", march(31, 11))
    write(db, f, "b1", march(31, 11))
    write(db, f, "p1", march(31, 11, 2))
    g = start(db, "m1", "p1", march(31, 11, 30))
    write(db, g, "m1", march(31, 11, 30))
    write(db, g, "p1", march(31, 11, 30, 30))
    h = start(db, "b2", "p1", march(15, 20))
    write(db, h, "b2", march(15, 20))
    write(db, h, "p1", march(15, 21))
    # Long ago: m2 asked support in February, answered in 10 s. Outside every window.
    old = start(db, "m2", "p1", datetime(2025, 2, 10, 10, tzinfo=UTC))
    write(db, old, "m2", datetime(2025, 2, 10, 10, tzinfo=UTC))
    write(db, old, "p1", datetime(2025, 2, 10, 10, 0, 10, tzinfo=UTC))


MARCH_WINDOW = [date(2025, 3, 2) + timedelta(days=n) for n in range(30)]  # 2 March … 31 March
MESSAGES_PER_DAY = {date(2025, 3, 2): 1, date(2025, 3, 10): 4, date(2025, 3, 11): 2, date(2025, 3, 15): 2,
                    date(2025, 3, 20): 3, date(2025, 3, 25): 2, date(2025, 3, 31): 4}
CONVERSATIONS_PER_DAY = {date(2025, 3, 10): 1, date(2025, 3, 11): 1, date(2025, 3, 15): 1, date(2025, 3, 20): 1,
                         date(2025, 3, 25): 1, date(2025, 3, 31): 2}
# agent: (conversations, answered, median seconds, share answered within 5 minutes)
RESPONSES = {
    "m1": (2, 2, (90 + 600) / 2, 1 / 2),
    "m2": (1, 0, None, 0.0),
    "m3": (2, 1, 240.0, 1 / 2),
    "p1": (3, 3, 120.0, 2 / 3),  # 120, 30 and 3600 s: February's 10 s is outside the 30 days
}


def test_messages_and_new_conversations_per_day_over_the_last_30_days(db: Session, known: None) -> None:
    messages = stats.daily_messages(db, zone=UTC, now=NOW)
    assert [d.day for d in messages] == MARCH_WINDOW
    assert {d.day: d.count for d in messages} == {day: MESSAGES_PER_DAY.get(day, 0) for day in MARCH_WINDOW}
    assert sum(d.count for d in messages) == 18

    conversations = stats.daily_conversations(db, zone=UTC, now=NOW)
    assert [d.day for d in conversations] == MARCH_WINDOW
    assert {d.day: d.count for d in conversations} == {day: CONVERSATIONS_PER_DAY.get(day, 0) for day in MARCH_WINDOW}


def test_first_response_times_per_merchant_and_support(db: Session, known: None) -> None:
    found = {r.agent.id: (r.conversations, r.answered, r.median_seconds, r.within_five_minutes)
             for r in stats.response_times(db, zone=UTC, now=NOW)}
    assert set(found) == set(RESPONSES)  # buyers answer no one
    for agent, (conversations, answered, median, share) in RESPONSES.items():
        got = found[agent]
        assert got[:2] == (conversations, answered), agent
        assert got[2] == (pytest.approx(median) if median is not None else None), agent
        assert got[3] == pytest.approx(share), agent


def test_a_week_later_march_has_partly_left_the_window(db: Session, known: None) -> None:
    later = NOW + timedelta(days=7)  # 7 April: the window is 9 March … 7 April
    messages = {d.day: d.count for d in stats.daily_messages(db, zone=UTC, now=later)}
    assert len(messages) == 30 and min(messages) == date(2025, 3, 9) and max(messages) == date(2025, 4, 7)
    assert sum(messages.values()) == 17  # all but the one of 2 March
    found = {r.agent.id: r for r in stats.response_times(db, zone=UTC, now=later)}
    assert found["m1"].median_seconds == pytest.approx(345.0)
    assert "m2" not in found  # b1's unanswered questions of 1–2 March are older than 30 days now


def test_the_stats_page_shows_the_same_numbers(app_client: TestClient, db: Session) -> None:
    now = utcnow()
    times = {
        "b1-m1": [("b1", now - timedelta(hours=3)), ("m1", now - timedelta(hours=3) + timedelta(seconds=45))],
        "b2-m1": [("b2", now - timedelta(hours=2)), ("m1", now - timedelta(hours=2) + timedelta(seconds=400))],
        "b1-p1": [("b1", now - timedelta(hours=1))],
        "m2-p1": [("m2", now - timedelta(days=40)), ("p1", now - timedelta(days=40) + timedelta(seconds=5))],
    }
    for pair, messages in times.items():
        a, b = pair.split("-")
        cid = start(db, a, b, messages[0][1])
        for sender, when in messages:
            write(db, cid, sender, when)

    assert login_location(app_client.get("/admin/stats", follow_redirects=False)) == "/admin/stats"
    make_admin(db)
    sign_in_admin(app_client)
    response = app_client.get("/admin/stats")
    assert response.status_code == 200
    page = parse(response.text)
    today = utcnow().astimezone(SHANGHAI).date()  # KEFU_TIMEZONE unset: Beijing's days
    window = [(today - timedelta(days=n)).isoformat() for n in range(29, -1, -1)]

    def day_of(when: datetime) -> str:
        return when.astimezone(SHANGHAI).date().isoformat()

    recent = [when for pair in ("b1-m1", "b2-m1", "b1-p1") for _, when in times[pair]]
    expected_messages = {day: sum(1 for when in recent if day_of(when) == day) for day in window}
    started = [times[pair][0][1] for pair in ("b1-m1", "b2-m1", "b1-p1")]
    expected_conversations = {day: sum(1 for when in started if day_of(when) == day) for day in window}
    for testid, expected in (("chart-messages", expected_messages), ("chart-conversations", expected_conversations)):
        bars = page.one(testid=testid).find_all(tag="rect", cls="bar")
        assert [bar.get("data-day") for bar in bars] == window, testid
        assert {bar.get("data-day"): int(bar.get("data-count") or -1) for bar in bars} == expected, testid
    assert sum(expected_messages.values()) == 5 and sum(expected_conversations.values()) == 3

    rows = {row.get("data-agent-id"): row for row in page.one(testid="response-times").find_all(tag="tr")
            if row.has("data-agent-id")}
    assert set(rows) == {"m1", "p1"}  # m2 and p1's exchange of 40 days ago is too old
    assert float(rows["m1"].get("data-median-seconds") or "nan") == pytest.approx((45 + 400) / 2)
    assert float(rows["m1"].get("data-within-five") or "nan") == pytest.approx(0.5)
    assert rows["p1"].get("data-median-seconds") == ""  # b1 is still waiting
    assert float(rows["p1"].get("data-within-five") or "nan") == 0.0
    assert "保和堂医药集团" in rows["m1"].text() and "50%" in rows["m1"].text()


# --- the days of a time zone (KEFU_TIMEZONE) ---

def test_a_message_at_23_30_utc_counts_on_the_next_day_in_beijing_and_the_same_day_in_utc(db: Session) -> None:
    now = march(31, 16, 30)  # already 1 April, 00:30, in Beijing
    cid = start(db, "b1", "m1", march(1, 16))
    for when in (march(1, 16), march(20, 15, 59, 59), march(20, 16), march(20, 23, 30), march(31, 16, 10)):
        write(db, cid, "b1", when)

    beijing = {d.day: d.count for d in stats.daily_messages(db, zone=SHANGHAI, now=now)}
    assert min(beijing) == date(2025, 3, 3) and max(beijing) == date(2025, 4, 1) and len(beijing) == 30
    assert {day: n for day, n in beijing.items() if n} == {date(2025, 3, 20): 1, date(2025, 3, 21): 2,
                                                           date(2025, 4, 1): 1}
    # 1 March 16:00 UTC is 2 March in Beijing: before this window's first day, 3 March

    utc = {d.day: d.count for d in stats.daily_messages(db, zone=UTC, now=now)}
    assert min(utc) == date(2025, 3, 2) and max(utc) == date(2025, 3, 31)
    assert {day: n for day, n in utc.items() if n} == {date(2025, 3, 20): 3, date(2025, 3, 31): 1}

    started = {d.day: d.count for d in stats.daily_conversations(db, zone=SHANGHAI, now=march(10, 0))}
    assert started[date(2025, 3, 2)] == 1 and sum(started.values()) == 1


def test_days_with_a_daylight_saving_change_last_23_and_25_hours(db: Session) -> None:
    new_york = ZoneInfo("America/New_York")
    cid = start(db, "b1", "m1", datetime(2025, 3, 8, tzinfo=UTC))
    spring = [datetime(2025, 3, 9, 4, 30, tzinfo=UTC),  # 8 March, 23:30 EST
              datetime(2025, 3, 10, 3, 30, tzinfo=UTC),  # 9 March, 23:30 EDT
              datetime(2025, 3, 10, 4, 30, tzinfo=UTC)]  # 10 March, 00:30 EDT (a fixed -5 h would say the 9th)
    autumn = [datetime(2025, 11, 2, 3, 30, tzinfo=UTC),  # 1 November, 23:30 EDT
              datetime(2025, 11, 3, 4, 30, tzinfo=UTC),  # 2 November, 23:30 EST (a fixed -4 h: the 3rd)
              datetime(2025, 11, 3, 5, 30, tzinfo=UTC)]  # 3 November, 00:30 EST
    for when in spring + autumn:
        write(db, cid, "b1", when)

    march_days = stats.daily_messages(db, zone=new_york, days=3, now=datetime(2025, 3, 10, 12, tzinfo=UTC))
    assert [(d.day.day, d.count) for d in march_days] == [(8, 1), (9, 1), (10, 1)]
    november_days = stats.daily_messages(db, zone=new_york, days=3, now=datetime(2025, 11, 3, 12, tzinfo=UTC))
    assert [(d.day.day, d.count) for d in november_days] == [(1, 1), (2, 1), (3, 1)]
    hours = [(later - earlier) / timedelta(hours=1)
             for earlier, later in pairwise(stats.window(datetime(2025, 11, 3, 12, tzinfo=UTC), new_york, 3).bounds)]
    assert hours == [24, 25, 24]


def stats_page(database_url: str, tmp_path: Path, **settings: object) -> Element:
    """/admin/stats as the admin `ops` sees it, from an app with these settings."""
    app = create_app(make_settings(database_url, tmp_path, **settings))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        sign_in_admin(client)
        response = client.get("/admin/stats")
        assert response.status_code == 200, response.text
        return parse(response.text)


def test_the_stats_page_says_which_time_zone_its_days_are_in(database_url: str, tmp_path: Path, db: Session) -> None:
    yesterday = utcnow() - timedelta(days=1)
    late = yesterday.replace(hour=23, minute=30, second=0, microsecond=0)  # 23:30 UTC yesterday
    cid = start(db, "b1", "m1", late)
    write(db, cid, "b1", late)
    make_admin(db)

    for settings, zone_name, day in (({}, "Asia/Shanghai", late.date() + timedelta(days=1)),
                                     ({"timezone": "UTC"}, "UTC", late.date())):
        page = stats_page(database_url, tmp_path, **settings)
        bars = page.one(testid="chart-messages").find_all(tag="rect", cls="bar")
        assert {bar.get("data-day"): bar.get("data-count") for bar in bars if bar.get("data-count") != "0"} == {
            day.isoformat(): "1"}, zone_name
        shown = page.one(testid="stats-zone")
        assert shown.get("data-zone") == zone_name and zone_name in shown.text(), zone_name


def test_an_unknown_kefu_timezone_stops_kefu_with_one_clear_line(sqlite_url: str, tmp_path: Path) -> None:
    env = server_env(sqlite_url, tmp_path, KEFU_TIMEZONE="Asia/Beijing")  # not an IANA name: Asia/Shanghai is
    ran = run_kefu(env, "serve", "--port", str(free_port()), timeout=30)
    assert ran.code == 1
    [line] = ran.err.strip().splitlines()
    assert "KEFU_TIMEZONE" in line and "'Asia/Beijing'" in line and "Asia/Shanghai" in line, line
