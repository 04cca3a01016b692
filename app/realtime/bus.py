"""The event bus: small JSON events on Litestar channels, one channel per person plus `admins` and `presence`.

In-process (memory backend) by default; KEFU_BROKER_URL=redis://… fans out across processes and machines.
Events carry ids and, for messages, the message's HTML rendered once by the sender's request.
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

from litestar.channels import ChannelsPlugin
from litestar.channels.backends.base import ChannelsBackend
from litestar.channels.backends.memory import MemoryChannelsBackend

from app.chat.members import MemberChange
from app.chat.messages import Sent
from app.chat.orders import Pushed, audience
from app.chat.recall import Recalled
from app.db.models import User
from app.realtime.broker import BrokerStatus, ResilientRedisBackend, channel_namespace
from app.realtime.typing import TypingPermits
from app.templating import render_message

log = logging.getLogger("kefu.bus")

ADMINS = "admins"
PRESENCE = "presence"
# A person's page says it is typing at most this often per conversation (the server drops what comes faster);
# the other side shows "正在输入…" for TYPING_SHOWN_SECONDS after each, or until the message arrives (kefu.js).
TYPING_EVERY_SECONDS = 3.0
TYPING_SHOWN_SECONDS = 6.0


def person_channel(user_id: str) -> str:
    """The channel of one person's events: "user:<user id>"."""
    return f"user:{user_id}"


def make_channels_plugin(broker_url: str, status: BrokerStatus, namespace: str = "") -> ChannelsPlugin:
    """Litestar channels: in memory, or Redis at `broker_url` with this deployment's channel namespace
    (`namespace`: KEFU_BROKER_NAMESPACE, else derived from the URL's database)."""
    if broker_url:
        from redis.asyncio import Redis

        redis = Redis.from_url(broker_url, socket_connect_timeout=2, health_check_interval=15)
        backend: ChannelsBackend = ResilientRedisBackend(
            redis=redis, status=status, namespace=channel_namespace(broker_url, namespace))
    else:
        backend = MemoryChannelsBackend()
    # No backlog limit: a full subscriber queue drops events silently, and a stream is its queue (a slow tab must
    # get every message). Queued events are the same bytes objects for every stream: 8 bytes each per stream.
    return ChannelsPlugin(backend=backend, arbitrary_channels_allowed=True, subscriber_max_backlog=None)


class Delivery(NamedTuple):
    """A stored message rendered once, and the events that tell of it (each with its channels), not yet published."""

    html: str
    events: list[tuple[dict[str, Any], list[str]]]


class Bus:
    """Publishes domain events to the channels of the people who may see them."""

    def __init__(self, plugin: ChannelsPlugin) -> None:
        self.plugin = plugin
        self.typing_permits = TypingPermits()  # who may say they type where, for a few seconds (no query)

    async def publish(self, event: dict[str, Any], channels: list[str]) -> None:
        """Publish one event on `channels` from the event loop; a broker failure is logged, not raised (what was
        stored reaches the streams by replay)."""
        try:
            await self.plugin.wait_published(event, channels)
        except Exception:  # the message is stored: streams catch up by replay
            log.exception("could not publish %s event", event.get("t"))

    @staticmethod
    def conversation_channels(participant_ids: tuple[str, ...]) -> list[str]:
        """The channels that hear of a conversation: its members' and the admins'."""
        return [person_channel(uid) for uid in participant_ids] + [ADMINS]

    def delivery(self, sent: Sent, sender: User | None) -> Delivery:
        """The one delivery of every sent message (text, quick reply, file, API message, notice): its HTML, the
        `message` event for both participants and the admins, carrying a read receipt when sending moved the
        sender's read watermark past unread messages (streams write it as a `read` event after the message).
        A repeated (idempotent) request was announced the first time."""
        message = sent.message
        html = render_message(message, sender)
        if sent.repeated:
            return Delivery(html, [])
        event: dict[str, Any] = {"t": "message", "id": message.id, "cid": message.conversation_id,
                                 "sender": message.sender_id, "html": html}
        if sent.read_up_to is not None:  # one published event; each stream writes it as `message` then `read`
            event["read"] = {"cid": message.conversation_id, "user": message.sender_id, "upto": sent.read_up_to}
        return Delivery(html, [(event, self.conversation_channels(sent.participants))])

    async def deliver(self, delivery: Delivery) -> None:
        """Publish a delivery's events from the event loop, in order (never from a worker thread)."""
        for event, channels in delivery.events:
            await self.publish(event, channels)

    def read_delivery(self, conversation_id: int, participant_ids: tuple[str, ...], reader_id: str,
                      up_to: int) -> Delivery:
        """Both sides (and the admins) hear that `reader_id` has read `conversation_id` up to message `up_to`."""
        event = {"t": "read", "cid": conversation_id, "user": reader_id, "upto": up_to}
        return Delivery("", [(event, self.conversation_channels(participant_ids))])

    def recall_delivery(self, recalled: Recalled) -> Delivery:
        """The members hear `recall` with the tombstone's HTML; the admins, and the platform's member of an
        intervention, with the original marked recalled (their view keeps it as evidence). A repeated recall was
        announced the first time."""
        message = recalled.message
        sender = message.author
        people = render_message(message, sender)
        if recalled.repeated:
            return Delivery(people, [])
        admins = render_message(message, sender, monitor=True)
        base = {"t": "recall", "cid": message.conversation_id, "mid": message.id}
        parties = [person_channel(uid) for uid in recalled.participants if uid != recalled.support_id]
        keepers = [ADMINS] + ([person_channel(recalled.support_id)] if recalled.support_id else [])
        return Delivery(people, [({**base, "html": people}, parties), ({**base, "html": admins}, keepers)])

    def member_delivery(self, change: MemberChange) -> Delivery:
        """Everyone in the conversation before and after the change, and the admins, hear `member` (who joined or
        left); then the notices it posted, as any message."""
        event = {"t": "member", "cid": change.conversation_id, "user": change.user_id, "action": change.action}
        events = [(event, self.conversation_channels(change.audience))]
        for sent in change.notices:
            events += self.delivery(sent, None).events
        return Delivery("", events)

    def order_delivery(self, pushed: Pushed, support_id: str) -> Delivery:
        """An order that changed: its buyer, its merchant and the platform's support person hear `order` (their
        orders panels refresh); then the notice it posted, as any message. A repeat tells nobody."""
        if not pushed.changed:
            return Delivery("", [])
        order = pushed.order
        event = {"t": "order", "order_no": order.order_no, "status": order.status, "buyer": order.buyer_id,
                 "merchant": order.merchant_id}
        events = [(event, [person_channel(uid) for uid in dict.fromkeys(audience(order, support_id))])]
        if pushed.notice is not None:
            events += self.delivery(pushed.notice, None).events
        return Delivery("", events)

    def typing_delivery(self, conversation_id: int, participant_ids: tuple[str, ...], typist_id: str) -> Delivery:
        """The other participant and the admins hear that `typist_id` is typing in `conversation_id` (never
        stored; the page shows it for a few seconds)."""
        event = {"t": "typing", "cid": conversation_id, "user": typist_id}
        others = [person_channel(uid) for uid in participant_ids if uid != typist_id]
        return Delivery("", [(event, [*others, ADMINS])])
