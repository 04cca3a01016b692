"""The tables. Every change goes through an Alembic revision in migrations/."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

# SQLite only auto-increments INTEGER PRIMARY KEY; MySQL gets a BIGINT.
BigId = BigInteger().with_variant(Integer(), "sqlite")
MAX_ID = 2**63 - 1  # the largest id a BIGINT (and SQLite's INTEGER) column holds: ids beyond it are refused, not stored

ROLES = ("buyer", "merchant", "support", "admin")


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC with microseconds; always hands back aware UTC datetimes."""

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect):  # type: ignore[no-untyped-def]
        """DATETIME(6) on MySQL/MariaDB (microseconds), DateTime elsewhere."""
        if dialect.name == "mysql":
            from sqlalchemy.dialects.mysql import DATETIME

            return dialect.type_descriptor(DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value, dialect):  # type: ignore[no-untyped-def]
        """An aware datetime stored as naive UTC."""
        if value is None:
            return None
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):  # type: ignore[no-untyped-def]
        """A stored naive UTC datetime handed back aware."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


def utcnow() -> datetime:
    """Now, as an aware UTC datetime."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16))
    avatar_url: Mapped[str | None] = mapped_column(String(500), default=None)
    description: Mapped[str | None] = mapped_column(String(1000), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Conversation(Base):
    """A conversation of a pair of people (`user_a` < `user_b`, so a pair has one row) and, while the platform
    intervenes in a buyer–merchant conversation, its support person (`support_id`, a third member): app.chat.members."""

    __tablename__ = "conversations"
    __table_args__ = (
        UniqueConstraint("user_a", "user_b", name="uq_conversations_pair"),
        Index("ix_conversations_activity", "last_activity_at", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_a: Mapped[str] = mapped_column(ForeignKey("users.id"))
    user_b: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_activity_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_message_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    message_count: Mapped[int] = mapped_column(Integer, default=0)
    # who opened it: until its first message, it is listed for them only (None: opened before this was kept)
    opened_by: Mapped[str | None] = mapped_column(String(64), default=None)
    # the platform's member while an intervention lasts (None before and after), and when it was first asked in
    support_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", name="fk_conversations_support"),
                                                   default=None)
    intervention_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class Member(Base):
    """One participant of a conversation and how far they have read (a watermark, so counts are derived)."""

    __tablename__ = "conversation_members"
    __table_args__ = (Index("ix_members_user_activity", "user_id", "last_activity_at", "conversation_id"),)

    conversation_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("conversations.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), primary_key=True)
    peer_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    last_read_message_id: Mapped[int] = mapped_column(BigInteger, default=0)
    # A copy of the conversation's activity time, so one index serves "my conversations, newest first".
    last_activity_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (Index("ix_messages_conversation_id", "conversation_id", "id"),
                      Index("uq_messages_sender_client_key", "sender_id", "client_key", unique=True))

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    conversation_id: Mapped[int] = mapped_column(BigId, ForeignKey("conversations.id", ondelete="CASCADE"))
    sender_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    kind: Mapped[str] = mapped_column(String(16), default="text")
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # the Idempotency-Key the page sent it with (unique per sender): a retried send finds it instead of storing again
    client_key: Mapped[str | None] = mapped_column(String(64), default=None)
    # when the sender recalled it (participants then see a tombstone; admins and the audit log keep the original)
    recalled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None, index=True)
    # the message of the same conversation this one quotes
    reply_to_id: Mapped[int | None] = mapped_column(BigId, default=None)
    # a product or order card (kind "product" or "order"): its validated fields as canonical JSON (app.chat.cards);
    # a column, not a side table, so that a page of messages and the send path need no extra query
    card: Mapped[str | None] = mapped_column(Text, default=None)
    # loaded for whole pages of messages in one extra query, never one per message
    attachment: Mapped[Attachment | None] = relationship(lazy="selectin", viewonly=True)
    # the quoted message, and who wrote a message, loaded like the attachment: one extra query each for a page of
    # messages (none for quotes when nothing on the page quotes); templates render on the event loop, so nothing
    # they read may load lazily
    quoted: Mapped[Message | None] = relationship(
        primaryjoin="foreign(Message.reply_to_id) == remote(Message.id)", lazy="selectin", viewonly=True)
    author: Mapped[User | None] = relationship(primaryjoin="foreign(Message.sender_id) == User.id",
                                               lazy="selectin", viewonly=True)


class Consulting(Base):
    """The product a person is asking about in a conversation (正在咨询), from the signed link they followed: shown
    above their composer until they send it as a product card, once. `key` becomes that card's `client_key`."""

    __tablename__ = "consulting"

    conversation_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("conversations.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(64))
    card: Mapped[str] = mapped_column(Text)  # the product card's canonical JSON (app.chat.cards)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class MessageGram(Base):
    """The search index on MySQL/MariaDB: one row per distinct two-character piece (bigram) of a message's lowercased
    body, written in the send's own transaction (app.chat.search). The primary key walks one bigram's messages newest
    first; `conversation_id` rides along so that "only my conversations" needs no lookup in `messages`. SQLite uses
    an FTS5 table (`message_fts`, trigram tokenizer) instead, made by migration 0012; this table is not made there.
    Rows of deleted messages are left behind and never shown (every search joins `messages`)."""

    __tablename__ = "message_grams"

    gram: Mapped[str] = mapped_column(String(2), primary_key=True)
    message_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(BigInteger)


class AdminAccount(Base):
    """The sign-in of a person with role admin. Their sessions are rows of `sign_in_sessions`."""

    __tablename__ = "admin_accounts"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    disabled: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    password_changed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class SignInSession(Base):
    """One signed-in person or admin in one browser: the cookie carries a random token, the table only its
    SHA-256 (`id`). Logging out, a new password or disabling an admin deletes rows; a request checks its row by
    primary key."""

    __tablename__ = "sign_in_sessions"
    __table_args__ = (Index("ix_sign_in_sessions_user", "user_id", "expires_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # hex SHA-256 of the cookie's token
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SignInFailure(Base):
    """One failed admin sign-in, counted per username and per client address for throttling."""

    __tablename__ = "sign_in_failures"
    __table_args__ = (Index("ix_sign_in_failures_key_time", "key", "created_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class SignInThrottleKey(Base):
    """A row per throttling key (a username, an address, a device), locked while an attempt on it is counted and
    checked: attempts on one key take turns, so 40 at once check 5, not 21."""

    __tablename__ = "sign_in_throttle_keys"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)


class Attachment(Base):
    """The stored file of an image or file message. `original_name` is for display only, never a path."""

    __tablename__ = "attachments"

    message_id: Mapped[int] = mapped_column(BigId, ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True)
    stored_path: Mapped[str] = mapped_column(String(255))
    thumbnail_path: Mapped[str | None] = mapped_column(String(255), default=None)
    original_name: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(120))
    size: Mapped[int] = mapped_column(BigInteger)
    width: Mapped[int | None] = mapped_column(Integer, default=None)
    height: Mapped[int | None] = mapped_column(Integer, default=None)


class QuickReply(Base):
    """A merchant's or support person's canned answer, in their own order."""

    __tablename__ = "quick_replies"
    __table_args__ = (Index("ix_quick_replies_owner_position", "owner_id", "position"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    body: Mapped[str] = mapped_column(String(500))
    position: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class AuditEntry(Base):
    """Admin sign-ins, failed sign-ins, admin account changes and link sign-ins, newest last."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_action", "action", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    action: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(200))  # a user id, or the username someone tried
    client: Mapped[str] = mapped_column(String(100), default="")
    detail: Mapped[str] = mapped_column(String(500), default="")


class ApiKey(Base):
    """A marketplace backend's key: only its SHA-256 is stored; the key itself is shown once."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class IdempotencyKey(Base):
    """A retried POST with the same Idempotency-Key stores one message."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("api_key_id", "key", name="uq_idempotency_key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    api_key_id: Mapped[int] = mapped_column(BigId, ForeignKey("api_keys.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(200))
    message_id: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Webhook(Base):
    """A receiver of events. Its id, like its deliveries', is never handed out again (AUTOINCREMENT on SQLite, as
    MariaDB does anyway): receivers tell deliveries apart by id."""

    __tablename__ = "webhooks"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    url: Mapped[str] = mapped_column(String(1000))
    events: Mapped[str] = mapped_column(String(200))  # comma-separated event types
    secret: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class WebhookDelivery(Base):
    """One event for one webhook: stored with the change that caused it, then sent (and retried) by a worker."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_due", "status", "next_attempt_at"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    webhook_id: Mapped[int] = mapped_column(BigId, ForeignKey("webhooks.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(40))
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending, delivered, failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    last_status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    last_error: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class Order(Base):
    """A marketplace order as the marketplace last pushed it (app.chat.orders): shown beside the thread to the
    merchant, the platform's support and the buyer; `items` is its validated items as JSON text."""

    __tablename__ = "orders"
    __table_args__ = (
        Index("ix_orders_buyer_merchant", "buyer_id", "merchant_id", "placed_at", "order_no"),
        Index("ix_orders_buyer", "buyer_id", "placed_at", "order_no"),
    )

    order_no: Mapped[str] = mapped_column(String(64), primary_key=True)
    buyer_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    merchant_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    status: Mapped[str] = mapped_column(String(32))
    total_fen: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    items: Mapped[str] = mapped_column(Text)
    url: Mapped[str | None] = mapped_column(String(1000), default=None)
    placed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
