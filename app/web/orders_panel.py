"""The buyer's orders beside the thread (app.chat.orders): the panel's part of a page, and its pages."""

from __future__ import annotations

import json
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.response import Template
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.chat import cards, orders
from app.chat import conversations as convs
from app.chat.errors import NotFound
from app.chat.messages import Outgoing, Sent
from app.db.models import Conversation, User
from app.web import bodies
from app.web.delivery import client_key, send_and_deliver
from app.web.deps import PERSON_DEPENDENCIES, Db, Me, PathId, QueryValue, current_person, parse_id


def scope_of(db: Session, me: User, conversation: Conversation) -> tuple[str, str | None] | None:
    """Whose orders `me` sees beside `conversation` (app.chat.orders.panel_scope, with the pair's roles read)."""
    pair = [conversation.user_a, conversation.user_b]
    roles = {user_id: role for user_id, role in db.execute(select(User.id, User.role).where(User.id.in_(pair)))}
    return orders.panel_scope(me, conversation, roles)


def orders_context(db: Session, me: User, conversation: Conversation, before: str | None = None) -> dict[str, Any]:
    """The panel's context: `orders` (each with its `items` decoded), `more` (the order number to continue after,
    or None) and `orders_cid`; no `orders` at all when this person sees no orders beside this conversation."""
    scope = scope_of(db, me, conversation)
    if scope is None:
        return {"orders": None}
    rows, has_more = orders.orders_page(db, scope, before)
    shown = [{"order": row, "items": json.loads(row.items)} for row in rows]
    return {"orders": shown, "more": rows[-1].order_no if has_more else None, "orders_cid": conversation.id,
            "all_shops": scope[1] is None}


class OrdersPanelController(Controller):
    path = "/chat/c/{cid:str}"
    include_in_schema = False  # web pages; the OpenAPI document is for /api/v1
    dependencies = PERSON_DEPENDENCIES

    @get("/orders", sync_to_thread=True, name="chat:orders")
    def orders_page(self, db: Db, me: Me, cid: PathId, before: QueryValue = None) -> Template:
        """GET /chat/c/{cid}/orders: the orders panel of the conversation (htmx swaps it in, live on `event: order`),
        or the page after order `before`. Members only (401/403); 404 for no such conversation; an empty panel for a
        member who sees no orders here."""
        conversation_id = parse_id(cid)
        convs.get_membership(db, conversation_id, me.id)
        context = orders_context(db, me, convs.get_conversation(db, conversation_id), before)
        return Template("_orders.html", context={**context, "me": me, "page_only": before is not None})

    @post("/orders/{order_no:str}/card", request_max_body_size=bodies.SMALL_FORM, name="chat:order-card")
    async def send_order_card(self, request: Request, state: State, cid: PathId, order_no: PathId) -> Response:
        """POST /chat/c/{cid}/orders/{order_no}/card: one click in the orders panel sends the order as a card into the
        conversation, from the person clicking (the order must be one their panel shows: else 404). 201 with the
        message's HTML, delivered live like any message; 401, 403 for a non-member or an admin."""

        def _work() -> tuple[Sent, User]:
            """In send_and_deliver's worker thread: the stored card message and its sender."""
            with state.sessions() as db:
                me = current_person(request, db, write=True)
                conversation_id = parse_id(cid)
                convs.get_membership(db, conversation_id, me.id)
                scope = scope_of(db, me, convs.get_conversation(db, conversation_id))
                if scope is None:
                    raise NotFound("no orders here")
                card = orders.order_card(orders.visible_order(db, scope, order_no))
                outgoing = Outgoing(conversation_id, me.id, None, client_key=client_key(request))
                return cards.send_card(db, outgoing, card), me

        return await send_and_deliver(state, _work)
