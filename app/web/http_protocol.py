"""uvicorn's httptools protocol with a limit on the size of a request's head.

httptools is a fifth faster per request than h11 here (docs/performance.md) but accepts request lines and
headers of any size, buffering them all: a 200 KB header got a 200, and a slow stream of header bytes could
fill the memory. h11 refuses more than 16 KB; this does the same for httptools, counting the bytes received
between the start of a request and the end of its headers, and answering 400 beyond the limit.
"""

from __future__ import annotations

import asyncio
import os

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.web import stopping

MAX_HEAD_BYTES = 16 * 1024  # h11's default max_incomplete_event_size
# A request's head must be complete this many seconds after it began (or after the connection opened): a client
# that sends nothing, or a header line now and then, is let go. A body may pause this long between its bytes.
# From the environment, read again by every worker process uvicorn starts.
HEAD_SECONDS = float(os.environ.get("KEFU_REQUEST_HEAD_SECONDS", "10") or 10)
BODY_IDLE_SECONDS = float(os.environ.get("KEFU_REQUEST_BODY_IDLE_SECONDS", "20") or 20)
# and a whole body must arrive at 16 KiB/s on average, or within 30 s for a small one: a byte every few seconds
# would otherwise hold a connection for ever, each byte ending the pause.
BODY_MIN_RATE = 16 * 1024
BODY_MIN_SECONDS = float(os.environ.get("KEFU_REQUEST_BODY_SECONDS", "30") or 30)


class HeadTooLarge(Exception):
    """Raised from a parser callback: httptools reports it as a parser error, which uvicorn answers with 400."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with bounds on a request's head (MAX_HEAD_BYTES, HEAD_SECONDS) and on pauses in
    its body (BODY_IDLE_SECONDS): a slow client holds a connection (and a file descriptor) for seconds, not forever."""

    _in_head = True  # a connection starts with a request's head
    _in_body = False  # between the end of the head and the end of the body
    _received = 0  # bytes received while in the head: bounds what httptools buffers of an unfinished header
    _parsed = 0  # bytes of the request line and headers parsed so far: catches a head that came in one piece
    _deadline: asyncio.TimerHandle | None = None
    _body_due = 0.0  # loop time by which the whole body must be in

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """A new connection: its first request's head must come within HEAD_SECONDS."""
        super().connection_made(transport)
        self._arm(HEAD_SECONDS, "request head")

    def shutdown(self) -> None:
        """uvicorn is stopping and tells every connection: the app hears it first (`app.web.stopping.begin`, once
        per process), so that its event streams end instead of being cancelled."""
        stopping.begin()
        super().shutdown()

    def connection_lost(self, exc: Exception | None) -> None:
        """The connection ended: no deadline is left behind."""
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Counts the bytes of a head; each piece of a body gives the next one another BODY_IDLE_SECONDS."""
        if self._in_head:
            self._received += len(data)
        elif self._in_body:  # another pause allowed, but never past the body's whole time
            self._arm(min(BODY_IDLE_SECONDS, max(0.0, self._body_due - self.loop.time())), "request body")
        super().data_received(data)
        # After parsing: if the head ended within this chunk, the rest of the chunk was body.
        if self._in_head and self._received > MAX_HEAD_BYTES and not self.transport.is_closing():
            self.logger.warning("Request head over %d bytes refused.", MAX_HEAD_BYTES)
            self.send_400_response("Request head too large.")

    def on_message_begin(self) -> None:
        """A request begins: its head is counted afresh, against HEAD_SECONDS from now (a keep-alive connection's
        next request)."""
        super().on_message_begin()
        self._in_head, self._received, self._parsed = True, 0, 0
        if self._deadline is None:
            self._arm(HEAD_SECONDS, "request head")

    def on_url(self, url: bytes) -> None:
        """Counts the URL's bytes into the head (HeadTooLarge, answered 400, past MAX_HEAD_BYTES)."""
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        """Counts a header's bytes (name, value, ": " and CRLF) into the head (HeadTooLarge, answered 400, past
        MAX_HEAD_BYTES)."""
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        """The head is complete: its deadline gives way to the body's pauses and its whole time."""
        self._in_head, self._in_body = False, True
        self._body_due = self.loop.time() + max(BODY_MIN_SECONDS, self._announced_length() / BODY_MIN_RATE)
        self._arm(BODY_IDLE_SECONDS, "request body")
        super().on_headers_complete()

    def _announced_length(self) -> int:
        for name, value in self.headers or ():
            if name == b"content-length" and value.isdigit():
                return int(value)
        return 0

    def on_message_complete(self) -> None:
        """The whole request is in: no deadline while the app answers (an event stream answers for hours)."""
        self._in_body = False
        self._disarm()
        super().on_message_complete()

    def _arm(self, seconds: float, what: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._too_slow, what)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self, what: str) -> None:
        self._deadline = None
        if self.flow is not None and self.flow.read_paused:  # we stopped reading, not the client sending
            self._arm(BODY_IDLE_SECONDS, what)
            return
        if not self.transport.is_closing():
            self.logger.info("Closed a connection from %s: its %s stalled.", self.client, what)
            self.transport.close()

    def _count(self, size: int) -> None:
        self._parsed += size
        if self._parsed > MAX_HEAD_BYTES:
            raise HeadTooLarge()
