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
from litestar.exceptions import HTTPException, NotAuthorizedException, ValidationException
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example
from litestar.params import Body, HeaderParameter, QueryParameter
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.chat import card_images, cards, links, orders, sync
from app.chat import conversations as convs
from app.chat import messages as msgs
from app.chat.api_keys import find_active
from app.chat.errors import ChatError, Forbidden, InvalidInput, NotFound, TooFrequent
from app.chat.paging import id_from
from app.chat.people import CHAT_ROLES, get_user, may_sign_in, refuse_reserved, upsert_user, valid_user_id
from app.db.models import MAX_ID, Message, User, utcnow
from app.realtime.bus import Delivery
from app.web.deps import Db, PathId
from app.web.errors import api_code, status_of

MAX_PAGE = 100
MISSING_FIELD_RE = re.compile(r"missing required field `([^`]+)`")


# --- errors ---

def api_error(status: int, code: str, message: str, field_name: str | None = None,
              headers: dict[str, str] | None = None) -> Response:
    """An API error: `status` with {"error": {"code", "message"[, "field"]}} and any `headers`."""
    error: dict[str, Any] = {"code": code, "message": message}
    if field_name:
        error["field"] = field_name
    return Response({"error": error}, status_code=status, headers=headers or {})


def http_error(_request: Request, exc: HTTPException) -> Response:
    """The API's answer to Litestar's HTTP errors. A ValidationException is 400 `invalid_request` naming the field at
    fault (for a body that lacks one, the missing field); any other keeps its status with a stable code (`unauthorized`
    with WWW-Authenticate: Bearer, `forbidden`, `not_found`, `method_not_allowed`, `conflict`, `too_large`,
    `rate_limited`, else `bad_request`, or `error` from 500)."""
    if isinstance(exc, ValidationException):
        extra = exc.extra if isinstance(exc.extra, list) else []
        first = extra[0] if extra and isinstance(extra[0], dict) else {}
        field_name = str(first.get("key") or "") or None
        message = str(first.get("message") or exc.detail)
        missing = MISSING_FIELD_RE.search(message)
        if field_name == "data" and missing:  # the body lacks a field: name it, not the body
            field_name = missing.group(1)
        return api_error(400, "invalid_request", message, field_name)
    code = api_code(exc.status_code)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
    return api_error(exc.status_code, code, str(exc.detail), headers=headers)


def chat_error(_request: Request, exc: ChatError) -> Response:
    """The API's answer to domain errors: the status of its kind (`status_of`: 404, 403, 413, 415, 422, 429 with
    Retry-After, 503), its stable `code`, its message and the field it is about, where one is known."""
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, TooFrequent) else None
    return api_error(status_of(exc), exc.code, str(exc), exc.field, headers)


@contextmanager
def about(field_name: str) -> Iterator[None]:
    """A domain error raised inside that names no field is about `field_name`."""
    try:
        yield
    except ChatError as error:
        error.field = error.field or field_name
        raise


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
    product: dict[str, Any] | None = None  # a product card being asked about (正在咨询): needs `target`


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
    next_updated_since: str | None = None  # on the last page of a walk: where the next sync starts


@dataclass
class MessagePage:
    items: list[dict[str, Any]]
    next_after: int | None = field(default=None)


def user_out(user: User) -> UserOut:
    """A person as the API returns them."""
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

WALK_DESCRIPTION = f"""Keyset pages of a person's conversations (`user_id`) or of every conversation.

Follow `next_cursor` until it is null. The list keeps moving while you page (a conversation that gets a message
moves to the top), so a walk returns **every conversation at least once**, and some twice:

- Without `updated_since`: newest activity first. A walk of more than one page then continues, oldest activity
  first, with the conversations active since the walk began (less {sync.OVERLAP.seconds} s), so those that moved
  up while you paged come again at the end.
- With `updated_since`: a sync, oldest activity first by (`last_activity_at`, `id`): the conversations with activity
  at or after that time. One that changes during the walk moves to the end and comes again.

The last page (`next_cursor` null) carries `next_updated_since`: pass it as `updated_since` for the next sync. It lies
at least {sync.OVERLAP.seconds} s before the walk began, so a message whose transaction committed late (with an
activity time older than conversations already returned) is in the next sync; that sync repeats the conversations
of the overlap. Deduplicate by `id`, keeping the item with the latest `last_activity_at`.

`limit` items a page (default 30, at most 100). 422 (field `cursor`) for a cursor that does not decode, 400 for an
invalid user id or query value."""

