"""The `kefu` command: serve, db upgrade, demo seed."""

from __future__ import annotations

import logging
import sys

import click

from app.config import Settings

log = logging.getLogger("kefu")


def _settings() -> Settings:
    return Settings.from_env()


def warn_about(settings: Settings) -> None:
    if settings.demo:
        click.secho("WARNING: demo mode is ON (KEFU_DEMO=1): anyone can sign in as anyone with ?user_id=. "
                    "Never use it in production.", fg="red", bold=True, err=True)
    if settings.secret_key_generated:
        click.secho("WARNING: KEFU_SECRET_KEY is not set; using the key generated in var/secret_key. "
                    "Set KEFU_SECRET_KEY for production and for several processes or machines.",
                    fg="yellow", err=True)


@click.group()
def main() -> None:
    """Kefu (客服): real-time customer-service chat."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64))
def serve(host: str, port: int, workers: int) -> None:
    """Serve the app with uvicorn."""
    import uvicorn

    settings = _settings()
    warn_about(settings)
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        proxy_headers=False,
        timeout_graceful_shutdown=3,
        log_level="info",
    )


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Apply the Alembic migrations (up to REVISION, default head)."""
    from app.db.migrate import upgrade

    settings = _settings()
    upgrade(settings.database_url, revision)
    click.echo(f"database is at {revision}")


@main.group()
def demo() -> None:
    """Demo data."""


@demo.command("seed")
@click.option("--load-users", default=0, type=click.IntRange(0, 100_000), help="also lb1…lbN and lm1…lmN")
def demo_seed(load_users: int) -> None:
    """Create the demo people (idempotent)."""
    from app.db.engine import make_engine, make_sessionmaker, session_scope
    from app.db.seed import seed_demo

    settings = _settings()
    engine = make_engine(settings.database_url)
    try:
        with session_scope(make_sessionmaker(engine)) as session:
            count = seed_demo(session, load_users)
    except Exception as error:  # a clear line, not a traceback
        raise click.ClickException(f"could not seed: {error}") from error
    finally:
        engine.dispose()
    click.echo(f"seeded {count} people")


if __name__ == "__main__":
    sys.exit(main())
