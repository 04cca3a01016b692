"""Statistics for admins: daily volumes, and how fast merchants and support answer.

Days are the days of a time zone (KEFU_TIMEZONE, Asia/Shanghai by default), not UTC's: a message at 23:30 UTC is
on the next day in Beijing. Times are stored in UTC; each day's bounds are worked out here with zoneinfo, so
daylight-saving zones get their 23- and 25-hour days and the database needs no time zone tables."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from app.db.models import Conversation, Message, User, utcnow

DAYS = 30
ANSWERED_WITHIN = timedelta(minutes=5)
CHUNK = 500


@dataclass(frozen=True)
class DailyCount:
    day: date
    count: int


@dataclass(frozen=True)
class ResponseStats:
    agent: User
    conversations: int  # conversations in which a customer wrote
    answered: int
    median_seconds: float | None  # over the answered ones
    within_five_minutes: float  # share of all `conversations`, 0..1


@dataclass(frozen=True)
class Window:
    """The last `days` days up to today in a time zone: each day from its local midnight to the next, in UTC (a day
    with a daylight-saving change lasts 23 or 25 hours)."""

    days: list[date]
    bounds: list[datetime]  # aware UTC: the start of each day, then the end of the last one

    @property
    def start(self) -> datetime:
        """The first instant (UTC) of the first day shown."""
        return self.bounds[0]


def window(now: datetime, zone: tzinfo, days: int = DAYS) -> Window:
    """The `days` days ending today in `zone`, today being the date of `now` (aware) there."""
    today = now.astimezone(zone).date()
    dates = [today - timedelta(days=n) for n in range(days - 1, -2, -1)]  # and the day after, for the last end
    bounds = [datetime.combine(d, time.min, zone).astimezone(UTC) for d in dates]
    return Window(dates[:-1], bounds)


def _daily(session: Session, column, span: Window) -> list[DailyCount]:  # type: ignore[no-untyped-def]
    """Rows of `column` (a UTC time) per day of `span`: one query, each row put in its day by comparing with the
    days' UTC bounds (computed here; no time zone tables needed in the database)."""
    day = case(*[(column < end, n) for n, end in enumerate(span.bounds[1:])])
    rows = session.execute(
        select(day, func.count()).where(column >= span.start, column < span.bounds[-1]).group_by(day)
    ).all()
    counts = {int(n): count for n, count in rows}
    return [DailyCount(d, counts.get(n, 0)) for n, d in enumerate(span.days)]


def daily_messages(session: Session, *, zone: tzinfo, days: int = DAYS, now: datetime | None = None
                   ) -> list[DailyCount]:
    """Messages per day over the last `days` days in `zone` (KEFU_TIMEZONE), oldest first."""
    return _daily(session, Message.created_at, window(now or utcnow(), zone, days))


def daily_conversations(session: Session, *, zone: tzinfo, days: int = DAYS, now: datetime | None = None
                        ) -> list[DailyCount]:
    """New conversations per day over the last `days` days in `zone` (KEFU_TIMEZONE), oldest first."""
    return _daily(session, Conversation.created_at, window(now or utcnow(), zone, days))


def _chunks(items: list[int]) -> Iterator[list[int]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def agent_of(role_a: str, role_b: str, a: str, b: str) -> str | None:
    """Who answers in a conversation: support when present, else the merchant."""
    for role in ("support", "merchant"):
        if role_a == role:
            return a
        if role_b == role:
            return b
    return None


def response_times(session: Session, *, zone: tzinfo, days: int = DAYS, now: datetime | None = None
                   ) -> list[ResponseStats]:
    """For each merchant and support person: first-response times over conversations active in the last `days`
    days in `zone` (the charts' days: from the first one's midnight there)."""
    since = window(now or utcnow(), zone, days).start
    users = {u.id: u for u in session.scalars(select(User).where(User.role.in_(("merchant", "support", "buyer"))))}
    conversations = session.execute(
        select(Conversation.id, Conversation.user_a, Conversation.user_b).where(Conversation.last_activity_at >= since)
    ).all()
    agents: dict[int, str] = {}
    for cid, a, b in conversations:
        if a in users and b in users:
            agent = agent_of(users[a].role, users[b].role, a, b)
            if agent:
                agents[cid] = agent

    first_by_sender: dict[tuple[int, str], int] = {}
    for chunk in _chunks(list(agents)):
        rows = session.execute(
            select(Message.conversation_id, Message.sender_id, func.min(Message.id))
            .where(Message.conversation_id.in_(chunk), Message.created_at >= since)
            .group_by(Message.conversation_id, Message.sender_id)
        ).all()
        first_by_sender.update({(cid, sender): mid for cid, sender, mid in rows})

    asked: dict[int, int] = {}  # conversation -> the customer's first message id
    for (cid, sender), mid in first_by_sender.items():
        if sender != agents[cid] and (cid not in asked or mid < asked[cid]):
            asked[cid] = mid
    replies = _first_replies(session, asked, agents, first_by_sender)
    times = _times(session, [*asked.values(), *replies.values()])

    per_agent: dict[str, list[float | None]] = {}
    for cid, question in asked.items():
        reply = replies.get(cid)
        seconds = (times[reply] - times[question]).total_seconds() if reply else None
        per_agent.setdefault(agents[cid], []).append(seconds)
    return [_summarize(users[agent], waits) for agent, waits in sorted(per_agent.items())]


def _first_replies(session: Session, asked: dict[int, int], agents: dict[int, str],
                   first_by_sender: dict[tuple[int, str], int]) -> dict[int, int]:
    """The agent's first message after the customer's first one, per conversation."""
    replies: dict[int, int] = {}
    late: list[int] = []  # the agent wrote first: look for their first message after the question
    for cid, question in asked.items():
        first_agent = first_by_sender.get((cid, agents[cid]))
        if first_agent is not None and first_agent > question:
            replies[cid] = first_agent
        elif first_agent is not None:
            late.append(cid)
    for cid in late:
        reply = session.scalar(
            select(func.min(Message.id)).where(
                Message.conversation_id == cid, Message.sender_id == agents[cid], Message.id > asked[cid]
            )
        )
        if reply:
            replies[cid] = reply
    return replies


def _times(session: Session, ids: Iterable[int]) -> dict[int, datetime]:
    result: dict[int, datetime] = {}
    for chunk in _chunks(sorted(set(ids))):
        result.update(session.execute(select(Message.id, Message.created_at).where(Message.id.in_(chunk))).all())
    return result


def _summarize(agent: User, waits: list[float | None]) -> ResponseStats:
    answered = [w for w in waits if w is not None]
    quick = sum(1 for w in answered if w <= ANSWERED_WITHIN.total_seconds())
    return ResponseStats(
        agent=agent,
        conversations=len(waits),
        answered=len(answered),
        median_seconds=statistics.median(answered) if answered else None,
        within_five_minutes=quick / len(waits) if waits else 0.0,
    )
