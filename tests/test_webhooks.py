"""Webhooks, on SQLite and MariaDB: `kefu webhook add/list/remove/deliveries`, and events POSTed by `kefu serve` to a
receiver on a loopback port, signed, retried with backoff, received once, and never lost across a restart.

What a marketplace relies on: it can check every request's X-Kefu-Signature with the secret `webhook add` printed;
a receiver that fails for a while still gets each event, once it answers 2xx, and only once; an event stored while
Kefu was down is sent when it is back; `kefu webhook deliveries` tells what happened.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import pairwise
from pathlib import Path
from select import select as wait_readable
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app import cli
from app.chat import conversations as convs
from app.chat import messages as msgs
from app.chat import webhooks
from app.chat.people import get_user
from app.db.engine import make_engine, make_sessionmaker
from app.db.models import Webhook, WebhookDelivery, utcnow
from app.realtime.webhook_worker import WebhookWorker
from tests.support import ROOT, TEST_SECRET, ServerProcess, free_port, server_env
from tests.test_api import Ran, error_lines, kefu, new_key, with_session

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


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    endpoint = Receiver()
    yield endpoint
    endpoint.close()


def add_webhook(database_url: str, tmp_path: Path, url: str, *options: str, child: bool = False) -> tuple[int, str]:
    """`kefu webhook add`: the new webhook's id and its signing secret, as printed; `child`: in its own process,
    as the server's operator runs it."""
    if child:
        done = subprocess.run([sys.executable, "-m", "app.cli", "webhook", "add", url, *options], cwd=ROOT,
                              env=server_env(database_url, tmp_path), capture_output=True, text=True, timeout=60)
        added = Ran(done.returncode, done.stdout, done.stderr)
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


# --- the command line ---

def test_webhook_add_list_remove_and_which_events_each_gets(database_url: str, tmp_path: Path) -> None:
    messages_only, secret_a = add_webhook(database_url, tmp_path, "http://127.0.0.1:9/a", "--events", "message.created")
    everything, secret_b = add_webhook(database_url, tmp_path, "https://shop.example/kefu/hook")
    assert len(secret_a) >= 32 and secret_a != secret_b

    bad_url = kefu(database_url, tmp_path, "webhook", "add", "ftp://shop.example/hook")
    bad_event = kefu(database_url, tmp_path, "webhook", "add", "https://shop.example/x", "--events", "order.paid")
    for refused in (bad_url, bad_event):
        assert refused.code != 0 and len(error_lines(refused.err)) == 1, refused.err

    listed = kefu(database_url, tmp_path, "webhook", "list")
    assert listed.code == 0, listed.err
    assert f"{messages_only}\thttp://127.0.0.1:9/a\tmessage.created" in listed.out
    assert f"{everything}\thttps://shop.example/kefu/hook\tmessage.created,conversation.created" in listed.out
    assert secret_a not in listed.out and secret_b not in listed.out  # shown once, when added
    assert "ftp://" not in listed.out and "order.paid" not in listed.out

    def events_stored() -> list[tuple[int, str]]:
        with with_session(database_url) as session:
            conversation = convs.get_or_create_conversation(session, get_user(session, "b1"), get_user(session, "m2"))
            msgs.send_message(session, conversation.id, "b1", "在吗")
            session.commit()
            rows = session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)).all()
            found = [(row.webhook_id, row.event) for row in rows]
            for row in rows:
                session.delete(row)
            session.commit()
            return found

    assert sorted(events_stored()) == sorted([(everything, "conversation.created"),
                                              (everything, "message.created"), (messages_only, "message.created")])
    removed = kefu(database_url, tmp_path, "webhook", "remove", str(messages_only))
    assert removed.code == 0, removed.err
    assert events_stored() == [(everything, "message.created")]  # the conversation exists already
    again = kefu(database_url, tmp_path, "webhook", "remove", str(messages_only))
    assert again.code != 0 and str(messages_only) in again.err and len(error_lines(again.err)) == 1


