"""Slow clients do not hold the server: a connection that sends nothing, a request head sent a line at a time, a
body that stalls are each let go within seconds, and with every connection of a process taken the server serves
again as soon as the slow ones are gone. Over real sockets, against `kefu serve` (time limits shortened)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import ServerProcess, free_port, server_env

LIMIT_SECONDS = 1.0  # KEFU_REQUEST_HEAD_SECONDS and KEFU_REQUEST_BODY_IDLE_SECONDS here (10 and 20 by default)


@pytest.fixture
def server(sqlite_url: str, tmp_path: Path) -> Iterator[ServerProcess]:
    env = server_env(sqlite_url, tmp_path, KEFU_REQUEST_HEAD_SECONDS=str(LIMIT_SECONDS),
                     KEFU_REQUEST_BODY_IDLE_SECONDS=str(LIMIT_SECONDS), KEFU_MAX_CONNECTIONS="20")
    process = ServerProcess(env, free_port()).start()
    yield process
    process.stop()


def closed_within(sock: socket.socket, seconds: float, trickle: bytes = b"", every: float = 0.0) -> float:
    """Seconds until the server closed `sock` (sending `trickle` every `every` seconds meanwhile); fails past
    `seconds`."""
    start = time.monotonic()
    sock.settimeout(every or seconds)
    while time.monotonic() - start < seconds:
        try:
            if not sock.recv(4096):
                return time.monotonic() - start
        except TimeoutError:
            if trickle:
                try:
                    sock.sendall(trickle)
                except OSError:
                    return time.monotonic() - start
        except OSError:
            return time.monotonic() - start
    raise AssertionError(f"the server still held the connection after {seconds} s")


def test_a_connection_that_sends_nothing_is_closed(server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        assert closed_within(sock, LIMIT_SECONDS + 3) >= LIMIT_SECONDS * 0.9


def test_a_request_head_sent_a_line_at_a_time_is_cut_off(server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        # a header line every 0.3 s never ends the head: the head's time runs from its start, not from each line
        assert closed_within(sock, LIMIT_SECONDS + 3, trickle=b"X-Slow: 1\r\n", every=0.3) < LIMIT_SECONDS + 2


def test_a_body_that_stalls_is_cut_off(server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded"
                     b"\r\nContent-Length: 100\r\n\r\nusername=a")
        assert closed_within(sock, LIMIT_SECONDS + 3) < LIMIT_SECONDS + 2


def test_with_every_connection_taken_by_silent_clients_the_server_serves_again_within_seconds(
        server: ServerProcess) -> None:
    silent = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(30)]
    try:
        # 30 connections, 20 allowed: the process refuses more (503) rather than run out of file descriptors
        assert httpx.get(server.url + "/healthz", timeout=2).status_code == 503
        deadline = time.monotonic() + LIMIT_SECONDS + 5
        while True:
            try:
                if httpx.get(server.url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "/healthz did not answer once the silent clients were let go"
            time.sleep(0.1)
    finally:
        for sock in silent:
            sock.close()


def test_a_body_sent_a_byte_at_a_time_is_cut_off_at_its_whole_time(sqlite_url: str, tmp_path: Path) -> None:
    """Each byte within the pause limit, never finishing: the body's whole time (30 s, or the length at 16 KiB/s;
    2 s here) ends it."""
    env = server_env(sqlite_url, tmp_path, KEFU_REQUEST_BODY_IDLE_SECONDS="1", KEFU_REQUEST_BODY_SECONDS="2")
    process = ServerProcess(env, free_port()).start()
    try:
        with socket.create_connection(("127.0.0.1", process.port)) as sock:
            sock.sendall(b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded"
                         b"\r\nContent-Length: 1000\r\n\r\n")
            assert closed_within(sock, 6, trickle=b"a", every=0.4) < 4
    finally:
        process.stop()
