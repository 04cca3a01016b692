"""Alembic environment: runs the revisions against the URL the caller gives, else KEFU_DATABASE_URL."""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context

from app.config import Settings
from app.db.engine import make_engine
from app.db.models import Base

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def _url() -> str:
    return config.attributes.get("database_url") or Settings.from_env().database_url


def run_migrations_offline() -> None:
    """Alembic's offline mode (`--sql`): the migrations as SQL text for the configured database URL, nothing run."""
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Runs the migrations on the configured database (KEFU_DATABASE_URL, or the URL `kefu db upgrade` passes), in
    one transaction per migration; SQLite alters tables in batch mode (it cannot alter most columns in place)."""
    engine = make_engine(_url())
    with engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            # Batch mode copies a table, drops the old one and renames the copy: with foreign keys on, dropping
            # `conversations` would cascade and delete every message and membership (SQLite's own advice for
            # altering tables: https://www.sqlite.org/lang_altertable.html#otheralter). Checked after the run.
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
        if connection.dialect.name == "sqlite":
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
            connection.commit()
            if broken:
                raise RuntimeError(f"the migration left rows whose references point nowhere: {broken[:5]}")
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
