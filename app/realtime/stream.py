"""The Server-Sent Events stream of one browser tab.

Order of work on connect: subscribe first, then replay stored messages after Last-Event-ID from the
database, then go live, skipping anything the replay already sent. Every event carries an `id:`, the
highest message id this stream has delivered, so a reconnect resumes exactly where it stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from anyio import to_thread
from litestar.channels import ChannelsPlugin
from litestar.response import ServerSentEventMessage
from sqlalchemy.orm import Session, sessionmaker

from app.chat.messages import messages_after
from app.chat.people import get_users
from app.db.models import Message
from app.realtime.bus import ADMINS, PRESENCE, person_channel
from app.realtime.presence import Presence

log = logging.getLogger("kefu.stream")

REPLAY_BATCH = 200
RETRY_MS = 2000
RenderMessage = Callable[[Message, object], str]


CLOSE = b'{"t": "close"}'


class StreamRegistry:
    """The open streams of each person in this process; past the limit, the oldest one is closed."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._streams: dict[str, deque[asyncio.Queue[bytes]]] = defaultdict(deque)

    def add(self, user_id: str, queue: asyncio.Queue[bytes]) -> None:
        streams = self._streams[user_id]
        streams.append(queue)
        while len(streams) > self.limit:
            streams.popleft().put_nowait(CLOSE)

    def remove(self, user_id: str, queue: asyncio.Queue[bytes]) -> None:
        streams = self._streams.get(user_id)
        if streams is not None:
            with contextlib.suppress(ValueError):
                streams.remove(queue)
            if not streams:
                del self._streams[user_id]


@dataclass(frozen=True)
class Viewer:
    user_id: str
    is_admin: bool = False

    def channels(self) -> list[str]:
        return [ADMINS, PRESENCE] if self.is_admin else [person_channel(self.user_id), PRESENCE]


class EventStream:
    def __init__(
        self,
        viewer: Viewer,
        last_event_id: int,
        channels: ChannelsPlugin,
        presence: Presence,
        sessions: sessionmaker[Session],
        render_message: RenderMessage,
        ping_seconds: float = 15.0,
        registry: StreamRegistry | None = None,
        still_allowed: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self.viewer = viewer
        self.resume_from = last_event_id  # the client had everything up to here
        self.watermark = last_event_id  # highest message id delivered on this stream
        self.replayed: set[int] = set()
        self._channels = channels
        self._presence = presence
        self._sessions = sessions
        self._render = render_message
        self._ping = ping_seconds
        self._registry = registry or StreamRegistry(limit=1_000_000)
        self._still_allowed = still_allowed  # checked at every ping: an ended admin session ends its stream

    async def __aiter__(self) -> AsyncIterator[ServerSentEventMessage]:
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        subscriber = await self._channels.subscribe(self.viewer.channels())
        self._registry.add(self.viewer.user_id, queue)
        try:
            async with subscriber.run_in_background(queue.put, join=False):
                if not self.viewer.is_admin:
                    await self._presence.stream_opened(self.viewer.user_id)
                try:
                    # data=None: a comment only. Litestar's default data="" writes an empty `data:` line, which
                    # EventSource dispatches as a `message` event with empty data and no id.
                    yield ServerSentEventMessage(comment="connected", retry=RETRY_MS, data=None)
                    async for event in self._replay():
                        yield event
                    while True:
                        try:
                            raw = await asyncio.wait_for(queue.get(), self._ping)
                        except TimeoutError:
                            if self._still_allowed is not None and not await self._still_allowed():
                                yield ServerSentEventMessage(event="closed", data="signed-out", id=self.watermark)
                                return
                            yield ServerSentEventMessage(event="ping", data="ping", id=self.watermark)
                            continue
                        data = json.loads(raw)
                        if data.get("t") == "close":  # too many streams: this, the oldest, gives way
                            yield ServerSentEventMessage(event="closed", data="too-many-streams", id=self.watermark)
                            return
                        if data.get("t") == "resync":  # the broker was away: catch up from the database
                            async for event in self._replay():
                                yield event
                            continue
                        event = self._live_event(data)
                        if event is not None:
                            yield event
                finally:
                    if not self.viewer.is_admin:
                        self._presence.stream_closed(self.viewer.user_id)
        finally:
            self._registry.remove(self.viewer.user_id, queue)
            await self._channels.unsubscribe(subscriber)

    async def _replay(self) -> AsyncIterator[ServerSentEventMessage]:
        while True:
            batch = await to_thread.run_sync(self._load_after, self.watermark)
            for message_id, conversation_id, sender_id, html in batch:
                self.replayed.add(message_id)
                yield self._message_event(message_id, conversation_id, sender_id, html)
            if len(batch) < REPLAY_BATCH:
                return

    def _load_after(self, after: int) -> list[tuple[int, int, str, str]]:
        viewer_id = None if self.viewer.is_admin else self.viewer.user_id
        with self._sessions() as session:
            messages = messages_after(session, viewer_id, after, REPLAY_BATCH)
            senders = get_users(session, {m.sender_id for m in messages})
            return [(m.id, m.conversation_id, m.sender_id, self._render(m, senders.get(m.sender_id)))
                    for m in messages]

    def _message_event(self, message_id: int, conversation_id: int, sender_id: str,
                       html: str) -> ServerSentEventMessage:
        self.watermark = max(self.watermark, message_id)
        return ServerSentEventMessage(event="message", data=html, id=self.watermark)

    def _live_event(self, event: dict) -> ServerSentEventMessage | None:
        kind = event.get("t")
        if kind == "message":
            message_id = int(event["id"])
            if message_id <= self.resume_from or message_id in self.replayed:
                return None  # delivered before the reconnect, or by the replay just now
            return self._message_event(message_id, int(event["cid"]), str(event["sender"]), str(event["html"]))
        if kind in {"read", "presence"}:
            data = {k: v for k, v in event.items() if k != "t"}
            return ServerSentEventMessage(event=kind, data=json.dumps(data), id=self.watermark)
        return None
