"""Message search: SQLite gets an FTS5 table with the trigram tokenizer (`message_fts`, rowid = message id, no copy of
the text), MySQL/MariaDB a bigram table (`message_grams`, see app.db.models.MessageGram): MariaDB has no n-gram
parser for InnoDB FULLTEXT and Debian's MariaDB ships no Mroonga. Both are filled from the messages already stored.

Revision ID: 0012_search
Revises: 0011_conversation_opener
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_search"
down_revision: str | None = "0011_conversation_opener"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 5000  # messages read and indexed at a time while filling the MariaDB table


def upgrade() -> None:
    """Creates the search index of the database's kind and indexes every stored message's body."""
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        op.execute("CREATE VIRTUAL TABLE message_fts USING fts5(body, content='', tokenize='trigram')")
        op.execute("INSERT INTO message_fts (rowid, body) SELECT id, body FROM messages")
        return
    op.create_table(
        "message_grams",
        sa.Column("gram", sa.String(2), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        sa.Column("conversation_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("gram", "message_id"),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )
    from app.chat.search import bigrams  # the one rule of what is indexed, shared with every send

    after = 0
    grams = sa.table("message_grams", sa.column("gram"), sa.column("message_id"), sa.column("conversation_id"))
    while True:
        rows = bind.execute(sa.text("SELECT id, conversation_id, body FROM messages WHERE id > :after "
                                    "ORDER BY id LIMIT :n"), {"after": after, "n": BATCH}).all()
        if not rows:
            break
        values = [{"gram": gram, "message_id": mid, "conversation_id": cid}
                  for mid, cid, body in rows for gram in bigrams(body)]
        if values:
            bind.execute(grams.insert(), values)
        after = rows[-1][0]


def downgrade() -> None:
    """Drops the search index."""
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE message_fts")
    else:
        op.drop_table("message_grams")
