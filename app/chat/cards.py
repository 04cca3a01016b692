"""Product and order cards: a marketplace's product or order shown in a conversation as a message.

A card is validated here from a plain dict (the API's JSON body, a signed link's product, the orders panel), stored
as a message of kind "product" or "order" whose `body` is its searchable text (the product's title, the order
number) and whose `card` column holds the validated card as canonical JSON (one row, no join on the message path).
Money is integer fen (1/100 of the currency's unit): only currencies with two decimals are accepted, so that fen
means the same thing for each of them. URLs are http(s) without user name or password (app.chat.webhook_targets'
rule). Errors are InvalidInput naming the field at fault, e.g. "items[2].price_fen".
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import replace
from decimal import Decimal
from typing import Any

from babel.numbers import format_currency, get_currency_precision, is_currency
from sqlalchemy.orm import Session

from app.chat.errors import InvalidInput
from app.chat.messages import Outgoing, Sent, send
from app.chat.text import clean_text
from app.chat.webhook_targets import parse_target
from app.i18n import gettext as _

KINDS = ("product", "order")
MAX_TITLE = 200
MAX_SKU = 64
MAX_ORDER_NO = 64
MAX_STATUS = 32
MAX_URL = 1000
MAX_ITEMS = 50
MAX_QUANTITY = 99_999
MAX_FEN = 10_000_000_000  # 1 亿元: larger prices and totals are refused as mistakes
ORDER_NO_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-]*")
THUMBNAIL_KEY = "thumbnail"  # Kefu's own key in a stored card: where its image's thumbnail is, never shown


def build_card(raw: Any) -> dict[str, Any]:
    """The validated card from `raw` (a JSON object): {"kind": "product", "title", "price_fen", "currency",
    "image_url", "url", "sku"} or {"kind": "order", "order_no", "status", "total_fen", "currency", "items":
    [{"title", "quantity", "price_fen", "image_url"}], "url"}; optional fields absent or null become None, currency
    defaults to "CNY". Unknown fields are refused. Raises InvalidInput naming the field (e.g. "items[2].price_fen")."""
    if not isinstance(raw, Mapping):
        raise InvalidInput(_("卡片须是一个 JSON 对象。"), field="card")
    kind = raw.get("kind")
    if kind == "product":
        fields = {"title": _title(raw, "title"), "price_fen": _fen(raw, "price_fen"), "sku": _sku(raw),
                  "image_url": _url(raw, "image_url"), "url": _url(raw, "url")}
    elif kind == "order":
        fields = {"order_no": _order_no(raw), "status": _status(raw), "total_fen": _fen(raw, "total_fen"),
                  "items": _items(raw.get("items")), "url": _url(raw, "url")}
    else:
        raise InvalidInput(_("卡片类型须是 product 或 order。"), field="kind")
    card = {"kind": kind, **fields, "currency": _currency(raw)}
    unknown = sorted(set(raw) - set(card))
    if unknown:
        raise InvalidInput(_("不认识的字段 {name}。").format(name=unknown[0]), field=str(unknown[0])[:100])
    return card


def _title(raw: Mapping[str, Any], name: str, prefix: str = "") -> str:
    value = raw.get(name)
    if not isinstance(value, str):
        raise InvalidInput(_("{field} 须是文字。").format(field=prefix + name), field=prefix + name)
    try:
        return clean_text(value, _("标题"), MAX_TITLE, multiline=False)
    except InvalidInput as error:
        error.field = prefix + name
        raise


def _fen(raw: Mapping[str, Any], name: str, prefix: str = "") -> int:
    value = raw.get(name)
    if type(value) is not int or not 0 <= value <= MAX_FEN:  # `true` is no amount; 12.5 fen neither
        raise InvalidInput(_("{field} 须是 0 到 {most} 之间的整数（单位：分）。").format(
            field=prefix + name, most=MAX_FEN), field=prefix + name)
    return value


def _optional_text(raw: Mapping[str, Any], name: str, most: int) -> str | None:
    value = raw.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > most or not value.isprintable() or not value.strip():
        raise InvalidInput(_("{field} 须是 1 到 {most} 个可见字符。").format(field=name, most=most), field=name)
    return value.strip()


def _sku(raw: Mapping[str, Any]) -> str | None:
    return _optional_text(raw, "sku", MAX_SKU)


def _status(raw: Mapping[str, Any]) -> str | None:
    return _optional_text(raw, "status", MAX_STATUS)


def _order_no(raw: Mapping[str, Any]) -> str:
    value = raw.get("order_no")
    if not isinstance(value, str) or len(value) > MAX_ORDER_NO or not ORDER_NO_RE.fullmatch(value):
        raise InvalidInput(_("order_no 须是 1 到 {most} 个字母、数字、_ 或 -。").format(most=MAX_ORDER_NO),
                           field="order_no")
    return value


def _url(raw: Mapping[str, Any], name: str, prefix: str = "") -> str | None:
    value = raw.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_URL:
        raise InvalidInput(_("{field} 须是最多 {most} 个字符的地址。").format(field=prefix + name, most=MAX_URL),
                           field=prefix + name)
    try:
        parse_target(value)
    except InvalidInput as error:
        raise InvalidInput(str(error).replace("url:", f"{prefix}{name}:", 1), field=prefix + name) from error
    return value


def _currency(raw: Mapping[str, Any]) -> str:
    value = raw.get("currency", "CNY")
    value = "CNY" if value is None else value
    valid = isinstance(value, str) and re.fullmatch("[A-Z]{3}", value) and is_currency(value)
    if not valid or get_currency_precision(value) != 2:
        raise InvalidInput(_("currency 须是两位小数的 ISO 4217 币种代码，如 CNY、HKD、USD。"), field="currency")
    return str(value)


def _items(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_ITEMS:
        raise InvalidInput(_("items 须是 1 到 {most} 件商品。").format(most=MAX_ITEMS), field="items")
    return [_item(item, f"items[{index}].") for index, item in enumerate(value)]


def _item(raw: Any, prefix: str) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise InvalidInput(_("{field} 须是一个 JSON 对象。").format(field=prefix[:-1]), field=prefix[:-1])
    quantity = raw.get("quantity")
    if type(quantity) is not int or not 1 <= quantity <= MAX_QUANTITY:
        raise InvalidInput(_("{field} 须是 1 到 {most} 之间的整数。").format(
            field=prefix + "quantity", most=MAX_QUANTITY), field=prefix + "quantity")
    item = {"title": _title(raw, "title", prefix), "quantity": quantity, "price_fen": _fen(raw, "price_fen", prefix),
            "image_url": _url(raw, "image_url", prefix)}
    unknown = sorted(set(raw) - set(item))
    if unknown:
        raise InvalidInput(_("不认识的字段 {name}。").format(name=unknown[0]), field=prefix + str(unknown[0])[:100])
    return item


def money(fen: int, currency: str) -> str:
    """An amount in fen as people read it in zh-CN: "¥12.34" for CNY, "US$12.34", "HK$12.34", "€12.34" …"""
    return format_currency(Decimal(fen) / 100, currency, locale="zh_CN")


def card_body(card: Mapping[str, Any]) -> str:
    """The message body of a card: its searchable text (a product's title, an order's number)."""
    return str(card["title"] if card["kind"] == "product" else card["order_no"])


def image_source(card: Mapping[str, Any]) -> str | None:
    """The third-party image a card shows (through Kefu): a product's image, an order's first item's."""
    if card["kind"] == "product":
        return card.get("image_url")
    return card["items"][0].get("image_url")


