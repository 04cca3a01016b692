"""The test database without HTTP: a session on it, conversations and messages stored through the domain functions
(no rate limit, no CSRF), and rows counted afresh."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.chat import conversations as convs
from app.chat import messages as msgs
from app.chat.people import get_user
from app.db.engine import make_engine, make_sessionmaker


@contextmanager
def with_session(database_url: str) -> Iterator[Session]:
    """A plain session on the test database (the caller commits); the engine goes with it."""
    engine = make_engine(database_url)
    try:
        with make_sessionmaker(engine)() as session:
            yield session
    finally:
        engine.dispose()


def count(db: Session, model: type) -> int:
    """Rows of `model` as committed now."""
    db.rollback()  # a fresh snapshot
    return db.scalar(select(func.count()).select_from(model)) or 0


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
