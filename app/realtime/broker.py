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
    """Whether the broker answers; logs each change once, not each failure. `kind` names the broker (or what uses
    it), `meanwhile` what happens while it is away, and `back` what happens when it returns."""

    def __init__(self, kind: str, meanwhile: str = "pages and messages keep working; live delivery paused",
                 back: str = "streams catch up by replay") -> None:
        self.kind = kind
        self.meanwhile = meanwhile
        self.back = back
        self.ok = True
        self.reason = ""

    def down(self, error: BaseException) -> None:
        """Marks the broker unavailable, `error` being the reason /healthz shows; logs only when it was up."""
        if self.ok:
            log.error("broker %s unavailable: %s: %s (%s)", self.kind, type(error).__name__, error, self.meanwhile)
        self.ok = False
        self.reason = f"{type(error).__name__}: {error}"

    def up(self) -> None:
        """Marks the broker available again; logs only when it was down."""
        if not self.ok:
            log.warning("broker %s is back: %s", self.kind, self.back)
        self.ok = True
        self.reason = ""


def channel_namespace(broker_url: str, explicit: str = "") -> str:
    """What every pub/sub channel name of this deployment starts with. Redis keys live in the URL's database, but
    pub/sub channels are shared by every database of a server: without this, a staging deployment on db 6 and
    production on db 5 heard each other's messages. KEFU_BROKER_NAMESPACE when set, else "kefu:<database number>:"."""
    if explicit:
        return f"{explicit}:"
    from redis.connection import parse_url

    try:
        database = parse_url(broker_url).get("db", 0)
    except ValueError:
        database = 0
    return f"kefu:{database}:"


class ResilientRedisBackend(RedisChannelsPubSubBackend):
    """Litestar's Redis pub/sub backend that survives outages and keeps its channels in the deployment's namespace
    (channel_namespace): the app names channels as ever, Redis sees them prefixed."""

    def __init__(self, redis: Redis, status: BrokerStatus, namespace: str = "kefu:0:",
                 key_prefix: str = "kefu_channels") -> None:
        super().__init__(redis=redis, key_prefix=key_prefix)
        self.status = status
        self.namespace = namespace
        # redis-py's PubSub opens its connection on the first subscribe; two first subscribes at once each
        # open one and only the last is read, so streams opened together went deaf. One at a time.
        self._subscribing = asyncio.Lock()

    def _named(self, channels: Any) -> list[str]:
        return [self.namespace + channel for channel in channels]

    def _unnamed(self, channel: str) -> str:
        return channel[len(self.namespace):] if channel.startswith(self.namespace) else channel

    async def subscribe(self, channels: Any) -> None:
        """Subscribe to these channels (in this deployment's namespace), one subscribe at a time."""
        async with self._subscribing:
            await super().subscribe(self._named(channels))

    async def unsubscribe(self, channels: Any) -> None:
        """Unsubscribe from these channels (in this deployment's namespace)."""
        async with self._subscribing:
            await super().unsubscribe(self._named(channels))

    async def publish(self, data: bytes, channels: Any) -> None:
        """Publish on these channels of this deployment; an outage is noted on /healthz and raised."""
        try:
            await super().publish(data, self._named(channels))
        except (RedisError, OSError) as error:
            self.status.down(error)
            raise
        self.status.up()

    async def stream_events(self) -> AsyncGenerator[tuple[str, Any], None]:
        """(channel, data) of every event on the subscribed channels, channel names without the namespace. Never ends:
        when Redis fails, the outage is noted and Redis pinged again after 0.2 s, the wait doubling up to 5 s; once it
        answers, every subscribed channel gets a `resync` event (RESYNC)."""
        delay = 0.2
        while True:
            try:
                async for channel, data in super().stream_events():
                    yield self._unnamed(channel), data
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
        """The channels this process listens on, without the namespace (those being unsubscribed left out)."""
        pubsub = self._pub_sub
        return [self._unnamed(c.decode()) for c in pubsub.channels.keys() - pubsub.pending_unsubscribe_channels]
