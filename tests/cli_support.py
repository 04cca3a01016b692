"""Running the `kefu` command in the tests, two ways, with one result type (`Ran`) and one way to check an error.

- `kefu(database_url, tmp_path, *args)` runs it in this process through click's runner: fast (a child process per
  call would cost a second or two each), for tests of what a command does to the database.
- `run_kefu(env, *args)` and `Kefu` run the installed command in a child process, from an empty directory, as a
  person runs it in a shell: for what only a real process shows (its exit status, what it prints at start-up, a
  running server told through Redis).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner

from app import cli
from tests.support import TEST_SECRET

KEFU = Path(sys.executable).parent / "kefu"


@dataclass
class Ran:
    """What one run of `kefu` did: its arguments, exit status, standard output and standard error."""

    args: tuple[str, ...]
    code: int
    out: str
    err: str

    @property
    def output(self) -> str:
        return self.out + self.err


def command_env(database_url: str, var_dir: Path, **extra: str) -> dict[str, str]:
    """A person's shell for `kefu`: this machine's environment less every KEFU_ setting (a developer's own must not
    count), with the test database, its var directory and the tests' secret key."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEFU_")}
    env |= {"KEFU_DATABASE_URL": database_url, "KEFU_VAR_DIR": str(var_dir), "KEFU_SECRET_KEY": TEST_SECRET}
    return env | extra


def kefu(database_url: str, tmp_path: Path, *args: str, private_targets: bool = True) -> Ran:
    """`kefu ARGS` on the test database, run in this process by click's runner. A traceback fails the test.
    `private_targets`: webhooks may point at 127.0.0.1, where the tests' receivers listen (False: as an operator's
    `kefu` runs, with no KEFU_WEBHOOK_PRIVATE_TARGETS)."""
    env: dict[str, str | None] = {name: None for name in os.environ if name.startswith("KEFU_")}
    env |= {"KEFU_DATABASE_URL": database_url, "KEFU_SECRET_KEY": TEST_SECRET, "KEFU_VAR_DIR": str(tmp_path)}
    if private_targets:
        env["KEFU_WEBHOOK_PRIVATE_TARGETS"] = "1"
    result = CliRunner(env=env).invoke(cli.main, list(args), catch_exceptions=False)
    return Ran(args, result.exit_code, result.stdout, result.stderr)


def run_kefu(env: dict[str, str], *args: str, timeout: float = 60) -> Ran:
    """The installed `kefu ARGS` (`python -m app.cli` where it is not installed) in a child process with `env`, from
    an empty directory under KEFU_VAR_DIR: not the repository, whose .env must not count."""
    command = [str(KEFU)] if KEFU.exists() else [sys.executable, "-m", "app.cli"]
    work = Path(env["KEFU_VAR_DIR"]) / "work"
    work.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([*command, *args], cwd=work, env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)
    return Ran(args, done.returncode, done.stdout, done.stderr)


@dataclass
class Kefu:
    """The installed `kefu`, run as a person would, on a fresh SQLite file under `tmp_path`; keyword arguments are
    more environment variables for one run."""

    tmp_path: Path

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.tmp_path / 'var' / 'kefu.db'}"

    def __call__(self, *args: str, **env: str) -> Ran:
        return run_kefu(command_env(self.database_url, self.tmp_path / "var", **env), *args)


def error_lines(result: Ran) -> list[str]:
    """Everything a run said on either stream, less blank lines and the line naming its database."""
    return [line for line in result.output.splitlines() if line.strip() and not line.startswith("database: ")]


# What may come with the error line where the command cannot get as far as its own error:
USAGE_HINT = (r"Usage: kefu .*", r"Try 'kefu .*--help' for help\.")  # click's, for a command or option typed wrong
ALEMBIC_LOG = (r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ INFO alembic\.\S+: .*",)  # alembic's, as it loads its plugins


def assert_one_line_error(result: Ran, *words: str, besides: tuple[str, ...] = ()) -> str:
    """Non-zero status, no traceback, and exactly one line that says what is wrong (`Error: …`, naming `words`).
    Nothing else is said but the line naming the database, and lines matching one of the patterns `besides`."""
    assert result.code != 0, result
    assert "Traceback" not in result.output, result
    said = error_lines(result)
    errors = [line for line in said if line.startswith("Error:")]
    assert len(errors) == 1, result
    others = [line for line in said if line not in errors and not any(re.fullmatch(p, line) for p in besides)]
    assert others == [], result
    for word in words:
        assert word in errors[0], result
    return errors[0]
