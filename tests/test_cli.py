"""Setting Kefu up with the `kefu` command, as ops do, and the schema it sets up, on SQLite and MariaDB.

What ops rely on: `kefu db upgrade` creates the schema and is harmless when run again; `kefu demo seed` writes the
contract's people (and `--load-users` more) and loses nothing when run again; every command says which database it
acts on, never with its password; bad input and a bad database setting are one clear line and a non-zero status;
`kefu link` prints the public address people open; every migration goes down to nothing and up again. What people
rely on: names and messages with emoji and characters outside the Basic Multilingual Plane are stored and shown
whole (utf8mb4 on MariaDB).
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from alembic.script import ScriptDirectory
from litestar.testing import TestClient
from sqlalchemy import inspect, select, text
from sqlalchemy.orm import Session

from app.chat import conversations as convs
from app.chat import messages as msgs
from app.chat.people import get_user, upsert_user
from app.db.engine import make_engine, make_sessionmaker
from app.db.migrate import alembic_config, downgrade, upgrade
from app.db.models import Message, User
from tests.cli_support import ALEMBIC_LOG, USAGE_HINT, Kefu, assert_one_line_error
from tests.dom import parse
from tests.support import ServerProcess, free_port, server_env, sign_in

CORE_TABLES = {"users", "conversations", "conversation_members", "messages"}
# The people of the contract (§4), written out here rather than taken from the code under test.
CONTRACT_PEOPLE = {
    "b1": ("保安堂药房", "buyer"),
    "b2": ("异世界药局", "buyer"),
    "m1": ("保和堂医药集团", "merchant"),
    "m2": ("阿纳斯蒂制药", "merchant"),
    "m3": ("梅迪西斯制药", "merchant"),
    "p1": ("官方客服", "support"),
}
NAME = "🧧保和堂😀药房𠀀"  # emoji and a character outside the Basic Multilingual Plane: 4 bytes in UTF-8


@pytest.fixture
def kefu(tmp_path: Path) -> Kefu:
    return Kefu(tmp_path)


def people_in(database_url: str) -> dict[str, tuple[str, str]]:
    engine = make_engine(database_url)
    try:
        with make_sessionmaker(engine)() as session:
            return {user.id: (user.name, user.role) for user in session.scalars(select(User))}
    finally:
        engine.dispose()


def tables_in(database_url: str) -> set[str]:
    engine = make_engine(database_url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def revision_of(database_url: str) -> str | None:
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            if "alembic_version" not in inspect(connection).get_table_names():
                return None
            return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    finally:
        engine.dispose()


def head() -> str:
    revision = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert revision
    return revision


def test_db_upgrade_creates_the_schema(kefu: Kefu) -> None:
    result = kefu("db", "upgrade")
    assert result.code == 0, result
    assert "Traceback" not in result.err
    assert tables_in(kefu.database_url) >= CORE_TABLES
    assert revision_of(kefu.database_url) == head()
    assert f"database: {kefu.database_url}" in result.err  # says which database it acted on
    again = kefu("db", "upgrade")  # already up to date: nothing to do, still fine
    assert again.code == 0, again
    assert revision_of(kefu.database_url) == head()


def test_demo_seed_is_idempotent_and_writes_the_contracts_people(kefu: Kefu) -> None:
    assert kefu("db", "upgrade").code == 0
    first = kefu("demo", "seed")
    assert first.code == 0, first
    assert people_in(kefu.database_url) == CONTRACT_PEOPLE

    engine = make_engine(kefu.database_url)
    with make_sessionmaker(engine)() as session:
        b1, m1 = get_user(session, "b1"), get_user(session, "m1")
        assert b1 is not None and m1 is not None
        cid = convs.get_or_create_conversation(session, b1, m1).id
        msgs.send_message(session, cid, "b1", "重新播种后还在吗？")
        session.commit()

    second = kefu("demo", "seed")
    assert second.code == 0, second
    assert people_in(kefu.database_url) == CONTRACT_PEOPLE
    with make_sessionmaker(engine)() as session:
        assert [m.body for m in session.scalars(select(Message))] == ["重新播种后还在吗？"]  # nothing lost
    engine.dispose()


def test_demo_seed_with_load_users_adds_buyers_and_merchants(kefu: Kefu) -> None:
    assert kefu("db", "upgrade").code == 0
    for _ in range(2):
        result = kefu("demo", "seed", "--load-users", "5")
        assert result.code == 0, result
    people = people_in(kefu.database_url)
    assert len(people) == 6 + 10
    for n in range(1, 6):
        assert people[f"lb{n}"][1] == "buyer"
        assert people[f"lm{n}"][1] == "merchant"
        assert people[f"lb{n}"][0] and people[f"lm{n}"][0]
    assert "lb6" not in people and "lm6" not in people and "lb0" not in people
    assert {uid: people[uid] for uid in CONTRACT_PEOPLE} == CONTRACT_PEOPLE


def test_bad_input_is_one_clear_line_and_a_non_zero_status(kefu: Kefu) -> None:
    assert kefu("db", "upgrade").code == 0
    for args, word in [
        (("demo", "seed", "--load-users", "-1"), "--load-users"),
        (("demo", "seed", "--load-users", "abc"), "--load-users"),
        (("demo", "seed", "--bogus"), "--bogus"),
        (("demo", "sow"), "sow"),
        (("frobnicate",), "frobnicate"),
    ]:
        assert_one_line_error(kefu(*args), word, besides=USAGE_HINT)
    assert people_in(kefu.database_url) == {}  # nothing was seeded


def test_seeding_before_the_schema_exists_says_so_in_one_line(kefu: Kefu) -> None:
    assert_one_line_error(kefu("demo", "seed"), "users")


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (("db", "upgrade"), {"KEFU_DATABASE_URL": "nonsense://"}),
        (("db", "upgrade"), {"KEFU_DATABASE_URL": "mysql+pymysql://root@127.0.0.1:1/kefu"}),
        (("db", "upgrade", "no-such-revision"), {}),
        (("demo", "seed"), {"KEFU_DATABASE_URL": "nonsense://"}),
    ],
    ids=["upgrade-bad-url", "upgrade-unreachable", "upgrade-unknown-revision", "seed-bad-url"],
)
def test_a_bad_database_setting_is_one_clear_line(kefu: Kefu, args: tuple[str, ...], env: dict[str, str]) -> None:
    assert_one_line_error(kefu(*args, **env), besides=ALEMBIC_LOG if args[:2] == ("db", "upgrade") else ())


def test_migrations_go_down_to_nothing_and_up_again(database_url: str) -> None:
    """Every revision's downgrade works, and the schema comes back whole (on SQLite, then MariaDB)."""
    try:
        upgrade(database_url)  # already at head: a no-op
        assert revision_of(database_url) == head()
        downgrade(database_url, "base")
        assert not (CORE_TABLES & tables_in(database_url))
        assert revision_of(database_url) is None
        upgrade(database_url)
        assert tables_in(database_url) >= CORE_TABLES
        assert revision_of(database_url) == head()

        engine = make_engine(database_url)
        with make_sessionmaker(engine)() as session:
            upsert_user(session, "b1", "保安堂药房", "buyer")
            upsert_user(session, "m1", "保和堂医药集团", "merchant")
            b1, m1 = get_user(session, "b1"), get_user(session, "m1")
            assert b1 is not None and m1 is not None
            cid = convs.get_or_create_conversation(session, b1, m1).id
            msgs.send_message(session, cid, "m1", "迁移之后也能聊")
            session.commit()
            last = convs.list_conversations(session, "b1")[0][0].last_message
            assert last is not None and last.body == "迁移之后也能聊"
        engine.dispose()
    finally:
        upgrade(database_url)  # leave the schema for the tests that follow, whatever happened


