"""Who opened a conversation: until its first message it is listed for them only, not for the other side.

Revision ID: 0011_conversation_opener
Revises: 0010_recall_quote
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_conversation_opener"
down_revision: str | None = "0010_recall_quote"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Adds conversations.opened_by (nullable: conversations opened before it stay listed for both sides)."""
    with op.batch_alter_table("conversations") as batch:
        batch.add_column(sa.Column("opened_by", sa.String(64), nullable=True))


def downgrade() -> None:
    """Takes back what `upgrade` added."""
    with op.batch_alter_table("conversations") as batch:
        batch.drop_column("opened_by")
