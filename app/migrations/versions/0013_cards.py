"""Product and order cards: messages.card holds a card's validated fields as JSON text (app.chat.cards).

Revision ID: 0013_cards
Revises: 0012_search
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_cards"
down_revision: str | None = "0012_search"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Adds messages.card (nullable: the messages stored before it carry no card)."""
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("card", sa.Text(), nullable=True))


def downgrade() -> None:
    """Takes back what `upgrade` added. Cards stored meanwhile stay as messages of kind "product" or "order" whose
    body is their title or order number."""
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("card")
