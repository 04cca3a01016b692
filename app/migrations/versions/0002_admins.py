"""Admin accounts, sign-in failures for throttling, and a stored message count per conversation.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.db.models import BigId, UTCDateTime

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MYSQL = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin", "mysql_engine": "InnoDB"}


def upgrade() -> None:
    """Adds admin accounts, sign-in failures and the per-conversation message count."""
    op.create_table(
        "admin_accounts",
        sa.Column("user_id", sa.String(64), sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("username", sa.String(64), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("session_version", sa.Integer(), nullable=False, server_default="1"),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("password_changed_at", UTCDateTime(), nullable=False),
        **MYSQL,
    )
    op.create_table(
        "sign_in_failures",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        **MYSQL,
    )
    op.create_index("ix_sign_in_failures_key_time", "sign_in_failures", ["key", "created_at"])
    with op.batch_alter_table("conversations") as batch:
        batch.add_column(sa.Column("message_count", sa.Integer(), nullable=False, server_default="0"))
    op.execute(
        "UPDATE conversations SET message_count = "
        "(SELECT COUNT(*) FROM messages WHERE messages.conversation_id = conversations.id)"
    )


def downgrade() -> None:
    """Takes back what `upgrade` added: admin accounts, sign-in failures and the per-conversation message count."""
    with op.batch_alter_table("conversations") as batch:
        batch.drop_column("message_count")
    op.drop_table("sign_in_failures")
    op.drop_table("admin_accounts")