# --- the retry schedule ---

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


def test_failed_deliveries_back_off_doubling_and_give_up_after_a_day(database_url: str) -> None:
    lease = timedelta(seconds=60)
    with with_session(database_url) as session:
        hook = webhooks.add_webhook(session, "http://127.0.0.1:9/hook", ["message.created"], private_allowed=True)
        conversation = convs.get_or_create_conversation(session, get_user(session, "b1"), get_user(session, "m1"))
        msgs.send_message(session, conversation.id, "b1", "hi")
        session.commit()
        claim = webhooks.claim_next(session, lease)
        assert claim is not None and claim.url == hook.url and claim.secret == hook.secret and claim.attempt == 1
        assert stored_delivery(session, claim.delivery_id).attempts == 1  # counted before anything is sent
        assert webhooks.claim_next(session, lease) is None  # claimed: no other worker takes it meanwhile

        delays = []
        for attempt, status in enumerate((500, None, 503, 500, 500, 500, 500, 500, 500, 500), start=1):
            assert claim is not None and claim.attempt == attempt
            before = utcnow()
            assert webhooks.record_attempt(session, claim, status, "boom" if status else "ConnectError", 10.0)
            delivery = stored_delivery(session, claim.delivery_id)
            assert delivery.status == "pending" and delivery.attempts == attempt and delivery.locked_until is None
            assert delivery.last_status_code == status
            delays.append(round((delivery.next_attempt_at - before).total_seconds()))
            assert webhooks.claim_next(session, lease) is None  # not due yet
            make_due(session, claim.delivery_id)
            claim = webhooks.claim_next(session, lease)
        assert delays[:6] == [10, 20, 40, 80, 160, 320]
        assert delays[-1] == 3600  # at most an hour apart

        assert claim is not None and claim.attempt == 11
        old = replace(claim, created_at=utcnow() - timedelta(days=1, seconds=1))
        assert webhooks.record_attempt(session, old, 500, "still failing", 10.0)
        delivery = stored_delivery(session, claim.delivery_id)
        assert delivery.status == "failed" and delivery.attempts == 11
        make_due(session, claim.delivery_id)
        assert webhooks.claim_next(session, lease) is None  # given up: never sent again


def test_a_worker_that_stalled_past_its_lease_cannot_overwrite_the_next_attempt(database_url: str) -> None:
    with with_session(database_url) as session:
        webhooks.add_webhook(session, "http://127.0.0.1:9/hook", ["message.created"], private_allowed=True)
        conversation = convs.get_or_create_conversation(session, get_user(session, "b1"), get_user(session, "m1"))
        msgs.send_message(session, conversation.id, "b1", "hi")
        session.commit()
        stalled = webhooks.claim_next(session, timedelta(seconds=-1))  # its lease is over at once
        taken_over = webhooks.claim_next(session, timedelta(seconds=60))
        assert stalled is not None and taken_over is not None
        assert (stalled.delivery_id, stalled.attempt, taken_over.attempt) == (taken_over.delivery_id, 1, 2)

        assert webhooks.record_attempt(session, taken_over, 200, "", 10.0)
        assert not webhooks.record_attempt(session, stalled, 500, "late", 10.0)  # too late: changes nothing
        delivery = stored_delivery(session, stalled.delivery_id)
        assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 2, 200)


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