def test_a_name_with_emoji_and_chinese_round_trips(db: Session, database_url: str, app_client: TestClient) -> None:
    upsert_user(db, "emoji1", NAME, "buyer")
    db.commit()
    body = "订单🧾已发货🚚，请查收📦 𠀀𪚥"
    token = sign_in(app_client, "emoji1", target="m1")
    cid = parse(app_client.get("/chat", params={"target": "m1"}).text).one(testid="thread").get("data-conversation-id")
    sent = app_client.post(f"/chat/c/{cid}/messages", data={"body": body}, headers={"X-CSRFToken": token})
    assert sent.status_code == 201

    engine = make_engine(database_url)
    with make_sessionmaker(engine)() as fresh:  # a new connection: what is stored, not what is cached
        stored = fresh.get(User, "emoji1")
        assert stored is not None and stored.name == NAME
        assert [m.body for m in fresh.scalars(select(Message))] == [body]
    engine.dispose()

    page = parse(app_client.get(f"/chat/c/{cid}").text)
    assert page.one(tag="h1").text() == NAME
    assert page.one(testid="message").one(cls="msg-bubble").text() == body

    app_client.cookies.clear()
    sign_in(app_client, "m1")
    item = parse(app_client.get("/chat").text).one(testid="conversation", data_peer_id="emoji1")
    assert item.one(cls="conv-name").text() == NAME
    assert item.one(cls="conv-preview").text() == body


