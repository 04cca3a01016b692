"""Request-scoped dependencies: a database session per request and the acting person."""

from __future__ import annotations

from collections.abc import AsyncIterator

from anyio import to_thread
from litestar import Request
from litestar.datastructures import State
from litestar.exceptions import NotAuthorizedException, NotFoundException
from sqlalchemy.orm import Session

from app.chat.people import get_user
from app.db.models import User
from app.web.identity import acting_person_id

MAX_ID = 2**63 - 1


async def provide_db(state: State) -> AsyncIterator[Session]:
    """One session per request; closed in a worker thread, since closing may talk to the database."""
    session: Session = state.sessions()
    try:
        yield session
    finally:
        await to_thread.run_sync(session.close)


def current_person(request: Request, db: Session) -> User:
    """The signed-in person acting on this request; 401 when there is none."""
    user_id = acting_person_id(request)
    user = get_user(db, user_id) if user_id else None
    if user is None or user.role == "admin":
        raise NotAuthorizedException()
    return user


def parse_id(raw: str) -> int:
    """Ids in URLs: a positive integer that fits the database, else the page does not exist (404)."""
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19:
        raise NotFoundException()
    value = int(raw)
    if not 0 < value <= MAX_ID:
        raise NotFoundException()
    return value
