"""Rate limits per person: sliding windows in this process, or fixed windows shared through Redis.

Used for messages and uploads (429 with a clear message in the composer; nothing is stored).
"""

from __future__ import annotations

import math
import threading
import time
from collections import defaultdict, deque


class RateLimiter:
    """In one process: an exact sliding window per key."""

    def __init__(self) -> None:
        self._hits: defaultdict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def hit(self, key: str, limit: int, window: float) -> int | None:
        """Count one hit; None if allowed, else the seconds to wait (the hit is not counted)."""
        now = time.monotonic()
        with self._lock:
            hits = self._hits[key]
            while hits and hits[0] <= now - window:
                hits.popleft()
            if len(hits) >= limit:
                return max(1, math.ceil(hits[0] + window - now))
            hits.append(now)
            return None


class RedisRateLimiter(RateLimiter):
    """Across processes: a counter per key and window in Redis; falls back to this process when Redis is away."""

    def __init__(self, redis_url: str, prefix: str = "kefu:rate") -> None:
        super().__init__()
        from redis import Redis

        self._redis = Redis.from_url(redis_url, socket_connect_timeout=1, socket_timeout=1)
        self._prefix = prefix

    def hit(self, key: str, limit: int, window: float) -> int | None:
        now = time.time()
        slot = int(now // window)
        redis_key = f"{self._prefix}:{key}:{slot}"
        try:
            with self._redis.pipeline() as pipe:
                pipe.incr(redis_key)
                pipe.expire(redis_key, math.ceil(window) + 1)
                count, _ = pipe.execute()
        except Exception:
            return super().hit(key, limit, window)
        if count > limit:
            return max(1, math.ceil((slot + 1) * window - now))
        return None
