"""Rows to lock per sign-in throttling key, so that counting an attempt and checking the limit are one step.

Revision ID: 0008_throttle_keys
Revises: 0007_webhook_ids
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_throttle_keys"
down_revision: str | None = "0007_webhook_ids"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MYSQL = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin", "mysql_engine": "InnoDB"}


def upgrade() -> None:
    """Adds the sign-in throttling key rows."""
    op.create_table("sign_in_throttle_keys", sa.Column("key", sa.String(200), primary_key=True), **MYSQL)


def downgrade() -> None:
    """Takes back what `upgrade` added: the sign-in throttling key rows."""
    op.drop_table("sign_in_throttle_keys")
