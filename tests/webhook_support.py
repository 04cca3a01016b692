"""A marketplace's webhook receiver, and Kefu's senders run where a test can watch them.

`Receiver` is an HTTP endpoint on 127.0.0.1 that fails, stalls or trickles as told and records every POST;
`WorkerInThread` is the webhook worker another `kefu serve` process runs, with its own engine and event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from select import select as wait_readable
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.chat import conversations as convs
from app.chat import messages as msgs
from app.chat.people import get_user
from app.db.engine import make_engine, make_sessionmaker
from app.db.models import WebhookDelivery, utcnow
from app.realtime.webhook_worker import WebhookWorker
from tests.cli_support import kefu, run_kefu
from tests.seeding import with_session
from tests.support import server_env

FAST = {"KEFU_WEBHOOK_BACKOFF_SECONDS": "0.2", "KEFU_WEBHOOK_POLL_SECONDS": "0.2"}
SECRET_RE = re.compile(r"^secret: (\S+)$", re.MULTILINE)
ADDED_RE = re.compile(r"^webhook (\d+): (\S+) \[([a-z.,]+)\]$", re.MULTILINE)


# --- a marketplace's receiver ---

@dataclass
class Hit:
    """One POST the receiver got, and what it answered."""

    at: float
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    wall: float = 0.0  # time.time() when it arrived
    probed: Any = None  # what Receiver.probe returned then

    @property
    def delivery(self) -> str:
        return self.headers.get("x-kefu-delivery", "")

    @property
    def payload(self) -> dict[str, Any]:
        return json.loads(self.body)


class Receiver:
    """An HTTP endpoint on 127.0.0.1 that answers 500 to the first `failures` attempts of each delivery (or to
    everything while `down`), then 200; every answer `delay` seconds late, and the first `trickle` attempts of each
    delivery answered 500 at once but its body (which the sender reads, for the error) one byte every 0.2 s (2 s in
    all). It counts the attempts in flight,
    and calls `probe` (if set) as each request arrives, keeping what it returns in the hit."""

    def __init__(self) -> None:
        self.failures = 0
        self.down = False
        self.delay = 0.0
        self.trickle = 0
        self.probe: Callable[[], Any] | None = None
        self.hits: list[Hit] = []
        self.in_flight: list[str] = []
        self.most_in_flight = 0
        self.overlapping: set[str] = set()  # deliveries with two attempts in flight at once
        self._lock = threading.Lock()
        self._closing = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {name.lower(): value for name, value in self.headers.items()}
                delivery = headers.get("x-kefu-delivery", "")
                probed = receiver.probe() if receiver.probe else None
                with receiver._lock:
                    earlier = sum(1 for h in receiver.hits if h.delivery == delivery)
                    status = 500 if receiver.down or earlier < receiver.failures else 200
                    receiver.hits.append(Hit(time.monotonic(), self.path, headers, body, status, time.time(), probed))
                    if delivery in receiver.in_flight:
                        receiver.overlapping.add(delivery)
                    receiver.in_flight.append(delivery)
                    receiver.most_in_flight = max(receiver.most_in_flight, len(receiver.in_flight))
                    delay, trickle = receiver.delay, earlier < receiver.trickle
                try:
                    self.answer(status, delay, trickle)
                except OSError:  # the sender gave up (or died) first
                    pass
                finally:
                    with receiver._lock:
                        receiver.in_flight.remove(delivery)

            def answer(self, status: int, delay: float, trickle: bool) -> None:
                if self.wait_or_gone(delay):
                    return
                self.send_response(500 if trickle else status)
                self.send_header("Content-Length", "10" if trickle else "2")
                self.end_headers()
                if not trickle:
                    self.wfile.write(b"ok" if status == 200 else b"no")
                    return
                for _ in range(10):
                    self.wfile.write(b".")
                    self.wfile.flush()
                    if self.wait_or_gone(0.2):
                        return

            def wait_or_gone(self, seconds: float) -> bool:
                """Wait `seconds`; True as soon as the sender hung up (or the receiver closes)."""
                deadline = time.monotonic() + seconds
                while (left := deadline - time.monotonic()) > 0 and not receiver._closing.is_set():
                    readable, _, _ = wait_readable([self.connection], [], [], min(left, 0.05))
                    if readable and self.connection.recv(1, socket.MSG_PEEK) == b"":
                        return True
                return receiver._closing.is_set()

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def snapshot(self) -> list[Hit]:
        with self._lock:
            return list(self.hits)

    def delivered(self) -> list[Hit]:
        return [h for h in self.snapshot() if h.status == 200]

    def by_delivery(self) -> dict[str, list[Hit]]:
        grouped: dict[str, list[Hit]] = {}
        for hit in self.snapshot():
            grouped.setdefault(hit.delivery, []).append(hit)
        return grouped

    def wait_until(self, condition: Callable[[], bool], seconds: float, what: str) -> None:
        deadline = time.monotonic() + seconds
        while not condition():
            if time.monotonic() > deadline:
                got = [(h.delivery, h.headers.get("x-kefu-event"), h.status) for h in self.snapshot()]
                raise AssertionError(f"{what}: not within {seconds} s; the receiver got {got}")
            time.sleep(0.05)

    def close(self) -> None:
        self._closing.set()
        self.server.shutdown()
        self.server.server_close()


def add_webhook(database_url: str, tmp_path: Path, url: str, *options: str, child: bool = False) -> tuple[int, str]:
    """`kefu webhook add`: the new webhook's id and its signing secret, as printed; `child`: in its own process,
    as the server's operator runs it."""
    if child:
        added = run_kefu(server_env(database_url, tmp_path), "webhook", "add", url, *options)
    else:
        added = kefu(database_url, tmp_path, "webhook", "add", url, *options)
    assert added.code == 0, added.err
    match, secret = ADDED_RE.search(added.out), SECRET_RE.search(added.out)
    assert match and secret, added.out
    assert match.group(2) == url
    return int(match.group(1)), secret.group(1)


