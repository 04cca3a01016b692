"""Recall and quote: when a message was recalled by its sender (kept for admins and the audit), and which message of
the same conversation a message quotes.

Revision ID: 0010_recall_quote
Revises: 0009_client_keys
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.db.models import BigId, UTCDateTime

revision: str = "0010_recall_quote"
down_revision: str | None = "0009_client_keys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Adds messages.recalled_at (indexed: a reconnecting stream replays the recalls since its last message) and
    messages.reply_to_id (the quoted message; nothing happens to a quote when its original is deleted with the
    conversation, which deletes both)."""
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("recalled_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("reply_to_id", BigId, nullable=True))
        batch.create_index("ix_messages_recalled_at", ["recalled_at"])


def downgrade() -> None:
    """Takes back what `upgrade` added."""
    with op.batch_alter_table("messages") as batch:
        batch.drop_index("ix_messages_recalled_at")
        batch.drop_column("reply_to_id")
        batch.drop_column("recalled_at")
