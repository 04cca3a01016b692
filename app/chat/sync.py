"""Walking a conversation list over the API so that nothing is missed, while conversations keep moving.

A list ordered by last activity is not a snapshot: a conversation that gets a message jumps to the top, above a
newest-first walk's cursor, and a walk that only follows that cursor never sees it. Two walks, one cursor type:

- **newest first** (no `updated_since`): the list from the top; when a walk of more than one page reaches the
  bottom it goes on, oldest activity first, through every conversation with activity since the walk began (less
  OVERLAP), so what moved up meanwhile comes at the end. Every conversation at least once.
- **since** (`updated_since`): every conversation whose last activity is at or after a time, oldest activity first
  by (last activity, id). What changes during the walk gets a later activity, so it comes again at the end.

Equal times are told apart by the id. Late commits: a message's activity time is taken inside its transaction,
shortly before the commit, so a conversation can become visible with a time older than rows already returned. The
time a walk hands back for the next sync (`resume_at`) is therefore never later than the walk's start less OVERLAP:
a transaction that takes less than OVERLAP to commit (with application clocks within it) is seen by the next sync.
The price is an overlap: the next sync repeats the conversations active in that window; clients keep the copy with
the latest `last_activity_at` of each id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from app.chat.errors import InvalidInput
from app.chat.paging import ListCursor
from app.db.models import MAX_ID, Conversation, Member, utcnow

# Longer than a message transaction can take from its time to its commit (MariaDB gives up a lock wait after 50 s).
OVERLAP = timedelta(seconds=60)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CURSOR_RE = re.compile(r"([ad])([0-9]{1,19})_([0-9]{1,19})_([0-9]{1,19})")
_MICROSECOND = timedelta(microseconds=1)


def _micros(moment: datetime) -> int:
    return (moment - EPOCH) // _MICROSECOND


def _moment(micros: int) -> datetime:
    try:
        return EPOCH + micros * _MICROSECOND
    except OverflowError as error:
        raise InvalidInput("invalid cursor") from error


@dataclass(frozen=True)
class WalkCursor:
    """Where a walk stands: after (ascending) or before (newest first) the position (activity, conversation id).
    `since`: newest first, where the catch-up part starts; ascending, the walk's start less OVERLAP."""

    ascending: bool
    activity: datetime
    conversation_id: int
    since: datetime

    def encode(self) -> str:
        """An opaque ASCII string: a letter and three numbers."""
        mode = "a" if self.ascending else "d"
        return f"{mode}{_micros(self.activity)}_{self.conversation_id}_{_micros(self.since)}"

    @classmethod
    def decode(cls, raw: str) -> WalkCursor:
        """What `encode` writes, or a newest-first cursor of the older form `<micros>_<id>` (its catch-up part then
        starts OVERLAP before its position). Raises InvalidInput for anything else."""
        match = _CURSOR_RE.fullmatch(raw)
        if match is None:
            older = ListCursor.decode(raw)
            return cls(False, older.activity, older.conversation_id, max(older.activity - OVERLAP, EPOCH))
        cid = int(match[3])
        if cid > MAX_ID:
            raise InvalidInput("invalid cursor")
        return cls(match[1] == "a", _moment(int(match[2])), cid, _moment(int(match[4])))

    @classmethod
    def since_time(cls, updated_since: datetime, now: datetime) -> WalkCursor:
        """The start of a walk through what changed at or after `updated_since` (naive = UTC)."""
        if updated_since.tzinfo is None:
            updated_since = updated_since.replace(tzinfo=UTC)
        start = min(max(updated_since, EPOCH), now)
        return cls(True, start, 0, now - OVERLAP)


@dataclass(frozen=True)
class WalkPage:
    """One page: the conversations, the cursor of the next page (None: the walk is over), and when it is over,
    the time to pass as `updated_since` to the next sync."""

    conversations: list[Conversation]
    next_cursor: WalkCursor | None
    resume_at: datetime | None


def walk(session: Session, user_id: str | None, cursor: WalkCursor | None, limit: int) -> WalkPage:
    """A page of `limit` conversations of `user_id` (None: every conversation). `cursor` None starts a newest-first
    walk now."""
    if cursor is None:
        return _newest_first(session, user_id, None, utcnow() - OVERLAP, limit)
    if cursor.ascending:
        return _ascending(session, user_id, cursor, limit)
    return _newest_first(session, user_id, (cursor.activity, cursor.conversation_id), cursor.since, limit)


def _newest_first(session: Session, user_id: str | None, before: tuple[datetime, int] | None, since: datetime,
                  limit: int) -> WalkPage:
    rows = _rows(session, user_id, before, False, limit + 1)
    page = rows[:limit]
    if len(rows) > limit:
        activity, cid = page[-1][1], page[-1][0].id
        return WalkPage([c for c, _ in page], WalkCursor(False, activity, cid, since), None)
    if before is None:  # one page, read at once: nothing moved during the walk
        return WalkPage([c for c, _ in page], None, since)
    return WalkPage([c for c, _ in page], WalkCursor(True, since, 0, since), None)


def _ascending(session: Session, user_id: str | None, cursor: WalkCursor, limit: int) -> WalkPage:
    rows = _rows(session, user_id, (cursor.activity, cursor.conversation_id), True, limit + 1)
    page = rows[:limit]
    last = (page[-1][1], page[-1][0].id) if page else (cursor.activity, cursor.conversation_id)
    if len(rows) > limit:
        return WalkPage([c for c, _ in page], WalkCursor(True, last[0], last[1], cursor.since), None)
    return WalkPage([c for c, _ in page], None, min(last[0], cursor.since))


def _rows(session: Session, user_id: str | None, position: tuple[datetime, int] | None, ascending: bool,
          limit: int) -> list[tuple[Conversation, datetime]]:
    """Conversations with the activity time they are ordered by, strictly after (or before) `position`."""
    if user_id is not None:  # the person's list, on its index (user_id, last_activity_at, conversation_id)
        activity, cid = Member.last_activity_at, Member.conversation_id
        query = (select(Conversation, activity).join(Member, Member.conversation_id == Conversation.id)
                 .where(Member.user_id == user_id))
    else:
        activity, cid = Conversation.last_activity_at, Conversation.id
        query = select(Conversation, activity)
    if position is not None:
        at, after_id = position
        if ascending:
            query = query.where(or_(activity > at, and_(activity == at, cid > after_id)))
        else:
            query = query.where(or_(activity < at, and_(activity == at, cid < after_id)))
    order = (activity.asc(), cid.asc()) if ascending else (activity.desc(), cid.desc())
    return [(row[0], row[1]) for row in session.execute(query.order_by(*order).limit(limit))]
