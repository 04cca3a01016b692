"""The buyer's orders beside the thread (订单): what the marketplace pushes (PUT /api/v1/orders/{order_no}), and who
sees which.

The marketplace owns its orders; Kefu keeps the last version it was given, refusing an older one (`updated_at`), and
shows them in the thread's side panel. One rule says who sees what (`panel_scope`): a merchant sees the
conversation's buyer's orders with their own shop; the platform's support person sees that buyer's orders with every
shop; a buyer sees their own orders with the shop they talk to; nobody sees another buyer's orders. Fields are
validated as an order card's are (app.chat.cards); item pictures are never shown (a buyer's browser loads no
third-party address).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.chat import cards
from app.chat.conversations import find_conversation
from app.chat.errors import Conflict, InvalidInput, NotFound
from app.chat.messages import Outgoing, Sent, send
from app.chat.people import get_user, valid_user_id
from app.db.models import Conversation, Order, User
from app.i18n import gettext as _

PAGE_SIZE = 10
ROLE_NAMES = {"buyer": lambda: _("买家"), "merchant": lambda: _("商家")}
FIELDS = {"buyer_id", "merchant_id", "status", "total_fen", "currency", "items", "url", "placed_at", "updated_at",
          "notify"}


class StaleOrder(Conflict):
    """An `updated_at` older than the stored one: the marketplace sent an old version (409, nothing changed)."""


@dataclass(frozen=True)
class Pushed:
    """The outcome of a push: the stored order, whether it was new, whether anything changed (a repeat changes
    nothing), and the notice it posted (when asked to and something changed)."""

    order: Order
    created: bool
    changed: bool
    notice: Sent | None


def build_order(order_no: str, raw: Any) -> tuple[dict[str, Any], bool]:
    """(the validated order's columns, whether to post a notice) from a JSON object: {"buyer_id", "merchant_id",
    "status", "total_fen", "currency", "items", "url", "placed_at", "updated_at", "notify"}; the order's own fields
    follow the order card's rules (app.chat.cards.build_card), `status` is required, times are ISO 8601 with a zone
    (`updated_at`, the version, is required: a push with an older one is refused). Raises InvalidInput naming the
    field."""
    if not isinstance(raw, dict):
        raise InvalidInput(_("订单须是一个 JSON 对象。"), field="order")
    unknown = sorted(set(raw) - FIELDS)
    if unknown:
        raise InvalidInput(_("不认识的字段 {name}。").format(name=unknown[0]), field=str(unknown[0])[:100])
    card = cards.build_card({"kind": "order", "order_no": order_no,
                             **{k: raw.get(k) for k in ("status", "total_fen", "currency", "items", "url")}})
    if card["status"] is None:
        raise InvalidInput(_("status 不能为空。"), field="status")
    notify = raw.get("notify", False)
    if not isinstance(notify, bool):
        raise InvalidInput(_("notify 须是 true 或 false。"), field="notify")
    columns = {"order_no": order_no, "buyer_id": _person(raw, "buyer_id"), "merchant_id": _person(raw, "merchant_id"),
               "status": card["status"], "total_fen": card["total_fen"], "currency": card["currency"],
               "items": json.dumps(card["items"], ensure_ascii=False, sort_keys=True), "url": card["url"],
               "placed_at": _moment(raw, "placed_at"), "updated_at": _moment(raw, "updated_at")}
    return columns, notify


def push(session: Session, columns: dict[str, Any], notify: bool) -> Pushed:
    """Create or replace the order (committed). The same version again changes nothing; an older `updated_at` raises
    StaleOrder; another buyer or merchant for a stored order raises Conflict; a buyer who is not a buyer or a
    merchant who is not a merchant raises InvalidInput (field `buyer_id` / `merchant_id`). With `notify` and a
    change, a notice with the new status goes into the buyer–merchant conversation when they have one."""
    _check_parties(session, columns)
    try:
        order, created, changed = _store(session, columns)
        session.commit()
    except IntegrityError:  # created by another push at the same moment: this one is then an update
        session.rollback()
        order, created, changed = _store(session, columns)
        session.commit()
    notice = None
    if notify and changed:
        conversation = find_conversation(session, order.buyer_id, order.merchant_id)
        if conversation is not None:
            text = _("订单 {order_no} 状态更新：{status}").format(order_no=order.order_no, status=order.status)
            notice = send(session, Outgoing(conversation.id, None, text, kind="system"))
    return Pushed(order, created, changed, notice)


def get_order(session: Session, order_no: str) -> Order:
    """The stored order; NotFound."""
    order = session.get(Order, order_no)
    if order is None:
        raise NotFound(f"no order {order_no[:64]}")
    return order


def order_data(order: Order) -> dict[str, Any]:
    """An order as the API shows it: order_no, buyer_id, merchant_id, status, total_fen, currency, items, url,
    placed_at and updated_at (ISO 8601)."""
    return {"order_no": order.order_no, "buyer_id": order.buyer_id, "merchant_id": order.merchant_id,
            "status": order.status, "total_fen": order.total_fen, "currency": order.currency,
            "items": json.loads(order.items), "url": order.url, "placed_at": order.placed_at.isoformat(),
            "updated_at": order.updated_at.isoformat()}


def panel_scope(viewer: User, conversation: Conversation, roles: dict[str, str]) -> tuple[str, str | None] | None:
    """Whose orders `viewer` sees beside this conversation: (buyer id, merchant id or None for every shop), or None
    (no panel: no buyer in the conversation, or the viewer is not the buyer, a merchant of it or the platform).
    `roles`: user id → role of the conversation's pair. The one rule of who sees which orders."""
    pair = (conversation.user_a, conversation.user_b)
    buyer = next((uid for uid in pair if roles.get(uid) == "buyer"), None)
    if buyer is None:
        return None
    other = pair[1] if pair[0] == buyer else pair[0]
    if viewer.role == "support" and viewer.id in (other, conversation.support_id):
        return buyer, None
    if viewer.id == other and viewer.role == "merchant":
        return buyer, viewer.id
    if viewer.id == buyer and roles.get(other) == "merchant":
        return buyer, other
    return None


