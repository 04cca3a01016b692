"""The audit log: who signed in (or tried), every change to admin accounts, and every recalled message."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.chat.paging import page_of
from app.db.models import AuditEntry

ACTIONS = (
    "admin.sign_in",
    "admin.sign_in_failed",
    "admin.sign_in_throttled",
    "admin.created",
    "admin.password_changed",
    "admin.disabled",
    "admin.enabled",
    "link.sign_in",
    "link.refused",
    "message.recalled",
)
PAGE_SIZE = 50
MAX_ACTOR = 64


def record(session: Session, action: str, actor: str, client: str = "", detail: str = "") -> None:
    """One entry (flushed). The actor may be text someone typed (a username tried): it is kept printable, control
    characters shown escaped, and at most 64 characters."""
    assert action in ACTIONS, action
    actor = "".join(c if c.isprintable() else repr(c)[1:-1] for c in actor)[:MAX_ACTOR]
    session.add(AuditEntry(action=action, actor=actor, client=client[:100], detail=detail[:500]))
    session.flush()


def entries(session: Session, before: int | None = None, action: str | None = None,
            limit: int = PAGE_SIZE) -> tuple[list[AuditEntry], int | None]:
    """A page of entries, newest first, and the id to continue before (None at the end)."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit + 1)
    if before is not None:
        query = query.where(AuditEntry.id < before)
    if action:
        query = query.where(AuditEntry.action == action)
    rows, more = page_of(list(session.scalars(query)), limit)
    return rows, (rows[-1].id if more and rows else None)
