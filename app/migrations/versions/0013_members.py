"""Platform intervention: a buyer–merchant conversation may take the platform's support person in as a third member.

Revision ID: 0013_members
Revises: 0012_search
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.db.models import UTCDateTime

revision: str = "0013_members"
down_revision: str | None = "0012_search"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Adds conversations.support_id (the platform member while an intervention lasts; NULL otherwise, as for every
    existing conversation) and conversations.intervention_at (when the platform was first asked in: messages from then
    on cannot be recalled). Existing conversations keep their two members and their read watermarks."""
    with op.batch_alter_table("conversations") as batch:
        support = sa.ForeignKey("users.id", name="fk_conversations_support")
        batch.add_column(sa.Column("support_id", sa.String(64), support, nullable=True))
        batch.add_column(sa.Column("intervention_at", UTCDateTime(), nullable=True))


def downgrade() -> None:
    """Takes back what `upgrade` added. A platform member still in a conversation loses their membership row (the
    conversation goes back to its pair); the notices of the intervention stay in the history."""
    conversations = sa.table("conversations", sa.column("id"), sa.column("support_id"))
    members = sa.table("conversation_members", sa.column("conversation_id"), sa.column("user_id"))
    joined = sa.select(conversations.c.id, conversations.c.support_id).where(conversations.c.support_id.is_not(None))
    for conversation_id, support_id in op.get_bind().execute(joined).all():
        op.execute(members.delete().where(members.c.conversation_id == conversation_id,
                                          members.c.user_id == support_id))
    with op.batch_alter_table("conversations") as batch:
        batch.drop_constraint("fk_conversations_support", type_="foreignkey")
        batch.drop_column("intervention_at")
        batch.drop_column("support_id")
