"""Fixtures: the database backends (SQLite always, MariaDB when reachable; required in CI), the app and its clients
(the API with a key, browsers over HTTP and in headless Chromium), `kefu serve` in child processes, a Redis of a
test's own, and a webhook receiver."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar.testing import TestClient
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from app.chat.demo import seed_demo
from app.config import Settings
from app.db.engine import make_engine, make_sessionmaker
from app.db.migrate import upgrade
from app.db.models import Base
from app.main import create_app
from tests.api_support import BASE_URL, Api, new_key
from tests.streams import Browser, OpenBrowser, Serve
from tests.support import TEST_SECRET, RedisServer, ServerProcess, free_port, server_env
from tests.webhook_support import Receiver

MYSQL_URL = os.environ.get("KEFU_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")
REDIS_URL = os.environ.get("KEFU_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
# every table the models know, those that refer to others first (a new table is emptied without being listed here)
TABLES_CHILD_FIRST = tuple(table.name for table in reversed(Base.metadata.sorted_tables))


def _create_mysql_database() -> None:
    """The test database in utf8mb4, created when missing."""
    url = make_url(MYSQL_URL)
    server = make_engine(url.set(database=""))
    with server.begin() as connection:
        connection.execute(text(
            f"CREATE DATABASE IF NOT EXISTS `{url.database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
        ))
    server.dispose()


def _mysql_reachable() -> str | None:
    try:
        _create_mysql_database()
        engine = make_engine(MYSQL_URL)
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as error:
        return f"{type(error).__name__}: {error}"


def require_or_skip(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def mysql_database() -> str:
    """The MariaDB test database, emptied and migrated once per session."""
    problem = _mysql_reachable()
    if problem:
        require_or_skip(f"MySQL/MariaDB not reachable at {MYSQL_URL} ({problem})")
    engine = make_engine(MYSQL_URL)
    with engine.begin() as connection:
        connection.execute(text("SET FOREIGN_KEY_CHECKS=0"))
        for (name,) in connection.execute(text("SHOW TABLES")).all():
            connection.execute(text(f"DROP TABLE `{name}`"))
        connection.execute(text("SET FOREIGN_KEY_CHECKS=1"))
    engine.dispose()
    upgrade(MYSQL_URL)
    return MYSQL_URL


def _empty_mysql(url: str) -> None:
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(text("SET FOREIGN_KEY_CHECKS=0"))
        for table in TABLES_CHILD_FIRST:
            connection.execute(text(f"DELETE FROM `{table}`"))
        connection.execute(text("SET FOREIGN_KEY_CHECKS=1"))
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database with the demo people: SQLite in a temp file, then MariaDB."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'kefu.db'}"
        upgrade(url)
    else:
        url = request.getfixturevalue("mysql_database")
        _empty_mysql(url)
    engine = make_engine(url)
    with make_sessionmaker(engine)() as session:
        seed_demo(session)
        session.commit()
    engine.dispose()
    return url


def seed_url(url: str) -> None:
    engine = make_engine(url)
    with make_sessionmaker(engine)() as session:
        seed_demo(session)
        session.commit()
    engine.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'kefu.db'}"
    upgrade(url)
    seed_url(url)
    return url


@pytest.fixture
def db(database_url: str) -> Iterator[Session]:
    engine = make_engine(database_url)
    session = make_sessionmaker(engine)()
    yield session
    session.close()
    engine.dispose()


def make_settings(database_url: str, var_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": database_url,
        "secret_key": TEST_SECRET,
        "demo": True,
        "var_dir": var_dir,
        "upload_dir": var_dir / "uploads",
        "sse_ping_seconds": 1.0,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def app_client(database_url: str, tmp_path: Path) -> Iterator[TestClient]:
    """The real app over ASGI, on both databases."""
    app = create_app(make_settings(database_url, tmp_path))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        yield client


@pytest.fixture
def api(database_url: str, tmp_path: Path) -> Iterator[Api]:
    """The API over ASGI with a key of its own ("shop"), on both databases."""
    key = new_key(database_url)
    app = create_app(make_settings(database_url, tmp_path))
    with TestClient(app, base_url=BASE_URL) as client:
        yield Api(client, key, database_url)


# --- `kefu serve` in child processes, people in browsers of their own over HTTP ---

@pytest.fixture
def serve(database_url: str, tmp_path: Path) -> Iterator[Serve]:
    """Starts `kefu serve` on the test database (on a given port, or a free one); stops every server at the end."""
    env = server_env(database_url, tmp_path)
    started: list[ServerProcess] = []

    def start(port: int | None = None) -> ServerProcess:
        server = ServerProcess(env, port or free_port())
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def kefu_server(serve: Serve) -> ServerProcess:
    """`kefu serve` on the test database, on both databases."""
    return serve()


@pytest.fixture
def open_browser() -> Iterator[OpenBrowser]:
    """Opens a browser of its own (httpx, its own cookies) on a server, signed in as a person; all closed at the end."""
    opened: list[Browser] = []

    def open_one(server: ServerProcess, user_id: str, target: str | None = None) -> Browser:
        opened.append(Browser.open(server, user_id, target))
        return opened[-1]

    yield open_one
    for person in opened:
        person.client.close()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test's own, so that stopping it (or its pub/sub channels) disturbs nothing else."""
    if shutil.which("redis-server") is None:
        require_or_skip("redis-server is not installed")
    server = RedisServer(tmp_path, free_port()).start()
    yield server
    server.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A marketplace's webhook endpoint on 127.0.0.1."""
    endpoint = Receiver()
    yield endpoint
    endpoint.close()


# --- real headless Chromium (Debian's package) against a served app ---

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator:
    if not Path(CHROMIUM).exists():
        require_or_skip(f"{CHROMIUM} is not installed (Debian package chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def server(browser, sqlite_url: str, tmp_path: Path) -> Iterator[ServerProcess]:  # type: ignore[no-untyped-def]
    process = ServerProcess(server_env(sqlite_url, tmp_path), free_port()).start()
    yield process
    for context in browser.contexts:  # close the pages' streams first, so the server stops at once
        context.close()
    process.stop()