def test_two_processes_and_a_slow_receiver_each_event_is_received_once(
        database_url: str, tmp_path: Path, receiver: Receiver) -> None:
    """The receiver answers after 0.5 s; a whole POST may take 1 s and a claim lasts 0.3 s longer: in the old
    batches of 20 the claim ran out mid-batch and the other process sent the rest again, attempts=1."""
    _hook_id, secret = add_webhook(database_url, tmp_path, receiver.url, "--events", "message.created")
    ids = store_messages(database_url, 8)
    receiver.delay = 0.5
    with workers(database_url, 2, timeout=1.0, lease_margin=0.3):
        rows = wait_for_deliveries(database_url, ids, 30)
    assert [(row.status, row.attempts, row.last_status_code) for row in rows] == [("delivered", 1, 200)] * 8
    received = receiver.by_delivery()
    assert sorted(received) == sorted(str(i) for i in ids)
    assert {delivery: len(hits) for delivery, hits in received.items() if len(hits) != 1} == {}
    assert receiver.most_in_flight == 2  # both processes sent, side by side
    for hit in receiver.snapshot():
        assert_signed(hit, secret)
    lines = deliveries_lines(database_url, tmp_path)
    assert all("\tdelivered\t" in line and "attempts=1\t" in line for line in lines), lines


def test_no_database_connection_is_held_while_a_receiver_takes_its_time(
        database_url: str, tmp_path: Path, receiver: Receiver) -> None:
    """One worker, so its pool serves only its own claims and records: while a POST is out it holds none. Before,
    the first delivery of each batch went out with a connection checked out (an open transaction on MariaDB)."""
    add_webhook(database_url, tmp_path, receiver.url, "--events", "message.created")
    ids = store_messages(database_url, 3)
    receiver.delay = 0.2
    with workers(database_url, 1, timeout=1.0, lease_margin=0.3, probed_by=receiver):
        wait_for_deliveries(database_url, ids, 30)
    assert [hit.probed for hit in receiver.snapshot()] == [[0]] * 3


def test_a_receiver_that_answers_too_slowly_gets_one_attempt_at_a_time_each_counted(
        database_url: str, tmp_path: Path, receiver: Receiver) -> None:
    """The first attempt's (error) answer trickles in over 2 s: the sender gives up after its 0.6 s, records the
    attempt, and tries again after the backoff. Before, only each read had a timeout: the attempt went on, its claim ran
    out and the other process sent the same event alongside it."""
    add_webhook(database_url, tmp_path, receiver.url, "--events", "message.created")
    ids = store_messages(database_url, 2)
    receiver.trickle = 1
    with workers(database_url, 2, timeout=0.6, lease_margin=0.3):
        rows = wait_for_deliveries(database_url, ids, 30)
    assert [(row.status, row.attempts, row.last_status_code) for row in rows] == [("delivered", 2, 200)] * 2
    assert {delivery: len(hits) for delivery, hits in receiver.by_delivery().items()} == {str(i): 2 for i in ids}
    assert receiver.overlapping == set()


def test_a_huge_answer_from_a_failing_receiver_is_not_read_and_its_start_is_kept_escaped(
        database_url: str, tmp_path: Path) -> None:
    """150 MB of answer, starting with terminal escape codes: the sender reads 1 KB of it and keeps it printable."""
    class Huge(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(500)
            self.send_header("Content-Length", str(150 * 1024 * 1024))
            self.end_headers()
            try:
                self.wfile.write(b"\x1b[2J\x1b[31mFAKE: all deliveries ok")
                for _ in range(150 * 16):
                    self.wfile.write(b"x" * 65536)
            except OSError:  # the sender stopped reading: what it should do
                pass

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Huge)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        add_webhook(database_url, tmp_path, f"http://127.0.0.1:{server.server_port}/hook", "--events",
                    "message.created")
        [delivery_id] = store_messages(database_url, 1)
        worker = WorkerInThread(database_url, timeout=5.0, lease_margin=60.0).start()
        try:
            deadline = time.monotonic() + 20
            while True:
                with with_session(database_url) as session:
                    row = stored_delivery(session, delivery_id)
                if row.attempts and row.last_status_code == 500:
                    break
                assert time.monotonic() < deadline, "no attempt recorded"
                time.sleep(0.05)
        finally:
            worker.stop()
    finally:
        server.shutdown()
    assert row.last_error.startswith("\\x1b[2J\\x1b[31mFAKE") and "\x1b" not in row.last_error


