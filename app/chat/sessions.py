"""Server-side sign-in sessions of people and admins.

A session is a random token in the browser's (signed) cookie; the table `sign_in_sessions` keeps only the token's
SHA-256, the person it signs in and when it expires. Checking a request costs one primary-key query
(`session_owner`); ending a session deletes its row, so a copied cookie stops working at once.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import bindparam, delete, select
from sqlalchemy.orm import Session

from app.chat.conversations import members_of
from app.db.models import Conversation, Member, SignInSession, utcnow

TOKEN_BYTES = 32
MAX_TOKEN_LENGTH = 100  # token_urlsafe(32) is 43 characters


def session_key(token: str) -> str:
    """The stored id of a token: its SHA-256 in hex (64 characters). A leaked table signs no one in."""
    return hashlib.sha256(token.encode()).hexdigest()


def start_session(db: Session, user_id: str, lifetime_seconds: int, now: datetime | None = None) -> str:
    """A new session for `user_id`, valid for `lifetime_seconds`; returns the token for the cookie (flushed,
    not committed). Also drops this person's expired sessions, so the table does not grow without end."""
    now = now or utcnow()
    # The expired ones found by a plain read, then deleted by primary key: a DELETE over the (user_id, expires_at)
    # range would lock the gaps next to other people's rows on MariaDB, and sign-ins at the same moment deadlocked.
    expired = list(db.scalars(select(SignInSession.id).where(SignInSession.user_id == user_id,
                                                             SignInSession.expires_at <= now)))
    if expired:
        db.execute(delete(SignInSession).where(SignInSession.id.in_(expired)))
    token = secrets.token_urlsafe(TOKEN_BYTES)
    db.add(SignInSession(id=session_key(token), user_id=user_id, created_at=now,
                         expires_at=now + timedelta(seconds=lifetime_seconds)))
    db.flush()
    return token


_OWNER = (select(SignInSession.__table__.c.user_id, SignInSession.__table__.c.expires_at)
          .where(SignInSession.__table__.c.id == bindparam("key")))  # prebuilt: the send path checks it each time


def session_owner(db: Session, token: str, now: datetime | None = None) -> str | None:
    """The user id a live session token signs in, or None (unknown, ended or expired). One primary-key query."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    row = db.connection().execute(_OWNER, {"key": session_key(token)}).one_or_none()
    if row is None or row.expires_at <= (now or utcnow()):
        return None
    return str(row.user_id)


_SESSION_AND_MEMBERS = (  # prebuilt: every typing notice asks it
    select(Conversation.__table__.c.user_a, Conversation.__table__.c.user_b, Conversation.__table__.c.support_id,
           SignInSession.__table__.c.expires_at)
    .select_from(SignInSession.__table__
                 .join(Member.__table__, Member.__table__.c.user_id == SignInSession.__table__.c.user_id)
                 .join(Conversation.__table__, Conversation.__table__.c.id == Member.__table__.c.conversation_id))
    .where(SignInSession.__table__.c.id == bindparam("key"), SignInSession.__table__.c.user_id == bindparam("user"),
           Member.__table__.c.conversation_id == bindparam("cid"))
)


def member_audience(db: Session, token: str, user_id: str, conversation_id: int,
                    now: datetime | None = None) -> tuple[str, ...] | None:
    """The members of conversation `conversation_id` (app.chat.conversations.members_of) when `token` is a live
    session of `user_id` and they are one of them; else None (then `session_owner` and
    `app.chat.conversations.get_membership` say what is wrong). One query, by primary keys: the check of the cheapest
    member-only request (a typing notice)."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    row = db.connection().execute(_SESSION_AND_MEMBERS, {"key": session_key(token), "user": user_id,
                                                          "cid": conversation_id}).one_or_none()
    if row is None or row.expires_at <= (now or utcnow()):
        return None
    return members_of(row.user_a, row.user_b, row.support_id)


def live_owners(db: Session, tokens: Iterable[str]) -> set[str]:
    """The user ids of those tokens whose sessions are live (one query for all of them)."""
    keys = {session_key(t) for t in tokens if t and len(t) <= MAX_TOKEN_LENGTH}
    if not keys:
        return set()
    rows = db.execute(select(SignInSession.user_id).where(SignInSession.id.in_(keys),
                                                          SignInSession.expires_at > utcnow()))
    return {user_id for (user_id,) in rows}


def end_sessions(db: Session, tokens: Iterable[str]) -> list[tuple[str, str]]:
    """Ends the sessions of these tokens (flushed, not committed); returns (user id, session key) of each that
    existed, for telling their open streams to close."""
    keys = {session_key(t) for t in tokens if t and len(t) <= MAX_TOKEN_LENGTH}
    if not keys:
        return []
    ended = [(row.user_id, row.id) for row in db.scalars(select(SignInSession).where(SignInSession.id.in_(keys)))]
    db.execute(delete(SignInSession).where(SignInSession.id.in_(keys)))
    db.flush()
    return ended


def end_all_sessions(db: Session, user_id: str) -> list[str]:
    """Ends every session of one person or admin (flushed, not committed); returns their session keys."""
    keys = list(db.scalars(select(SignInSession.id).where(SignInSession.user_id == user_id)))
    if keys:
        db.execute(delete(SignInSession).where(SignInSession.user_id == user_id))
        db.flush()
    return keys
