"""Messages: validation, storing, pages of history, and replay after an event id."""

from __future__ import annotations

import unicodedata
from typing import Any

from sqlalchemy import bindparam, case, insert, inspect, select, update
from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from app.chat import webhooks
from app.chat.conversations import get_conversation
from app.chat.errors import Forbidden, InvalidInput, NotFound
from app.db.models import Conversation, Member, Message, User, utcnow
from app.i18n import gettext as _

MAX_BODY_LENGTH = 5000
PAGE_SIZE = 30
_ALLOWED_CONTROLS = {"\n", "\t"}


def clean_body(raw: str | None) -> str:
    """The stored form of a message body, or InvalidInput with a message for the composer."""
    body = (raw or "").replace("\r\n", "\n").replace("\r", "\n").strip()
    if not body:
        raise InvalidInput(_("消息不能为空。"))
    if len(body) > MAX_BODY_LENGTH:
        raise InvalidInput(_("消息太长了：最多 {limit} 个字符，现在有 {count} 个。").format(
            limit=MAX_BODY_LENGTH, count=len(body)))
    if any(unicodedata.category(c) == "Cc" and c not in _ALLOWED_CONTROLS for c in body):
        raise InvalidInput(_("消息含有无法显示的控制字符。"))
    return body


def send_message(session: Session, conversation_id: int, sender_id: str, raw_body: str | None) -> Message:
    """Store a text message from a participant and move the conversation to the top of both lists."""
    lock_conversation(session, conversation_id, sender_id)
    return store_message(session, conversation_id, sender_id, clean_body(raw_body), locked=True)


SYSTEM_USER_ID = "kefu-system"


def post_notice(session: Session, conversation_id: int, raw_body: str | None) -> Message:
    """A system notice ("订单已发货") in a conversation, from the marketplace through the API."""
    get_conversation(session, conversation_id)
    if session.get(User, SYSTEM_USER_ID) is None:
        session.add(User(id=SYSTEM_USER_ID, name=_("系统通知"), role="system"))
        session.flush()
    return store_message(session, conversation_id, SYSTEM_USER_ID, clean_body(raw_body), kind="system")


def message_data(message: Message) -> dict[str, Any]:
    """A message as the API and webhooks show it."""
    data: dict[str, Any] = {
        "id": message.id,
        "conversation_id": message.conversation_id,
        "sender_id": message.sender_id,
        "kind": message.kind,
        "body": message.body,
        "created_at": message.created_at.isoformat(),
    }
    if message.attachment is not None:
        a = message.attachment
        data["attachment"] = {"name": a.original_name, "content_type": a.content_type, "size": a.size,
                              "url": f"/files/{message.id}"}
    return data


# The hot path of the whole app, as prebuilt Core statements executed on the session's connection: SQLAlchemy
# then skips building, coercing and cache-keying a statement per message (half the CPU of a send, measured).
_conversations, _members = Conversation.__table__.c, Member.__table__.c
_LOCK = (
    select(_conversations.user_a, _conversations.user_b)
    .where(_conversations.id == bindparam("cid"))
    .with_for_update()
)
_INSERT = insert(Message.__table__)
_MOVE_CONVERSATION = (
    update(Conversation.__table__)
    .where(_conversations.id == bindparam("cid"))
    .values(last_message_id=bindparam("mid"), last_activity_at=bindparam("now"),
            message_count=_conversations.message_count + 1)
)
_MOVE_MEMBERS = (  # both lists move up; the sender has read everything up to their own message
    update(Member.__table__)
    .where(_members.conversation_id == bindparam("cid"))
    .values(last_activity_at=bindparam("now"), last_read_message_id=case(
        (_members.user_id == bindparam("sender"), bindparam("mid")), else_=_members.last_read_message_id))
)


