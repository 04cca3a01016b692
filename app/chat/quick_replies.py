"""Quick replies: merchants' and support's own canned answers (at most 50 each, 1–500 characters)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.chat.errors import Forbidden, InvalidInput, NotFound
from app.chat.text import clean_text
from app.db.models import QuickReply, User
from app.i18n import gettext as _

MAX_PER_OWNER = 50
MAX_LENGTH = 500
OWNER_ROLES = ("merchant", "support")


def _check_owner(user: User) -> None:
    if user.role not in OWNER_ROLES:
        raise Forbidden(_("只有商家和官方客服可以使用快捷回复。"))


def clean(raw: str | None) -> str:
    """A quick reply's text under app.chat.text's rule (1–MAX_LENGTH characters), or InvalidInput."""
    return clean_text(raw, _("快捷回复"), MAX_LENGTH, multiline=True)


def list_replies(session: Session, owner: User) -> list[QuickReply]:
    """The owner's quick replies in their order (none for buyers)."""
    if owner.role not in OWNER_ROLES:
        return []
    return list(session.scalars(
        select(QuickReply).where(QuickReply.owner_id == owner.id).order_by(QuickReply.position, QuickReply.id)
    ))


def get_own(session: Session, owner: User, reply_id: int) -> QuickReply:
    """The owner's quick reply; another person's is Forbidden, whoever asks."""
    _check_owner(owner)
    reply = session.get(QuickReply, reply_id)
    if reply is None:
        raise NotFound("quick reply")
    if reply.owner_id != owner.id:
        raise Forbidden(_("这不是你的快捷回复。"))
    return reply


def create(session: Session, owner: User, raw: str | None) -> QuickReply:
    """A new quick reply at the end of the owner's list (flushed). Forbidden for buyers; InvalidInput for bad text
    or past MAX_PER_OWNER."""
    _check_owner(owner)
    body = clean(raw)
    count, last = session.execute(
        select(func.count(), func.max(QuickReply.position)).where(QuickReply.owner_id == owner.id)
    ).one()
    if count >= MAX_PER_OWNER:
        raise InvalidInput(_("最多只能保存 {n} 条快捷回复。").format(n=MAX_PER_OWNER))
    reply = QuickReply(owner_id=owner.id, body=body, position=(last or 0) + 1)
    session.add(reply)
    session.flush()
    return reply


def update(session: Session, owner: User, reply_id: int, raw: str | None) -> QuickReply:
    """New text for one of the owner's quick replies (flushed). NotFound, Forbidden (not theirs), InvalidInput."""
    reply = get_own(session, owner, reply_id)
    reply.body = clean(raw)
    session.flush()
    return reply


def delete(session: Session, owner: User, reply_id: int) -> None:
    """Deletes one of the owner's quick replies (flushed). NotFound, Forbidden (not theirs)."""
    session.delete(get_own(session, owner, reply_id))
    session.flush()


def move(session: Session, owner: User, reply_id: int, direction: str) -> None:
    """Swap with the neighbour above ("up") or below ("down"); at an end, nothing changes."""
    if direction not in ("up", "down"):
        raise InvalidInput("direction must be up or down")
    replies = list_replies(session, owner)
    index = next((i for i, r in enumerate(replies) if r.id == reply_id), None)
    if index is None:
        get_own(session, owner, reply_id)  # raises the right error
        return
    other = index - 1 if direction == "up" else index + 1
    if not 0 <= other < len(replies):
        return
    replies[index], replies[other] = replies[other], replies[index]
    for position, reply in enumerate(replies, start=1):
        reply.position = position
    session.flush()