NOTICE_EXAMPLE = Example(summary="an order notice", value={"body": "订单已发货", "kind": "system"})

class UsersController(Controller):
    path = "/users"
    tags = ["people"]  # noqa: RUF012

    @put("/{user_id:str}", sync_to_thread=True, summary="Create or update a person",
         responses=ERRORS | {201: ResponseSpec(UserOut, description="Created")})
    def put_user(self, db: Db, user_id: PathId, data: Annotated[UserIn, Body(examples=[Example(
            value={"name": "保安堂药房", "role": "buyer", "description": "连锁药房"})])]) -> Response[UserOut]:
        """Creates the person `user_id` (a buyer, merchant or support person; admins are created with `kefu admin`
        only), or updates their name, role, avatar URL and description (the URL is cut to 500 characters, the
        description to 1000). 201 with the person when created, 200 when updated; 400 for an invalid id or body, 403
        for an id reserved for Kefu (`kefu-…`) or belonging to an admin, 422 (field `name`) for a name that is not
        accepted."""
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
        """The person `user_id`: a buyer, merchant or support person. 404 when there is no such person (admins and the
        system included), 400 for an invalid id."""
        user = get_user(db, _check_user_id(user_id))
        if user is None or user.role not in CHAT_ROLES:
            raise NotFound(f"no person {user_id}")
        return user_out(user)


class LinksController(Controller):
    path = "/links"
    tags = ["sign-in"]  # noqa: RUF012

    @post("/", sync_to_thread=True, responses=ERRORS, summary="A signed, expiring sign-in URL for a person")
    def create_link(self, request: Request, state: State, db: Db, data: Annotated[LinkIn, Body()]) -> LinkOut:
        """A signed sign-in URL for `user_id`, valid `ttl` seconds (default 300, at most 30 days), and its token and
        expiry; with `target` (a person's id), the chat opens with them, and with `product` (a product card's fields,
        as for POST /api/v1/conversations/{id}/cards) that conversation shows the product above the composer, sent
        with one click (正在咨询). 201; 404 for a person who does not exist (create them with PUT /api/v1/users/{id}
        first) or an unknown target, 403 for an id reserved for Kefu, 422 (field `ttl`) for a ttl out of range, 422
        naming the field for a product not accepted (`product.price_fen`, …) or without a target, 400 for an invalid
        id."""
        refuse_reserved(_check_user_id(data.user_id))
        user = get_user(db, data.user_id)
        if not may_sign_in(user):
            raise NotFound(f"no person {data.user_id}: create them with PUT /api/v1/users/{{id}} first")
        if data.target and get_user(db, data.target) is None:
            raise NotFound(f"no person {data.target}")
        assert user is not None
        with about("ttl"):
            token = links.make_token(state.settings.secret_key, links.LinkIdentity(
                user.id, user.name, user.role, data.target, data.product), data.ttl)
        base = str(request.base_url).rstrip("/")
        expires = datetime.now(UTC) + timedelta(seconds=data.ttl)
        return LinkOut(url=f"{base}/chat?token={token}", token=token, expires_at=expires)


