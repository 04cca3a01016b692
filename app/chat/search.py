"""Message search: the index every send writes (in its own transaction), a person's search over their own
conversations, and the text condition of the admins' monitor.

How a query is served (measured on 1,000,000 messages: docs/performance.md, "Search"):

- SQLite: an FTS5 table with the trigram tokenizer (`message_fts`, rowid = message id, contentless). A query of three
  or more characters is a phrase of trigrams, which is exactly "contains", ignoring case; the hits are walked newest
  first and joined to `messages`.
- MySQL/MariaDB: `message_grams`, one row per distinct bigram of a message's lowercased body. A query of two or more
  characters walks the messages of its rarest bigram (among a few, counted up to GRAM_COUNT_CAP) newest first,
  keeps those that also hold the other bigrams (primary-key probes) and checks the text itself with LIKE.
- Shorter queries (1 character; 2 on SQLite), and people whose conversations hold at most SCAN_BELOW messages, are
  served by reading the person's own messages through ix_messages_conversation_id with LIKE: as many rows as they
  have, whatever the table's size. The monitor's text match needs a query the index serves (shorter ones match names).
"""

from __future__ import annotations

from dataclasses import dataclass

import regex
from sqlalchemy import BigInteger, ColumnElement, Connection, Select, and_, column, func, insert, select, table, text
from sqlalchemy.orm import Session, aliased

from app.chat.errors import InvalidInput
from app.chat.paging import page_of
from app.db.models import Conversation, Member, Message, MessageGram, User
from app.i18n import gettext as _

MAX_QUERY_LENGTH = 100
_CONTROL = regex.compile(r"\p{Cc}")
PAGE_SIZE = 20
SCAN_BELOW = 20_000  # a person whose conversations hold at most this many messages: read them all with LIKE
GRAM_COUNT_CAP = 10_000  # a bigram's messages are counted up to this many when choosing the rarest
GRAMS_CHECKED = 4  # how many of a query's bigrams are counted (and then required) on MariaDB


def clean_query(raw: str | None) -> str:
    """The query as searched: trimmed, 1–MAX_QUERY_LENGTH characters, no control characters (line breaks and tabs
    included: a search box has one line); else InvalidInput naming the field `q`."""
    query = (raw or "").strip()
    if not query:
        raise InvalidInput(_("请输入要搜索的内容。"), field="q")
    if len(query) > MAX_QUERY_LENGTH:
        raise InvalidInput(_("搜索内容太长：最多 {n} 个字。").format(n=MAX_QUERY_LENGTH), field="q")
    if _CONTROL.search(query):  # no message holds them (app.chat.text), and SQLite's LIKE stops at a NUL
        raise InvalidInput(_("搜索内容含有无法显示的控制字符。"), field="q")
    return query


def bigrams(body: str) -> set[str]:
    """The distinct two-character pieces of `body` lowercased (MariaDB's index rows of a message)."""
    folded = body.lower()
    return {folded[i:i + 2] for i in range(len(folded) - 1)}


def index_message(connection: Connection, message_id: int, conversation_id: int, body: str) -> None:
    """Adds a stored message's body to the search index, in the caller's transaction (the send's): a committed
    message is always searchable."""
    if connection.dialect.name == "sqlite":
        connection.execute(_FTS_INSERT, {"id": message_id, "body": body})
        return
    rows = [{"gram": gram, "message_id": message_id, "conversation_id": conversation_id} for gram in bigrams(body)]
    if rows:
        connection.execute(_GRAMS_INSERT, rows)


_FTS_INSERT = text("INSERT INTO message_fts (rowid, body) VALUES (:id, :body)")
_GRAMS_INSERT = insert(MessageGram.__table__)
_FTS = table("message_fts", column("rowid", BigInteger), column("message_fts"))


@dataclass(frozen=True)
class Hit:
    """One found message, the person on the other side of its conversation, and its text cut around the first match:
    `before` + `match` + `after` (the template marks `match`)."""

    message: Message
    peer: User
    before: str
    match: str
    after: str


def highlight(body: str, query: str, context: int = 20, total: int = 90) -> tuple[str, str, str]:
    """`body` split around the first occurrence of `query` (ignoring case) as (before, match, after), with at most
    `context` characters before it and `total` in all, "…" marking a cut; (body cut, "", "") when it is not there."""
    folded = body.lower()
    at = folded.find(query.lower()) if len(folded) == len(body) else -1
    if at < 0:
        at = body.find(query)
    if at < 0:
        return (body[:total] + ("…" if len(body) > total else ""), "", "")
    end = at + len(query)
    start = max(0, at - context)
    stop = max(end, min(len(body), start + total))
    before = ("…" if start > 0 else "") + body[start:at]
    after = body[end:stop] + ("…" if stop < len(body) else "")
    return before, body[at:end], after


def _escape_like(text_: str) -> str:
    return text_.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _contains(column: ColumnElement[str], query: str) -> ColumnElement[bool]:
    """`column` contains `query`, ignoring (ASCII, and on MariaDB all) case, alike on both databases."""
    return func.lower(column).like(f"%{_escape_like(query.lower())}%", escape="\\")


def _own_message_count(session: Session, user_id: str) -> int:
    return session.scalar(
        select(func.coalesce(func.sum(Conversation.message_count), 0))
        .join(Member, Member.conversation_id == Conversation.id)
        .where(Member.user_id == user_id)) or 0


def _indexable(session: Session, query: str) -> bool:
    """Whether the index can serve `query`: 3+ characters on SQLite (trigrams), 2+ on MariaDB (bigrams)."""
    return len(query) >= (3 if session.get_bind().dialect.name == "sqlite" else 2)


