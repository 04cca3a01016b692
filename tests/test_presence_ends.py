"""People who left are shown offline: however a stream ends (at any await, before or after its first byte, by a
cancellation or by the response closing it), the person's presence ends with it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from pathlib import Path

import httpx
from litestar.testing import TestClient

from app.realtime.bus import PRESENCE
from app.realtime.stream import EventStream, Viewer
from app.templating import render_message
from tests.support import ServerProcess, free_port, server_env, sign_in

GRACE_SECONDS = 2.0


async def _last_presence(subscriber, user_id: str, seconds: float) -> bool | None:  # type: ignore[no-untyped-def]
    """The last presence of `user_id` announced within `seconds` (None: none was)."""
    last = None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    events = subscriber.iter_events()
    while (left := deadline - loop.time()) > 0:
        try:
            raw = await asyncio.wait_for(anext(events), left)
        except TimeoutError:
            break
        event = json.loads(raw)
        if event.get("user") == user_id:
            last = event["online"]
    return last


def test_streams_cancelled_at_every_point_leave_no_one_online(app_client: TestClient) -> None:
    state = app_client.app.state

    async def open_and_cancel(after_steps: int, close_from_outside: bool) -> None:
        stream = EventStream(Viewer("b1"), 0, state.channels, state.presence, state.sessions, render_message,
                             state.streams)
        body = stream.__aiter__()

        async def read() -> None:
            async for _chunk in body:
                if close_from_outside:
                    await asyncio.sleep(0.001)  # like sending the chunk: the cancellation lands outside the stream

        task = asyncio.ensure_future(read())
        for _ in range(after_steps):
            await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if close_from_outside:
            await body.aclose()  # what the response does once the client is gone

    async def scenario() -> tuple[set[str], int, bool | None]:
        heard = await state.channels.subscribe([PRESENCE])
        try:
            for steps in range(40):
                for outside in (False, True):
                    await open_and_cancel(steps, outside)
            last = await _last_presence(heard, "b1", GRACE_SECONDS + 2)
        finally:
            await state.channels.unsubscribe(heard)
        return state.presence.online(["b1"]), len(state.streams), last

    online, open_streams, last_announced = app_client.blocking_portal.call(scenario)
    assert online == set() and open_streams == 0
    assert last_announced is False  # whoever heard b1 come online also heard b1 leave


def test_connections_dropped_a_moment_after_they_open_leave_the_person_offline(
        sqlite_url: str, tmp_path: Path) -> None:
    server = ServerProcess(server_env(sqlite_url, tmp_path), free_port()).start()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as b1, httpx.Client(base_url=server.url, timeout=10) as m1:
            sign_in(b1, "b1", target="m1")
            sign_in(m1, "m1")
            cookie = "; ".join(f"{k}={v}" for k, v in b1.cookies.items())
            request = (f"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
                       f"Cookie: {cookie}\r\n\r\n").encode()
            with socket.create_connection(("127.0.0.1", server.port)) as sock:  # the request does open a stream
                sock.sendall(request)
                assert sock.recv(4096).startswith(b"HTTP/1.1 200")
                wait_online = time.monotonic() + 5
                while 'data-user-id="b1" data-online="true"' not in m1.get("/chat", params={"target": "b1"}).text:
                    assert time.monotonic() < wait_online, "b1's open stream never showed b1 online"
                    time.sleep(0.1)
            for n in range(50):  # dropped 0–5 ms after the request: before, while and after the stream opens
                with socket.create_connection(("127.0.0.1", server.port)) as sock:
                    sock.sendall(request)
                    time.sleep(n / 10_000)
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            deadline = time.monotonic() + GRACE_SECONDS + 5
            while 'data-user-id="b1" data-online="true"' in m1.get("/chat", params={"target": "b1"}).text:
                assert time.monotonic() < deadline, "b1 still shows online long after every stream was dropped"
                time.sleep(0.2)
    finally:
        server.stop()
