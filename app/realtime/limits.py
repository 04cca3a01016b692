"""Rate limits per person: at most N hits in any window of W seconds (a sliding window), in this process or shared
through Redis.

Used for messages and uploads (429 with a clear message in the composer; nothing is stored).
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections import defaultdict, deque

from app.realtime.broker import BrokerStatus


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

        self._redis = Redis.from_url(redis_url, socket_connect_timeout=1, socket_timeout=1)
        self._script = self._redis.register_script(_SLIDING_LOG)
        self._prefix = prefix
        self._status = BrokerStatus("redis (rate limits)", "each process counts on its own", "counting shared again")

    def retry_after(self, key: str, limit: int, window: float) -> int | None:
        """Count one hit: None if allowed, else whole seconds until it would be (the hit is not counted). At most
        `limit` hits in any `window` seconds, across every process."""
        try:
            wait = self._script(keys=[f"{self._prefix}:{key}"], args=[window, limit, uuid.uuid4().hex])
        except Exception as error:  # Redis away: this process counts alone until it is back
            self._status.down(error)
            return super().retry_after(key, limit, window)
        self._status.up()
        return None if wait is None else max(1, math.ceil(float(wait)))
