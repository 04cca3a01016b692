"""The `kefu` command: serve, db upgrade, demo seed."""

from __future__ import annotations

import logging
import os
import resource
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.orm import Session

from app.chat import audit
from app.config import Settings

log = logging.getLogger("kefu")


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except ValueError as error:  # a setting that makes no sense (KEFU_TIMEZONE=Mars/Base): one line, exit 1
        raise click.ClickException(str(error)) from error


def say_database(url: str) -> None:
    """Tells (on standard error) which database a command acts on, password hidden: a shell without the
    deployment's environment would otherwise migrate a stray var/kefu.db and say all is well."""
    from sqlalchemy.engine import make_url

    try:
        shown = make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL: the command's own error says so next
        shown = "?"
    click.echo(f"database: {shown}", err=True)


def warn_about(settings: Settings) -> None:
    """Loud warnings on standard error for settings unfit for production (demo mode, the generated secret key)."""
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
@click.option("--access-log/--no-access-log", default=True, show_default=True, envvar="KEFU_ACCESS_LOG",
              help="a log line per request (KEFU_ACCESS_LOG=0: off, for nginx logs them; it costs ~4 % of the CPU)")
def serve(host: str, port: int, workers: int, access_log: bool) -> None:
    """Serve the app with uvicorn."""
    import uvicorn

    from app.web.http_protocol import BoundedHttpToolsProtocol

    settings = _settings()
    warn_about(settings)
    if workers > 1 and not settings.broker_url:
        raise click.ClickException(
            "--workers above 1 needs KEFU_BROKER_URL=redis://…: every process must hear every event"
        )
    config = uvicorn.Config(
        "app.main:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        proxy_headers=False,
        http=BoundedHttpToolsProtocol,  # httptools, with h11's 16 KB limit and time limits on a request's head
        limit_concurrency=max_connections(),  # past it new connections get 503; the slow ones go within seconds
        # on SIGTERM: streams end at once (app.web.stopping), requests in flight get this long to finish
        timeout_graceful_shutdown=settings.shutdown_seconds,
        log_level="info",
        access_log=access_log,
    )
    from app.web.stopping import run_server

    run_server(config)


RESERVED_FILES = 64  # file descriptors kept for the database pool, Redis, uploads and logs


