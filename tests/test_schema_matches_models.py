"""The migrations build exactly the schema the models describe, on SQLite and MariaDB: a column, index or table
added to one and not the other fails here, not in production (Alembic's own comparison, as `alembic check` does).
The search index is the one planned difference: an FTS5 table on SQLite (`message_fts` and its shadow tables, which
no model describes) instead of the `message_grams` table of MySQL/MariaDB (app.chat.search)."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from app.db.engine import make_engine
from app.db.models import Base


def sqlite_search_index(sqlite: bool):  # type: ignore[no-untyped-def]
    """Alembic's include_object: on SQLite, leave out the FTS5 tables and the MariaDB-only `message_grams`."""

    def include(_object, name, kind, _reflected, _compare_to) -> bool:  # type: ignore[no-untyped-def]
        return not (sqlite and kind == "table" and (name.startswith("message_fts") or name == "message_grams"))

    return include


def test_the_migrated_database_is_what_the_models_say(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={
                "compare_type": False, "include_object": sqlite_search_index(engine.dialect.name == "sqlite")})
            differences = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert differences == []
