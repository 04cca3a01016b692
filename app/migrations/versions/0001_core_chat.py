"""The core chat: people, conversations, members (read watermarks) and messages.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.db.models import BigId, UTCDateTime

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# utf8mb4 for emoji and every Chinese character; binary collation so ids compare exactly.
MYSQL = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin", "mysql_engine": "InnoDB"}


def upgrade() -> None:
    """Adds people, conversations, members and messages."""
    op.create_table(
        "users",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("avatar_url", sa.String(500), nullable=True),
        sa.Column("description", sa.String(1000), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        **MYSQL,
    )
    op.create_table(
        "conversations",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("user_a", sa.String(64), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("user_b", sa.String(64), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("last_activity_at", UTCDateTime(), nullable=False),
        sa.Column("last_message_id", sa.BigInteger(), nullable=True),
        sa.UniqueConstraint("user_a", "user_b", name="uq_conversations_pair"),
        **MYSQL,
    )
    op.create_index("ix_conversations_user_b", "conversations", ["user_b"])
    op.create_index("ix_conversations_activity", "conversations", ["last_activity_at", "id"])
    op.create_table(
        "conversation_members",
        sa.Column(
            "conversation_id",
            BigId,
            sa.ForeignKey("conversations.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("user_id", sa.String(64), sa.ForeignKey("users.id"), primary_key=True),
        sa.Column("peer_id", sa.String(64), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("last_read_message_id", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("last_activity_at", UTCDateTime(), nullable=False),
        **MYSQL,
    )
    op.create_index(
        "ix_members_user_activity", "conversation_members", ["user_id", "last_activity_at", "conversation_id"]
    )
    op.create_table(
        "messages",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column(
            "conversation_id",
            BigId,
            sa.ForeignKey("conversations.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("sender_id", sa.String(64), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False, server_default="text"),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        **MYSQL,
    )
    op.create_index("ix_messages_conversation_id", "messages", ["conversation_id", "id"])


def downgrade() -> None:
    """Takes back what `upgrade` added: people, conversations, members and messages."""
    op.drop_table("messages")
    op.drop_table("conversation_members")
    op.drop_table("conversations")
    op.drop_table("users")
