"""The Server-Sent Events stream of one browser tab.

Order of work on connect: subscribe first, then replay stored messages from the database, from a short look-back
before Last-Event-ID (a message with a lower id may have committed after it was shown: see
`app.chat.messages.replay_start`), then go live, skipping anything the replay already sent. Every event carries an
`id:`, the highest message id this stream has delivered, so a reconnect resumes where it stopped; the page drops what
it already has by message id.

Built to hold ten thousand idle streams per process: each stream is one async generator reading its channel
subscriber's queue, with no task, queue or timer of its own. Pings come from one ticker for all streams
(`StreamRegistry.run_pings`), and an event published to many streams is decoded and encoded once
(`frame_of`), so a stream only adds its own `id:` line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import anyio
from anyio import to_thread
from litestar.channels import ChannelsPlugin, Subscriber
from sqlalchemy.orm import Session, sessionmaker

from app.chat.messages import latest_message_id, messages_after, replay_start
from app.chat.people import get_users
from app.chat.recall import recalls_to_replay
from app.db.models import Message
from app.realtime.bus import ADMINS, PRESENCE, person_channel
from app.realtime.presence import Presence

log = logging.getLogger("kefu.stream")

REPLAY_LIMIT = 300  # messages one stream open may replay; past it, the page reloads from the server instead
RETRY_MS = 2000
RenderMessage = Callable[[Message, object, bool], str]  # (message, its sender, for the monitor)

# Put straight into a subscriber's queue by this process (never published): compared by value.
PING = b"ping"
CLOSE = b"close"  # too many streams of one person: the oldest gives way
RESTART = b"restart"  # this process is stopping: the stream ends, and the browser reconnects (to another process)

# data=None in SSE terms: a comment only. An empty `data:` line would make EventSource dispatch an empty message.
CONNECTED = f": connected\nretry: {RETRY_MS}\n\n".encode()
# A stopping process spreads its streams' reconnects over this window (milliseconds), not all at one instant.
RESTART_RETRY_MS = (250, 3000)
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def sse_fields(event: str, data: str) -> bytes:
    """`event:` and `data:` lines of one SSE event, with its blank line; `id:` is added per stream."""
    lines = "".join(f"data: {line}\n" for line in _LINE_BREAK.split(data))
    return f"event: {event}\n{lines}\n".encode()


def recall_fields(conversation_id: int, message_id: int, html: str) -> bytes:
    """The `recall` event's lines: data {"conversation_id", "message_id", "html"} (the message as it now shows)."""
    return sse_fields("recall", json.dumps({"conversation_id": conversation_id, "message_id": message_id,
                                            "html": html}, ensure_ascii=False))


def with_id(event_id: int, fields: bytes) -> bytes:
    """`fields` (one SSE event's lines) preceded by the `id: <event_id>` line."""
    return b"id: %d\n%b" % (event_id, fields)


PING_FIELDS = sse_fields("ping", "ping")
STALE_FIELDS = sse_fields("stale", "reload")
SIGNED_OUT_FIELDS = sse_fields("closed", "signed-out")


class Frame(NamedTuple):
    """A published event, decoded once for every stream that receives it."""

    # message, read, presence, recall, typing, member, order, resync, signed_out, or "" (unknown to this version)
    kind: str
    message_id: int = 0
    fields: bytes = b""
    then: bytes = b""  # a second event sent right after (a message's read receipt), its fields without `id:`
    sessions: frozenset[str] = frozenset()  # signed_out: the sessions that ended (app/realtime/signout.py)


