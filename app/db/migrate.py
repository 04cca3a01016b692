"""Run Alembic programmatically (for `kefu db upgrade` and the tests)."""

from __future__ import annotations

from functools import cache

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from app import PACKAGE


def alembic_config(database_url: str) -> Config:
    """Alembic's configuration for `database_url`, with the migrations shipped inside the package."""
    config = Config(str(PACKAGE / "alembic.ini"))
    config.set_main_option("script_location", str(PACKAGE / "migrations"))
    config.attributes["database_url"] = database_url
    config.attributes["configure_logging"] = False
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Migrates the database up to `revision` (default the head)."""
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    """Migrates the database down to `revision`."""
    command.downgrade(alembic_config(database_url), revision)


@cache
def head_revision() -> str:
    """The revision the code's schema is at (the head of migrations/), read once per process."""
    config = Config(str(PACKAGE / "alembic.ini"))
    config.set_main_option("script_location", str(PACKAGE / "migrations"))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None, "migrations/ has no head revision"
    return head


def current_revision(connection: Connection) -> str | None:
    """The revision a database's schema is at (its alembic_version row), or None when it was never migrated."""
    return MigrationContext.configure(connection).get_current_revision()
