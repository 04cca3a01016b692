"""Webhooks, on SQLite and MariaDB: `kefu webhook add/list/remove/deliveries`, and events POSTed by `kefu serve` to a
receiver on a loopback port, signed, retried with backoff, received once, and never lost across a restart.

What a marketplace relies on: it can check every request's X-Kefu-Signature with the secret `webhook add` printed;
a receiver that fails for a while still gets each event, once it answers 2xx, and only once; an event stored while
Kefu was down is sent when it is back; `kefu webhook deliveries` tells what happened.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from app.chat import conversations as convs
from app.chat import messages as msgs
from app.chat import webhooks
from app.chat.people import get_user
from app.db.models import WebhookDelivery, utcnow
from tests.support import ROOT, ServerProcess, free_port, server_env
from tests.test_api import Ran, kefu, new_key, with_session

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

    @property
    def delivery(self) -> str:
        return self.headers.get("x-kefu-delivery", "")

    @property
    def payload(self) -> dict[str, Any]:
        return json.loads(self.body)


class Receiver:
    """An HTTP endpoint on 127.0.0.1 that answers 500 to the first `failures` attempts of each delivery (or to
    everything while `down`), then 200."""

    def __init__(self) -> None:
        self.failures = 0
        self.down = False
        self.hits: list[Hit] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {name.lower(): value for name, value in self.headers.items()}
                with receiver._lock:
                    earlier = sum(1 for h in receiver.hits if h.delivery == headers.get("x-kefu-delivery"))
                    status = 500 if receiver.down or earlier < receiver.failures else 200
                    receiver.hits.append(Hit(time.monotonic(), self.path, headers, body, status))
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok" if status == 200 else b"no")

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

    def wait_until(self, condition: Callable[[], bool], seconds: float, what: str) -> None:
        deadline = time.monotonic() + seconds
        while not condition():
            if time.monotonic() > deadline:
                got = [(h.delivery, h.headers.get("x-kefu-event"), h.status) for h in self.snapshot()]
                raise AssertionError(f"{what}: not within {seconds} s; the receiver got {got}")
            time.sleep(0.05)

    def close(self) -> None:
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
        assert refused.code != 0 and len(refused.err.strip().splitlines()) == 1, refused.err

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
    assert again.code != 0 and str(messages_only) in again.err and len(again.err.strip().splitlines()) == 1


# --- the retry schedule ---

def test_failed_deliveries_back_off_doubling_and_give_up_after_a_day(database_url: str) -> None:
    with with_session(database_url) as session:
        hook = webhooks.add_webhook(session, "http://127.0.0.1:9/hook", ["message.created"])
        conversation = convs.get_or_create_conversation(session, get_user(session, "b1"), get_user(session, "m1"))
        msgs.send_message(session, conversation.id, "b1", "hi")
        session.commit()
        [(delivery, claimed_hook)] = webhooks.claim_due(session)
        assert claimed_hook.id == hook.id and delivery.status == "pending" and delivery.attempts == 0
        assert webhooks.claim_due(session) == []  # claimed: no other worker takes it meanwhile

        delays = []
        for attempt, status in enumerate((500, None, 503, 500, 500, 500, 500, 500, 500, 500), start=1):
            before = utcnow()
            webhooks.record_attempt(session, delivery, status, "boom" if status else "ConnectError", 10.0)
            assert delivery.status == "pending" and delivery.attempts == attempt
            assert delivery.last_status_code == status
            delays.append(round((delivery.next_attempt_at - before).total_seconds()))
        assert delays[:6] == [10, 20, 40, 80, 160, 320]
        assert delays[-1] == 3600  # at most an hour apart
        assert webhooks.claim_due(session) == []  # not due yet

        delivery.created_at = utcnow() - timedelta(days=1, seconds=1)
        webhooks.record_attempt(session, delivery, 500, "still failing", 10.0)
        session.expire_all()
        stored = session.get(WebhookDelivery, delivery.id)
        assert stored is not None and stored.status == "failed" and stored.attempts == 11
        stored.next_attempt_at = utcnow() - timedelta(seconds=1)
        session.commit()
        assert webhooks.claim_due(session) == []  # given up: never sent again


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