@lru_cache(maxsize=4096)
def frame_of(raw: bytes) -> Frame:
    """The channels plugin hands the same bytes object to every subscriber, so this cache decodes each published
    event once per process, however many streams it goes to."""
    try:
        event = json.loads(raw)
        kind = event.get("t")
        if kind == "message":
            read = event.get("read")  # the sender's watermark passed unread messages: a receipt follows
            then = sse_fields("read", json.dumps(read)) if isinstance(read, dict) else b""
            return Frame("message", int(event["id"]), sse_fields("message", str(event["html"])), then)
        if kind in ("read", "presence"):
            data = json.dumps({k: v for k, v in event.items() if k != "t"})
            return Frame(kind, 0, sse_fields(kind, data))
        if kind == "recall":
            return Frame(kind, 0, recall_fields(int(event["cid"]), int(event["mid"]), str(event["html"])))
        if kind == "order":
            data = json.dumps({"order_no": str(event["order_no"]), "status": str(event["status"]),
                               "buyer_id": str(event["buyer"]), "merchant_id": str(event["merchant"])},
                              ensure_ascii=False)
            return Frame(kind, 0, sse_fields(kind, data))
        if kind == "member":
            data = json.dumps({"conversation_id": int(event["cid"]), "user_id": str(event["user"]),
                               "action": str(event["action"])})
            return Frame(kind, 0, sse_fields(kind, data))
        if kind == "typing":
            data = json.dumps({"conversation_id": int(event["cid"]), "user_id": str(event["user"])})
            return Frame(kind, 0, sse_fields(kind, data))
        if kind == "resync":
            return Frame("resync")
        if kind == "signed_out":
            return Frame("signed_out", sessions=frozenset(str(key) for key in event["sessions"]))
    except (ValueError, KeyError, TypeError, AttributeError):
        log.warning("ignored a malformed event: %r", raw[:200])
    return Frame("")


class StreamRegistry:
    """The open streams of this process: per person (past the limit, the oldest is closed), and in ping slots.

    One ticker pings every stream once per `ping_seconds`, a slot at a time, so that 10,000 streams do not all
    write at the same instant and no stream needs a timer of its own."""

    def __init__(self, limit: int, ping_seconds: float = 15.0) -> None:
        self.limit = limit
        self.ping_seconds = ping_seconds
        self._by_person: dict[str, deque[Subscriber]] = defaultdict(deque)
        self._slots: list[set[Subscriber]] = [set() for _ in range(max(1, min(15, int(ping_seconds))))]
        self._slot_of: dict[Subscriber, int] = {}
        self._next_slot = 0
        self._ticker: asyncio.Task[None] | None = None
        self.draining = False

    def __len__(self) -> int:
        return len(self._slot_of)

    def add(self, user_id: str, subscriber: Subscriber) -> None:
        """Register an open stream (after its subscription); past `limit` streams of one person the oldest is told
        to close. While draining, the new stream is told to end at once."""
        if self.draining:
            subscriber.put_nowait(RESTART)
        streams = self._by_person[user_id]
        streams.append(subscriber)
        while len(streams) > self.limit:
            streams.popleft().put_nowait(CLOSE)
        slot = self._next_slot
        self._next_slot = (slot + 1) % len(self._slots)
        self._slots[slot].add(subscriber)
        self._slot_of[subscriber] = slot

    def remove(self, user_id: str, subscriber: Subscriber) -> None:
        """Forgets a closed stream of the person (nothing happens if it is not registered)."""
        streams = self._by_person.get(user_id)
        if streams is not None:
            with contextlib.suppress(ValueError):
                streams.remove(subscriber)
            if not streams:
                del self._by_person[user_id]
        slot = self._slot_of.pop(subscriber, None)
        if slot is not None:
            self._slots[slot].discard(subscriber)

    def drain(self) -> int:
        """The process is stopping: every open stream, and any opened from now on, ends after a `retry:` hint, so
        that its browser reconnects (through the load balancer, to a process that stays) and replays from its
        Last-Event-ID. Returns how many streams were told."""
        self.draining = True
        for subscriber in tuple(self._slot_of):
            subscriber.put_nowait(RESTART)
        return len(self._slot_of)

    async def run_pings(self) -> None:
        """Runs until cancelled: puts PING into every registered stream's queue once per `ping_seconds`, one slot every
        `ping_seconds` / slots seconds, on a fixed schedule."""
        tick = self.ping_seconds / len(self._slots)
        loop = asyncio.get_running_loop()
        due, slot = loop.time(), 0
        while True:
            due += tick  # on a fixed schedule: every stream is pinged every ping_seconds, not a little later
            await asyncio.sleep(max(0.0, due - loop.time()))
            for subscriber in tuple(self._slots[slot]):
                subscriber.put_nowait(PING)  # a full queue (a stuck client) simply misses this ping
            slot = (slot + 1) % len(self._slots)

    async def start(self) -> None:
        """Starts the ping ticker (`run_pings`) as a task."""
        self._ticker = asyncio.create_task(self.run_pings())

    async def stop(self) -> None:
        """Cancels the ping ticker and waits for it to end."""
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker


