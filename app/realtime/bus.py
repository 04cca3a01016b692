"""The event bus: small JSON events on Litestar channels, one channel per person plus `admins` and `presence`.

In-process (memory backend) by default; KEFU_BROKER_URL=redis://… fans out across processes and machines.
Events carry ids and, for messages, the message's HTML rendered once by the sender's request.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, NamedTuple

from litestar.channels import ChannelsPlugin
from litestar.channels.backends.base import ChannelsBackend
from litestar.channels.backends.memory import MemoryChannelsBackend

from app.db.models import Conversation, Message, User
from app.realtime.broker import BrokerStatus, ResilientRedisBackend
from app.templating import render_message

log = logging.getLogger("kefu.bus")

ADMINS = "admins"
PRESENCE = "presence"


def person_channel(user_id: str) -> str:
    return f"user:{user_id}"


def make_channels_plugin(broker_url: str, status: BrokerStatus) -> ChannelsPlugin:
    if broker_url:
        from redis.asyncio import Redis

        redis = Redis.from_url(broker_url, socket_connect_timeout=2, health_check_interval=15)
        backend: ChannelsBackend = ResilientRedisBackend(redis=redis, status=status)
    else:
        backend = MemoryChannelsBackend()
    # No backlog limit: a full subscriber queue drops events silently, and a stream is its queue (a slow tab must
    # get every message). Queued events are the same bytes objects for every stream: 8 bytes each per stream.
    return ChannelsPlugin(backend=backend, arbitrary_channels_allowed=True, subscriber_max_backlog=None)


class Announcement(NamedTuple):
    html: str
    event: dict[str, Any]
    channels: list[str]


class Bus:
    """Publishes domain events to the channels of the people who may see them."""

    def __init__(self, plugin: ChannelsPlugin) -> None:
        self.plugin = plugin
        self.loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        """Remember the server's event loop, for publishing from the worker threads of sync handlers."""
        self.loop = asyncio.get_running_loop()

    async def publish(self, event: dict[str, Any], channels: list[str]) -> None:
        try:
            await self.plugin.wait_published(event, channels)
        except Exception:  # the message is stored: streams catch up by replay
            log.exception("could not publish %s event", event.get("t"))

    def publish_from_thread(self, event: dict[str, Any], channels: list[str]) -> None:
        """For sync handlers, which Litestar runs in worker threads: returns once the event is published."""
        if self.loop is None:
            raise RuntimeError("Bus.start() was not called")
        asyncio.run_coroutine_threadsafe(self.publish(event, channels), self.loop).result(timeout=10)

    @staticmethod
    def conversation_channels(participant_ids: tuple[str, str]) -> list[str]:
        return [person_channel(uid) for uid in participant_ids] + [ADMINS]

    def message_created(self, message: Message, sender: User | None,
                        participant_ids: tuple[str, str]) -> Announcement:
        """A stored message rendered once, and its event for both participants and the admins (not yet sent)."""
        html = render_message(message, sender)
        event = {"t": "message", "id": message.id, "cid": message.conversation_id, "sender": message.sender_id,
                 "html": html}
        return Announcement(html, event, self.conversation_channels(participant_ids))

    def announce(self, message: Message, sender: User | None, conversation: Conversation) -> str:
        """From a worker thread: render a stored message and publish it; returns the HTML."""
        announcement = self.message_created(message, sender, (conversation.user_a, conversation.user_b))
        self.publish_from_thread(announcement.event, announcement.channels)
        return announcement.html

    def read_moved(self, conversation_id: int, participant_ids: tuple[str, str], reader_id: str,
                   up_to: int) -> None:
        event = {"t": "read", "cid": conversation_id, "user": reader_id, "upto": up_to}
        self.publish_from_thread(event, self.conversation_channels(participant_ids))
