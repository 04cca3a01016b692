"""Rate limits per person: at most N hits in any window of W seconds (a sliding window), in this process or shared
through Redis.

Used for messages and uploads (429 with a clear message in the composer; nothing is stored).
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
import uuid
import weakref
from collections import defaultdict, deque
from typing import TYPE_CHECKING, Any

from app.realtime.broker import BrokerStatus

if TYPE_CHECKING:
    from redis.commands.core import AsyncScript


class RateLimiter:
    """In one process: an exact sliding window per key."""

    def __init__(self) -> None:
        self._hits: defaultdict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def retry_after(self, key: str, limit: int, window: float) -> int | None:
        """One more hit of `key`, if allowed (at most `limit` in any `window` seconds): then counted, and None; else
        not counted, and the whole seconds to wait before it would be (what a 429's Retry-After says)."""
        now = time.monotonic()
        with self._lock:
            hits = self._hits[key]
            while hits and hits[0] <= now - window:
                hits.popleft()
            if len(hits) >= limit:
                return max(1, math.ceil(hits[0] + window - now))
            hits.append(now)
            return None

    async def retry_after_async(self, key: str, limit: int, window: float) -> int | None:
        """`retry_after` for the event loop: the same count and answer, never blocking the loop (here nothing waits:
        the count is in memory)."""
        return self.retry_after(key, limit, window)


# A sliding log per key: the times (Redis's own clock, so every process agrees) of the hits within the window, in a
# sorted set. Atomic: trim what left the window, refuse at the limit (returning when the oldest hit leaves), or add.
_SLIDING_LOG = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
local window = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', t - window)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return tostring(tonumber(oldest[2]) + window - t)
end
redis.call('ZADD', KEYS[1], t, ARGV[3])
redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000) + 1000)
return false
"""


class RedisRateLimiter(RateLimiter):
    """Across processes: the same sliding window, kept in Redis; falls back to this process when Redis is away."""

    def __init__(self, redis_url: str, prefix: str = "kefu:rate") -> None:
        super().__init__()
        from redis import Redis
        from redis.asyncio import Redis as AsyncRedis

        options = {"socket_connect_timeout": 1, "socket_timeout": 1}
        self._redis = Redis.from_url(redis_url, **options)  # for worker threads
        self._script = self._redis.register_script(_SLIDING_LOG)
        # for the event loop: a synchronous round trip there would stall every stream of the process while Redis
        # answers (up to the 1 s timeout), and on a busy machine even a healthy answer waits for Redis to be scheduled.
        # An asyncio client belongs to the loop it first ran on: one per loop (a server has one; tests start several).
        self._async_redis = lambda: AsyncRedis.from_url(redis_url, **options)
        self._async_scripts: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncScript] = (
            weakref.WeakKeyDictionary())
        self._prefix = prefix
        self._status = BrokerStatus("redis (rate limits)", "each process counts on its own", "counting shared again")

    def retry_after(self, key: str, limit: int, window: float) -> int | None:
        """Count one hit: None if allowed, else whole seconds until it would be (the hit is not counted). At most
        `limit` hits in any `window` seconds, across every process. Blocking (for worker threads)."""
        try:
            wait = self._script(**self._call(key, limit, window))
        except Exception as error:  # Redis away: this process counts alone until it is back
            return self._alone(error, key, limit, window)
        return self._answer(wait)

    async def retry_after_async(self, key: str, limit: int, window: float) -> int | None:
        """`retry_after` awaited on the event loop (redis.asyncio: the loop goes on serving streams meanwhile); the
        same shared count, and the same fallback to this process's count when Redis is away."""
        try:
            wait = await self._loop_script()(**self._call(key, limit, window))
        except Exception as error:  # Redis away: this process counts alone until it is back
            return self._alone(error, key, limit, window)
        return self._answer(wait)

    def _loop_script(self) -> AsyncScript:
        """The sliding-log script on this event loop's own asyncio client."""
        loop = asyncio.get_running_loop()
        script = self._async_scripts.get(loop)
        if script is None:
            script = self._async_scripts[loop] = self._async_redis().register_script(_SLIDING_LOG)
        return script

    def _call(self, key: str, limit: int, window: float) -> dict[str, list[Any]]:
        """The sliding-log script's keys and arguments for one hit of `key`."""
        return {"keys": [f"{self._prefix}:{key}"], "args": [window, limit, uuid.uuid4().hex]}

    def _answer(self, wait: bytes | None) -> int | None:
        """The script's answer (None, or the seconds until the oldest hit leaves) as `retry_after` gives it."""
        self._status.up()
        return None if wait is None else max(1, math.ceil(float(wait)))

    def _alone(self, error: Exception, key: str, limit: int, window: float) -> int | None:
        """Redis failed: note it (logged once per outage) and count in this process alone."""
        self._status.down(error)
        return RateLimiter.retry_after(self, key, limit, window)
