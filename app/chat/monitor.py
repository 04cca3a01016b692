"""What admins see: every conversation, newest activity first, with filters and a search."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, aliased

from app.chat import search
from app.chat.paging import ListCursor, older_than, page_of
from app.db.models import Conversation, Message, User

PAGE_SIZE = 30
MAX_QUERY_LENGTH = 100


@dataclass(frozen=True)
class MonitorFilter:
    role: str | None = None  # conversations with a participant of this role
    person: str | None = None  # conversations of this person
    query: str | None = None  # a participant's name or a message contains it, or a participant's id starts with it

    def as_params(self) -> dict[str, str]:
        """The filters that are set, as query parameters (`role`, `person`, `q`), for links that keep them."""
        return {k: v for k, v in (("role", self.role), ("person", self.person), ("q", self.query)) if v}


@dataclass(frozen=True)
class MonitorRow:
    conversation: Conversation
    user_a: User
    user_b: User
    last_message: Message | None

    @property
    def id(self) -> int:
        """The conversation's id."""
        return self.conversation.id


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _base_query():  # type: ignore[no-untyped-def]
    user_a, user_b = aliased(User), aliased(User)
    query = (
        select(Conversation, user_a, user_b)
        .join(user_a, user_a.id == Conversation.user_a)
        .join(user_b, user_b.id == Conversation.user_b)
    )
    return query, user_a, user_b


def _with_last_messages(session: Session, rows) -> list[MonitorRow]:  # type: ignore[no-untyped-def]
    last_ids = [c.last_message_id for c, _, _ in rows if c.last_message_id]
    last_messages: dict[int, Message] = {}
    if last_ids:
        last_messages = {m.id: m for m in session.scalars(select(Message).where(Message.id.in_(last_ids)))}
    return [MonitorRow(c, a, b, last_messages.get(c.last_message_id or 0)) for c, a, b in rows]


def _filtered(session: Session, filters: MonitorFilter):  # type: ignore[no-untyped-def]
    """The monitor's query with `filters` applied: the one rule of which conversations a filtered monitor shows. `q`
    matches people's names and ids, and message text (app.chat.search, for queries its index serves)."""
    query, user_a, user_b = _base_query()
    if filters.role:
        query = query.where(or_(user_a.role == filters.role, user_b.role == filters.role))
    if filters.person:
        query = query.where(or_(Conversation.user_a == filters.person, Conversation.user_b == filters.person))
    if filters.query:
        # Ignoring case, alike on SQLite (whose LIKE ignores ASCII case) and MySQL/MariaDB (binary collation).
        text = filters.query[:MAX_QUERY_LENGTH]
        exact, folded = _escape_like(text), _escape_like(text.lower())
        with_text = search.conversations_with_text(session, text)
        query = query.where(
            or_(
                *((Conversation.id.in_(with_text),) if with_text is not None else ()),
                *(column.contains(exact, escape="\\") for column in (user_a.name, user_b.name)),
                *(func.lower(column).contains(folded, escape="\\") for column in (user_a.name, user_b.name)),
                *(column.startswith(exact, escape="\\") for column in (user_a.id, user_b.id)),
                *(func.lower(column).startswith(folded, escape="\\") for column in (user_a.id, user_b.id)),
            )
        )
    return query


def list_all_conversations(
    session: Session, filters: MonitorFilter, before: ListCursor | None = None, limit: int = PAGE_SIZE
) -> tuple[list[MonitorRow], ListCursor | None]:
    """A page of every conversation the filters let through, newest activity first, and the next page's cursor."""
    query = (_filtered(session, filters).order_by(Conversation.last_activity_at.desc(), Conversation.id.desc())
             .limit(limit + 1))
    if before is not None:
        query = query.where(older_than(Conversation.last_activity_at, Conversation.id, before))
    rows, has_more = page_of(session.execute(query).all(), limit)
    cursor = None
    if has_more and rows:
        last = rows[-1][0]
        cursor = ListCursor(last.last_activity_at, last.id)
    return _with_last_messages(session, rows), cursor


def monitor_row(session: Session, conversation_id: int, filters: MonitorFilter | None = None) -> MonitorRow | None:
    """One conversation as a row of the admins' monitor (both people and the last message), or None when there is no
    such conversation or `filters` would not show it (the same query as the list's: a live update joins a filtered
    list exactly when a reload would show it)."""
    query = _filtered(session, filters or MonitorFilter()).where(Conversation.id == conversation_id)
    rows = session.execute(query).all()
    items = _with_last_messages(session, rows)
    return items[0] if items else None
