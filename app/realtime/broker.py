"""The Redis broker behind Litestar channels, made to survive Redis going away.

Litestar's Redis pub/sub backend stops listening for good on the first connection error. This subclass
keeps listening: it reports the outage once (BrokerStatus, shown on /healthz), retries with backoff, and
when Redis is back it hands every subscribed channel a `resync` event, upon which each open stream replays
from the database whatever was stored meanwhile. Pages and messages never depended on Redis.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator
from typing import Any

from litestar.channels.backends.redis import RedisChannelsPubSubBackend
from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger("kefu.broker")

RESYNC = json.dumps({"t": "resync"}).encode()


class BrokerStatus:
    """Whether the broker answers; logs each change once, not each failure."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.ok = True
        self.reason = ""

    def down(self, error: BaseException) -> None:
        if self.ok:
            log.error("broker %s unavailable: %s: %s (pages and messages keep working; live delivery paused)",
                      self.kind, type(error).__name__, error)
        self.ok = False
        self.reason = f"{type(error).__name__}: {error}"

    def up(self) -> None:
        if not self.ok:
            log.warning("broker %s is back: streams catch up by replay", self.kind)
        self.ok = True
        self.reason = ""


class ResilientRedisBackend(RedisChannelsPubSubBackend):
    def __init__(self, redis: Redis, status: BrokerStatus, key_prefix: str = "kefu_channels") -> None:
        super().__init__(redis=redis, key_prefix=key_prefix)
        self.status = status
        # redis-py's PubSub opens its connection on the first subscribe; two first subscribes at once each
        # open one and only the last is read, so streams opened together went deaf. One at a time.
        self._subscribing = asyncio.Lock()

    async def subscribe(self, channels: Any) -> None:
        async with self._subscribing:
            await super().subscribe(channels)

    async def unsubscribe(self, channels: Any) -> None:
        async with self._subscribing:
            await super().unsubscribe(channels)

    async def publish(self, data: bytes, channels: Any) -> None:
        try:
            await super().publish(data, channels)
        except (RedisError, OSError) as error:
            self.status.down(error)
            raise
        self.status.up()

    async def stream_events(self) -> AsyncGenerator[tuple[str, Any], None]:
        delay = 0.2
        while True:
            try:
                async for event in super().stream_events():
                    yield event
            except (RedisError, OSError) as error:
                self.status.down(error)
            while True:  # wait for Redis to answer again
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                try:
                    await self._redis.ping()
                    break
                except (RedisError, OSError) as error:
                    self.status.down(error)
            delay = 0.2
            self.status.up()
            for channel in self.subscribed_channels():
                yield channel, RESYNC

    def subscribed_channels(self) -> list[str]:
        pubsub = self._pub_sub
        return [c.decode() for c in pubsub.channels.keys() - pubsub.pending_unsubscribe_channels]