def test_stopping_kefu_mid_send_lets_the_attempt_finish_so_it_is_not_sent_again(
        database_url: str, tmp_path: Path, receiver: Receiver) -> None:
    add_webhook(database_url, tmp_path, receiver.url, "--events", "message.created")
    [delivery_id] = store_messages(database_url, 1)
    receiver.delay = 0.5
    worker = WorkerInThread(database_url, timeout=2.0, lease_margin=60.0).start()
    try:
        receiver.wait_until(lambda: len(receiver.snapshot()) == 1, 20, "the attempt sent")
    finally:
        worker.stop()  # a restart: the answer still comes, and is recorded
    with with_session(database_url) as session:
        row = stored_delivery(session, delivery_id)
    assert (row.status, row.attempts, row.last_status_code, row.locked_until) == ("delivered", 1, 200, None)


CRASHING_WORKER = """
import asyncio, sys
from app.db.engine import make_engine, make_sessionmaker
from app.realtime.webhook_worker import WebhookWorker

async def main() -> None:
    worker = WebhookWorker(make_sessionmaker(make_engine(sys.argv[1])), poll_seconds=0.05, private_allowed=True,
                           timeout=float(sys.argv[2]), lease_margin=float(sys.argv[3]))
    await worker.start()
    await asyncio.Event().wait()

asyncio.run(main())
"""


def test_a_process_killed_mid_send_leads_to_exactly_one_resend_after_its_lease(
        database_url: str, tmp_path: Path, receiver: Receiver) -> None:
    add_webhook(database_url, tmp_path, receiver.url, "--events", "message.created")
    [delivery_id] = store_messages(database_url, 1)
    receiver.delay = 10.0  # the first attempt hangs until its sender is gone
    child = subprocess.Popen([sys.executable, "-c", CRASHING_WORKER, database_url, "1.0", "1.0"], cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        receiver.wait_until(lambda: len(receiver.snapshot()) == 1, 20, "the first attempt sent")
    finally:
        child.kill()  # SIGKILL: nothing after the claim is recorded
        _out, err = child.communicate(timeout=10)
    assert child.returncode == -signal.SIGKILL, err.decode()
    with with_session(database_url) as session:
        crashed = stored_delivery(session, delivery_id)
    assert (crashed.status, crashed.attempts) == ("pending", 1)  # the attempt counted, the outcome never came
    assert crashed.locked_until is not None
    receiver.delay = 0.0
    with workers(database_url, 2, timeout=1.0, lease_margin=1.0):
        [row] = wait_for_deliveries(database_url, [delivery_id], 30)
    assert (row.status, row.attempts, row.last_status_code) == ("delivered", 2, 200)
    first, resent = receiver.by_delivery()[str(delivery_id)]  # sent twice, never three times
    assert resent.wall >= crashed.locked_until.timestamp() - 0.05  # only once the dead process's lease ran out
    assert first.body == resent.body


# --- over a real server ---

def test_events_are_signed_retried_with_backoff_and_received_once(
        database_url: str, tmp_path: Path, receiver: Receiver) -> None:
    receiver.failures = 2
    env = server_env(database_url, tmp_path, **FAST)
    _hook_id, secret = add_webhook(database_url, tmp_path, receiver.url, child=True)
    key = new_key(database_url)
    server = ServerProcess(env, free_port()).start()
    try:
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=10) as backend:
            opened = backend.post("/api/v1/conversations", json={"user_ids": ["b2", "m2"]})
            assert opened.status_code == 201, opened.text
            cid = opened.json()["id"]
            notice = {"body": "订单已发货", "kind": "system"}
            path = f"/api/v1/conversations/{cid}/messages"
            posted = backend.post(path, json=notice, headers={"Idempotency-Key": "order-9-shipped"})
            retried = backend.post(path, json=notice, headers={"Idempotency-Key": "order-9-shipped"})
            assert (posted.status_code, retried.status_code) == (201, 200)
        receiver.wait_until(lambda: len(receiver.delivered()) >= 2, 20, "both events delivered")
        time.sleep(1.0)  # a duplicate would come within a few polls (0.2 s)
        lines = deliveries_lines(database_url, tmp_path)
    finally:
        server.stop()

    hits = receiver.snapshot()
    by_delivery: dict[str, list[Hit]] = {}
    for hit in hits:
        by_delivery.setdefault(hit.delivery, []).append(hit)
    assert len(by_delivery) == 2, [(h.delivery, h.headers.get("x-kefu-event")) for h in hits]
    for attempts in by_delivery.values():
        assert [h.status for h in attempts] == [500, 500, 200]  # failed twice, then received once
        assert len({h.body for h in attempts}) == 1  # each attempt the same event
        for hit in attempts:
            assert hit.path == "/hook"
            assert_signed(hit, secret)
        gaps = [later.at - earlier.at for earlier, later in pairwise(attempts)]
        assert gaps[0] >= 0.15 and gaps[1] >= 0.35, gaps  # 0.2 s, then 0.4 s: backing off

    events = {h.payload["type"]: h.payload for h in hits if h.status == 200}
    assert set(events) == {"conversation.created", "message.created"}
    assert events["message.created"]["data"] == posted.json()  # the message as the API shows it
    assert events["conversation.created"]["data"]["id"] == cid
    assert sorted(events["conversation.created"]["data"]["participants"]) == ["b2", "m2"]

    for delivery_id in by_delivery:
        line = next((line for line in lines if line.startswith(f"{delivery_id}\t")), None)
        assert line is not None, lines
        assert "\tdelivered\t" in line and "attempts=3" in line and "last=200" in line, line


