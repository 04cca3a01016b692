"""Webhooks: events are stored as deliveries in the same transaction as the change (an outbox), then sent,
signed with HMAC-SHA256, and retried with backoff for up to a day. Nothing is lost across a restart."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from app.chat.errors import InvalidInput, NotFound
from app.db.models import Webhook, WebhookDelivery, utcnow

EVENTS = ("message.created", "conversation.created")
GIVE_UP_AFTER = timedelta(days=1)
LOCK_FOR = timedelta(seconds=60)


def add_webhook(session: Session, url: str, events: list[str]) -> Webhook:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or len(url) > 1000:
        raise InvalidInput("url: an http:// or https:// address")
    unknown = [e for e in events if e not in EVENTS]
    if unknown or not events:
        raise InvalidInput(f"events: choose from {', '.join(EVENTS)}")
    hook = Webhook(url=url, events=",".join(dict.fromkeys(events)), secret=secrets.token_urlsafe(32))
    session.add(hook)
    session.flush()
    return hook


def remove_webhook(session: Session, webhook_id: int) -> None:
    hook = session.get(Webhook, webhook_id)
    if hook is None:
        raise NotFound(f"no webhook {webhook_id}")
    session.delete(hook)
    session.flush()


def list_webhooks(session: Session) -> list[Webhook]:
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


def claim_due(session: Session, limit: int = 20) -> list[tuple[WebhookDelivery, Webhook]]:
    """Deliveries due now, each locked for this worker (several processes may run workers)."""
    now = utcnow()
    candidates = session.scalars(
        select(WebhookDelivery.id)
        .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now,
               or_(WebhookDelivery.locked_until.is_(None), WebhookDelivery.locked_until < now))
        .order_by(WebhookDelivery.id)
        .limit(limit)
    ).all()
    claimed = []
    for delivery_id in candidates:
        result = session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id,
                   or_(WebhookDelivery.locked_until.is_(None), WebhookDelivery.locked_until < now))
            .values(locked_until=now + LOCK_FOR)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount:  # type: ignore[attr-defined]
            claimed.append(delivery_id)
    session.commit()
    rows = []
    for delivery_id in claimed:
        delivery = session.get(WebhookDelivery, delivery_id)
        hook = session.get(Webhook, delivery.webhook_id) if delivery else None
        if delivery is not None and hook is not None:
            rows.append((delivery, hook))
    return rows


def record_attempt(session: Session, delivery: WebhookDelivery, status_code: int | None, error: str,
                   backoff_base: float) -> None:
    now = utcnow()
    delivery.attempts += 1
    delivery.last_status_code = status_code
    delivery.last_error = error[:500]
    delivery.locked_until = None
    if status_code is not None and 200 <= status_code < 300:
        delivery.status = "delivered"
        delivery.delivered_at = now
    elif now - delivery.created_at >= GIVE_UP_AFTER:
        delivery.status = "failed"
    else:
        delay = min(backoff_base * 2 ** (delivery.attempts - 1), 3600.0)
        delivery.next_attempt_at = now + timedelta(seconds=delay)
    session.commit()


def recent_deliveries(session: Session, limit: int = 50) -> list[WebhookDelivery]:
    return list(session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id.desc()).limit(limit)))
