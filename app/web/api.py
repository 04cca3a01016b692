"""The integration API for the marketplace's backend: JSON under /api/v1, `Authorization: Bearer KEY`.

Errors are JSON: {"error": {"code": "...", "message": "...", "field": "..."}} with a stable code.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from anyio import to_thread
from litestar import Controller, Request, Response, Router, get, post, put
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException, NotAuthorizedException, ValidationException
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example
from litestar.params import Body, FromPath, HeaderParameter, QueryParameter
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.chat import conversations as convs
from app.chat import links
from app.chat import messages as msgs
from app.chat.api_keys import find_active
from app.chat.errors import ChatError, Forbidden, InvalidInput, NotFound
from app.chat.monitor import MonitorFilter, list_all_conversations
from app.chat.people import CHAT_ROLES, get_user, may_sign_in, refuse_reserved, upsert_user, valid_user_id
from app.db.models import Conversation, IdempotencyKey, Message, User
from app.i18n import gettext

Db = NamedDependency[Session]
PathId = FromPath[str]
MAX_PAGE = 100
MISSING_FIELD_RE = re.compile(r"missing required field `([^`]+)`")


# --- errors ---

def api_error(status: int, code: str, message: str, field_name: str | None = None,
              headers: dict[str, str] | None = None) -> Response:
    error: dict[str, Any] = {"code": code, "message": message}
    if field_name:
        error["field"] = field_name
    return Response({"error": error}, status_code=status, headers=headers or {})


def http_error(_request: Request, exc: HTTPException) -> Response:
    if isinstance(exc, ValidationException):
        extra = exc.extra if isinstance(exc.extra, list) else []
        first = extra[0] if extra and isinstance(extra[0], dict) else {}
        field_name = str(first.get("key") or "") or None
        message = str(first.get("message") or exc.detail)
        missing = MISSING_FIELD_RE.search(message)
        if field_name == "data" and missing:  # the body lacks a field: name it, not the body
            field_name = missing.group(1)
        return api_error(400, "invalid_request", message, field_name)
    codes = {401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
             409: "conflict", 413: "too_large", 429: "rate_limited"}
    code = codes.get(exc.status_code, "error" if exc.status_code >= 500 else "bad_request")
    headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
    return api_error(exc.status_code, code, str(exc.detail), headers=headers)


def chat_error(_request: Request, exc: ChatError) -> Response:
    if isinstance(exc, NotFound):
        return api_error(404, "not_found", str(exc))
    if isinstance(exc, Forbidden):
        return api_error(403, "forbidden", str(exc))
    message = str(exc)
    field_name = message.split(":", 1)[0] if ":" in message and " " not in message.split(":", 1)[0] else None
    return api_error(422, "invalid", message, getattr(exc, "field", None) or field_name)


class InvalidField(InvalidInput):
    """A domain validation error about one field of the request."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name


@contextmanager
def about(field_name: str) -> Iterator[None]:
    """The domain's InvalidInput raised inside names `field_name`."""
    try:
        yield
    except InvalidField:
        raise
    except InvalidInput as error:
        raise InvalidField(field_name, str(error)) from error


# --- authentication ---

def _key_id(state: State, authorization: str) -> int | None:
    scheme, _, key = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return None
    with state.sessions() as session:
        record = find_active(session, key.strip())
        return record.id if record else None


async def require_api_key(connection: ASGIConnection, _handler: BaseRouteHandler) -> None:
    """A guard on every API route: a valid, unrevoked key, or 401 JSON."""
    key_id = await to_thread.run_sync(_key_id, connection.app.state, connection.headers.get("authorization", ""))
    if key_id is None:
        raise NotAuthorizedException(detail="missing, unknown or revoked API key")
    connection.state.api_key_id = key_id


# --- bodies ---

Role = Literal["buyer", "merchant", "support"]


@dataclass
class UserIn:
    name: str
    role: Role
    avatar_url: str | None = None
    description: str | None = None


@dataclass
class UserOut:
    id: str
    name: str
    role: str
    avatar_url: str | None
    description: str | None


@dataclass
class LinkIn:
    user_id: str
    target: str | None = None
    ttl: int = links.DEFAULT_TTL


@dataclass
class LinkOut:
    url: str
    token: str
    expires_at: datetime


@dataclass
class ConversationIn:
    user_ids: list[str]


@dataclass
class MessageIn:
    body: str
    sender_id: str | None = None  # a participant; leave out (or use kind "system") for a system notice
    kind: Literal["text", "system"] = "text"


@dataclass
class Page:
    items: list[dict[str, Any]]
    next_cursor: str | None = None


@dataclass
class MessagePage:
    items: list[dict[str, Any]]
    next_after: int | None = field(default=None)


def user_out(user: User) -> UserOut:
    return UserOut(user.id, user.name, user.role, user.avatar_url, user.description)


def _check_user_id(user_id: str) -> str:
    if not valid_user_id(user_id):
        raise ValidationException(detail="invalid user id", extra=[{"key": "user_id", "message": "invalid user id"}])
    return user_id