def to_json(card: Mapping[str, Any]) -> str:
    """The stored form of a card: canonical JSON (sorted keys, UTF-8 characters as they are, no spaces)."""
    return json.dumps(card, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def from_json(stored: str | None) -> dict[str, Any] | None:
    """A stored card (None for a message without one)."""
    return None if not stored else json.loads(stored)


def public(card: Mapping[str, Any]) -> dict[str, Any]:
    """A stored card as the API and webhooks show it: without Kefu's own keys."""
    return {key: value for key, value in card.items() if key != THUMBNAIL_KEY}


def card_message(outgoing: Outgoing, card: Mapping[str, Any], thumbnail: str | None = None) -> Outgoing:
    """`outgoing` (its conversation; sender: a participant, or None for the system; its Idempotency-Key) made the
    message of `card` (from build_card): its kind, its body (card_body) and its stored JSON, with the path of its
    picture's thumbnail (app.chat.card_images, relative to UPLOAD_DIR) when there is one."""
    stored = dict(card) | ({THUMBNAIL_KEY: thumbnail} if thumbnail else {})
    return replace(outgoing, kind=card["kind"], body=card_body(card), card=to_json(stored))


def send_card(session: Session, outgoing: Outgoing, card: Mapping[str, Any], thumbnail: str | None = None) -> Sent:
    """Store and commit `card` (from build_card) as the message `card_message` makes of `outgoing`, through
    messages.send. Raises what messages.send raises (NotFound, Forbidden for a sender who does not take part,
    KeyReused when the key was used for another message or card, Unavailable)."""
    return send(session, card_message(outgoing, card, thumbnail))
