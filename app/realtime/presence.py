"""Who is online: a person is online while at least one of their event streams is open, in any process.

`Presence` counts this process's streams. `RedisPresence` shares the counts between processes and machines:
each process keeps an expiring lease per person in Redis and renews it while it holds a stream; a process
that dies without saying goodbye stops renewing, and the next sweep by any other process announces the
person offline. A short grace period before going offline keeps a page reload from flickering.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any

from anyio import to_thread
from sqlalchemy.orm import Session, sessionmaker

from app.chat.conversations import recent_peers
from app.realtime.broker import BrokerStatus
from app.realtime.bus import PRESENCE, Bus, person_channel

log = logging.getLogger("kefu.presence")

Announce = Callable[[str, bool], Awaitable[None]]


class Presence:
    def __init__(self, announce: Announce, grace_seconds: float = 2.0) -> None:
        self._streams: Counter[str] = Counter()
        self._announce = announce
        self._grace = grace_seconds
        self._pending_offline: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Future[None]] = set()
        self._locks: dict[str, asyncio.Lock] = {}

    def is_online(self, user_id: str) -> bool:
        """Whether the person has an open event stream (see `online`)."""
        return bool(self.online([user_id]))

    def online(self, user_ids: Iterable[str]) -> set[str]:
        """Which of `user_ids` have an open event stream in this process."""
        return {uid for uid in user_ids if self._streams[uid] > 0}

    async def start(self) -> None:
        """Background work (none in one process)."""

    async def stop(self) -> None:
        """Cancels the pending offline announcements: a person whose last stream closed within the grace period is not
        announced offline."""
        for handle in self._pending_offline.values():
            handle.cancel()

    def stream_opened(self, user_id: str) -> None:
        """Count an open stream of the person. Synchronous, so that no cancellation can land between this count and
        the `try` whose `finally` calls stream_closed. Coming online is announced by a task of its own, which a
        stream closed at once cannot cut short."""
        self._streams[user_id] += 1
        pending = self._pending_offline.pop(user_id, None)
        if pending is not None:
            pending.cancel()  # came back within the grace period: never announced offline
        elif self._streams[user_id] == 1:
            self._spawn(self._maybe_online(user_id))

    def stream_closed(self, user_id: str) -> None:
        """Uncount a stream; the last one closed announces the person offline after the grace period."""
        self._streams[user_id] -= 1
        if self._streams[user_id] > 0:
            return
        del self._streams[user_id]
        loop = asyncio.get_running_loop()
        self._pending_offline[user_id] = loop.call_later(self._grace, self._spawn_offline_check, user_id)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _spawn_offline_check(self, user_id: str) -> None:
        self._spawn(self._maybe_offline(user_id))  # created only when the timer fires

    async def _maybe_online(self, user_id: str) -> None:
        if await self._first_stream(user_id):
            await self._announce_if_true(user_id, True)

    async def _maybe_offline(self, user_id: str) -> None:
        self._pending_offline.pop(user_id, None)
        if self._streams[user_id] == 0 and await self._last_stream(user_id):
            await self._announce_if_true(user_id, False)

    async def _announce_if_true(self, user_id: str, online: bool) -> None:
        """Announcements of one person take turns, and each is made only if it is still true when its turn comes:
        an online announcement that is slow (Redis, the database) can never land after the offline one."""
        lock = self._locks.setdefault(user_id, asyncio.Lock())
        try:
            async with lock:
                if (self._streams[user_id] > 0) == online:
                    await self._announce(user_id, online)
        finally:
            if not lock.locked() and self._locks.get(user_id) is lock:
                del self._locks[user_id]

    async def _first_stream(self, user_id: str) -> bool:
        """This process holds its first stream of the person: announce online?"""
        return True

    async def _last_stream(self, user_id: str) -> bool:
        """This process closed its last stream of the person: announce offline?"""
        return True


class RedisPresence(Presence):
    LEASE_SECONDS = 30.0
    RENEW_SECONDS = 10.0

    def __init__(self, announce: Announce, redis_url: str, grace_seconds: float = 2.0,
                 prefix: str = "kefu:presence") -> None:
        super().__init__(announce, grace_seconds)
        from redis import Redis as SyncRedis
        from redis.asyncio import Redis

        options = {"socket_connect_timeout": 2, "socket_timeout": 3}
        self._redis = Redis.from_url(redis_url, **options)
        self._sync = SyncRedis.from_url(redis_url, **options)  # for page renders in worker threads
        self._process = uuid.uuid4().hex
        self._prefix = prefix
        self._leases = f"{prefix}:leases"  # sorted set of "user|process", scored by expiry
        self._task: asyncio.Task[None] | None = None
        self._status = BrokerStatus("redis (presence)", "who is online comes from this process alone",
                                    "presence shared again")

    def _key(self, user_id: str) -> str:
        return f"{self._prefix}:user:{user_id}"

    def online(self, user_ids: Iterable[str]) -> set[str]:
        """Which of `user_ids` have an open stream in this process or an unexpired lease in Redis (any process).
        Blocking (a synchronous Redis round trip: 2 s to connect, 3 s to answer at most), so for worker threads, not the
        event loop; when Redis fails, what this process knows."""
        ids = list(dict.fromkeys(user_ids))
        if not ids:
            return set()
        local = super().online(ids)
        try:
            with self._sync.pipeline(transaction=False) as pipe:
                for uid in ids:
                    pipe.hvals(self._key(uid))
                results = pipe.execute()
        except Exception as error:  # Redis away: what this process knows is the best answer
            self._status.down(error)
            return local
        self._status.up()
        now = time.time()
        shared = {uid for uid, expiries in zip(ids, results, strict=True) if any(float(e) > now for e in expiries)}
        return local | shared

    async def _first_stream(self, user_id: str) -> bool:
        try:
            others = await self._live_elsewhere(user_id)
            await self._renew([user_id])
        except Exception:
            log.warning("presence: Redis unavailable; announcing %s from this process only", user_id)
            return True
        return not others

    async def _last_stream(self, user_id: str) -> bool:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hdel(self._key(user_id), self._process)
                pipe.zrem(self._leases, f"{user_id}|{self._process}")
                await pipe.execute()
            return not await self._live_elsewhere(user_id)
        except Exception:
            log.warning("presence: Redis unavailable; announcing %s offline from this process only", user_id)
            return True

    async def _live_elsewhere(self, user_id: str) -> bool:
        now = time.time()
        leases = await self._redis.hgetall(self._key(user_id))
        return any(float(expiry) > now for process, expiry in leases.items() if process.decode() != self._process)

    async def _renew(self, user_ids: list[str]) -> None:
        expiry = time.time() + self.LEASE_SECONDS
        async with self._redis.pipeline(transaction=False) as pipe:
            for uid in user_ids:
                pipe.hset(self._key(uid), self._process, expiry)
                pipe.expire(self._key(uid), int(self.LEASE_SECONDS * 4))
                pipe.zadd(self._leases, {f"{uid}|{self._process}": expiry})
            await pipe.execute()

    async def sweep(self) -> None:
        """Leases that ran out belong to processes that died: whoever removes one announces the offline."""
        now = time.time()
        for member in await self._redis.zrangebyscore(self._leases, 0, now):
            if not await self._redis.zrem(self._leases, member):
                continue  # another process took this one
            user_id, _, process = member.decode().partition("|")
            await self._redis.hdel(self._key(user_id), process)
            if not super().online([user_id]) and not await self._live_elsewhere(user_id):
                await self._announce(user_id, False)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.RENEW_SECONDS)
            try:
                if self._streams:
                    await self._renew(list(self._streams))
                await self.sweep()
            except Exception as error:  # Redis away: try again next round
                log.debug("presence renewal failed: %s", error)

    async def start(self) -> None:
        """Starts the background task that, every RENEW_SECONDS (10 s), renews this process's leases (LEASE_SECONDS,
        30 s) and sweeps out the expired ones (`sweep`)."""
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stops the renewal task, removes this process's leases of the people it holds streams of and announces offline
        those not online elsewhere (Redis errors ignored), then closes the Redis clients."""
        await super().stop()
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):  # a clean stop says goodbye; a crash leaves leases to expire
            for uid in list(self._streams):
                if await self._last_stream(uid):
                    await self._announce(uid, False)
        await self._redis.aclose()
        self._sync.close()


def presence_announcer(bus: Bus, sessions: sessionmaker[Session]) -> Announce:
    """How a person's coming online or going offline is told: to the people who have a conversation with them (their
    own channels) and to the admins (PRESENCE). Not to everyone, which made every connect O(people online) and a
    reconnect storm O(N²). With the database away, the admins still hear it."""

    def audience(user_id: str) -> list[str]:
        with sessions() as session:
            return [person_channel(peer) for peer in recent_peers(session, user_id)] + [PRESENCE]

    async def announce(user_id: str, online: bool) -> None:
        try:
            channels = await to_thread.run_sync(audience, user_id)
        except Exception:
            log.exception("presence audience of %s", user_id)
            channels = [PRESENCE]
        await bus.publish({"t": "presence", "user": user_id, "online": online}, channels)

    return announce


def make_presence(broker_url: str, announce: Announce) -> Presence:
    """Who is online, shared between processes through Redis (RedisPresence) when there is a broker (KEFU_BROKER_URL),
    else counted in this process; `announce` tells of a person coming online or going offline."""
    return RedisPresence(announce, broker_url) if broker_url else Presence(announce)
