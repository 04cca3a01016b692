"""The key a page sends each message with (its Idempotency-Key), stored on the message: a retried send stores once.

Unique per sender: a retry finds the message the first attempt stored (NULL for messages sent without a key).

Revision ID: 0009_client_keys
Revises: 0008_throttle_keys
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_client_keys"
down_revision: str | None = "0008_throttle_keys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Adds messages.client_key and its unique index per sender."""
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("client_key", sa.String(64), nullable=True))
        batch.create_index("uq_messages_sender_client_key", ["sender_id", "client_key"], unique=True)


def downgrade() -> None:
    """Takes back what `upgrade` added: messages.client_key and its unique index per sender."""
    bind = op.get_bind()
    indexes = {index["name"] for index in sa.inspect(bind).get_indexes("messages")}
    if bind.dialect.name == "mysql" and "ix_messages_sender_id" not in indexes:
        # InnoDB let the foreign key on sender_id use the new index (it dropped its own): give it one first
        op.create_index("ix_messages_sender_id", "messages", ["sender_id"])
    with op.batch_alter_table("messages") as batch:
        batch.drop_index("uq_messages_sender_client_key")
        batch.drop_column("client_key")