class ConversationsController(Controller):
    path = "/conversations"
    tags = ["conversations"]  # noqa: RUF012

    @get("/", sync_to_thread=True, responses=ERRORS, summary="Conversations: newest first, or what changed since",
         description=WALK_DESCRIPTION)
    def list_conversations(
        self, db: Db,
        user_id: Annotated[str | None, QueryParameter(required=False, max_length=64)] = None,
        cursor: Annotated[str | None, QueryParameter(required=False, max_length=80)] = None,
        limit: Annotated[int | None, QueryParameter(required=False, ge=1, le=MAX_PAGE)] = None,
        updated_since: Annotated[datetime | None, QueryParameter(
            required=False, description="Start a sync: conversations with activity at or after this time "
                                        "(RFC 3339, e.g. 2025-11-25T08:00:00.000000Z), oldest activity first")] = None,
    ) -> Page:
        """Keyset pages of the person's conversations (`user_id`) or of every conversation: WALK_DESCRIPTION (the
        operation's description in the OpenAPI document) says how to walk them and what each refusal means."""
        with about("cursor"):  # a cursor continues its walk (whatever updated_since says); updated_since starts one
            position = sync.WalkCursor.decode(cursor) if cursor else None
        if position is None and updated_since is not None:
            position = sync.WalkCursor.since_time(updated_since, utcnow())
        page = sync.walk(db, _check_user_id(user_id) if user_id else None, position, _limit(limit, 30))
        return Page(items=[convs.conversation_data(c) for c in page.conversations],
                    next_cursor=page.next_cursor.encode() if page.next_cursor else None,
                    next_updated_since=_rfc3339(page.resume_at) if page.resume_at else None)

    @post("/", sync_to_thread=True, summary="Open (or find) the conversation of two people",
          responses=ERRORS | {200: ResponseSpec(dict[str, Any], description="Found: it existed already")})
    def open_conversation(self, db: Db, data: Annotated[ConversationIn, Body()]) -> Response[dict[str, Any]]:
        """The conversation of the two people in `user_ids`, created when they have none. 201 when created, 200 when it
        existed; 422 (field `user_ids`) unless exactly two ids, 404 for an unknown person, 403 for a pair that may not
        talk (buyer–merchant, buyer–support and merchant–support may), 400 for an invalid id."""
        if len(data.user_ids) != 2:
            raise InvalidInput("exactly two people", field="user_ids")
        a, b = (get_user(db, _check_user_id(uid)) for uid in data.user_ids)
        if a is None or b is None:
            raise NotFound("no such person")
        existing = convs.find_conversation(db, a.id, b.id)
        conversation = existing or convs.get_or_create_conversation(db, a, b)
        db.commit()
        return Response(convs.conversation_data(conversation), status_code=200 if existing else 201)

    @get("/{cid:str}", sync_to_thread=True, responses=ERRORS, summary="One conversation")
    def get_conversation(self, db: Db, cid: PathId) -> dict[str, Any]:
        """The conversation `cid`: its participants, creation and last activity times, last message id and message
        count. 404 for no such conversation."""
        return convs.conversation_data(convs.get_conversation(db, _conversation_id(cid)))

    @get("/{cid:str}/messages", sync_to_thread=True, responses=ERRORS, summary="Messages after an id, oldest first")
    def list_messages(
        self, db: Db, cid: PathId,
        after: Annotated[int | None, QueryParameter(required=False, ge=0, le=MAX_ID)] = None,
        limit: Annotated[int | None, QueryParameter(required=False, ge=1, le=MAX_PAGE)] = None,
    ) -> MessagePage:
        """The conversation's messages with ids above `after` (default 0), oldest first, `limit` a page (default 50, at
        most 100); pass `next_after` as `after` for the next page (null on the last). 404 for no such conversation."""
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

    @post("/{cid:str}/messages", summary="Post a message or a system notice",
          responses=ERRORS | {200: ResponseSpec(dict[str, Any], description="Stored before with this Idempotency-Key")})
    async def post_message(self, request: Request, state: State, cid: PathId,
                           data: Annotated[MessageIn, Body(examples=[NOTICE_EXAMPLE])],
                           idempotency_key: Annotated[str | None, HeaderParameter(
                               name="Idempotency-Key", required=False, max_length=200)] = None) -> Response[Any]:
        """Stores a message from `sender_id`, or a system notice (kind "system", or no sender), and delivers it live
        like any other message. Send an `Idempotency-Key` header to make retries safe: the same key with the same
        request stores one message and answers with it again (200); the same key with a different request (another
        conversation, sender, kind or body) is refused with 422 `idempotency_key_reused`. 201 with the message; 404 for
        no such conversation, 403 for a sender who does not take part, 422 for a body not accepted (field `body`), 400
        for an invalid sender id."""
        notice = data.kind == "system" or not data.sender_id
        sender_id = None if notice else _check_user_id(data.sender_id or "")
        idempotency = (request.state.api_key_id, idempotency_key) if idempotency_key else None
        outgoing = msgs.Outgoing(_conversation_id(cid), sender_id, data.body, kind="system" if notice else "text",
                                 idempotency=idempotency)
        delivery, sent = await to_thread.run_sync(_send_from_api, state, outgoing)
        await state.bus.deliver(delivery)
        return Response(msgs.message_data(sent.message), status_code=200 if sent.repeated else 201)


