"""Product and order cards: messages.card holds a card's validated fields as JSON text (app.chat.cards); the
`consulting` table holds the product a person asks about in a conversation (正在咨询) until they send it.

Revision ID: 0014_cards
Revises: 0013_members
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.db.models import UTCDateTime

revision: str = "0014_cards"
down_revision: str | None = "0013_members"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# as every table: utf8mb4, binary collation (ids compare exactly, and foreign keys to users.id need the same one)
MYSQL = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin", "mysql_engine": "InnoDB"}


def upgrade() -> None:
    """Adds messages.card (nullable: the messages stored before it carry no card)."""
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("card", sa.Text(), nullable=True))
    op.create_table(
        "consulting",
        sa.Column("conversation_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  sa.ForeignKey("conversations.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("user_id", sa.String(64), sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("card", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        **MYSQL,
    )


def downgrade() -> None:
    """Takes back what `upgrade` added. Cards stored meanwhile stay as messages of kind "product" or "order" whose
    body is their title or order number; products not yet sent are forgotten."""
    op.drop_table("consulting")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("card")