@dataclass(frozen=True)
class Viewer:
    user_id: str
    is_admin: bool = False
    session: str = ""  # the key of the sign-in session the stream was opened under: its end ends the stream

    def channels(self) -> list[str]:
        """People hear their own channel (their messages, read receipts, and their peers' presence); admins hear
        every conversation and everyone's presence."""
        return [ADMINS, PRESENCE] if self.is_admin else [person_channel(self.user_id)]


class EventStream:
    """Iterates the bytes of one tab's SSE response."""

    def __init__(
        self,
        viewer: Viewer,
        last_event_id: int,
        channels: ChannelsPlugin,
        presence: Presence,
        sessions: sessionmaker[Session],
        render_message: RenderMessage,
        registry: StreamRegistry,
        still_allowed: Callable[[], Awaitable[bool]] | None = None,
        look_back: bool = True,
        recheck_pings: int = 20,
    ) -> None:
        self.viewer = viewer
        self._look_back = look_back  # False: the client named no resume point, so nothing before it is replayed
        self.watermark = last_event_id  # highest message id delivered on this stream
        self.replayed: set[int] = set()
        self._channels = channels
        self._presence = presence
        self._sessions = sessions
        self._render = render_message
        self._registry = registry
        # Whether the stream's session still stands: checked once it is subscribed (a logout announced before that
        # went unheard), then at every ping for admins and every `recheck_pings`-th for people (a logout whose
        # announcement was lost, a session that expired): an ended session ends its stream.
        self._still_allowed = still_allowed
        self._recheck_every = 1 if viewer.is_admin else max(1, recheck_pings)
        self._pings = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        """The stream's bytes. However it ends (the client gone at any await, before or after the first byte, a
        cancellation, the response closing it), the person's presence count and the subscription are released."""
        person = None if self.viewer.is_admin else self.viewer.user_id
        if person is not None:
            self._presence.stream_opened(person)  # synchronous: nothing can come between it and the `try`
        try:
            with anyio.CancelScope(shield=True):  # never half subscribed: the subscriber is always ours to release
                subscriber = await self._channels.subscribe(self.viewer.channels())
            self._registry.add(self.viewer.user_id, subscriber)
            try:
                if not await self._allowed():  # signed out between the request's check and the subscription
                    yield with_id(self.watermark, SIGNED_OUT_FIELDS)
                    return
                yield CONNECTED
                async for chunk in self._replay():
                    yield chunk
                async with contextlib.aclosing(subscriber.iter_events()) as events:
                    async for raw in events:
                        chunk, last = await self._on_event(raw)
                        if chunk:
                            yield chunk
                        if last:
                            return
            finally:
                self._registry.remove(self.viewer.user_id, subscriber)
                with anyio.CancelScope(shield=True):
                    await self._channels.unsubscribe(subscriber)
        finally:
            if person is not None:
                self._presence.stream_closed(person)

    async def _allowed(self) -> bool:
        return self._still_allowed is None or await self._still_allowed()

    async def _on_event(self, raw: bytes) -> tuple[bytes, bool]:
        """The bytes to send for one queued event (b"" for nothing), and whether the stream ends after them."""
        if raw == PING:
            self._pings += 1
            if self._pings % self._recheck_every == 0 and not await self._allowed():
                return with_id(self.watermark, SIGNED_OUT_FIELDS), True
            return with_id(self.watermark, PING_FIELDS), False
        if raw == CLOSE:
            return with_id(self.watermark, sse_fields("closed", "too-many-streams")), True
        if raw == RESTART:
            return b": the server is restarting\nretry: %d\n\n" % random.randint(*RESTART_RETRY_MS), True
        frame = frame_of(raw)
        if frame.kind == "signed_out":  # logged out, or an admin's password changed or account disabled
            if self.viewer.session and self.viewer.session in frame.sessions:
                return with_id(self.watermark, SIGNED_OUT_FIELDS), True
            return b"", False
        if frame.kind == "resync":  # the broker was away: catch up from the database
            return b"".join([chunk async for chunk in self._replay()]), False
        if frame.kind == "message":
            if frame.message_id in self.replayed:
                return b"", False  # the replay just sent it
            # A message below the watermark is not skipped: it may have committed late (see replay_start), and
            # the page drops what it already has by message id.
            self.watermark = max(self.watermark, frame.message_id)
            chunk = with_id(self.watermark, frame.fields)
            return (chunk + with_id(self.watermark, frame.then) if frame.then else chunk), False
        if frame.kind in ("read", "presence", "recall", "typing", "member", "order"):
            return with_id(self.watermark, frame.fields), False
        return b"", False

    async def _replay(self) -> AsyncIterator[bytes]:
        """Every message the viewer may see from the look-back start before the highest id delivered so far (after
        a broker outage too), in id order, each under the id of the highest message delivered. More than
        REPLAY_LIMIT waiting: none of them, but a `stale` event, after which the page reloads its list and thread
        from the server (it never needs more than what it has not shown), and the stream goes on live from the
        newest message. So a stream open costs at most one query of REPLAY_LIMIT + 1 rows and that many renders."""
        batch, latest, recalls = await to_thread.run_sync(self._load_replay)
        if batch is None:
            self.watermark = max(self.watermark, latest)
            yield with_id(self.watermark, STALE_FIELDS)
            return
        for message_id, html in batch:
            if message_id in self.replayed:
                continue
            self.replayed.add(message_id)
            self.watermark = max(self.watermark, message_id)
            yield with_id(self.watermark, sse_fields("message", html))
        for message_id, conversation_id, html in recalls:  # the recalls it may have missed, after the messages
            yield with_id(self.watermark, recall_fields(conversation_id, message_id, html))

    def _load_replay(self) -> tuple[list[tuple[int, str]] | None, int, list[tuple[int, int, str]]]:
        """The rendered messages to replay and the recalls since the resume point (message id, conversation id,
        HTML), or None and the newest message id when more than REPLAY_LIMIT messages (or recalls) wait."""
        viewer_id = None if self.viewer.is_admin else self.viewer.user_id
        monitor = self.viewer.is_admin
        with self._sessions() as session:
            resumed, self._look_back = self._look_back, True  # a later catch-up (after a broker outage) looks back
            start = replay_start(session, self.watermark) if resumed else self.watermark
            messages = messages_after(session, viewer_id, start, REPLAY_LIMIT + 1)
            recalled = recalls_to_replay(session, viewer_id, self.watermark) if resumed else []
            if len(messages) > REPLAY_LIMIT or recalled is None:
                return None, latest_message_id(session), []
            senders = get_users(session, {m.sender_id for m in [*messages, *recalled]})
            return ([(m.id, self._render(m, senders.get(m.sender_id), monitor)) for m in messages], 0,
                    [(m.id, m.conversation_id, self._render(m, senders.get(m.sender_id), monitor)) for m in recalled])