def orders_page(session: Session, scope: tuple[str, str | None], before: str | None = None,
                limit: int = PAGE_SIZE) -> tuple[list[Order], bool]:
    """A page of the scope's orders, newest placed first (then by order number), strictly after the order `before`
    (which must be in the scope, else the first page), and whether more follow. One indexed range read."""
    buyer, merchant = scope
    query = select(Order).where(Order.buyer_id == buyer)
    if merchant is not None:
        query = query.where(Order.merchant_id == merchant)
    after = session.get(Order, before) if before else None
    if after is not None and after.buyer_id == buyer and merchant in (None, after.merchant_id):
        query = query.where(or_(Order.placed_at < after.placed_at,
                                and_(Order.placed_at == after.placed_at, Order.order_no < after.order_no)))
    rows = list(session.scalars(query.order_by(Order.placed_at.desc(), Order.order_no.desc()).limit(limit + 1)))
    return rows[:limit], len(rows) > limit


def order_card(order: Order) -> dict[str, Any]:
    """The order as a card (app.chat.cards.build_card's shape) to send into a conversation from the panel."""
    return cards.build_card({"kind": "order", "order_no": order.order_no, "status": order.status,
                             "total_fen": order.total_fen, "currency": order.currency,
                             "items": json.loads(order.items), "url": order.url})


def visible_order(session: Session, scope: tuple[str, str | None], order_no: str) -> Order:
    """The order `order_no` when it is in `scope` (panel_scope's answer); NotFound otherwise (the same answer as for
    no such order: whether another shop's order exists is not told)."""
    order = session.get(Order, order_no)
    if order is None or order.buyer_id != scope[0] or scope[1] not in (None, order.merchant_id):
        raise NotFound(f"no order {order_no[:64]}")
    return order


def audience(order: Order, support_id: str) -> list[str]:
    """Who hears that an order changed: its buyer, its merchant and the platform's support person."""
    return [order.buyer_id, order.merchant_id, support_id]


def _store(session: Session, columns: dict[str, Any]) -> tuple[Order, bool, bool]:
    """Insert or update the order row (locked), not committed: (order, created, changed)."""
    order = session.get(Order, columns["order_no"], with_for_update=True)
    if order is None:
        order = Order(**columns)
        session.add(order)
        session.flush()
        return order, True, True
    if (order.buyer_id, order.merchant_id) != (columns["buyer_id"], columns["merchant_id"]):
        raise Conflict(_("订单 {order_no} 已属于另一对买家和商家。").format(order_no=order.order_no))
    if columns["updated_at"] < order.updated_at:
        raise StaleOrder(_("这个版本比已保存的旧（updated_at 更早），没有更新。"))
    changed = any(getattr(order, name) != value for name, value in columns.items() if name != "updated_at")
    for name, value in columns.items():
        setattr(order, name, value)
    return order, False, changed


def _check_parties(session: Session, columns: dict[str, Any]) -> None:
    """The buyer must be a buyer and the merchant a merchant (InvalidInput naming the field)."""
    for field, role in (("buyer_id", "buyer"), ("merchant_id", "merchant")):
        person = get_user(session, columns[field])
        if person is None or person.role != role:
            text = _("{field} 须是已有的{role}。").format(field=field, role=ROLE_NAMES[role]())
            raise InvalidInput(text, field=field)


def _person(raw: dict[str, Any], field: str) -> str:
    """The user id in `raw[field]` (the id rule of app.chat.people), or InvalidInput naming the field."""
    value = raw.get(field)
    if not isinstance(value, str) or not valid_user_id(value):
        raise InvalidInput(_("{field} 须是一个用户 id。").format(field=field), field=field)
    return value


def _moment(raw: dict[str, Any], field: str) -> datetime:
    """The ISO 8601 time with a zone in `raw[field]`, in UTC, or InvalidInput naming the field."""
    value = raw.get(field)
    try:
        moment = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise InvalidInput(_("{field} 须是带时区的 ISO 8601 时间，如 2026-12-05T10:00:00+08:00。").format(field=field),
                           field=field)
    return moment.astimezone(UTC)