@pytest.mark.mysql
def test_mariadb_text_columns_are_utf8mb4(mysql_database: str) -> None:
    engine = make_engine(mysql_database)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT table_name, column_name, character_set_name FROM information_schema.columns "
                    "WHERE table_schema = DATABASE() AND character_set_name IS NOT NULL"
                )
            ).all()
            assert {(table, column) for table, column, _ in rows} >= {("users", "name"), ("messages", "body")}
            assert {charset for _, _, charset in rows} == {"utf8mb4"}
            assert connection.execute(text("SELECT @@character_set_client")).scalar() == "utf8mb4"
    finally:
        engine.dispose()


def test_every_command_says_which_database_it_acts_on_and_hides_the_password(kefu: Kefu) -> None:
    assert kefu("db", "upgrade").code == 0
    listed = kefu("admin", "list")
    assert listed.code == 0 and f"database: {kefu.database_url}" in listed.err
    refused = kefu("db", "upgrade", KEFU_DATABASE_URL="mysql+pymysql://kefu:s3cret@127.0.0.1:1/kefu")
    assert refused.code != 0
    assert "database: mysql+pymysql://kefu:***@127.0.0.1:1/kefu" in refused.err and "s3cret" not in refused.err


def test_kefu_link_prints_the_public_address_people_open(kefu: Kefu) -> None:
    assert kefu("db", "upgrade").code == 0
    assert kefu("demo", "seed").code == 0
    local = kefu("link", "b1")
    assert local.code == 0 and local.out.startswith("http://127.0.0.1:8000/chat?token="), local.out
    public = kefu("link", "b1", "--target", "m1", KEFU_PUBLIC_URL="https://chat.example.com/")
    assert public.code == 0 and public.out.startswith("https://chat.example.com/chat?token="), public.out
    chosen = kefu("link", "b1", "--base-url", "https://kefu.shop.test", KEFU_PUBLIC_URL="https://chat.example.com")
    assert chosen.out.startswith("https://kefu.shop.test/chat?token="), chosen.out


@pytest.mark.parametrize("setting", ["", "0"])
def test_serve_logs_each_request_unless_told_not_to(sqlite_url: str, tmp_path: Path, setting: str) -> None:
    env = server_env(sqlite_url, tmp_path, **({"KEFU_ACCESS_LOG": setting} if setting else {}))
    server = ServerProcess(env, free_port()).start()
    try:
        assert httpx.get(f"{server.url}/healthz?probe=access-log", timeout=5).status_code == 200
    finally:
        server.stop()  # the log is complete once the process has ended
    log = (tmp_path / f"server-{server.port}.log").read_text()
    assert "Application startup complete" in log
    assert ('"GET /healthz?probe=access-log HTTP/1.1" 200' in log) is (setting == "")


def test_going_down_a_revision_keeps_every_message_and_membership(database_url: str) -> None:
    """On SQLite a revision that changes a table copies it and drops the old one: with foreign keys on, dropping
    `conversations` deleted every message and membership with it (their ON DELETE CASCADE)."""
    engine = make_engine(database_url)
    try:
        with make_sessionmaker(engine)() as session:
            b1, m1 = get_user(session, "b1"), get_user(session, "m1")
            cid = convs.get_or_create_conversation(session, b1, m1).id  # type: ignore[arg-type]
            msgs.send_message(session, cid, "b1", "降级之前的话")
            session.commit()
        downgrade(database_url, "0010_recall_quote")  # 0011 takes a column of `conversations` away again
        with engine.connect() as connection:
            bodies = connection.execute(text("SELECT body FROM messages")).scalars().all()
            members = connection.execute(text("SELECT user_id FROM conversation_members")).scalars().all()
        assert bodies == ["降级之前的话"] and sorted(members) == ["b1", "m1"]
    finally:
        upgrade(database_url)
        engine.dispose()
