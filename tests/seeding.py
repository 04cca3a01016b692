"""Conversations and messages stored through the domain functions (not over HTTP: no rate limit, no CSRF)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.chat import conversations as convs
from app.chat import messages as msgs
from app.chat.people import get_user


def converse(db: Session, a: str, b: str) -> int:
    """The id of the conversation between two existing people, created if missing."""
    me, peer = get_user(db, a), get_user(db, b)
    assert me is not None and peer is not None
    conversation = convs.get_or_create_conversation(db, me, peer)
    db.commit()
    return conversation.id


def say_all(db: Session, cid: int, sender: str, *bodies: str) -> list[int]:
    ids = [msgs.send_message(db, cid, sender, body).id for body in bodies]
    db.commit()
    return ids


def say(db: Session, cid: int, sender: str, body: str) -> int:
    return say_all(db, cid, sender, body)[0]
