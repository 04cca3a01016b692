"""The transcript of a conversation (会话记录): every message in order — text, notices (member changes among them),
files as references, recalls with their originals — as canonical JSON with a SHA-256 digest, so that two copies can
be compared (the record of a platform intervention is evidence).

Canonical form: `json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)` encoded as UTF-8;
the digest is the hex SHA-256 of exactly those bytes (what GET /chat/c/{cid}/transcript.json answers with). The
document is {"conversation": {...}, "messages": [...]}, messages oldest first, at most MAX_MESSAGES of them (a longer
conversation is refused, not cut: a partial record would compare equal to nothing).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.chat.conversations import get_conversation
from app.chat.errors import ChatError
from app.db.models import Attachment, Message, User

MAX_MESSAGES = 100_000  # ~300 bytes each: a 30 MB document at most, built row by row
BATCH = 1000


class TranscriptTooLong(ChatError):
    """More than MAX_MESSAGES messages: no transcript is made (413)."""

    code = "too_large"


def canonical(value: Any) -> str:
    """`value` in the transcript's canonical JSON (sorted keys, no spaces, characters as they are)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def transcript_chunks(session: Session, conversation_id: int) -> Iterator[str]:
    """The canonical JSON of the conversation's transcript, in pieces (joined: the whole document), read BATCH
    messages at a time. Raises NotFound (no such conversation) or TranscriptTooLong before the first piece."""
    conversation = get_conversation(session, conversation_id)
    if (conversation.message_count or 0) > MAX_MESSAGES:
        raise TranscriptTooLong(f"more than {MAX_MESSAGES} messages")
    head = {"id": conversation.id, "pair": [conversation.user_a, conversation.user_b],
            "created_at": conversation.created_at.isoformat(),
            "intervention_at": conversation.intervention_at.isoformat() if conversation.intervention_at else None}
    yield '{"conversation":' + canonical(head) + ',"messages":['
    first = True
    for message, author, attachment in rows(session, conversation_id):
        yield ("" if first else ",") + canonical(entry(message, author, attachment))
        first = False
    yield "]}"


def digest_of(chunks: Iterator[str]) -> str:
    """The hex SHA-256 of the UTF-8 bytes of these pieces, taken as they come (nothing kept)."""
    sha = hashlib.sha256()
    for chunk in chunks:
        sha.update(chunk.encode())
    return sha.hexdigest()


def entry(message: Message, author: User | None, attachment: Attachment | None) -> dict[str, Any]:
    """One message of the transcript: id, time, sender (id, name, role), kind, body (the original, also once
    recalled), recalled_at, reply_to_id, and a file's reference (name, content_type, size in bytes, url)."""
    data: dict[str, Any] = {
        "id": message.id, "created_at": message.created_at.isoformat(), "kind": message.kind, "body": message.body,
        "sender": {"id": message.sender_id, "name": author.name if author else None,
                   "role": author.role if author else None},
        "recalled_at": message.recalled_at.isoformat() if message.recalled_at else None,
        "reply_to_id": message.reply_to_id,
    }
    if attachment is not None:
        data["file"] = {"name": attachment.original_name, "content_type": attachment.content_type,
                        "size": attachment.size, "url": f"/files/{message.id}"}
    return data


def rows(session: Session, conversation_id: int) -> Iterator[tuple[Message, User | None, Attachment | None]]:
    """(message, author, file) of each of the conversation's messages, oldest first, read BATCH at a time (keyset by
    id)."""
    after = 0
    while True:
        batch = session.execute(
            select(Message, User, Attachment)
            .outerjoin(User, User.id == Message.sender_id)
            .outerjoin(Attachment, Attachment.message_id == Message.id)
            .where(Message.conversation_id == conversation_id, Message.id > after)
            .order_by(Message.id).limit(BATCH)
        ).all()
        yield from ((m, u, a) for m, u, a in batch)
        if len(batch) < BATCH:
            return
        after = batch[-1][0].id
