"""An admin reads the statistics at /admin/stats, on SQLite and MariaDB: numbers worked out by hand from known messages.

What admins rely on: messages and new conversations per day over the last 30 days (days in UTC), and for each
merchant and support person how fast they first answer: the median time from the customer's first message to the
agent's first reply after it, and the share of those conversations answered within five minutes (unanswered ones
count against it). In buyer–support and merchant–support conversations support answers; a merchant who writes
first is timed from the customer's first message.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from litestar.testing import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session

from app.chat import conversations as convs
from app.chat import messages as msgs
from app.chat import stats
from app.chat.people import get_user
from app.db.models import Conversation, Message, utcnow
from tests.admin_support import login_location, make_admin, sign_in_admin, use_fast_hashing
from tests.dom import parse

NOW = datetime(2025, 3, 31, 12, 0, tzinfo=UTC)


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
    messages = stats.daily_messages(db, now=NOW)
    assert [d.day for d in messages] == MARCH_WINDOW
    assert {d.day: d.count for d in messages} == {day: MESSAGES_PER_DAY.get(day, 0) for day in MARCH_WINDOW}
    assert sum(d.count for d in messages) == 18

    conversations = stats.daily_conversations(db, now=NOW)
    assert [d.day for d in conversations] == MARCH_WINDOW
    assert {d.day: d.count for d in conversations} == {day: CONVERSATIONS_PER_DAY.get(day, 0) for day in MARCH_WINDOW}


def test_first_response_times_per_merchant_and_support(db: Session, known: None) -> None:
    found = {r.agent.id: (r.conversations, r.answered, r.median_seconds, r.within_five_minutes)
             for r in stats.response_times(db, now=NOW)}
    assert set(found) == set(RESPONSES)  # buyers answer no one
    for agent, (conversations, answered, median, share) in RESPONSES.items():
        got = found[agent]
        assert got[:2] == (conversations, answered), agent
        assert got[2] == (pytest.approx(median) if median is not None else None), agent
        assert got[3] == pytest.approx(share), agent


def test_a_week_later_march_has_partly_left_the_window(db: Session, known: None) -> None:
    later = NOW + timedelta(days=7)  # 7 April: the window is 9 March … 7 April
    messages = {d.day: d.count for d in stats.daily_messages(db, now=later)}
    assert len(messages) == 30 and min(messages) == date(2025, 3, 9) and max(messages) == date(2025, 4, 7)
    assert sum(messages.values()) == 17  # all but the one of 2 March
    found = {r.agent.id: r for r in stats.response_times(db, now=later)}
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
    today = utcnow().date()
    window = [(today - timedelta(days=n)).isoformat() for n in range(29, -1, -1)]

    recent = [when for pair in ("b1-m1", "b2-m1", "b1-p1") for _, when in times[pair]]
    expected_messages = {day: sum(1 for when in recent if when.date().isoformat() == day) for day in window}
    started = [times[pair][0][1] for pair in ("b1-m1", "b2-m1", "b1-p1")]
    expected_conversations = {day: sum(1 for when in started if when.date().isoformat() == day) for day in window}
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
