"""Recall (撤回): the sender takes a message back within RECALL_SECONDS.

The message stays (its id, time and place in the conversation), marked `recalled_at`: participants see a tombstone
instead of its body, preview or file; admins still read the original in the monitor, and the audit log records who
recalled what. A recall is an event of its own (`recall`), replayed to streams that were away when it happened
(`recalled_since`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.chat import audit, webhooks
from app.chat.conversations import participants as conversation_participants
from app.chat.errors import ChatError, Forbidden, NotFound
from app.chat.messages import LOOK_BACK_SECONDS
from app.db.models import Conversation, Member, Message, utcnow
from app.i18n import gettext as _

RECALL_SECONDS = 120  # WeChat's window: two minutes from sending
REPLAY_RECALLS = 300  # recalls one stream open may replay (past it the page reloads, as for messages)


class RecallTooLate(ChatError):
    """The message is older than RECALL_SECONDS: it stays (409)."""

    code = "recall_too_late"


class RecallLocked(ChatError):
    """The message was sent after the platform was asked to intervene: it is evidence and stays (409)."""

    code = "recall_locked"


@dataclass(frozen=True)
class Recalled:
    """A recalled message (committed) and its conversation's members (`support_id`: the platform's member among them,
    who keeps seeing the original, as admins do); `repeated`: it was already recalled, nothing changed and nobody
    needs telling again."""

    message: Message
    participants: tuple[str, ...]
    repeated: bool = False
    support_id: str | None = None


def recall(session: Session, conversation_id: int, message_id: int, user_id: str,
           now: datetime | None = None) -> Recalled:
    """`user_id` recalls their message `message_id` of conversation `conversation_id` (committed, audited, and a
    `message.recalled` webhook queued). Recalling it again changes nothing (`repeated`). Raises NotFound (no such
    message in that conversation), Forbidden (not their own message, or a notice), RecallTooLate (sent more than
    RECALL_SECONDS before `now`), RecallLocked (sent after the platform was asked to intervene)."""
    now = now or utcnow()
    # the conversation first, then the message: the order a send that quotes takes them in (no deadlock), and an
    # intervention asked at this moment either comes first (the message is then evidence) or waits
    conversation = session.get(Conversation, conversation_id, with_for_update=True)
    message = session.scalar(select(Message).where(Message.id == message_id).with_for_update())
    if conversation is None or message is None or message.conversation_id != conversation_id:
        raise NotFound("message")
    participants = conversation_participants(conversation)
    if message.sender_id != user_id or message.kind == "system":
        raise Forbidden(_("只能撤回自己发出的消息。"))
    if message.recalled_at is not None:
        session.commit()
        return Recalled(message, participants, repeated=True, support_id=conversation.support_id)
    if now - message.created_at > timedelta(seconds=RECALL_SECONDS):
        raise RecallTooLate(_("发出超过 2 分钟的消息不能撤回。"))
    if conversation.intervention_at is not None and message.created_at >= conversation.intervention_at:
        raise RecallLocked(_("平台介入后发出的消息是处理依据，不能撤回。"))
    message.recalled_at = now
    audit.record(session, "message.recalled", user_id, detail=f"conversation={conversation_id} message={message_id}")
    webhooks.enqueue(session, "message.recalled", {"id": message.id, "conversation_id": conversation_id,
                                                   "sender_id": user_id, "recalled_at": now.isoformat()})
    session.commit()
    return Recalled(message, participants, support_id=conversation.support_id)


def recalls_to_replay(session: Session, viewer_id: str | None, resume_from: int) -> list[Message] | None:
    """The recalls a stream resuming after message `resume_from` may have missed: those at or after that message's
    time, less LOOK_BACK_SECONDS (the stream was open when it was stored, so any recall it missed came later; a
    few it saw come again, which the page applies twice to no effect). None when more than REPLAY_RECALLS wait (the
    page then reloads); [] without a resume point."""
    if resume_from <= 0:
        return []
    stored = session.scalar(select(Message.created_at).where(Message.id <= resume_from)
                            .order_by(Message.id.desc()).limit(1))
    if stored is None:
        return []
    found = recalled_since(session, viewer_id, stored - timedelta(seconds=LOOK_BACK_SECONDS))
    return None if len(found) > REPLAY_RECALLS else found


def recalled_since(session: Session, viewer_id: str | None, since: datetime,
                   limit: int = REPLAY_RECALLS + 1) -> list[Message]:
    """The messages recalled at or after `since` that `viewer_id` may see (every conversation's for None, the admins),
    oldest recall first, at most `limit`."""
    query = select(Message).where(Message.recalled_at >= since)
    if viewer_id is not None:
        query = query.join(Member, Member.conversation_id == Message.conversation_id).where(Member.user_id == viewer_id)
    return list(session.scalars(query.order_by(Message.recalled_at, Message.id).limit(limit)))

