"""uvicorn's httptools protocol with a limit on the size of a request's head.

httptools is a fifth faster per request than h11 here (docs/performance.md) but accepts request lines and
headers of any size, buffering them all: a 200 KB header got a 200, and a slow stream of header bytes could
fill the memory. h11 refuses more than 16 KB; this does the same for httptools, counting the bytes received
between the start of a request and the end of its headers, and answering 400 beyond the limit.
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEAD_BYTES = 16 * 1024  # h11's default max_incomplete_event_size


class HeadTooLarge(Exception):
    """Raised from a parser callback: httptools reports it as a parser error, which uvicorn answers with 400."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    _in_head = True  # a connection starts with a request's head
    _received = 0  # bytes received while in the head: bounds what httptools buffers of an unfinished header
    _parsed = 0  # bytes of the request line and headers parsed so far: catches a head that came in one piece

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._received += len(data)
        super().data_received(data)
        # After parsing: if the head ended within this chunk, the rest of the chunk was body.
        if self._in_head and self._received > MAX_HEAD_BYTES and not self.transport.is_closing():
            self.logger.warning("Request head over %d bytes refused.", MAX_HEAD_BYTES)
            self.send_400_response("Request head too large.")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head, self._received, self._parsed = True, 0, 0

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def _count(self, size: int) -> None:
        self._parsed += size
        if self._parsed > MAX_HEAD_BYTES:
            raise HeadTooLarge()
