"""Keyset pages: a page is fetched with one row more than it shows, and continues strictly after its last row
(no OFFSET: a page costs the same however deep it is, and rows arriving meanwhile neither repeat nor vanish)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from sqlalchemy import ColumnElement, and_, or_

from app.chat.errors import InvalidInput
from app.db.models import MAX_ID

T = TypeVar("T")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CURSOR_RE = re.compile(r"([0-9]{1,19})_([0-9]{1,19})")


def id_from(raw: str) -> int | None:
    """An id as a URL or cursor writes it: ASCII digits (no sign, no `_`, at most 19) of a positive integer a BIGINT
    column holds (MAX_ID); None for anything else."""
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19:
        return None
    value = int(raw)
    return value if 0 < value <= MAX_ID else None


def page_of(rows: Sequence[T], limit: int) -> tuple[list[T], bool]:
    """`rows` fetched with LIMIT `limit` + 1: the page (at most `limit` rows) and whether another page follows."""
    return list(rows[:limit]), len(rows) > limit


@dataclass(frozen=True)
class ListCursor:
    """Keyset position in a conversation list: strictly older than (activity time, conversation id)."""

    activity: datetime
    conversation_id: int

    def encode(self) -> str:
        """The cursor as "<activity time in microseconds since the Unix epoch>_<conversation id>", which `decode` reads
        back exactly."""
        # Integer arithmetic: a float timestamp loses the exact microsecond (after 2038), and then
        # conversations that share the cursor's activity time would be skipped.
        micros = (self.activity - _EPOCH) // timedelta(microseconds=1)
        return f"{micros}_{self.conversation_id}"

    @classmethod
    def decode(cls, raw: str) -> ListCursor:
        """Only what `encode` writes: two ASCII numbers (no sign, no `_` digit groups), the id a valid one."""
        match = _CURSOR_RE.fullmatch(raw)
        if match is None:
            raise InvalidInput("invalid cursor")
        micros, cid = int(match[1]), id_from(match[2])
        if cid is None:
            raise InvalidInput("invalid cursor")
        try:
            activity = _EPOCH + timedelta(microseconds=micros)
        except OverflowError as error:
            raise InvalidInput("invalid cursor") from error
        return cls(activity, cid)


def older_than(activity: ColumnElement[datetime], key: ColumnElement[int], before: ListCursor) -> ColumnElement[bool]:
    """The keyset condition of a list ordered by (`activity` desc, `key` desc): rows strictly after `before`."""
    return or_(activity < before.activity, and_(activity == before.activity, key < before.conversation_id))
