"""Server-side sign-in sessions: logging out, a new password or disabling an admin really ends them.

The admins' `session_version` (bumped to end every session of an admin) gives way to these rows: signing in
again is needed once after the upgrade, since old cookies name no session.

Revision ID: 0006_sign_in_sessions
Revises: 0005
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.db.models import UTCDateTime

revision: str = "0006_sign_in_sessions"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MYSQL = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin", "mysql_engine": "InnoDB"}


def upgrade() -> None:
    """Adds the sign-in sessions table."""
    op.create_table(
        "sign_in_sessions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.String(64), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        **MYSQL,
    )
    op.create_index("ix_sign_in_sessions_user", "sign_in_sessions", ["user_id", "expires_at"])
    with op.batch_alter_table("admin_accounts") as batch:
        batch.drop_column("session_version")


def downgrade() -> None:
    """Takes back what `upgrade` added: the sign-in sessions table."""
    with op.batch_alter_table("admin_accounts") as batch:
        batch.add_column(sa.Column("session_version", sa.Integer(), nullable=False, server_default="1"))
    op.drop_table("sign_in_sessions")
