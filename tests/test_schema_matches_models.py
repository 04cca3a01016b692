"""The migrations build exactly the schema the models describe, on SQLite and MariaDB: a column, index or table
added to one and not the other fails here, not in production (Alembic's own comparison, as `alembic check` does)."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from app.db.engine import make_engine
from app.db.models import Base


def test_the_migrated_database_is_what_the_models_say(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": False})
            differences = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert differences == []