def test_an_event_stored_while_kefu_was_down_is_sent_when_it_is_back(
        database_url: str, tmp_path: Path, receiver: Receiver) -> None:
    env = server_env(database_url, tmp_path, **FAST)
    _hook_id, secret = add_webhook(database_url, tmp_path, receiver.url, "--events", "message.created", child=True)
    with with_session(database_url) as session:  # the message and its event are stored together, nothing sent
        conversation = convs.get_or_create_conversation(session, get_user(session, "b1"), get_user(session, "m1"))
        message = msgs.send_message(session, conversation.id, "b1", "发货了吗？")
        session.commit()
        message_id = message.id
    [line] = deliveries_lines(database_url, tmp_path)
    assert "\tmessage.created\tpending\t" in line and "attempts=0" in line, line
    assert receiver.snapshot() == []

    receiver.failures = 1
    server = ServerProcess(env, free_port()).start()
    try:
        receiver.wait_until(lambda: len(receiver.delivered()) >= 1, 20, "the stored event delivered")
        time.sleep(0.6)
    finally:
        server.stop()
    assert [h.status for h in receiver.snapshot()] == [500, 200]
    delivered = receiver.delivered()[0]
    assert_signed(delivered, secret)
    assert delivered.payload["data"]["id"] == message_id and delivered.payload["data"]["body"] == "发货了吗？"
    [line] = deliveries_lines(database_url, tmp_path)
    assert "\tdelivered\t" in line and "attempts=2" in line, line


def test_ids_of_a_removed_webhook_and_its_deliveries_are_never_given_out_again(database_url: str,
                                                                                tmp_path: Path) -> None:
    """Receivers drop deliveries they have seen by id: re-adding a webhook (to rotate its secret, say) must not
    hand the new events the old ids (SQLite reused them once the rows were deleted)."""
    first_hook, _ = add_webhook(database_url, tmp_path, "http://127.0.0.1:9/hook", "--events", "message.created")
    before = store_messages(database_url, 3)
    assert kefu(database_url, tmp_path, "webhook", "remove", str(first_hook)).code == 0
    second_hook, _ = add_webhook(database_url, tmp_path, "http://127.0.0.1:9/hook", "--events", "message.created")
    after = store_messages(database_url, 3)
    assert second_hook > first_hook
    assert min(after) > max(before) and len(after) == 3


