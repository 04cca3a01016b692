"""Webhook and delivery ids are never handed out again on SQLite (AUTOINCREMENT): removing a webhook deleted its
deliveries, and SQLite gave their ids to the next ones, so receivers that drop deliveries they have seen by
X-Kefu-Delivery dropped new events. MariaDB's AUTO_INCREMENT never reuses ids: nothing changes there.

Revision ID: 0007_webhook_ids
Revises: 0006_sign_in_sessions
Create Date: 2026-11-29
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007_webhook_ids"
down_revision: str | None = "0006_sign_in_sessions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("webhooks", "webhook_deliveries")


def _recreate(autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in TABLES:
        with op.batch_alter_table(table, recreate="always",
                                  table_kwargs={"sqlite_autoincrement": autoincrement}) as batch:
            batch.alter_column("id")  # the table is copied as it is, under its new CREATE TABLE


def upgrade() -> None:
    """Recreates the webhook tables so that their ids are never handed out again (SQLite AUTOINCREMENT)."""
    _recreate(True)


def downgrade() -> None:
    """Recreates the webhook tables without AUTOINCREMENT, as before."""
    _recreate(False)
