"""Several `kefu serve` processes send webhooks from one database, and processes stop or die mid-send: each event is
still received once, on SQLite and MariaDB (the worker run in threads of this process, or killed in a child one).

What a marketplace relies on: a slow receiver gets each event once, even when two processes send side by side; an
attempt that outlives its lease cannot overwrite the next one; no database connection is held while a receiver
takes its time; a receiver that answers too slowly gets one attempt at a time, each counted; a huge answer is not
read, and its start is kept printable; a process stopped mid-send lets the attempt finish, and one killed mid-send
leads to exactly one resend, once its lease is over."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from app.chat import conversations as convs
from app.chat import messages as msgs
from app.chat import webhooks
from app.chat.people import get_user
from tests.seeding import with_session
from tests.support import ROOT
from tests.webhook_support import (
    Receiver,
    WorkerInThread,
    add_webhook,
    assert_signed,
    deliveries_lines,
    store_messages,
    stored_delivery,
    wait_for_deliveries,
    wait_for_row,
    workers,
)


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
            row = wait_for_row(database_url, delivery_id,
                               lambda row: bool(row.attempts and row.last_status_code == 500))
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
