"""Attachments of image and file messages, and quick replies.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.db.models import BigId, UTCDateTime

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MYSQL = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin", "mysql_engine": "InnoDB"}


def upgrade() -> None:
    """Adds attachments and quick replies."""
    op.create_table(
        "attachments",
        sa.Column("message_id", BigId, sa.ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("stored_path", sa.String(255), nullable=False),
        sa.Column("thumbnail_path", sa.String(255), nullable=True),
        sa.Column("original_name", sa.String(255), nullable=False),
        sa.Column("content_type", sa.String(120), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        **MYSQL,
    )
    op.create_table(
        "quick_replies",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("owner_id", sa.String(64), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("body", sa.String(500), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        **MYSQL,
    )
    op.create_index("ix_quick_replies_owner_position", "quick_replies", ["owner_id", "position"])


def downgrade() -> None:
    """Takes back what `upgrade` added: attachments and quick replies."""
    op.drop_table("quick_replies")
    op.drop_table("attachments")