def assert_signed(hit: Hit, secret: str) -> None:
    """As the integration guide tells the marketplace to check it."""
    timestamp = hit.headers["x-kefu-timestamp"]
    assert abs(time.time() - int(timestamp)) < 120, timestamp
    expected = "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + hit.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(hit.headers["x-kefu-signature"], expected), hit.headers
    assert hit.headers["content-type"].startswith("application/json")
    assert hit.payload["id"] == int(hit.delivery)
    assert hit.payload["type"] == hit.headers["x-kefu-event"]


def deliveries_lines(database_url: str, tmp_path: Path) -> list[str]:
    listed = kefu(database_url, tmp_path, "webhook", "deliveries")
    assert listed.code == 0, listed.err
    return listed.out.strip().splitlines()


# --- the deliveries' rows ---

def stored_delivery(session: Session, delivery_id: int) -> WebhookDelivery:
    """The row as committed now (a new transaction: MariaDB's repeatable read would show an old snapshot)."""
    session.commit()
    session.expire_all()
    delivery = session.get(WebhookDelivery, delivery_id)
    assert delivery is not None
    return delivery


def make_due(session: Session, delivery_id: int) -> None:
    session.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery_id)
                    .values(next_attempt_at=utcnow() - timedelta(seconds=1)))
    session.commit()


def wait_for_row(database_url: str, delivery_id: int, done: Callable[[WebhookDelivery], bool],
                 seconds: float = 20) -> WebhookDelivery:
    """The delivery's row once `done(row)` holds (read afresh every 0.05 s), failing after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        with with_session(database_url) as session:
            row = stored_delivery(session, delivery_id)
        if done(row):
            return row
        assert time.monotonic() < deadline, f"no attempt recorded: {(row.status, row.attempts, row.last_error)}"
        time.sleep(0.05)


# --- several processes sending ---

class WorkerInThread:
    """A WebhookWorker with its own engine, connection pool and event loop, in its own thread: what another
    `kefu serve` process runs. Timeouts in seconds, small, through the worker's own parameters."""

    def __init__(self, database_url: str, timeout: float, lease_margin: float, private_allowed: bool = True) -> None:
        self.engine = make_engine(database_url)
        self.worker = WebhookWorker(make_sessionmaker(self.engine), poll_seconds=0.05, backoff_seconds=0.2,
                                    private_allowed=private_allowed, timeout=timeout, lease_margin=lease_margin)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def checked_out(self) -> int:
        """Connections this worker has taken from its pool right now."""
        return self.engine.pool.checkedout()  # type: ignore[attr-defined]

    def start(self) -> WorkerInThread:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.worker.start(), self.loop).result(10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.worker.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
        self.engine.dispose()


@contextmanager
def workers(database_url: str, count: int, timeout: float, lease_margin: float,
            probed_by: Receiver | None = None) -> Iterator[list[WorkerInThread]]:
    """`count` workers running; `probed_by`: that receiver notes how many connections each holds as a POST arrives."""
    running = [WorkerInThread(database_url, timeout, lease_margin) for _ in range(count)]
    if probed_by is not None:
        probed_by.probe = lambda: [worker.checked_out() for worker in running]
    for worker in running:
        worker.start()
    try:
        yield running
    finally:
        for worker in running:
            worker.stop()


def store_messages(database_url: str, count: int) -> list[int]:
    """`count` messages b1 → m1, each stored with its message.created delivery; their delivery ids."""
    with with_session(database_url) as session:
        conversation = convs.get_or_create_conversation(session, get_user(session, "b1"), get_user(session, "m1"))
        for n in range(count):
            msgs.send_message(session, conversation.id, "b1", f"第{n + 1}条")
        session.commit()
        return list(session.scalars(select(WebhookDelivery.id).order_by(WebhookDelivery.id)))


def wait_for_deliveries(database_url: str, ids: list[int], seconds: float) -> list[WebhookDelivery]:
    """Until every one of `ids` is delivered or failed (then no worker may take it again); their rows."""
    deadline = time.monotonic() + seconds
    with with_session(database_url) as session:
        while True:
            session.rollback()  # a new snapshot each round
            rows = list(session.scalars(select(WebhookDelivery).where(WebhookDelivery.id.in_(ids))
                                        .order_by(WebhookDelivery.id)))
            if all(row.status != "pending" for row in rows):
                return rows
            if time.monotonic() > deadline:
                raise AssertionError(f"not done within {seconds} s: {[(r.id, r.status, r.attempts) for r in rows]}")
            time.sleep(0.05)