CARD_EXAMPLE = Example(summary="a product card", value={
    "kind": "product", "sender_id": "m1", "title": "六味地黄丸 200 丸", "price_fen": 3580, "currency": "CNY",
    "image_url": "https://img.example.com/p/1001.jpg", "url": "https://shop.example.com/p/1001", "sku": "1001-200"})


class CardsController(Controller):
    path = "/conversations/{cid:str}/cards"
    tags = ["conversations"]  # noqa: RUF012

    @post("/", summary="Send a product or order card",
          responses=ERRORS | {200: ResponseSpec(dict[str, Any], description="Stored before with this Idempotency-Key")})
    async def post_card(self, request: Request, state: State, cid: PathId,
                        data: Annotated[dict[str, Any], Body(examples=[CARD_EXAMPLE])],
                        idempotency_key: Annotated[str | None, HeaderParameter(
                            name="Idempotency-Key", required=False, max_length=200)] = None) -> Response[Any]:
        """Stores a product card ({"kind": "product", "title", "price_fen", "currency", "image_url", "url", "sku"}) or
        an order card ({"kind": "order", "order_no", "status", "total_fen", "currency", "items": [{"title",
        "quantity", "price_fen", "image_url"}], "url"}) from `sender_id` (a participant), or from the system (no
        `sender_id`, or "system"), and delivers it live like any message. Money is integer fen; currency defaults to
        CNY. The picture (`image_url`, an order's first item's) is fetched once by Kefu within
        KEFU_CARD_IMAGE_SECONDS and shown through Kefu, else the card is shown without it. `Idempotency-Key` as for
        messages. 201 with the message (its `card`); 422 naming the field at fault (e.g. `items[2].price_fen`),
        404 for no such conversation, 403 for a sender who does not take part."""
        raw = dict(data)
        sender = raw.pop("sender_id", None)
        notice = sender in (None, "", "system")
        sender_id = None if notice else _check_user_id(sender if isinstance(sender, str) else "")
        card = cards.build_card(raw)
        conversation_id = _conversation_id(cid)
        await to_thread.run_sync(_check_sender, state, conversation_id, sender_id)  # no fetching for strangers
        source = cards.image_source(card)
        thumbnail = None if source is None else await card_images.thumbnail(
            state.settings.upload_dir, source, state.settings.card_image_private_targets,
            state.settings.card_image_seconds)
        idempotency = (request.state.api_key_id, idempotency_key) if idempotency_key else None
        outgoing = cards.card_message(msgs.Outgoing(conversation_id, sender_id, None, idempotency=idempotency),
                                      card, thumbnail)
        delivery, sent = await to_thread.run_sync(_send_from_api, state, outgoing)
        await state.bus.deliver(delivery)
        return Response(msgs.message_data(sent.message), status_code=200 if sent.repeated else 201)


def _check_sender(state: State, conversation_id: int, sender_id: str | None) -> None:
    """NotFound for no such conversation, Forbidden for a sender who does not take part in it."""
    with state.sessions() as db:
        conversation = convs.get_conversation(db, conversation_id)
        if sender_id is not None and sender_id not in (conversation.user_a, conversation.user_b):
            raise Forbidden("not a participant")


