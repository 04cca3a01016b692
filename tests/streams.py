"""Reading GET /events as a browser's EventSource does, and people in browsers of their own over HTTP (httpx).

One reader for every test of an event stream: `Stream` reads event by event, with deadlines, and checks that every
event has an id (EventSource would dispatch one without all the same, and a reconnect would then resume from the
wrong place). To show that something did not arrive, a test sends something afterwards (a sentinel) and reads up to
it: what was not there before the sentinel never came, without waiting out a guess at how long it might take.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx

from tests.support import MESSAGE_ID_RE, ServerProcess, open_conversation_id, sign_in

ROOT_TAG_RE = re.compile(r"\s*<[^>]*>")
ATTRIBUTE_RE = re.compile(r'([\w-]+)="([^"]*)"')


@dataclass
class Event:
    id: str | None
    event: str
    data: str


def root_attributes(html: str) -> dict[str, str]:
    """The attributes of the first (root) element of an HTML fragment."""
    match = ROOT_TAG_RE.match(html)
    assert match, f"no root element in {html[:200]!r}"
    return dict(ATTRIBUTE_RE.findall(match.group(0)))


def message_ids(events: list[Event]) -> list[int]:
    return [int(MESSAGE_ID_RE.search(e.data).group(1)) for e in events]  # type: ignore[union-attr]


def json_data(event: Event) -> dict:
    return json.loads(event.data)


def only_messages(events: list[Event]) -> list[Event]:
    return [e for e in events if e.event == "message"]


class Stream:
    """An open /events response, read event by event as EventSource dispatches them, with deadlines.

    Pings arrive every second (KEFU_SSE_PING_SECONDS=1 in the tests' servers), so a deadline checked after each
    event is always reached; a stream that goes silent altogether fails on the client's 10 s read timeout."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines: Iterator[str] = response.iter_lines()
        self._early: list[Event] = []
        self.comments = 0
        self.last_id: str | None = None
        self.last_ping: Event | None = None

    def _read(self, until_comment: bool = False) -> Event | None:
        event_id, kind, data = None, "message", []
        for line in self._lines:
            if line == "":
                if data:
                    return Event(event_id, kind, "\n".join(data))
                event_id, kind, data = None, "message", []
            elif line.startswith(":"):
                self.comments += 1
                if until_comment:
                    return None
            else:
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "id":
                    event_id = value
                elif name == "event":
                    kind = value
                elif name == "data":
                    data.append(value)
        raise EOFError("the stream closed")

    def opened(self) -> Stream:
        """Returns once the server has subscribed this stream: at its opening comment or, failing that, its first
        event. Whatever is published from then on reaches it."""
        if not self.comments and not self._early and (event := self._read(until_comment=True)) is not None:
            self._early.append(event)
        return self

    def next(self) -> Event:
        event = self._early.pop(0) if self._early else self._read()
        assert event is not None
        assert event.id, f"an event without an id (EventSource dispatches it all the same): {event}"
        self.last_id = event.id
        if event.event == "ping":
            self.last_ping = event
        return event

    def until(self, kind: str, seconds: float = 5.0, where: Callable[[Event], bool] = lambda e: True) -> list[Event]:
        """Every event up to and including the next `kind` event for which `where` holds."""
        deadline = time.monotonic() + seconds
        events = []
        while time.monotonic() < deadline:
            events.append(self.next())
            if events[-1].event == kind and where(events[-1]):
                return events
        raise AssertionError(f"no matching {kind} event within {seconds} s; got {[e.event for e in events]}")

    def wait_for(self, kind: str, seconds: float = 5.0, where: Callable[[Event], bool] = lambda e: True) -> Event:
        """The next `kind` event for which `where` holds; the events before it are skipped."""
        return self.until(kind, seconds, where)[-1]

    def messages(self, count: int, seconds: float = 5.0) -> list[Event]:
        """The next `count` message events (other events skipped)."""
        return [self.wait_for("message", seconds) for _ in range(count)]

    def until_ping(self) -> list[Event]:
        """Every event before the next ping. A replay is written before anything live, pings included: this reads
        a whole replay."""
        events = []
        while (event := self.next()).event != "ping":
            events.append(event)
        return events


@dataclass
class Browser:
    """One person in their own browser (own cookie jar), signed in with the demo sign-in."""

    client: httpx.Client
    user_id: str
    token: str

    @classmethod
    def open(cls, server: ServerProcess, user_id: str, target: str | None = None) -> Browser:
        """A new browser on `server`, signed in as `user_id` (with the conversation with `target` open); the caller
        closes its client."""
        client = httpx.Client(base_url=server.url, timeout=httpx.Timeout(10))
        return cls(client, user_id, sign_in(client, user_id, target=target))

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.client.close()

    def conversation_with(self, peer_id: str) -> int:
        return open_conversation_id(self.client, peer_id)

    def post(self, cid: int, body: str) -> int:
        response = self.client.post(f"/chat/c/{cid}/messages", data={"body": body},
                                    headers={"X-CSRFToken": self.token})
        assert response.status_code == 201, response.text
        return int(root_attributes(response.text)["data-message-id"])

    @contextmanager
    def events(self, last_event_id: str | None = None, params: dict[str, str] | None = None) -> Iterator[Stream]:
        # Raw UTF-8, as EventSource sends whatever id it was given.
        headers = {} if last_event_id is None else {"Last-Event-ID": last_event_id.encode()}
        with self.client.stream("GET", "/events", headers=headers, params=params) as response:
            assert response.status_code == 200, response.read()
            yield Stream(response)


Serve = Callable[..., ServerProcess]  # the `serve` fixture: starts `kefu serve` (on a given port)
OpenBrowser = Callable[..., Browser]  # the `open_browser` fixture: (server, user id, target=None) -> Browser