# --- where webhooks may go ---

PRIVATE_TARGETS = ["http://127.0.0.1:8080/hook", "http://localhost/hook", "http://169.254.169.254/latest/meta-data",
                   "http://10.0.0.5/hook", "http://192.168.1.10/hook", "http://[::1]:8080/hook", "http://0.0.0.0/",
                   "http://[fe80::1]/hook", "http://224.0.0.1/"]
BAD_URLS = ["ftp://example.com/hook", "http://a b/", "http://user:pw@93.184.216.34/", "http://93.184.216.34:99999/",
            "http://[::1", "http://93.184.216.34/\r\nX-Injected: 1", "http://93.184.216.34:0/", "https:///nohost"]


def kefu_strict(database_url: str, tmp_path: Path, *args: str) -> Ran:
    """`kefu` as an operator runs it, private webhook targets not allowed."""
    env: dict[str, str | None] = {name: None for name in os.environ if name.startswith("KEFU_")}
    env |= {"KEFU_DATABASE_URL": database_url, "KEFU_SECRET_KEY": TEST_SECRET, "KEFU_VAR_DIR": str(tmp_path)}
    result = CliRunner(env=env).invoke(cli.main, list(args), catch_exceptions=False)
    return Ran(result.exit_code, result.stdout, result.stderr)


@pytest.mark.parametrize("url", PRIVATE_TARGETS)
def test_loopback_private_and_link_local_webhook_targets_are_refused(database_url: str, tmp_path: Path,
                                                                      url: str) -> None:
    added = kefu_strict(database_url, tmp_path, "webhook", "add", url)
    assert added.code != 0 and "KEFU_WEBHOOK_PRIVATE_TARGETS" in added.err, added.err
    assert "webhook" not in kefu_strict(database_url, tmp_path, "webhook", "list").out.lower().replace("webhooks", "")


@pytest.mark.parametrize("url", BAD_URLS)
def test_webhook_urls_that_cannot_be_used_are_refused_with_a_clear_line(database_url: str, tmp_path: Path,
                                                                         url: str) -> None:
    added = kefu_strict(database_url, tmp_path, "webhook", "add", url)
    assert added.code != 0 and "url:" in added.err and "Traceback" not in added.err, added.err


def test_a_public_address_is_accepted(database_url: str, tmp_path: Path) -> None:
    added = kefu_strict(database_url, tmp_path, "webhook", "add", "https://93.184.216.34/kefu/hook")
    assert added.code == 0, added.err


def test_a_name_that_now_points_inside_gets_no_delivery(database_url: str, tmp_path: Path, receiver: Receiver) -> None:
    """Checked again at delivery time: a name that resolved outside when added (DNS can change) and now resolves to
    127.0.0.1 is refused, and the attempt says why."""
    with with_session(database_url) as session:
        session.add(Webhook(url=receiver.url.replace("127.0.0.1", "localhost"), events="message.created",
                            secret="s" * 32))
        session.commit()
    [delivery_id] = store_messages(database_url, 1)
    worker = WorkerInThread(database_url, timeout=2.0, lease_margin=60.0, private_allowed=False).start()
    try:
        deadline = time.monotonic() + 20
        while True:
            with with_session(database_url) as session:
                row = stored_delivery(session, delivery_id)
            if row.attempts and row.last_error:
                break
            assert time.monotonic() < deadline, "no attempt recorded"
            time.sleep(0.05)
    finally:
        worker.stop()
    assert row.last_error.startswith("refused:") and "127.0.0.1" in row.last_error
    assert receiver.snapshot() == []