def _send_from_api(state: State, outgoing: msgs.Outgoing) -> tuple[Delivery, msgs.Sent]:
    """The send use case for the API (in a worker thread), rendered for the live delivery. A retry that raced the
    original with the same key (the unique key refused it at commit) is answered from the key the original stored."""
    with state.sessions() as db:
        try:
            sent = _send_once(db, outgoing)
        except IntegrityError:
            if outgoing.idempotency is None:
                raise
            sent = _send_once(db, outgoing)
        return state.bus.delivery(sent, get_user(db, sent.message.sender_id)), sent


def _send_once(db: Session, outgoing: msgs.Outgoing) -> msgs.Sent:
    """`send`, with its refusals naming the field at fault."""
    with about("body"):
        try:
            return msgs.send(db, outgoing)
        except msgs.KeyReused as error:
            error.field = "Idempotency-Key"
            raise


def _rfc3339(moment: datetime) -> str:
    """UTC with microseconds and `Z` (no `+`, which a query string would turn into a space)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _conversation_id(raw: str) -> int:
    value = id_from(raw)
    if value is None:
        raise NotFound(f"no conversation {raw[:30]}")
    return value


ORDER_EXAMPLE = Example(summary="an order shipped", value={
    "buyer_id": "b1", "merchant_id": "m1", "status": "已发货", "total_fen": 2590, "currency": "CNY",
    "items": [{"title": "板蓝根颗粒 20 袋", "quantity": 1, "price_fen": 2590, "image_url": None}],
    "url": "https://shop.example/orders/202612050001", "placed_at": "2026-12-05T09:30:00+08:00",
    "updated_at": "2026-12-05T14:02:11+08:00", "notify": True})


class OrdersController(Controller):
    path = "/orders"
    tags = ["orders"]  # noqa: RUF012

    @put("/{order_no:str}", summary="Create or update an order",
         responses=ERRORS | {201: ResponseSpec(dict[str, Any], description="Created"),
                             409: ResponseSpec(data_container=ErrorBody, description="An older version",
                                               generate_examples=False)})
    async def put_order(self, state: State, order_no: PathId,
                        data: Annotated[dict[str, Any], Body(examples=[ORDER_EXAMPLE])]) -> Response[Any]:
        """Stores the order `order_no` as the marketplace has it now (app.chat.orders): the buyer, the merchant, its
        status (free text, up to 32 characters: 待付款, 已发货, 退款中 …), total and items in integer fen, its link,
        when it was placed and `updated_at`, its version. 201 when new, 200 when replaced or repeated (the same
        version again changes nothing). The buyer, the merchant and the platform's support person see it beside
        their conversation at once (`event: order`); with `notify: true` a change also posts a notice of the new
        status into the buyer–merchant conversation. 409 for an `updated_at` older than the stored one or another
        buyer or merchant; 422 naming the field at fault (e.g. `items[0].price_fen`, `buyer_id`)."""
        columns, notify = orders.build_order(order_no, data)
        pushed, delivery = await to_thread.run_sync(_push_order, state, columns, notify)
        await state.bus.deliver(delivery)
        return Response(orders.order_data(pushed.order), status_code=201 if pushed.created else 200)

    @get("/{order_no:str}", sync_to_thread=True, summary="Read an order", responses=ERRORS)
    def get_order(self, db: Db, order_no: PathId) -> dict[str, Any]:
        """The order `order_no` as last stored. 404 for no such order."""
        return orders.order_data(orders.get_order(db, order_no[:64]))


def _push_order(state: State, columns: dict[str, Any], notify: bool) -> tuple[orders.Pushed, Delivery]:
    """In a worker thread: store the order and render what to tell (the `order` event, and the notice)."""
    with state.sessions() as db:
        pushed = orders.push(db, columns, notify)
        return pushed, state.bus.order_delivery(pushed, state.settings.support_user)


api_router = Router(
    path="/api/v1",
    route_handlers=[UsersController, LinksController, ConversationsController, CardsController, OrdersController],
    guards=[require_api_key],
    exception_handlers={HTTPException: http_error, ChatError: chat_error},  # type: ignore[dict-item]
    security=[{"BearerToken": []}],
)