def lock_conversation(session: Session, conversation_id: int, sender_id: str | None) -> tuple[str, str]:
    """Lock the conversation row for a new message and return its two participants (NotFound, or Forbidden when
    `sender_id` is not one of them; None for system notices). Concurrent sends to one conversation queue here
    instead of deadlocking on MariaDB (the insert's shared lock on the parent row, then the update's exclusive
    one)."""
    row = session.connection().execute(_LOCK, {"cid": conversation_id}).one_or_none()
    if row is None:
        raise NotFound("conversation")
    if sender_id is not None and sender_id not in row:
        raise Forbidden("not a participant")
    return row[0], row[1]


def store_message(session: Session, conversation_id: int, sender_id: str, body: str, kind: str = "text",
                  announce: bool = True, locked: bool = False) -> Message:
    """Store an already validated message (text, or the name of a file) from a participant, or a notice.
    `announce=False` leaves the webhook event to the caller (an upload adds its attachment first);
    `locked=True`: the caller has already called lock_conversation."""
    if not locked:
        lock_conversation(session, conversation_id, None if kind == "system" else sender_id)
    connection = session.connection()
    now = utcnow()
    values = {"conversation_id": conversation_id, "sender_id": sender_id, "kind": kind, "body": body,
              "created_at": now}
    message_id = connection.execute(_INSERT, values).inserted_primary_key[0]
    moved = {"cid": conversation_id, "mid": message_id, "now": now, "sender": sender_id}
    connection.execute(_MOVE_CONVERSATION, moved)
    connection.execute(_MOVE_MEMBERS, moved)
    _forget_stale(session, conversation_id, sender_id)
    message = Message(id=message_id, **values)
    make_transient_to_detached(message)
    session.add(message)  # persistent without a SELECT; a file's attachment is added by the caller
    set_committed_value(message, "attachment", None)
    if announce:
        webhooks.enqueue(session, "message.created", message_data(message))
    return message


def _forget_stale(session: Session, conversation_id: int, sender_id: str) -> None:
    """The updates above bypassed the ORM: reload the conversation and membership if this session holds them."""
    for model, key in ((Conversation, (conversation_id,)), (Member, (conversation_id, sender_id))):
        loaded = session.identity_map.get(inspect(model).identity_key_from_primary_key(key))
        if loaded is not None:
            session.expire(loaded)


def get_message(session: Session, message_id: int) -> Message | None:
    return session.get(Message, message_id)


def latest_messages(session: Session, conversation_id: int, limit: int = PAGE_SIZE) -> tuple[list[Message], bool]:
    """The newest page of a conversation, oldest first, and whether older messages exist."""
    return messages_before(session, conversation_id, None, limit)


def messages_before(
    session: Session, conversation_id: int, before: int | None, limit: int = PAGE_SIZE
) -> tuple[list[Message], bool]:
    # MariaDB otherwise walks the index backwards from the newest message with only its first column and reads
    # every row on the way: 50,000 rows and 110 ms for a page from the middle of 100,000 messages, 1 ms with it.
    query = (
        select(Message)
        .with_hint(Message, "FORCE INDEX (ix_messages_conversation_id)", "mysql")
        .where(Message.conversation_id == conversation_id)
    )
    if before is not None:
        query = query.where(Message.id < before)
    rows = list(session.scalars(query.order_by(Message.id.desc()).limit(limit + 1)))
    has_more = len(rows) > limit
    return list(reversed(rows[:limit])), has_more


def messages_after(session: Session, viewer_id: str | None, after: int, limit: int = 200) -> list[Message]:
    """Messages stored after event id `after` that the viewer may see, in order; viewer None = everything."""
    query = select(Message).where(Message.id > after)
    if viewer_id is not None:
        mine = select(Member.conversation_id).where(Member.user_id == viewer_id)
        query = query.where(Message.conversation_id.in_(mine))
    return list(session.scalars(query.order_by(Message.id).limit(limit)))


def latest_message_id(session: Session) -> int:
    return session.scalar(select(Message.id).order_by(Message.id.desc()).limit(1)) or 0