def _fts_phrase(query: str) -> str:
    return '"' + query.replace('"', '""') + '"'


def _gram_plan(session: Session, query: str) -> tuple[str, list[str]]:
    """MariaDB: the bigram to walk (the rarest of up to GRAMS_CHECKED spread over the query, each counted up to
    GRAM_COUNT_CAP) and the others to require."""
    folded = query.lower()
    distinct = list(dict.fromkeys(folded[i:i + 2] for i in range(len(folded) - 1)))
    if len(distinct) > GRAMS_CHECKED:
        step = (len(distinct) - 1) / (GRAMS_CHECKED - 1)
        distinct = list(dict.fromkeys(distinct[round(i * step)] for i in range(GRAMS_CHECKED)))
    counts = {}
    for gram in distinct:
        capped = select(MessageGram.message_id).where(MessageGram.gram == gram).limit(GRAM_COUNT_CAP).subquery()
        counts[gram] = session.scalar(select(func.count()).select_from(capped)) or 0
    driver = min(distinct, key=lambda g: counts[g])
    return driver, [g for g in distinct if g != driver]


def _index_hits(session: Session, query: str, with_message: bool) -> tuple[Select, ColumnElement[int]]:  # type: ignore[type-arg]
    """A select of (message id, conversation id) of the messages holding `query` (not yet filtered by person or
    recall; `messages` joined when `with_message` or when the text must be checked), and the message id column to
    order and page by (descending: newest first). Needs `_indexable`."""
    if session.get_bind().dialect.name == "sqlite":
        # ordered by the FTS table's rowid: SQLite then walks the hits newest first and looks each message up
        hits = (select(Message.id, Message.conversation_id)
                .select_from(_FTS).join(Message, Message.id == _FTS.c.rowid)
                .where(_FTS.c.message_fts.match(_fts_phrase(query))))
        return hits, _FTS.c.rowid
    driver, others = _gram_plan(session, query)
    g = aliased(MessageGram, name="g")
    # STRAIGHT_JOIN, in the order written: the rarest bigram's rows newest first, each probed by primary key for the
    # other bigrams and its message, so a page stops after its first hits. Left to itself MariaDB may start from the
    # person's conversations and read every message in them (seen for a person holding a third of the table).
    hits = select(g.message_id, g.conversation_id).prefix_with("STRAIGHT_JOIN", dialect="mysql").where(g.gram == driver)
    for other in others:
        o = aliased(MessageGram)
        hits = hits.join(o, and_(o.gram == other, o.message_id == g.message_id))
    if with_message or len(query) > 2:
        hits = hits.join(Message, Message.id == g.message_id)
    if len(query) > 2:  # the bigrams narrow it down; the text itself decides
        hits = hits.where(_contains(Message.body, query))
    return hits, g.message_id


def search_messages(
    session: Session, user_id: str, raw_query: str | None, before: int | None = None, limit: int = PAGE_SIZE,
    strategy: str | None = None,
) -> tuple[list[Hit], int | None]:
    """A page of the messages holding the query (ignoring case) in the conversations `user_id` takes part in, newest
    first, recalled ones left out, strictly older than message id `before`; and the `before` of the next page (None on
    the last). `strategy` "index" or "scan" overrides the choice (for benchmarks). Raises InvalidInput (field `q`)
    for an empty or too long query."""
    query = clean_query(raw_query)
    mine = select(Member.conversation_id).where(Member.user_id == user_id)
    if strategy is None:
        indexed = _indexable(session, query) and _own_message_count(session, user_id) > SCAN_BELOW
    else:
        indexed = strategy == "index" and _indexable(session, query)
    if indexed:
        hits, order = _index_hits(session, query, with_message=True)
        found = hits.where(hits.selected_columns[1].in_(mine), Message.recalled_at.is_(None))
    else:
        order = Message.id
        found = (select(Message.id)
                 .with_hint(Message, "FORCE INDEX (ix_messages_conversation_id)", "mysql")
                 .with_hint(Message, "INDEXED BY ix_messages_conversation_id", "sqlite")
                 .where(Message.conversation_id.in_(mine), Message.recalled_at.is_(None),
                        _contains(Message.body, query)))
    if before is not None:
        found = found.where(order < before)
    ids = [row[0] for row in session.execute(found.order_by(order.desc()).limit(limit + 1))]
    page, has_more = page_of(ids, limit)
    return _hits(session, user_id, page, query), (page[-1] if has_more and page else None)


def _hits(session: Session, user_id: str, ids: list[int], query: str) -> list[Hit]:
    """The found messages (ids newest first) with the peer of each conversation, loaded in two queries."""
    if not ids:
        return []
    messages = {m.id: m for m in session.scalars(select(Message).where(Message.id.in_(ids)))}
    conversation_ids = {m.conversation_id for m in messages.values()}
    peers = dict(session.execute(select(Member.conversation_id, User)
                                 .join(User, User.id == Member.peer_id)
                                 .where(Member.user_id == user_id, Member.conversation_id.in_(conversation_ids))).all())
    found = []
    for mid in ids:
        message = messages.get(mid)
        if message is None or message.conversation_id not in peers:
            continue
        found.append(Hit(message, peers[message.conversation_id], *highlight(message.body, query)))
    return found


def conversations_with_text(session: Session, query: str) -> Select | None:  # type: ignore[type-arg]
    """For the admins' monitor: a select of the ids of conversations holding a message (recalled ones too: admins
    see originals) that contains `query`, or None when the index cannot serve a query this short (1 character; 2 on
    SQLite), which then matches names and ids only."""
    query = query.strip()
    if not query or not _indexable(session, query):
        return None
    hits, _order = _index_hits(session, query, with_message=False)
    return hits.with_only_columns(hits.selected_columns[1])

