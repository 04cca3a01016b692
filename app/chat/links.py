"""Signed, expiring sign-in links for marketplaces: `kefu link`, the API, or the marketplace's own code.

A token is itsdangerous' URLSafeTimedSerializer(secret_key, salt="kefu-link") over
{"u": user id, "n": name, "r": role, "ttl": seconds[, "t": target user id][, "p": product]}, the product being a
product card's fields (app.chat.cards: the person is asking about it, 正在咨询); it is valid for `ttl` seconds
after it was signed (at most 30 days). Admin roles and ids reserved for Kefu itself (`people.is_reserved`) are
never accepted, however well signed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer

from app.chat.cards import build_card
from app.chat.errors import Forbidden, InvalidInput
from app.chat.people import CHAT_ROLES, clean_name, is_reserved, refuse_reserved, valid_user_id
from app.i18n import gettext as _

SALT = "kefu-link"
DEFAULT_TTL = 300
MAX_TTL = 30 * 24 * 3600
MAX_TOKEN_LENGTH = 2048
CLOCK_SKEW_SECONDS = 60  # a token signed later than this ahead of our clock is refused


@dataclass(frozen=True)
class LinkIdentity:
    user_id: str
    name: str
    role: str
    target: str | None = None
    product: dict[str, Any] | None = None  # a product card (cards.build_card), shown with the target's conversation


def _serializer(secret_key: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_key, salt=SALT)


def make_token(secret_key: str, identity: LinkIdentity, ttl: int = DEFAULT_TTL) -> str:
    """A signed sign-in token for `identity`, valid `ttl` seconds. InvalidInput for a bad id, role, name or ttl, or a
    product not accepted (field "product.…") or without a target; Forbidden for an id reserved for Kefu itself."""
    if not valid_user_id(identity.user_id) or (identity.target and not valid_user_id(identity.target)):
        raise InvalidInput(_("用户 ID 无效。"))
    refuse_reserved(identity.user_id)
    if identity.role not in CHAT_ROLES:
        raise InvalidInput(_("角色必须是 buyer、merchant 或 support。"))
    name = clean_name(identity.name)
    if type(ttl) is not int or not 0 < ttl <= MAX_TTL:
        raise InvalidInput(_("有效期必须在 1 秒到 30 天之间。"))
    payload: dict[str, Any] = {"u": identity.user_id, "n": name, "r": identity.role, "ttl": ttl}
    if identity.target:
        payload["t"] = identity.target
    if identity.product is not None:
        if not identity.target:
            raise InvalidInput(_("带商品的链接须指定对话对象（target）。"), field="target")
        payload["p"] = product_card(identity.product)
    token = _serializer(secret_key).dumps(payload)
    if len(token) > MAX_TOKEN_LENGTH:
        text = _("链接太长了：商品的标题和地址请短一些（链接最多 {n} 个字符）。").format(n=MAX_TOKEN_LENGTH)
        raise InvalidInput(text,
                           field="product")
    return token


def read_token(secret_key: str, token: str, now: float | None = None) -> LinkIdentity:
    """The identity in a valid token; Forbidden when it is forged, expired, malformed or for an admin."""
    if len(token) > MAX_TOKEN_LENGTH:
        raise Forbidden("token too long")
    try:
        payload, signed_at = _serializer(secret_key).loads(token, return_timestamp=True)
    except BadSignature as error:
        raise Forbidden("bad signature") from error
    if not isinstance(payload, dict):
        raise Forbidden("bad payload")
    ttl = payload.get("ttl")
    user_id, name, role, target = payload.get("u"), payload.get("n"), payload.get("r"), payload.get("t")
    if type(ttl) is not int or not 0 < ttl <= MAX_TTL:  # `true` is no number of seconds
        raise Forbidden("bad ttl")
    age = (now or time.time()) - signed_at.timestamp()
    if age > ttl:
        raise Forbidden("expired")
    if age < -CLOCK_SKEW_SECONDS:
        raise Forbidden("signed in the future")
    if not isinstance(user_id, str) or not valid_user_id(user_id):
        raise Forbidden("bad user id")
    if is_reserved(user_id):
        raise Forbidden("reserved user id")
    if role not in CHAT_ROLES:  # never an admin
        raise Forbidden("role not allowed")
    try:
        name = clean_name(name if isinstance(name, str) else None)
    except InvalidInput as error:
        raise Forbidden("bad name") from error
    if target is not None and (not isinstance(target, str) or not valid_user_id(target)):
        raise Forbidden("bad target")
    product = payload.get("p")
    if product is not None:
        try:
            product = product_card(product)
        except InvalidInput as error:
            raise Forbidden("bad product") from error
    return LinkIdentity(user_id=user_id, name=name.strip(), role=role, target=target, product=product)


def product_card(raw: Any) -> dict[str, Any]:
    """A link's product as a validated product card (cards.build_card; "kind" may be left out). Raises InvalidInput
    naming the field as "product.…"."""
    try:
        if isinstance(raw, dict) and raw.get("kind", "product") != "product":
            raise InvalidInput(_("链接里的商品须是商品卡片（kind 为 product）。"), field="kind")
        return build_card({"kind": "product"} | raw if isinstance(raw, dict) else raw)
    except InvalidInput as error:
        error.field = f"product.{error.field}" if error.field else "product"
        raise