def _limit(raw: int | None, default: int = 50) -> int:
    return max(1, min(raw or default, MAX_PAGE))


# --- routes ---

@dataclass
class ErrorDetail:
    code: str
    message: str
    field: str | None = None


@dataclass
class ErrorBody:
    error: ErrorDetail


# Every error is {"error": {...}}: the document says so, not Litestar's default {"status_code", "detail"}.
ERRORS = {status: ResponseSpec(data_container=ErrorBody, description=description, generate_examples=False)
          for status, description in ((400, "Invalid request: `field` names the bad one"),
                                      (401, "Missing, unknown or revoked API key"), (403, "Not allowed"),
                                      (404, "Not found"), (422, "Invalid value"))}

NOTICE_EXAMPLE = Example(summary="an order notice", value={"body": "订单已发货", "kind": "system"})

class UsersController(Controller):
    path = "/users"
    tags = ["people"]  # noqa: RUF012

    @put("/{user_id:str}", sync_to_thread=True, summary="Create or update a person",
         responses=ERRORS | {201: ResponseSpec(UserOut, description="Created")},
         description="Buyers, merchants and support people. Admins are created with `kefu admin` only.")
    def put_user(self, db: Db, user_id: PathId, data: Annotated[UserIn, Body(examples=[Example(
            value={"name": "保安堂药房", "role": "buyer", "description": "连锁药房"})])]) -> Response[UserOut]:
        _check_user_id(user_id)
        refuse_reserved(user_id)  # kefu-system and the rest of kefu-…: 403
        existing = get_user(db, user_id)
        if existing is not None and existing.role not in CHAT_ROLES:
            raise Forbidden("this id belongs to an admin or the system")
        with about("name"):
            user = upsert_user(db, user_id, data.name, data.role)
        user.avatar_url = (data.avatar_url or None) and data.avatar_url[:500]
        user.description = (data.description or None) and data.description[:1000]
        db.commit()
        return Response(user_out(user), status_code=200 if existing else 201)

    @get("/{user_id:str}", sync_to_thread=True, responses=ERRORS, summary="Read a person")
    def get_user(self, db: Db, user_id: PathId) -> UserOut:
        user = get_user(db, _check_user_id(user_id))
        if user is None or user.role not in CHAT_ROLES:
            raise NotFound(f"no person {user_id}")
        return user_out(user)


class LinksController(Controller):
    path = "/links"
    tags = ["sign-in"]  # noqa: RUF012

    @post("/", sync_to_thread=True, responses=ERRORS, summary="A signed, expiring sign-in URL for a person")
    def create_link(self, request: Request, state: State, db: Db, data: Annotated[LinkIn, Body()]) -> LinkOut:
        refuse_reserved(_check_user_id(data.user_id))
        user = get_user(db, data.user_id)
        if not may_sign_in(user):
            raise NotFound(f"no person {data.user_id}: create them with PUT /api/v1/users/{{id}} first")
        if data.target and get_user(db, data.target) is None:
            raise NotFound(f"no person {data.target}")
        assert user is not None
        with about("ttl"):
            token = links.make_token(state.settings.secret_key,
                                     links.LinkIdentity(user.id, user.name, user.role, data.target), data.ttl)
        base = str(request.base_url).rstrip("/")
        expires = datetime.now(UTC) + timedelta(seconds=data.ttl)
        return LinkOut(url=f"{base}/chat?token={token}", token=token, expires_at=expires)


