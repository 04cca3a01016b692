"""API keys for the marketplace's backend: shown once, stored as SHA-256, revocable."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.chat.errors import InvalidInput, NotFound
from app.chat.people import valid_user_id
from app.db.models import ApiKey, utcnow

KEY_PREFIX = "kefu_"


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(session: Session, name: str) -> tuple[ApiKey, str]:
    """The stored record and the key itself, which is never stored nor shown again."""
    if not valid_user_id(name):
        raise InvalidInput("name: letters, digits and - _ . @ only, at most 64 characters", field="name")
    if session.scalar(select(ApiKey).where(ApiKey.name == name)) is not None:
        raise InvalidInput(f"an API key named {name} exists already")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    record = ApiKey(name=name, key_hash=_digest(key), prefix=key[:12])
    session.add(record)
    session.flush()
    return record, key


def revoke_key(session: Session, name: str) -> ApiKey:
    """Revokes the key named `name` (flushed) and returns its record; a key revoked before keeps its first revocation
    time. NotFound when no key has that name."""
    record = session.scalar(select(ApiKey).where(ApiKey.name == name))
    if record is None:
        raise NotFound(f"no API key named {name}")
    if record.revoked_at is None:
        record.revoked_at = utcnow()
    session.flush()
    return record


def list_keys(session: Session) -> list[ApiKey]:
    """Every API key's record, revoked ones included, by name."""
    return list(session.scalars(select(ApiKey).order_by(ApiKey.name)))


def find_active(session: Session, key: str) -> ApiKey | None:
    """The unrevoked key whose SHA-256 digest matches `key`, or None (unknown, revoked, without the `kefu_` prefix, or
    longer than 200 characters)."""
    if not key.startswith(KEY_PREFIX) or len(key) > 200:
        return None
    record = session.scalar(select(ApiKey).where(ApiKey.key_hash == _digest(key)))
    return record if record is not None and record.revoked_at is None else None
