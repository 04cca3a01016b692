"""Conversations between two people, the list of them, unread counts and read watermarks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.chat import webhooks
from app.chat.errors import Forbidden, NotFound
from app.chat.paging import ListCursor, older_than, page_of
from app.chat.people import can_talk
from app.db.models import Conversation, Member, Message, User, utcnow

PAGE_SIZE = 30


@dataclass(frozen=True)
class ConversationItem:
    """One row of a person's conversation list."""

    conversation: Conversation
    peer: User
    last_message: Message | None
    unread: int
    peer_last_read: int

    @property
    def id(self) -> int:
        """The conversation's id."""
        return self.conversation.id


def ordered_pair(a: str, b: str) -> tuple[str, str]:
    """The two user ids in the order a conversation stores them: (user_a, user_b) with user_a < user_b."""
    return (a, b) if a < b else (b, a)


def find_conversation(session: Session, a: str, b: str) -> Conversation | None:
    """The conversation between `a` and `b` (in either order), or None."""
    user_a, user_b = ordered_pair(a, b)
    return session.scalars(
        select(Conversation).where(Conversation.user_a == user_a, Conversation.user_b == user_b)
    ).first()


def get_or_create_conversation(session: Session, me: User, peer: User) -> Conversation:
    """The conversation of the pair, created on first contact. Two buyers (and the like) may not talk."""
    if me.id == peer.id or not can_talk(me.role, peer.role):
        raise Forbidden("pair not allowed")
    existing = find_conversation(session, me.id, peer.id)
    if existing is not None:
        return existing
    user_a, user_b = ordered_pair(me.id, peer.id)
    now = utcnow()
    try:
        with session.begin_nested():
            conversation = Conversation(user_a=user_a, user_b=user_b, created_at=now, last_activity_at=now,
                                        opened_by=me.id)
            session.add(conversation)
            session.flush()
            session.add_all(
                [
                    Member(conversation_id=conversation.id, user_id=me.id, peer_id=peer.id, last_activity_at=now),
                    Member(conversation_id=conversation.id, user_id=peer.id, peer_id=me.id, last_activity_at=now),
                ]
            )
            session.flush()
    except IntegrityError:  # the other side created it at the same moment
        existing = find_conversation(session, me.id, peer.id)
        if existing is None:
            raise
        return existing
    webhooks.enqueue(session, "conversation.created", conversation_data(conversation))
    return conversation


def conversation_data(conversation: Conversation) -> dict[str, Any]:
    """A conversation as the API and webhooks show it."""
    return {
        "id": conversation.id,
        "participants": list(participants(conversation)),
        "created_at": conversation.created_at.isoformat(),
        "last_activity_at": conversation.last_activity_at.isoformat(),
        "last_message_id": conversation.last_message_id,
        "message_count": conversation.message_count or 0,
    }


def get_conversation(session: Session, conversation_id: int) -> Conversation:
    """The conversation with this id; NotFound when there is none."""
    conversation = session.get(Conversation, conversation_id)
    if conversation is None:
        raise NotFound("conversation")
    return conversation


def get_membership(session: Session, conversation_id: int, user_id: str) -> Member:
    """The person's membership, or Forbidden: the single check behind every participant-only route."""
    get_conversation(session, conversation_id)
    member = session.get(Member, (conversation_id, user_id))
    if member is None:
        raise Forbidden("not a participant")
    return member


PRESENCE_AUDIENCE = 500


def any_takes_part(session: Session, conversation_id: int, user_ids: set[str]) -> bool:
    """Whether any of `user_ids` takes part in the conversation (one indexed query; False for none)."""
    if not user_ids:
        return False
    query = select(Member.user_id).where(Member.conversation_id == conversation_id, Member.user_id.in_(user_ids))
    return session.scalar(query.limit(1)) is not None


def recent_peers(session: Session, user_id: str, limit: int = PRESENCE_AUDIENCE) -> list[str]:
    """The people whose lists show this person near the top: those told live when they come and go.
    (Further down a list, the dot is drawn from the server's presence when that page of the list loads.)"""
    query = (
        select(Member.peer_id)
        .where(Member.user_id == user_id)
        .order_by(Member.last_activity_at.desc())
        .limit(limit)
    )
    return list(session.scalars(query))


def participants(conversation: Conversation) -> tuple[str, ...]:
    """The conversation's members' user ids: (user_a, user_b), and the platform's support person while they
    intervene (app.chat.members)."""
    return members_of(conversation.user_a, conversation.user_b, conversation.support_id)


def members_of(user_a: str, user_b: str, support_id: str | None) -> tuple[str, ...]:
    """The members' ids from a conversation row's columns (for the prebuilt queries that read them without an ORM
    object): the pair, then the intervening support person if any."""
    return (user_a, user_b) if support_id is None else (user_a, user_b, support_id)


