"""A marketplace receives Kefu's events at its webhook: POSTed by `kefu serve` to a receiver on a loopback port, on
SQLite and MariaDB.

What it relies on: it can check every request's X-Kefu-Signature with the secret `webhook add` printed; a receiver
that fails for a while still gets each event, once it answers 2xx, and only once, retried with a backoff that
doubles (at most an hour apart) and given up after a day; an event stored while Kefu was down is sent when it is
back; `kefu webhook deliveries` tells what happened."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from itertools import pairwise
from pathlib import Path

import httpx

from app.chat import conversations as convs
from app.chat import messages as msgs
from app.chat import webhooks
from app.chat.people import get_user
from app.db.models import utcnow
from tests.api_support import new_key
from tests.seeding import with_session
from tests.support import ServerProcess, free_port, server_env
from tests.webhook_support import (
    FAST,
    Hit,
    Receiver,
    add_webhook,
    assert_signed,
    deliveries_lines,
    make_due,
    stored_delivery,
)


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
            # The sentinel: a later event, claimed only after every earlier one that is due (the oldest first). Once
            # it is received, any duplicate of the two would have come before it.
            last_notice = backend.post(path, json={"body": "订单已签收", "kind": "system"})
            assert last_notice.status_code == 201, last_notice.text

            def is_sentinel(hit: Hit) -> bool:
                payload = hit.payload
                return payload["type"] == "message.created" and payload["data"]["id"] == last_notice.json()["id"]

            receiver.wait_until(lambda: any(is_sentinel(h) for h in receiver.delivered()), 20, "the sentinel delivered")
        lines = deliveries_lines(database_url, tmp_path)
    finally:
        server.stop()

    hits = receiver.snapshot()
    by_delivery: dict[str, list[Hit]] = {}
    for hit in hits:
        by_delivery.setdefault(hit.delivery, []).append(hit)
    [sentinel] = {h.delivery for h in hits if is_sentinel(h)}
    assert [h.status for h in by_delivery.pop(sentinel)] == [500, 500, 200]
    hits = [h for h in hits if h.delivery != sentinel]
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


def store_message(database_url: str, body: str) -> int:
    """A message b1 → m1 stored with its event, as a send does (nothing sent yet); its id."""
    with with_session(database_url) as session:
        conversation = convs.get_or_create_conversation(session, get_user(session, "b1"), get_user(session, "m1"))
        message = msgs.send_message(session, conversation.id, "b1", body)
        session.commit()
        return message.id


def test_an_event_stored_while_kefu_was_down_is_sent_when_it_is_back(
        database_url: str, tmp_path: Path, receiver: Receiver) -> None:
    env = server_env(database_url, tmp_path, **FAST)
    _hook_id, secret = add_webhook(database_url, tmp_path, receiver.url, "--events", "message.created", child=True)
    message_id = store_message(database_url, "发货了吗？")  # the message and its event are stored together
    [line] = deliveries_lines(database_url, tmp_path)
    assert "\tmessage.created\tpending\t" in line and "attempts=0" in line, line
    assert receiver.snapshot() == []
    stored = line.split("\t")[0]  # the delivery's id

    receiver.failures = 1
    server = ServerProcess(env, free_port()).start()
    try:
        receiver.wait_until(lambda: len(receiver.delivered()) >= 1, 20, "the stored event delivered")
        # The sentinel: a later event, sent only after the stored one is done. Once it is received, another attempt at
        # the stored event would have come before it.
        sentinel_id = store_message(database_url, "已经收到了")
        receiver.wait_until(lambda: any(h.payload["data"]["id"] == sentinel_id for h in receiver.delivered()), 20,
                            "the sentinel delivered")
    finally:
        server.stop()
    hits = receiver.snapshot()
    [sentinel] = {h.delivery for h in hits if h.payload["data"]["id"] == sentinel_id}
    assert {h.delivery for h in hits} == {stored, sentinel}
    assert [h.status for h in hits if h.delivery == stored] == [500, 200]
    [delivered] = [h for h in receiver.delivered() if h.delivery == stored]
    assert_signed(delivered, secret)
    assert delivered.payload["data"]["id"] == message_id and delivered.payload["data"]["body"] == "发货了吗？"
    lines = deliveries_lines(database_url, tmp_path)
    [line] = [line for line in lines if line.startswith(f"{stored}\t")]
    assert "\tdelivered\t" in line and "attempts=2" in line, line
