"""Asking about a product (正在咨询): a signed link may carry a product (app.chat.links); after the person follows it,
the conversation shows that product above their composer until they send it, with one click, as a product card. It is
sent once: taking it and storing the card are one transaction, and the card's `client_key` is the offer's key, so the
person's other tabs see which offer the arriving card came from. A second link with another product replaces it.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.chat import cards
from app.chat.conversations import find_conversation
from app.chat.messages import Admit, Outgoing, Sent, send
from app.db.models import Consulting, utcnow


def offer(session: Session, user_id: str, peer_id: str, card: Mapping[str, Any]) -> None:
    """Show `card` (a product card from cards.build_card) to `user_id` in their conversation with `peer_id`, in place
    of any product shown there before; nothing when they have no such conversation. Not committed."""
    conversation = find_conversation(session, user_id, peer_id)
    if conversation is None:
        return
    session.execute(delete(Consulting).where(Consulting.conversation_id == conversation.id,
                                             Consulting.user_id == user_id))
    session.add(Consulting(conversation_id=conversation.id, user_id=user_id, key="ask-" + secrets.token_urlsafe(16),
                           card=cards.to_json(card), created_at=utcnow()))
    session.flush()


def pending(session: Session, conversation_id: int, user_id: str) -> tuple[str, dict[str, Any]] | None:
    """The (key, product card) `user_id` is asking about in the conversation, not yet sent; None when there is none."""
    row = session.get(Consulting, (conversation_id, user_id))
    return None if row is None else (row.key, cards.from_json(row.card) or {})


def send_pending(session: Session, conversation_id: int, user_id: str, key: str, thumbnail: str | None = None,
                 admit: Admit | None = None) -> Sent | None:
    """Send the product `user_id` asks about in the conversation (the offer `key` names) as their product card, and
    forget the offer, in one transaction (committed). None when that offer is no longer there: sent already (by
    another tab, or a click before) or replaced by another link. Raises what messages.send raises; the offer stays
    then."""
    row = session.scalar(select(Consulting).where(Consulting.conversation_id == conversation_id,
                                                  Consulting.user_id == user_id, Consulting.key == key)
                         .with_for_update())
    if row is None:
        session.rollback()
        return None
    card = cards.from_json(row.card) or {}
    session.delete(row)  # flushed and committed with the card by `send`, or rolled back with it
    outgoing = Outgoing(conversation_id, user_id, None, client_key=key)
    return send(session, cards.card_message(outgoing, card, thumbnail), admit)
