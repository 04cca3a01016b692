"""Typing permits: who may say they type in which conversation, remembered for a few seconds.

A person typing posts a notice every 3 s; checking each against the database (their session and their membership)
cost a worker thread and a query per notice, and 1,000 people typing at once took most of a core
(docs/performance.md). After one check says yes, the next notices of the same session in the same conversation are
let through from memory for PERMIT_SECONDS to twice that. A sign-out in this process forgets the session's permits at
once (app.realtime.signout); other processes forget them within 2 × PERMIT_SECONDS: all a stale permit can do is show
"正在输入…" to the other participant, never write anything.
"""

from __future__ import annotations

import random
import time
from collections import OrderedDict
from collections.abc import Iterable

PERMIT_SECONDS = 10.0
MOST_PERMITS = 100_000  # the oldest go first past this many (about 20 MB at the most)

Key = tuple[str, str, int]  # (session key, user id, conversation id)


class TypingPermits:
    """In-process permits (session key, user id, conversation id) → the conversation's members."""

    def __init__(self, seconds: float = PERMIT_SECONDS, most: int = MOST_PERMITS) -> None:
        self.seconds = seconds
        self.most = most
        self._permits: OrderedDict[Key, tuple[tuple[str, ...], float]] = OrderedDict()

    def participants(self, session_key: str, user_id: str, conversation_id: int) -> tuple[str, ...] | None:
        """The conversation's participants when a permit younger than `seconds` stands, else None."""
        found = self._permits.get((session_key, user_id, conversation_id))
        if found is None or found[1] <= time.monotonic():
            return None
        return found[0]

    def grant(self, session_key: str, user_id: str, conversation_id: int, participants: tuple[str, ...]) -> None:
        """Remember that the database said yes for this session, person and conversation (for `seconds` to twice
        that)."""
        key = (session_key, user_id, conversation_id)
        # between `seconds` and twice that, at random: people who began typing together (a page of them after a
        # restart) do not all come back to the database in the same second
        self._permits[key] = (participants, time.monotonic() + self.seconds * random.uniform(1.0, 2.0))
        self._permits.move_to_end(key)
        while len(self._permits) > self.most:
            self._permits.popitem(last=False)

    def forget_sessions(self, session_keys: Iterable[str]) -> None:
        """Drop every permit of these sessions (they ended here: a sign-out)."""
        ended = set(session_keys)
        for key in [key for key in self._permits if key[0] in ended]:
            del self._permits[key]

    def forget_conversation(self, conversation_id: int) -> None:
        """Drop every permit of this conversation (its members changed: the next notice asks the database again)."""
        for key in [key for key in self._permits if key[2] == conversation_id]:
            del self._permits[key]