def listed(user_id: str) -> ColumnElement[bool]:
    """The condition (on Conversation) under which a conversation is in `user_id`'s list: it has a message, or they
    opened it (or it was opened before the opener was kept)."""
    return or_(Conversation.last_message_id.is_not(None), Conversation.opened_by.is_(None),
               Conversation.opened_by == user_id)


def list_conversations(
    session: Session, user_id: str, before: ListCursor | None = None, limit: int = PAGE_SIZE
) -> tuple[list[ConversationItem], ListCursor | None]:
    """A page of the person's conversations, newest activity first, and the cursor of the next page. A conversation
    without a message yet is listed only for the person who opened it: the other side hears of it with its first
    message (`listed`)."""
    query = (
        select(Member, Conversation, User)
        .join(Conversation, Conversation.id == Member.conversation_id)
        .join(User, User.id == Member.peer_id)
        .where(Member.user_id == user_id, listed(user_id))
        .order_by(Member.last_activity_at.desc(), Member.conversation_id.desc())
        .limit(limit + 1)
    )
    if before is not None:
        query = query.where(older_than(Member.last_activity_at, Member.conversation_id, before))
    rows, has_more = page_of(session.execute(query).all(), limit)
    items = _build_items(session, user_id, rows)
    next_cursor = None
    if has_more and rows:
        last_member = rows[-1][0]
        next_cursor = ListCursor(last_member.last_activity_at, last_member.conversation_id)
    return items, next_cursor


def conversation_item(session: Session, conversation_id: int, user_id: str) -> ConversationItem:
    """The person's row of their conversation list for this conversation. NotFound (no such conversation), Forbidden
    (not a participant)."""
    member = get_membership(session, conversation_id, user_id)
    conversation = session.get(Conversation, conversation_id)
    peer = session.get(User, member.peer_id)
    assert conversation is not None and peer is not None
    return _build_items(session, user_id, [(member, conversation, peer)])[0]


def _build_items(session: Session, user_id: str, rows) -> list[ConversationItem]:  # type: ignore[no-untyped-def]
    """Attach last messages, unread counts and the peer's read watermark in three queries in all."""
    if not rows:
        return []
    conversation_ids = [member.conversation_id for member, _, _ in rows]
    last_ids = [c.last_message_id for _, c, _ in rows if c.last_message_id]
    last_messages: dict[int, Message] = {}
    if last_ids:
        last_messages = {m.id: m for m in session.scalars(select(Message).where(Message.id.in_(last_ids)))}
    unread = unread_counts(session, user_id, conversation_ids)
    peer_reads = dict(
        session.execute(
            select(Member.conversation_id, Member.last_read_message_id).where(
                Member.conversation_id.in_(conversation_ids), Member.user_id != user_id
            )
        ).all()
    )
    return [
        ConversationItem(
            conversation=conversation,
            peer=peer,
            last_message=last_messages.get(conversation.last_message_id or 0),
            unread=unread.get(conversation.id, 0),
            peer_last_read=peer_reads.get(conversation.id, 0),
        )
        for _member, conversation, peer in rows
    ]


def unread_counts(session: Session, user_id: str, conversation_ids: list[int] | None = None) -> dict[int, int]:
    """Messages from the other side after the person's watermark, per conversation (only where any)."""
    query = (
        select(Message.conversation_id, func.count())
        .join(
            Member,
            and_(Member.conversation_id == Message.conversation_id, Member.user_id == user_id),
        )
        .join(Conversation, Conversation.id == Member.conversation_id)
        .where(
            Conversation.last_message_id > Member.last_read_message_id,
            Message.id > Member.last_read_message_id,
            Message.sender_id != user_id,
        )
        .group_by(Message.conversation_id)
    )
    if conversation_ids is not None:
        query = query.where(Member.conversation_id.in_(conversation_ids))
    return {cid: count for cid, count in session.execute(query).all()}


def total_unread(session: Session, user_id: str) -> int:
    """The person's unread messages over all their conversations (the sum of `unread_counts`)."""
    return sum(unread_counts(session, user_id).values())


def mark_read(session: Session, conversation_id: int, user_id: str, up_to: int | None = None) -> int | None:
    """Move the person's read watermark forward (never back). Returns the new watermark, or None if unchanged."""
    member = get_membership(session, conversation_id, user_id)
    conversation = session.get(Conversation, conversation_id)
    assert conversation is not None
    latest = conversation.last_message_id or 0
    target = latest if up_to is None else min(up_to, latest)
    if target <= member.last_read_message_id:
        return None
    result = session.execute(
        update(Member)
        .where(
            Member.conversation_id == conversation_id,
            Member.user_id == user_id,
            Member.last_read_message_id < target,
        )
        .values(last_read_message_id=target)
        .execution_options(synchronize_session=False)
    )
    session.expire(member)
    return target if result.rowcount else None  # type: ignore[attr-defined]
