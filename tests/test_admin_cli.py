"""Managing admin accounts with `kefu admin …`, through the real entry point, as ops people do.

What they rely on: an admin exists only once they create one; the password is stored as an argon2 hash and never
printed (nor the hash); `list`, `passwd`, `disable` and `enable` do what they say; bad input is one clear line and
a non-zero exit status, with nothing changed.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from argon2.exceptions import VerifyMismatchError
from sqlalchemy import select

from app.db.engine import make_engine, make_sessionmaker
from app.db.models import AdminAccount, User
from tests.admin_support import make_admin, use_fast_hashing
from tests.cli_support import Ran, assert_one_line_error, command_env, run_kefu

PASSWORD = "correct horse 马 battery"
NEW_PASSWORD = "another-secret-2024"
SHORT_PASSWORD = "7chars!"
SECRETS = (PASSWORD, NEW_PASSWORD, SHORT_PASSWORD, "password123")


Kefu = Callable[..., Ran]


@pytest.fixture(scope="module")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite file migrated by `kefu db upgrade`; each test works on its own copy."""
    var = tmp_path_factory.mktemp("template")
    done = run_kefu(command_env(f"sqlite:///{var / 'kefu.db'}", var), "db", "upgrade")
    assert done.code == 0, done
    return var / "kefu.db"


@pytest.fixture
def database(migrated_template: Path, tmp_path: Path) -> str:
    shutil.copy(migrated_template, tmp_path / "kefu.db")
    return f"sqlite:///{tmp_path / 'kefu.db'}"


@pytest.fixture
def kefu(database: str, tmp_path: Path) -> Kefu:
    """The installed `kefu …` on this test's database; every run is checked for a printed password or hash."""

    def run(*args: str) -> Ran:
        result = run_kefu(command_env(database, tmp_path), *args)
        assert "$argon2" not in result.output, result
        for secret in SECRETS:
            assert secret not in result.output, result
        return result

    return run


def accounts(database_url: str) -> dict[str, tuple[str, str, bool, str]]:
    """user id -> (username, users.role, disabled, password hash), read afresh from the database."""
    engine = make_engine(database_url)
    try:
        with make_sessionmaker(engine)() as session:
            roles = {u.id: u.role for u in session.scalars(select(User))}
            return {a.user_id: (a.username, roles[a.user_id], a.disabled, a.password_hash)
                    for a in session.scalars(select(AdminAccount))}
    finally:
        engine.dispose()


def existing_admin(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Admin a1 "ops" with password123, made in-process (quickly) so a test can start from it."""
    use_fast_hashing(monkeypatch)
    engine = make_engine(database_url)
    with make_sessionmaker(engine)() as session:
        make_admin(session, "a1", "ops", "password123")
    engine.dispose()


def verifies(password_hash: str, password: str) -> bool:
    try:
        return PasswordHasher().verify(password_hash, password)
    except VerifyMismatchError:
        return False


def list_lines(result: Ran) -> dict[str, list[str]]:
    assert result.code == 0, result
    return {line.split("\t")[0]: line.split("\t") for line in result.out.splitlines() if "\t" in line}


def test_no_admin_until_one_is_created_then_listed_stored_as_argon2_and_given_a_new_password(
        kefu: Kefu, database: str) -> None:
    empty = kefu("admin", "list")
    assert empty.code == 0, empty
    assert "no admins" in empty.out
    assert accounts(database) == {}

    created = kefu("admin", "create", "a1", "ops", PASSWORD)
    assert created.code == 0, created
    assert "a1" in created.out and "ops" in created.out

    stored = accounts(database)
    assert set(stored) == {"a1"}
    username, role, disabled, password_hash = stored["a1"]
    assert (username, role, disabled) == ("ops", "admin", False)
    assert password_hash.startswith("$argon2id$")
    assert verifies(password_hash, PASSWORD)
    assert not verifies(password_hash, PASSWORD + "x")
    assert not PasswordHasher().check_needs_rehash(password_hash)  # made with today's parameters

    listed = list_lines(kefu("admin", "list"))
    assert set(listed) == {"a1"}
    assert listed["a1"][1:3] == ["ops", "active"]

    changed = kefu("admin", "passwd", "a1", NEW_PASSWORD)
    assert changed.code == 0, changed
    new_hash = accounts(database)["a1"][3]
    assert new_hash.startswith("$argon2id$")
    assert verifies(new_hash, NEW_PASSWORD)
    assert not verifies(new_hash, PASSWORD)


def test_disable_shows_in_the_list_and_enable_undoes_it(kefu: Kefu, database: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    existing_admin(database, monkeypatch)
    before = accounts(database)["a1"]

    assert kefu("admin", "disable", "a1").code == 0
    assert list_lines(kefu("admin", "list"))["a1"][1:3] == ["ops", "disabled"]
    assert accounts(database)["a1"][2] is True

    assert kefu("admin", "enable", "a1").code == 0
    assert accounts(database)["a1"] == before  # enabled again, and the password untouched


BAD_INPUT = {
    "unknown user": [
        (("admin", "passwd", "nobody", NEW_PASSWORD), ("nobody",)),
        (("admin", "disable", "nobody"), ("nobody",)),
        (("admin", "enable", "nobody"), ("nobody",)),
    ],
    "taken": [
        (("admin", "create", "a2", "ops", NEW_PASSWORD), ("ops",)),  # the username
        (("admin", "create", "a1", "ops2", NEW_PASSWORD), ("a1",)),  # the user id
    ],
    "short password": [
        (("admin", "create", "a2", "ops2", SHORT_PASSWORD), ("8",)),
        (("admin", "passwd", "a1", SHORT_PASSWORD), ("8",)),
    ],
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_one_clear_line_a_non_zero_status_and_changes_nothing(
        kefu: Kefu, database: str, monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    existing_admin(database, monkeypatch)
    before = accounts(database)
    commands = BAD_INPUT[case]
    with ThreadPoolExecutor(len(commands)) as pool:  # separate processes, run side by side to save time
        results = list(pool.map(lambda command: kefu(*command[0]), commands))
    for (_args, words), result in zip(commands, results, strict=True):
        assert_one_line_error(result, *words)
    assert accounts(database) == before
