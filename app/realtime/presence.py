"""Who is online: a person is online while at least one of their event streams is open.

A short grace period before going offline keeps a page reload (close, then reopen) from flickering.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable

Announce = Callable[[str, bool], Awaitable[None]]


class Presence:
    def __init__(self, announce: Announce, grace_seconds: float = 2.0) -> None:
        self._streams: Counter[str] = Counter()
        self._announce = announce
        self._grace = grace_seconds
        self._pending_offline: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def is_online(self, user_id: str) -> bool:
        return self._streams[user_id] > 0

    def online(self, user_ids: Iterable[str]) -> set[str]:
        return {uid for uid in user_ids if self._streams[uid] > 0}

    async def stream_opened(self, user_id: str) -> None:
        self._streams[user_id] += 1
        pending = self._pending_offline.pop(user_id, None)
        if pending is not None:
            pending.cancel()  # came back within the grace period: never announced offline
        elif self._streams[user_id] == 1:
            await self._announce(user_id, True)

    def stream_closed(self, user_id: str) -> None:
        self._streams[user_id] -= 1
        if self._streams[user_id] > 0:
            return
        del self._streams[user_id]
        loop = asyncio.get_running_loop()
        self._pending_offline[user_id] = loop.call_later(self._grace, self._go_offline, user_id)

    def _go_offline(self, user_id: str) -> None:
        self._pending_offline.pop(user_id, None)
        if self._streams[user_id] == 0:
            task = asyncio.get_running_loop().create_task(self._announce(user_id, False))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
