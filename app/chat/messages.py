"""Messages: validation, storing, pages of history, and replay after an event id."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, bindparam, case, insert, inspect, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from app.chat import search, webhooks
from app.chat.conversations import members_of, participants
from app.chat.errors import Forbidden, InvalidInput, NotFound, Unavailable
from app.chat.paging import page_of
from app.chat.text import clean_text
from app.db.models import Attachment, Conversation, IdempotencyKey, Member, Message, User, utcnow
from app.i18n import gettext as _

MAX_BODY_LENGTH = 5000
PAGE_SIZE = 30


def clean_body(raw: str | None) -> str:
    """The stored form of a message body (app.chat.text's rule, 1–MAX_BODY_LENGTH characters, line breaks and tabs
    allowed), or InvalidInput with a message for the composer."""
    return clean_text(raw, _("消息"), MAX_BODY_LENGTH, multiline=True)


SYSTEM_USER_ID = "kefu-system"
# A send is stored and committed within this many seconds of taking its id, or refused (rolled back). Replays look
# back LOOK_BACK_SECONDS before a stream's resume point, which covers such a late commit plus clock differences
# between app servers (kept within a few seconds by NTP): see `replay_start`.
MAX_SEND_SECONDS = 5.0
LOOK_BACK_SECONDS = 15.0


class SendTooSlow(Unavailable):
    """The send took longer than MAX_SEND_SECONDS between taking its id and committing: rolled back, nothing
    stored; the sender may simply try again (503)."""


class KeyReused(InvalidInput):
    """An Idempotency-Key already used for a different request (another conversation, sender or body): 422, as the
    IETF draft "The Idempotency-Key HTTP Header Field" (section 2.7) says."""

    code = "idempotency_key_reused"


@dataclass(frozen=True)
class Outgoing:
    """A message about to be sent.

    `sender_id` None is a system notice from the marketplace; `body` is the raw text (checked here) or, for an
    image or file, its display name; `attachment` is the stored file's record without its message id;
    `idempotency` is (API key id, Idempotency-Key) for API retries; `client_key` is the Idempotency-Key a page sent
    the message with (CLIENT_KEY's form, unique per sender), stored on the message; `reply_to` the id of the message
    of the same conversation it quotes; `card` a product or order card's stored JSON (app.chat.cards)."""

    conversation_id: int
    sender_id: str | None
    body: str | None
    kind: str = "text"
    attachment: Attachment | None = None
    idempotency: tuple[int, str] | None = None
    client_key: str | None = None
    reply_to: int | None = None
    card: str | None = None

    @property
    def sender(self) -> str:
        """Who the message is stored as: the sender, or the system sender for a notice."""
        return self.sender_id or SYSTEM_USER_ID


@dataclass(frozen=True)
class Sent:
    """A stored (committed) message, whom to tell, and whether the sender's read watermark passed unread messages
    (`read_up_to`: then both sides hear a read receipt). `repeated`: an Idempotency-Key retry, nothing new stored."""

    message: Message
    participants: tuple[str, ...]
    read_up_to: int | None = None
    repeated: bool = False


Admit = Callable[[str], None]


def send(session: Session, outgoing: Outgoing, admit: Admit | None = None) -> Sent:
    """The one way a message is stored: text, quick reply, file, API message and notice alike.

    Locks the conversation row (sends to one conversation queue here instead of deadlocking on MariaDB), checks the
    sender takes part, answers an Idempotency-Key retry with the earlier message, validates the body, lets `admit`
    refuse (rate limits: called only for work that will be stored), stores the message, its attachment, the webhook
    outbox row and the key, moves both members' activity and the sender's read watermark, and commits.
    Raises NotFound, Forbidden, InvalidInput (KeyReused: a key used for another message), Unavailable (SendTooSlow;
    a lock conflict the database broke: the same request may be tried again), or whatever `admit` raises; on any
    error nothing is stored (the session is rolled back)."""
    try:
        return _send(session, outgoing, admit)
    except IntegrityError:
        session.rollback()
        if outgoing.client_key is None:
            raise
        return _stored_meanwhile(session, outgoing)
    except OperationalError as error:
        session.rollback()
        if _lock_conflict(error):
            raise Unavailable(_("数据库正忙，消息没有发出，请重试。")) from error
        raise
    except BaseException:
        session.rollback()
        raise


def _stored_meanwhile(session: Session, outgoing: Outgoing) -> Sent:
    """The page's key was taken while this send ran: by the same send arriving twice at once (a retry racing its
    first try, which this transaction's snapshot could not see yet), then that message is the answer; else KeyReused.
    Looked up afresh, in a new transaction."""
    earlier = stored_with_key(session, outgoing)
    conversation = session.get(Conversation, outgoing.conversation_id)
    body = _stored_body(outgoing)
    session.commit()
    if earlier is None or conversation is None:
        raise Unavailable(_("数据库正忙，消息没有发出，请重试。"))
    return Sent(_same_request(earlier, outgoing, body), participants(conversation), repeated=True)


def stored_with_key(session: Session, outgoing: Outgoing) -> Message | None:
    """The message the sender already stored with `outgoing.client_key` (the page's Idempotency-Key), if any."""
    return session.scalar(select(Message).where(Message.sender_id == outgoing.sender,
                                                Message.client_key == outgoing.client_key))


def _lock_conflict(error: OperationalError) -> bool:
    """A deadlock or lock wait timeout (MariaDB 1213, 1205) or a busy SQLite file: the database gave up on this
    transaction, not on the request."""
    code = error.orig.args[0] if error.orig is not None and error.orig.args else None
    return code in (1205, 1213) or "database is locked" in str(error.orig)


def _send(session: Session, outgoing: Outgoing, admit: Admit | None) -> Sent:
    connection = session.connection()
    row = connection.execute(_LOCK, {"cid": outgoing.conversation_id, "sender": outgoing.sender}).one_or_none()
    if row is None:
        raise NotFound("conversation")
    participants = members_of(row.user_a, row.user_b, row.support_id)
    if outgoing.sender_id is not None and outgoing.sender_id not in participants:
        raise Forbidden("not a participant")
    body = _stored_body(outgoing)
    quoted = _quoted(session, outgoing)
    if (earlier := _earlier(session, outgoing, body)) is not None:
        session.commit()  # nothing written: frees the lock, and (unlike a rollback) leaves what was loaded as it is
        return Sent(earlier, participants, repeated=True)
    if outgoing.sender_id is None:
        _ensure_system_sender(session)
    if admit is not None:
        admit(outgoing.sender)
    started = time.monotonic()
    message = _store(session, outgoing, body)  # a key taken meanwhile: IntegrityError, see `send`
    set_committed_value(message, "quoted", quoted)  # loaded with its author by `_quoted`: rendering loads nothing
    if outgoing.idempotency is not None:
        session.add(IdempotencyKey(api_key_id=outgoing.idempotency[0], key=outgoing.idempotency[1],
                                   message_id=message.id))
    session.flush()
    if time.monotonic() - started > MAX_SEND_SECONDS:
        raise SendTooSlow("took too long to store")
    session.commit()
    previous_read, previous_last = row.last_read_message_id, row.last_message_id
    passed_unread = previous_read is not None and (previous_last or 0) > previous_read
    return Sent(message, participants, read_up_to=message.id if passed_unread else None)


def _store(session: Session, outgoing: Outgoing, body: str) -> Message:
    """Insert the message (prebuilt Core statements: half the CPU of a send, measured) and its search index rows, move
    the conversation and both members, and write the attachment and the webhook outbox row."""
    connection = session.connection()
    now = utcnow()
    values = {"conversation_id": outgoing.conversation_id, "sender_id": outgoing.sender, "kind": outgoing.kind,
              "body": body, "created_at": now, "client_key": outgoing.client_key, "reply_to_id": outgoing.reply_to,
              "card": outgoing.card}
    message_id = connection.execute(_INSERT, values).inserted_primary_key[0]
    search.index_message(connection, message_id, outgoing.conversation_id, body)  # searchable from its commit on
    moved = {"cid": outgoing.conversation_id, "mid": message_id, "now": now, "sender": outgoing.sender}
    connection.execute(_MOVE_CONVERSATION, moved)
    connection.execute(_MOVE_MEMBERS, moved)
    _forget_stale(session, outgoing.conversation_id, outgoing.sender)
    message = Message(id=message_id, **values)
    make_transient_to_detached(message)
    session.add(message)  # persistent without a SELECT
    attachment = outgoing.attachment
    if attachment is not None:
        attachment.message_id = message_id
        session.add(attachment)
    set_committed_value(message, "attachment", attachment)
    webhooks.enqueue(session, "message.created", message_data(message))
    return message


def _quoted(session: Session, outgoing: Outgoing) -> Message | None:
    """The message `outgoing` quotes (None when it quotes none). InvalidInput (field `reply_to`) unless it is a message
    of the same conversation that was not recalled."""
    if outgoing.reply_to is None:
        return None
    # locked, like the recall that may be taking it back at this moment (app.chat.recall): one waits for the other,
    # so a quote is never stored with the text of a message recalled meanwhile
    quoted = session.get(Message, outgoing.reply_to, with_for_update=True)
    if quoted is None or quoted.conversation_id != outgoing.conversation_id:
        raise InvalidInput(_("引用的消息不在这个会话里。"), field="reply_to")
    if quoted.recalled_at is not None:
        raise InvalidInput(_("引用的消息已被撤回。"), field="reply_to")
    return quoted


def _earlier(session: Session, outgoing: Outgoing, body: str) -> Message | None:
    """The message an earlier request with this Idempotency-Key (the API's, or the page's `client_key`) stored, if it
    was the same request; None without a key or before the first store; KeyReused if the key was used for another
    message. Called with the conversation row locked: two retries at once take turns."""
    if outgoing.client_key is not None:
        earlier = stored_with_key(session, outgoing)
    elif outgoing.idempotency is not None:
        api_key_id, key = outgoing.idempotency
        record = session.scalar(select(IdempotencyKey).where(IdempotencyKey.api_key_id == api_key_id,
                                                             IdempotencyKey.key == key))
        earlier = None if record is None else session.get(Message, record.message_id)
    else:
        return None
    return None if earlier is None else _same_request(earlier, outgoing, body)


def _same_request(earlier: Message, outgoing: Outgoing, body: str) -> Message:
    """`earlier`, stored under the key `outgoing` carries, if it is the same message (conversation, sender, kind,
    stored body and card, whether or not its image could be fetched); else KeyReused."""
    if (earlier.conversation_id, earlier.sender_id, earlier.kind, earlier.body, _card_of(earlier.card)) != (
            outgoing.conversation_id, outgoing.sender, outgoing.kind, body, _card_of(outgoing.card)):
        raise KeyReused(_("这个 Idempotency-Key 已经用于另一条不同的消息。"))
    return earlier


def _card_of(stored: str | None) -> dict[str, Any] | None:
    """A stored card without Kefu's own keys (what the sender sent), for comparing two sends."""
    card = None if stored is None else json.loads(stored)
    return None if card is None else {key: value for key, value in card.items() if key != "thumbnail"}


def _stored_body(outgoing: Outgoing) -> str:
    """The body as it is stored: a text or notice checked and cleaned (clean_body: InvalidInput), a file's name as
    given."""
    return clean_body(outgoing.body) if outgoing.kind in ("text", "system") else outgoing.body or ""


def _ensure_system_sender(session: Session) -> None:
    """The notices' sender, made on first use in a savepoint: two first notices at once must not both fail."""
    if session.get(User, SYSTEM_USER_ID) is not None:
        return
    try:
        with session.begin_nested():
            session.add(User(id=SYSTEM_USER_ID, name=_("系统通知"), role="system"))
    except IntegrityError:  # made by another request at the same moment
        pass


def send_message(session: Session, conversation_id: int, sender_id: str, raw_body: str | None) -> Message:
    """A text message from a participant through `send` (committed); for scripts, seeds and tests."""
    return send(session, Outgoing(conversation_id, sender_id, raw_body)).message


def post_notice(session: Session, conversation_id: int, raw_body: str | None) -> Message:
    """A system notice ("订单已发货") through `send` (committed)."""
    return send(session, Outgoing(conversation_id, None, raw_body, kind="system")).message


def message_data(message: Message) -> dict[str, Any]:
    """A message as the API and webhooks show it: id, conversation_id, sender_id, kind, body (None once recalled),
    created_at and recalled_at (ISO 8601), reply_to_id (the quoted message), and unless recalled an image's or file's
    `attachment` (name, content_type, size in bytes, url) or a product or order card's `card` (app.chat.cards'
    fields, money in fen, and `image`: Kefu's URL of its picture, or null)."""
    data: dict[str, Any] = {
        "id": message.id,
        "conversation_id": message.conversation_id,
        "sender_id": message.sender_id,
        "kind": message.kind,
        "body": message.body,
        "created_at": message.created_at.isoformat(),
        "reply_to_id": message.reply_to_id,
        "recalled_at": message.recalled_at.isoformat() if message.recalled_at else None,
    }
    if message.recalled_at is not None:  # taken back by its sender: neither its text nor its file is shown
        data["body"] = None
    elif message.attachment is not None:
        a = message.attachment
        data["attachment"] = {"name": a.original_name, "content_type": a.content_type, "size": a.size,
                              "url": f"/files/{message.id}"}
    elif message.card is not None:
        card = _card_of(message.card) or {}
        thumbnail = json.loads(message.card).get("thumbnail")
        data["card"] = card | {"image": f"/cards/{message.id}/image" if thumbnail else None}
    return data


# The hot path of the whole app, as prebuilt Core statements executed on the session's connection: SQLAlchemy
# then skips building, coercing and cache-keying a statement per message (half the CPU of a send, measured).
_conversations, _members = Conversation.__table__.c, Member.__table__.c
_LOCK = (  # the conversation, and the sender's membership (the watermark before this message), locked together
    select(_conversations.user_a, _conversations.user_b, _conversations.support_id, _conversations.last_message_id,
           _members.last_read_message_id)
    .select_from(Conversation.__table__.outerjoin(Member.__table__, and_(
        _members.conversation_id == _conversations.id, _members.user_id == bindparam("sender"))))
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


def _forget_stale(session: Session, conversation_id: int, sender_id: str) -> None:
    """The updates above bypassed the ORM: reload the conversation and membership if this session holds them."""
    for model, key in ((Conversation, (conversation_id,)), (Member, (conversation_id, sender_id))):
        loaded = session.identity_map.get(inspect(model).identity_key_from_primary_key(key))
        if loaded is not None:
            session.expire(loaded)


def latest_messages(session: Session, conversation_id: int, limit: int = PAGE_SIZE) -> tuple[list[Message], bool]:
    """The newest page of a conversation, oldest first, and whether older messages exist."""
    return messages_before(session, conversation_id, None, limit)


def messages_before(
    session: Session, conversation_id: int, before: int | None, limit: int = PAGE_SIZE
) -> tuple[list[Message], bool]:
    """The page of `limit` messages of a conversation before message id `before` (None: the newest), oldest first,
    and whether older ones exist."""
    # MariaDB otherwise walks the index backwards from the newest message with only its first column and reads
    # every row on the way: 50,000 rows and 110 ms for a page from the middle of 100,000 messages, 1 ms with it.
    query = (
        select(Message)
        .with_hint(Message, "FORCE INDEX (ix_messages_conversation_id)", "mysql")
        .where(Message.conversation_id == conversation_id)
    )
    if before is not None:
        query = query.where(Message.id < before)
    rows, has_more = page_of(list(session.scalars(query.order_by(Message.id.desc()).limit(limit + 1))), limit)
    return list(reversed(rows)), has_more


def replay_start(session: Session, resume_from: int) -> int:
    """Where a stream that resumes after message `resume_from` must replay from: the id just below the messages
    taken in the LOOK_BACK_SECONDS before `resume_from`'s own (by their `created_at`).

    Ids are taken at INSERT and become visible at COMMIT, so on MariaDB a message with a lower id can commit after
    one with a higher id has been shown (a send that waited on a lock). Such a late message was taken at most
    MAX_SEND_SECONDS before it committed, so it lies in this window; clients drop what they already have by message
    id. Reads the window backwards on the primary key: as many rows as the window holds, whatever the table size."""
    if resume_from <= 0:
        return 0
    resumed_at = session.scalar(
        select(Message.created_at).where(Message.id <= resume_from).order_by(Message.id.desc()).limit(1))
    if resumed_at is None:
        return 0
    cutoff = resumed_at - timedelta(seconds=LOOK_BACK_SECONDS)
    before = session.scalar(
        select(Message.id).where(Message.id <= resume_from, Message.created_at < cutoff)
        .order_by(Message.id.desc()).limit(1))
    return before or 0


def messages_after(session: Session, viewer_id: str | None, after: int, limit: int = 200) -> list[Message]:
    """Messages with an id above `after` that the viewer may see, in id order; viewer None = everything."""
    query = select(Message).where(Message.id > after)
    if viewer_id is not None:
        mine = select(Member.conversation_id).where(Member.user_id == viewer_id)
        query = query.where(Message.conversation_id.in_(mine))
    return list(session.scalars(query.order_by(Message.id).limit(limit)))


def latest_message_id(session: Session) -> int:
    """The highest stored message id (0 when there is none): a page's resume point for its stream."""
    return session.scalar(select(Message.id).order_by(Message.id.desc()).limit(1)) or 0


def messages_after_in(
    session: Session, conversation_id: int, after: int, limit: int = PAGE_SIZE
) -> tuple[list[Message], bool]:
    """The page of `limit` messages of a conversation after message id `after`, oldest first, and whether newer ones
    exist (a thread opened at an old message loads towards the present with these)."""
    query = (
        select(Message)
        .with_hint(Message, "FORCE INDEX (ix_messages_conversation_id)", "mysql")
        .where(Message.conversation_id == conversation_id, Message.id > after)
        .order_by(Message.id)
        .limit(limit + 1)
    )
    return page_of(list(session.scalars(query)), limit)


AROUND_BEFORE = 5  # messages shown above the one a thread is opened at (older pages load on scrolling up)


def messages_around(
    session: Session, conversation_id: int, message_id: int, limit: int = PAGE_SIZE
) -> tuple[list[Message], bool, bool]:
    """A page of a conversation around `message_id` (AROUND_BEFORE messages before it, itself, and newer ones up to
    `limit` in all), oldest first; whether older ones exist and whether newer ones do. NotFound when the message is
    not one of this conversation's."""
    target = session.get(Message, message_id)
    if target is None or target.conversation_id != conversation_id:
        raise NotFound("message")
    older, has_older = messages_before(session, conversation_id, message_id, AROUND_BEFORE)
    newer, has_newer = messages_after_in(session, conversation_id, message_id, limit - AROUND_BEFORE - 1)
    return [*older, target, *newer], has_older, has_newer
