"""Request-scoped dependencies: a database session per request, the acting person, the signed-in admin."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from anyio import to_thread
from litestar import Request
from litestar.datastructures import State
from litestar.exceptions import NotAuthorizedException, NotFoundException, PermissionDeniedException
from sqlalchemy.orm import Session

from app.chat.conversations import get_conversation, get_membership
from app.chat.people import get_user
from app.db.models import AdminAccount, Conversation, User
from app.i18n import gettext as _
from app.web.errors import public_error
from app.web.identity import acting_person_id, read_admin_cookie

MAX_ID = 2**63 - 1
PersonLookup = Callable[[Session, str], User | None]


async def provide_db(state: State) -> AsyncIterator[Session]:
    """One session per request; closed in a worker thread, since closing may talk to the database."""
    session: Session = state.sessions()
    try:
        yield session
    finally:
        await to_thread.run_sync(session.close)


def current_admin(request: Request, db: Session) -> AdminAccount | None:
    """The signed-in admin, if the cookie is valid and the account is enabled and its sessions not ended."""
    cookie = read_admin_cookie(request)
    if cookie is None:
        return None
    user_id, version = cookie
    account = db.get(AdminAccount, user_id)
    if account is None or account.disabled or account.session_version != version:
        return None
    return account


def current_person(request: Request, db: Session, write: bool = False, lookup: PersonLookup = get_user) -> User:
    """The signed-in person acting on this request: 401 when there is none, 403 for admins on write routes
    (admins read every conversation and write none)."""
    user_id = acting_person_id(request)
    user = lookup(db, user_id) if user_id else None
    if (write or user is None) and current_admin(request, db) is not None:
        raise public_error(PermissionDeniedException, _("管理员只能查看会话，不能发送或修改任何内容。"))
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


def writer_in(request: Request, db: Session, raw_cid: str) -> tuple[User, Conversation]:
    """The signed-in participant about to write into conversation `raw_cid` (401, 403 or 404 otherwise)."""
    me = current_person(request, db, write=True)
    conversation = get_conversation(db, parse_id(raw_cid))
    get_membership(db, conversation.id, me.id)
    return me, conversation
