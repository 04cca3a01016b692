"""The buyer's orders beside the thread: the orders a marketplace pushes (PUT /api/v1/orders/{order_no}).

Revision ID: 0015_orders
Revises: 0014_cards
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.db.models import UTCDateTime

revision: str = "0015_orders"
down_revision: str | None = "0014_cards"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# as every table: utf8mb4, binary collation (ids compare exactly, and foreign keys to users.id need the same one)
MYSQL = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin", "mysql_engine": "InnoDB"}


def upgrade() -> None:
    """Creates `orders` with its two indexes (a buyer's orders with one merchant, and with every merchant, newest
    first)."""
    op.create_table(
        "orders",
        sa.Column("order_no", sa.String(64), primary_key=True),
        sa.Column("buyer_id", sa.String(64), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("merchant_id", sa.String(64), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("total_fen", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("items", sa.Text(), nullable=False),
        sa.Column("url", sa.String(1000), nullable=True),
        sa.Column("placed_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        **MYSQL,
    )
    op.create_index("ix_orders_buyer_merchant", "orders", ["buyer_id", "merchant_id", "placed_at", "order_no"])
    op.create_index("ix_orders_buyer", "orders", ["buyer_id", "placed_at", "order_no"])


def downgrade() -> None:
    """Drops `orders` with its indexes (the marketplace pushes them again after an upgrade). MariaDB refuses to drop
    an index its foreign keys use on its own: the table goes in one statement."""
    op.drop_table("orders")
