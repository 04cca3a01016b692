"""Webhooks: events are stored as deliveries in the same transaction as the change (an outbox), then sent,
signed with HMAC-SHA256, and retried with backoff for up to a day. Nothing is lost across a restart.

Each attempt claims one delivery under a lease longer than the send it covers, counts the attempt and commits before
the HTTP call, and records the outcome after it: a delivery is sent again while another attempt may be in flight
only when that attempt's worker died (its lease ran out), and every attempt shows in `attempts`."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.orm import Session

from app.chat.errors import InvalidInput, NotFound
from app.chat.webhook_targets import check_target
from app.db.models import Webhook, WebhookDelivery, utcnow

EVENTS = ("message.created", "message.recalled", "conversation.created", "conversation.intervention_requested",
          "member.joined", "member.left")
GIVE_UP_AFTER = timedelta(days=1)


def add_webhook(session: Session, url: str, events: list[str], private_allowed: bool = False) -> Webhook:
    """A new webhook (flushed) for `events`, with a new signing secret. InvalidInput ("url: …", "events: …") for an
    address webhooks may not go to (app.chat.webhook_targets) or unknown events."""
    check_target(url, private_allowed)
    unknown = [e for e in events if e not in EVENTS]
    if unknown or not events:
        raise InvalidInput(f"events: choose from {', '.join(EVENTS)}", field="events")
    hook = Webhook(url=url, events=",".join(dict.fromkeys(events)), secret=secrets.token_urlsafe(32))
    session.add(hook)
    session.flush()
    return hook


def remove_webhook(session: Session, webhook_id: int) -> None:
    """Removes a webhook and its deliveries (flushed); NotFound when there is none."""
    hook = session.get(Webhook, webhook_id)
    if hook is None:
        raise NotFound(f"no webhook {webhook_id}")
    session.delete(hook)
    session.flush()


def list_webhooks(session: Session) -> list[Webhook]:
    """Every webhook, oldest first."""
    return list(session.scalars(select(Webhook).order_by(Webhook.id)))


_SUBSCRIPTIONS = select(Webhook.__table__.c.id, Webhook.__table__.c.events)  # prebuilt: runs for every message


def enqueue(session: Session, event: str, data: dict[str, Any]) -> None:
    """Store one delivery per subscribed webhook, inside the caller's transaction."""
    hook_ids = [row.id for row in session.connection().execute(_SUBSCRIPTIONS) if event in row.events.split(",")]
    if not hook_ids:
        return
    now = utcnow()
    for hook_id in hook_ids:
        delivery = WebhookDelivery(webhook_id=hook_id, event=event, payload="", next_attempt_at=now, created_at=now)
        session.add(delivery)
        session.flush()
        delivery.payload = json.dumps(
            {"id": delivery.id, "type": event, "created_at": now.isoformat(), "data": data},
            ensure_ascii=False, separators=(",", ":"),
        )
    session.flush()


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The value of X-Kefu-Signature: HMAC-SHA256 over "<timestamp>.<body>" with the webhook's secret."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


@dataclass(frozen=True)
class Claim:
    """One delivery claimed by one worker for one attempt: everything needed to send it without the database.

    `attempt` is the delivery's attempt count including this one (already stored); it fences the outcome: only
    the claim that made this attempt may record it. `lease_until` is when another worker may take it over."""

    delivery_id: int
    event: str
    payload: str
    attempt: int
    created_at: datetime
    lease_until: datetime
    url: str
    secret: str


def _claimable(now: datetime) -> ColumnElement[bool]:
    """Pending, due, and not leased to a worker (or its lease ran out: that worker died)."""
    table = WebhookDelivery
    return and_(table.status == "pending", table.next_attempt_at <= now,
                or_(table.locked_until.is_(None), table.locked_until < now))


def claim_next(session: Session, lease: timedelta, look_at: int = 10) -> Claim | None:
    """Claim the oldest due delivery for one attempt, leased for `lease`, and commit before anything is sent.

    The attempt is counted here, so an attempt whose outcome is never recorded (the process died mid-send) still
    shows in `attempts`. The claim is one conditional UPDATE, so of several workers (in several processes) racing
    for a delivery exactly one wins; the losers try the next candidate. Returns None when nothing is due. The
    caller should close the session before sending: no connection is needed (or held) during the HTTP call."""
    now = utcnow()
    candidates = session.execute(
        select(WebhookDelivery.id, WebhookDelivery.attempts, WebhookDelivery.event, WebhookDelivery.payload,
               WebhookDelivery.created_at, Webhook.url, Webhook.secret)
        .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
        .where(_claimable(now))
        .order_by(WebhookDelivery.id)
        .limit(look_at)
    ).all()
    lease_until = now + lease
    for row in candidates:
        won = session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == row.id, WebhookDelivery.attempts == row.attempts, _claimable(now))
            .values(locked_until=lease_until, attempts=row.attempts + 1)
            .execution_options(synchronize_session=False)
        )
        if won.rowcount:  # type: ignore[attr-defined]
            session.commit()
            return Claim(row.id, row.event, row.payload, row.attempts + 1, row.created_at, lease_until,
                         row.url, row.secret)
    session.rollback()
    return None


def retry_delay(attempt: int, backoff_base: float) -> float:
    """Seconds before the next try after failed attempt number `attempt` (1, 2, …): doubling, at most an hour."""
    return float(min(backoff_base * 2 ** (attempt - 1), 3600.0))


def record_attempt(session: Session, claim: Claim, status_code: int | None, error: str,
                   backoff_base: float) -> bool:
    """Store the outcome of the claimed attempt (HTTP status, or None and the error when there was no answer) and
    release the lease; commits. A 2xx delivers it; otherwise it is retried after `retry_delay` seconds, or fails
    for good once it is a day old. Returns False (and changes nothing) when the claim is no longer this worker's:
    its lease ran out and another worker took the delivery over, or it was removed."""
    now = utcnow()
    values: dict[str, Any] = {"last_status_code": status_code, "last_error": error[:500], "locked_until": None}
    if status_code is not None and 200 <= status_code < 300:
        values |= {"status": "delivered", "delivered_at": now}
    elif now - claim.created_at >= GIVE_UP_AFTER:
        values["status"] = "failed"
    else:
        values["next_attempt_at"] = now + timedelta(seconds=retry_delay(claim.attempt, backoff_base))
    done = session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == claim.delivery_id, WebhookDelivery.attempts == claim.attempt,
               WebhookDelivery.status == "pending")
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return bool(done.rowcount)  # type: ignore[attr-defined]


def recent_deliveries(session: Session, limit: int = 50) -> list[WebhookDelivery]:
    """The latest `limit` deliveries, newest first (for `kefu webhook deliveries`)."""
    return list(session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id.desc()).limit(limit)))