class ConversationsController(Controller):
    path = "/conversations"
    tags = ["conversations"]  # noqa: RUF012

    @get("/", sync_to_thread=True, responses=ERRORS, summary="Conversations, newest activity first (keyset pagination)")
    def list_conversations(
        self, db: Db,
        user_id: Annotated[str | None, QueryParameter(required=False, max_length=64)] = None,
        cursor: Annotated[str | None, QueryParameter(required=False, max_length=80)] = None,
        limit: Annotated[int | None, QueryParameter(required=False, ge=1, le=MAX_PAGE)] = None,
    ) -> Page:
        with about("cursor"):
            before = convs.ListCursor.decode(cursor) if cursor else None
        if user_id:
            items, next_cursor = convs.list_conversations(db, _check_user_id(user_id), before, _limit(limit, 30))
            data = [convs.conversation_data(item.conversation) for item in items]
        else:
            rows, next_cursor = list_all_conversations(db, MonitorFilter(), before, _limit(limit, 30))
            data = [convs.conversation_data(row.conversation) for row in rows]
        return Page(items=data, next_cursor=next_cursor.encode() if next_cursor else None)

    @post("/", sync_to_thread=True, summary="Open (or find) the conversation of two people",
          responses=ERRORS | {200: ResponseSpec(dict[str, Any], description="Found: it existed already")})
    def open_conversation(self, db: Db, data: Annotated[ConversationIn, Body()]) -> Response[dict[str, Any]]:
        if len(data.user_ids) != 2:
            raise InvalidInput("user_ids: exactly two people")
        a, b = (get_user(db, _check_user_id(uid)) for uid in data.user_ids)
        if a is None or b is None:
            raise NotFound("no such person")
        existing = convs.find_conversation(db, a.id, b.id)
        conversation = existing or convs.get_or_create_conversation(db, a, b)
        db.commit()
        return Response(convs.conversation_data(conversation), status_code=200 if existing else 201)

    @get("/{cid:str}", sync_to_thread=True, responses=ERRORS, summary="One conversation")
    def get_conversation(self, db: Db, cid: PathId) -> dict[str, Any]:
        return convs.conversation_data(convs.get_conversation(db, _conversation_id(cid)))

    @get("/{cid:str}/messages", sync_to_thread=True, responses=ERRORS, summary="Messages after an id, oldest first")
    def list_messages(
        self, db: Db, cid: PathId,
        after: Annotated[int | None, QueryParameter(required=False, ge=0, le=2**63 - 1)] = None,
        limit: Annotated[int | None, QueryParameter(required=False, ge=1, le=MAX_PAGE)] = None,
    ) -> MessagePage:
        conversation_id = _conversation_id(cid)
        convs.get_conversation(db, conversation_id)
        size = _limit(limit)
        rows = list(db.scalars(
            select(Message).where(Message.conversation_id == conversation_id, Message.id > (after or 0))
            .order_by(Message.id).limit(size + 1)
        ))
        more = len(rows) > size
        rows = rows[:size]
        return MessagePage(items=[msgs.message_data(m) for m in rows], next_after=rows[-1].id if more else None)

    @post("/{cid:str}/messages", sync_to_thread=True, summary="Post a message or a system notice",
          responses=ERRORS | {200: ResponseSpec(dict[str, Any], description="Stored before with this Idempotency-Key")},
          description="Delivered live like any other message. Send an `Idempotency-Key` header to make retries "
                      "safe: the same key stores one message and answers with it again.")
    def post_message(self, request: Request, state: State, db: Db, cid: PathId,
                     data: Annotated[MessageIn, Body(examples=[NOTICE_EXAMPLE])],
                     idempotency_key: Annotated[str | None, HeaderParameter(
                         name="Idempotency-Key", required=False, max_length=200)] = None) -> Response[dict[str, Any]]:
        api_key_id: int = request.state.api_key_id
        conversation_id = _conversation_id(cid)
        notice = data.kind == "system" or not data.sender_id
        if notice:
            _ensure_system_sender(db)
        # Lock the conversation first: two messages at once (a retry racing the original, say) would otherwise
        # each take a shared lock on it (the message's foreign key) and then deadlock updating it on MariaDB.
        conversation = db.scalar(select(Conversation).where(Conversation.id == conversation_id).with_for_update())
        if conversation is None:
            raise NotFound("conversation")
        if idempotency_key:
            earlier = _earlier(db, api_key_id, idempotency_key)
            if earlier is not None:
                return Response(msgs.message_data(earlier), status_code=200)
        if notice:
            with about("body"):
                message = msgs.post_notice(db, conversation_id, data.body)
        else:
            convs.get_membership(db, conversation_id, _check_user_id(data.sender_id))
            with about("body"):
                message = msgs.send_message(db, conversation_id, data.sender_id, data.body)
        if idempotency_key:
            db.add(IdempotencyKey(api_key_id=api_key_id, key=idempotency_key, message_id=message.id))
        try:
            db.commit()
        except IntegrityError:  # the same key raced in at the same moment: answer with that one
            db.rollback()
            earlier = _earlier(db, api_key_id, idempotency_key or "")
            if earlier is None:
                raise
            return Response(msgs.message_data(earlier), status_code=200)
        state.bus.announce(message, get_user(db, message.sender_id), conversation)
        return Response(msgs.message_data(message), status_code=201)


def _ensure_system_sender(db: Session) -> None:
    """post_notice makes the notices' sender on first use; two first notices at once must not both fail on it.
    Committed on its own, so the request's later reads (REPEATABLE READ on MariaDB) see it either way."""
    if db.get(User, msgs.SYSTEM_USER_ID) is not None:
        return
    db.add(User(id=msgs.SYSTEM_USER_ID, name=gettext("系统通知"), role="system"))
    try:
        db.commit()
    except IntegrityError:  # made by another request at the same moment
        db.rollback()


def _earlier(db: Session, api_key_id: int, key: str) -> Message | None:
    record = db.scalar(select(IdempotencyKey).where(IdempotencyKey.api_key_id == api_key_id,
                                                    IdempotencyKey.key == key))
    return db.get(Message, record.message_id) if record else None


def _conversation_id(raw: str) -> int:
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19 or not 0 < int(raw) < 2**63:
        raise NotFound(f"no conversation {raw[:30]}")
    return int(raw)


api_router = Router(
    path="/api/v1",
    route_handlers=[UsersController, LinksController, ConversationsController],
    guards=[require_api_key],
    exception_handlers={HTTPException: http_error, ChatError: chat_error},  # type: ignore[dict-item]
    security=[{"BearerToken": []}],
)
