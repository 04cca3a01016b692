"""Stopping a process (SIGTERM, as systemd and a rolling restart do) loses nothing and alarms no one.

`kefu serve` in a child process: on SIGTERM it stops accepting connections, ends every event stream with a retry
hint (the browser reconnects, to a process that stays, and replays from its Last-Event-ID), lets the requests in
flight finish, and logs no traceback. Before, every stop waited 3 s and logged a `CancelledError` per open stream.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from sqlalchemy import select

from app.db.engine import make_engine
from app.db.models import Attachment, Message
from tests.conftest import REDIS_URL
from tests.file_samples import files_under, image_bytes, upload
from tests.streams import Browser
from tests.support import ROOT, ServerProcess, free_port, server_env, sign_in_to


def wait_for_text(path: Path, text: str, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while text not in path.read_text(errors="replace"):
        assert time.monotonic() < deadline, f"{text!r} never appeared in {path.name}"
        time.sleep(0.05)


def start_post(server: ServerProcess, person: Browser, path: str, form: dict[str, str]) -> tuple[socket.socket, bytes]:
    """A form POST whose head and first half of its body are sent now; returns the socket and the rest to send."""
    body = urlencode(form).encode()
    cookies = "; ".join(f"{name}={value}" for name, value in person.client.cookies.items())
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\nX-CSRFToken: {person.token}\r\nCookie: {cookies}\r\n\r\n").encode()
    connection = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    connection.sendall(head + body[: len(body) // 2])
    return connection, body[len(body) // 2:]


def read_response(connection: socket.socket) -> tuple[int, bytes]:
    """The status and the whole response, read until the server closes the connection."""
    data = b""
    while chunk := connection.recv(65536):
        data += chunk
    return int(data.split(b" ", 2)[1]), data


def stream_lines(person: Browser, lines: list[str], opened: threading.Event) -> None:
    with person.client.stream("GET", "/events") as response:
        for line in response.iter_lines():
            lines.append(line)
            if line.startswith(": connected"):
                opened.set()


def test_sigterm_ends_streams_with_a_retry_hint_finishes_requests_in_flight_and_logs_no_traceback(
        sqlite_url: str, tmp_path: Path) -> None:
    server = ServerProcess(server_env(sqlite_url, tmp_path), free_port()).start()
    log_path = tmp_path / f"server-{server.port}.log"
    try:
        buyer = Browser.open(server, "b1", target="m1")
        cid = buyer.conversation_with("m1")
        streams = [[], []]
        opened = [threading.Event(), threading.Event()]
        readers = [threading.Thread(target=stream_lines, args=(buyer, lines, ready), daemon=True)
                   for lines, ready in zip(streams, opened, strict=True)]
        for reader in readers:
            reader.start()
        assert all(ready.wait(10) for ready in opened)
        connection, rest = start_post(server, buyer, f"/chat/c/{cid}/messages", {"body": "停机时正在发送的消息"})

        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        wait_for_text(log_path, "stopping: ending event streams")
        with pytest.raises(ConnectionRefusedError):  # no new connections once stopping
            socket.create_connection(("127.0.0.1", server.port), timeout=2)
        connection.sendall(rest)  # the request in flight is finished and answered
        status, response = read_response(connection)
        server.process.wait(15)
        stopped_after = time.monotonic() - started
        for reader in readers:
            reader.join(5)
    finally:
        server.stop()

    assert status == 201, response
    assert b"connection: close" in response.lower()
    for lines in streams:  # each stream ended by the server with a hint to come back soon, not cut off
        assert lines[-3] == ": the server is restarting" and lines[-2].startswith("retry: "), lines[-4:]
        assert 250 <= int(lines[-2].removeprefix("retry: ")) <= 3000
    assert stopped_after < 5, f"the stop took {stopped_after:.1f} s: it waited for the streams"
    engine = make_engine(sqlite_url)
    with engine.connect() as db:
        assert db.scalar(select(Message.body).where(Message.conversation_id == cid)) == "停机时正在发送的消息"
    engine.dispose()
    log = log_path.read_text(errors="replace")
    for alarming in ("Traceback", "CancelledError", "ERROR", "timeout graceful shutdown exceeded"):
        assert alarming not in log, log[-3000:]


def start_kefu(env: dict[str, str], port: int, *args: str) -> tuple[subprocess.Popen, Path]:
    log = Path(env["KEFU_VAR_DIR"]) / f"server-{port}.log"
    process = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(port), *args], cwd=ROOT,
                               env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while True:
        assert process.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")[-2000:]
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process, log
        except httpx.HTTPError:
            time.sleep(0.1)


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.mark.redis
def test_with_two_workers_nothing_listens_once_a_stop_begins(sqlite_url: str, tmp_path: Path) -> None:
    env = server_env(sqlite_url, tmp_path, KEFU_BROKER_URL=REDIS_URL, KEFU_SHUTDOWN_SECONDS="8")
    port = free_port()
    process, log = start_kefu(env, port, "--workers", "2")
    try:
        served = ServerProcess(env, port)
        buyer = Browser.open(served, "b1", target="m1")
        cid = buyer.conversation_with("m1")
        slow, rest = start_post(served, buyer, f"/chat/c/{cid}/messages", {"body": "慢慢发完"})
        process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        while not refused(port):  # uvicorn's parent used to keep listening until its workers had exited
            assert time.monotonic() < deadline, "connections were still taken (and left hanging) while stopping"
            time.sleep(0.05)
        slow.sendall(rest)  # the request in flight still finishes
        status, _ = read_response(slow)
        process.wait(20)
    finally:
        if process.poll() is None:
            process.kill()
    assert status == 201
    text = log.read_text(errors="replace")
    assert "Traceback" not in text and " ERROR " not in text and "ERROR:" not in text, text[-3000:]


def test_an_upload_cut_off_by_the_stop_leaves_no_file_without_its_message(sqlite_url: str, tmp_path: Path) -> None:
    env = server_env(sqlite_url, tmp_path, KEFU_SHUTDOWN_SECONDS="1")
    port = free_port()
    process, log = start_kefu(env, port)
    uploads = tmp_path / "uploads"
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            token, cid = sign_in_to(client, "b1", "m1")
            holder = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
            holder.execute("BEGIN IMMEDIATE")  # the upload's message waits to be stored
            with ThreadPoolExecutor(1) as pool:
                answer = pool.submit(upload, client, cid, token, "停机时的照片.png", image_bytes("PNG"), "image/png")
                wait_until(lambda: len(files_under(uploads)) == 2)  # the file and its thumbnail are written
                process.send_signal(signal.SIGTERM)
                wait_for_text(log, "timeout graceful shutdown exceeded")  # uvicorn gave up on the request
                holder.execute("ROLLBACK")  # the database answers while the stop waits for sends in progress
                holder.close()
                with contextlib.suppress(httpx.HTTPError):
                    answer.result()
        process.wait(20)
    finally:
        if process.poll() is None:
            process.kill()
    engine = make_engine(sqlite_url)
    with engine.connect() as db:
        kept = set(db.scalars(select(Attachment.stored_path))) | set(db.scalars(select(Attachment.thumbnail_path)))
    engine.dispose()
    on_disk = {str(path.relative_to(uploads)) for path in files_under(uploads)}
    assert on_disk <= kept, f"files on disk that no message has: {on_disk - kept}"
    assert "Traceback" not in log.read_text(errors="replace")


def wait_until(condition, seconds: float = 10) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the condition never came true"
        time.sleep(0.05)
