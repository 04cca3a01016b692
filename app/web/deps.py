"""Request-scoped dependencies: a database session per request, the acting person, the signed-in admin."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Annotated

from anyio import to_thread
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotAuthorizedException, NotFoundException, PermissionDeniedException
from litestar.params import FromPath, QueryParameter
from sqlalchemy.orm import Session

from app.chat.admins import admin_of_session
from app.chat.conversations import get_conversation, get_membership
from app.chat.paging import id_from
from app.chat.people import MAX_ID_LENGTH, get_user, may_sign_in
from app.chat.sessions import live_owners, session_owner
from app.db.models import AdminAccount, Conversation, User
from app.i18n import gettext as _
from app.web.errors import public_error
from app.web.identity import acting_entry, read_admin_cookie, read_session, requested_person

# The parameter types every controller uses: the request's session (provide_db), an id in the path (checked by
# parse_id, so that a bad one is a 404 page, not a validation error), and an optional, bounded query value.
Db = NamedDependency[Session]
PathId = FromPath[str]
QueryValue = Annotated[str | None, QueryParameter(required=False, max_length=200)]
PersonLookup = Callable[[Session, str], User | None]
# The acting person, provided to handlers that name a parameter `me` (reading: any signed-in person) or `writer`
# (writing: admins are refused); see PERSON_DEPENDENCIES.
Me = NamedDependency[User]
Writer = NamedDependency[User]


async def provide_db(state: State) -> AsyncIterator[Session]:
    """One session per request; closed in a worker thread, since closing may talk to the database."""
    session: Session = state.sessions()
    try:
        yield session
    finally:
        await to_thread.run_sync(session.close)


def current_admin(request: ASGIConnection, db: Session) -> AdminAccount | None:
    """The signed-in admin: a validly signed cookie whose session is live and whose account is enabled (one
    query), else None."""
    cookie = read_admin_cookie(request)
    if cookie is None:
        return None
    user_id, token = cookie
    return admin_of_session(db, token, user_id)


def signed_in_as(request: Request, db: Session, lookup: PersonLookup = get_user) -> tuple[User, str] | None:
    """(the person this request acts for, their session token) when that person's session is live and they may
    use the chat; else None. One primary-key query for the session, then `lookup` for the person."""
    entry = acting_entry(request)
    if entry is None:
        return None
    user_id, token = entry
    if session_owner(db, token) != user_id:
        return None
    user = lookup(db, user_id)
    return (user, token) if user is not None and may_sign_in(user) else None


def current_person(request: Request, db: Session, write: bool = False, lookup: PersonLookup = get_user) -> User:
    """The signed-in person acting on this request. 401 when there is none (naming the page's person when the
    page names one who is no longer signed in here), 403 for admins on write routes (admins read every
    conversation and write none)."""
    found = signed_in_as(request, db, lookup)
    if (write or found is None) and current_admin(request, db) is not None:
        raise public_error(PermissionDeniedException, _("管理员只能查看会话，不能发送或修改任何内容。"))
    if found is None:
        wanted = requested_person(request)
        if wanted:
            raise public_error(NotAuthorizedException, _(
                "这个页面的用户 {who} 已不在这个浏览器登录（可能已退出登录）。请重新通过商城给你的链接进入。"
            ).format(who=wanted[:MAX_ID_LENGTH]))
        raise NotAuthorizedException()
    return found[0]


def provide_me(request: Request, db: Db) -> User:
    """The `me` dependency: `current_person` for a route that reads (401 when no one is signed in, 403 for an
    admin where the page acts for nobody)."""
    return current_person(request, db)


def provide_writer(request: Request, db: Db) -> User:
    """The `writer` dependency: `current_person` for a route that writes (401 when no one is signed in, 403 for an
    admin)."""
    return current_person(request, db, write=True)


# Controllers of the people's pages register these: a handler asks for `me: Me` or `writer: Writer`. They look the
# person up in a worker thread (one session query and one person query).
PERSON_DEPENDENCIES = {
    "me": Provide(provide_me, sync_to_thread=True),
    "writer": Provide(provide_writer, sync_to_thread=True),
}


def signed_in_people(request: Request, db: Session) -> set[str]:
    """Everyone this browser holds a live session for (an <img> cannot say which of them it acts for)."""
    session = read_session(request)
    return live_owners(db, session.tokens) & set(session.people)


def parse_id(raw: str) -> int:
    """Ids in URLs (`app.chat.paging.id_from`'s rule), else the page does not exist: NotFoundException (404)."""
    value = id_from(raw)
    if value is None:
        raise NotFoundException()
    return value


def writer_in(request: Request, db: Session, raw_cid: str) -> tuple[User, Conversation]:
    """The signed-in participant about to write into conversation `raw_cid` (401, 403 or 404 otherwise)."""
    me = current_person(request, db, write=True)
    conversation = get_conversation(db, parse_id(raw_cid))
    get_membership(db, conversation.id, me.id)
    return me, conversation