def max_connections() -> int:
    """Connections one process serves at once (uvicorn's limit_concurrency): KEFU_MAX_CONNECTIONS, else what the
    process's file limit leaves after RESERVED_FILES (at least 16). Beyond it new connections get 503, so the
    process never runs out of file descriptors for its database, Redis and files."""
    configured = os.environ.get("KEFU_MAX_CONNECTIONS", "").strip()
    if configured.isdigit() and int(configured) > 0:
        return int(configured)
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(16, soft - RESERVED_FILES)


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Apply the Alembic migrations (up to REVISION, default head)."""
    from alembic.util.exc import CommandError

    from app.db.migrate import upgrade

    settings = _settings()
    say_database(settings.database_url)
    with _clear_errors():
        try:
            upgrade(settings.database_url, revision)
        except CommandError as error:
            raise click.ClickException(f"migration error: {error}") from error
    click.echo(f"database is at {revision}")


@main.group()
def demo() -> None:
    """Demo data."""


@demo.command("seed")
@click.option("--load-users", default=0, type=click.IntRange(0, 100_000), help="also lb1…lbN and lm1…lmN")
def demo_seed(load_users: int) -> None:
    """Create the demo people (idempotent)."""
    from app.chat.demo import seed_demo

    with _database() as session:
        count = seed_demo(session, load_users)
    click.echo(f"seeded {count} people")


@contextmanager
def _clear_errors() -> Iterator[None]:
    """Domain and database errors become one clear line and exit status 1, never a traceback."""
    from app.chat.errors import ChatError

    try:
        yield
    except ChatError as error:
        raise click.ClickException(str(error)) from error
    except SQLAlchemyError as error:
        cause = getattr(error, "orig", None) or error
        raise click.ClickException(f"database error: {type(error).__name__}: {cause}") from error
    except (ArgumentError, NoSuchModuleError, ValueError) as error:
        raise click.ClickException(f"bad KEFU_DATABASE_URL: {error}") from error


@contextmanager
def _database() -> Iterator[Session]:
    """A committed-on-success session, with errors made clear."""
    from app.db.engine import make_engine, make_sessionmaker, session_scope

    url = _settings().database_url
    say_database(url)
    with _clear_errors():
        engine = make_engine(url)
        try:
            with session_scope(make_sessionmaker(engine)) as session:
                yield session
        finally:
            engine.dispose()


@main.group()
def admin() -> None:
    """Admin accounts (the platform's staff who watch every conversation)."""


def _close_admin_streams(session_keys: list[str]) -> None:
    """The sessions are ended (committed): tell the server's open monitor streams of them to close now, through
    the broker. Without KEFU_BROKER_URL they close at their next ping."""
    from app.realtime.bus import ADMINS
    from app.realtime.signout import announce_through_broker

    settings = _settings()
    broker_url = settings.broker_url
    if session_keys and broker_url and not announce_through_broker(broker_url, session_keys, [ADMINS],
                                                                   settings.broker_namespace):
        click.secho("warning: the broker did not answer; open monitor pages stop at their next ping",
                    fg="yellow", err=True)


@admin.command("create")
@click.argument("user_id")
@click.argument("username")
@click.argument("password")
def admin_create(user_id: str, username: str, password: str) -> None:
    """Create an admin who signs in at /login with USERNAME and PASSWORD."""
    from app.chat.admins import create_admin

    with _database() as session:
        create_admin(session, user_id, username, password)
        audit.record(session, "admin.created", user_id, "cli", f"username={username}")
    click.echo(f"created admin {user_id} ({username})")


@admin.command("passwd")
@click.argument("user_id")
@click.argument("new_password")
def admin_passwd(user_id: str, new_password: str) -> None:
    """Set a new password; the admin's existing sessions end."""
    from app.chat.admins import change_password

    with _database() as session:
        ended = change_password(session, user_id, new_password)
        audit.record(session, "admin.password_changed", user_id, "cli")
    _close_admin_streams(ended)
    click.echo(f"password of {user_id} changed; existing sessions ended")


@admin.command("disable")
@click.argument("user_id")
def admin_disable(user_id: str) -> None:
    """Stop an admin from signing in; their existing sessions end."""
    from app.chat.admins import set_disabled

    with _database() as session:
        ended = set_disabled(session, user_id, True)
        audit.record(session, "admin.disabled", user_id, "cli")
    _close_admin_streams(ended)
    click.echo(f"admin {user_id} disabled")


@admin.command("enable")
@click.argument("user_id")
def admin_enable(user_id: str) -> None:
    """Let a disabled admin sign in again."""
    from app.chat.admins import set_disabled

    with _database() as session:
        set_disabled(session, user_id, False)
        audit.record(session, "admin.enabled", user_id, "cli")
    click.echo(f"admin {user_id} enabled")


@admin.command("list")
def admin_list() -> None:
    """List admins (never their passwords or hashes)."""
    from app.chat.admins import list_admins

    with _database() as session:
        accounts = list_admins(session)
        for account in accounts:
            state = "disabled" if account.disabled else "active"
            click.echo(f"{account.user_id}\t{account.username}\t{state}\tcreated {account.created_at:%Y-%m-%d}")
    if not accounts:
        click.echo("no admins")


@main.command()
@click.argument("user_id")
@click.option("--name", help="display name (default: the stored one)")
@click.option("--role", type=click.Choice(["buyer", "merchant", "support"]), help="default: the stored one")
@click.option("--target", help="open the conversation with this person")
@click.option("--product", help='JSON of a product being asked about (needs --target), e.g. '
                                '\'{"title": "六味地黄丸", "price_fen": 3580, "url": "https://shop.example.com/p/1"}\'')
@click.option("--ttl", default=300, show_default=True, type=click.IntRange(1, 30 * 24 * 3600),
              help="seconds the link stays valid")
@click.option("--base-url", envvar="KEFU_PUBLIC_URL", default="http://127.0.0.1:8000", show_default=True,
              help="the address people open Kefu at (default: KEFU_PUBLIC_URL, else the local server)")
def link(user_id: str, name: str | None, role: str | None, target: str | None, product: str | None, ttl: int,
         base_url: str) -> None:
    """Print a signed, expiring /chat?token=… sign-in link for a buyer, merchant or support person; with --product,
    the conversation with --target shows that product above the composer (正在咨询), sent with one click."""
    import json
    from urllib.parse import urlencode

    from app.chat.links import LinkIdentity, make_token
    from app.chat.people import get_user, is_reserved

    settings = _settings()
    if is_reserved(user_id):
        raise click.ClickException(f"{user_id} is reserved for Kefu itself: no one signs in as it")
    with _database() as session:
        user = get_user(session, user_id)
        if user is not None and user.role == "admin":
            raise click.ClickException("admins sign in at /login, not with a link")
        name = name or (user.name if user else None)
        role = role or (user.role if user else None)
        if not name or not role:
            raise click.ClickException(f"unknown user {user_id}: give --name and --role to create them")
        if target and get_user(session, target) is None:
            raise click.ClickException(f"unknown target {target}")
    from app.chat.errors import ChatError

    try:
        product_data = json.loads(product) if product is not None else None
    except ValueError as error:
        raise click.ClickException(f"--product is not JSON: {error}") from error
    try:
        token = make_token(settings.secret_key, LinkIdentity(user_id, name, role, target, product_data), ttl)
    except ChatError as error:
        where = f" ({error.field})" if error.field else ""
        raise click.ClickException(f"{error}{where}") from error
    click.echo(f"{base_url.rstrip('/')}/chat?{urlencode({'token': token})}")


@main.group()
def apikey() -> None:
    """API keys for the marketplace's backend (/api/v1)."""


@apikey.command("create")
@click.argument("name")
def apikey_create(name: str) -> None:
    """Create a key and print it once (only its hash is stored)."""
    from app.chat.api_keys import create_key

    with _database() as session:
        _record, key = create_key(session, name)
    click.echo(key)


@apikey.command("list")
def apikey_list() -> None:
    """List keys by name (never the keys themselves)."""
    from app.chat.api_keys import list_keys

    with _database() as session:
        keys = list_keys(session)
        for record in keys:
            state = f"revoked {record.revoked_at:%Y-%m-%d}" if record.revoked_at else "active"
            click.echo(f"{record.name}\t{record.prefix}…\t{state}\tcreated {record.created_at:%Y-%m-%d}")
    if not keys:
        click.echo("no API keys")


@apikey.command("revoke")
@click.argument("name")
def apikey_revoke(name: str) -> None:
    """Revoke a key: requests with it get 401 from now on."""
    from app.chat.api_keys import revoke_key

    with _database() as session:
        revoke_key(session, name)
    click.echo(f"API key {name} revoked")


@main.group()
def webhook() -> None:
    """Webhooks: Kefu POSTs signed JSON events to the marketplace."""


@webhook.command("add")
@click.argument("url")
@click.option("--events", default="message.created,conversation.created", show_default=True)
def webhook_add(url: str, events: str) -> None:
    """Add a webhook; prints its id and its signing secret (X-Kefu-Signature is HMAC-SHA256 with it)."""
    from app.chat.webhooks import add_webhook

    private_allowed = _settings().webhook_private_targets
    with _database() as session:
        hook = add_webhook(session, url, [e.strip() for e in events.split(",") if e.strip()], private_allowed)
        click.echo(f"webhook {hook.id}: {hook.url} [{hook.events}]")
        click.echo(f"secret: {hook.secret}")


@webhook.command("list")
def webhook_list() -> None:
    """List the webhooks: id, URL and events."""
    from app.chat.webhooks import list_webhooks

    with _database() as session:
        hooks = list_webhooks(session)
        for hook in hooks:
            click.echo(f"{hook.id}\t{hook.url}\t{hook.events}")
    if not hooks:
        click.echo("no webhooks")


@webhook.command("remove")
@click.argument("webhook_id", type=int)
def webhook_remove(webhook_id: int) -> None:
    """Remove a webhook and its pending deliveries."""
    from app.chat.webhooks import remove_webhook

    with _database() as session:
        remove_webhook(session, webhook_id)
    click.echo(f"webhook {webhook_id} removed")


@webhook.command("deliveries")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000))
def webhook_deliveries(limit: int) -> None:
    """The latest deliveries: status, attempts and the last answer."""
    from app.chat.webhooks import recent_deliveries

    with _database() as session:
        rows = recent_deliveries(session, limit)
        for d in rows:
            click.echo(f"{d.id}\twebhook {d.webhook_id}\t{d.event}\t{d.status}\tattempts={d.attempts}\t"
                       f"last={d.last_status_code or '-'}\t{d.last_error[:80]}")
    if not rows:
        click.echo("no deliveries")


if __name__ == "__main__":
    sys.exit(main())
