"""docs/deploy.md is a script as much as a text: deploy/check.sh runs its marked blocks as written. These check what
can be checked without deploying (the whole run needs root on a disposable machine: bash deploy/check.sh)."""

from __future__ import annotations

import re

import pytest

from app.config import Settings
from app.web.stopping import FINISH_SENDS_SECONDS
from deploy.check import Block, environment_file, guide_blocks

VALUES = {"database password": "pw", "secret key": "secret", "admin password": "admin", "repository URL": "/repo"}


@pytest.fixture(scope="module")
def blocks() -> list[Block]:
    return guide_blocks(VALUES)


def one_file(blocks: list[Block], path: str) -> str:
    found = [b.text for b in blocks if b.kind == "file" and b.path == path]
    assert len(found) == 1, f"the guide should write {path} once"
    return found[0]


def test_the_guide_has_every_step_the_check_runs_in_order(blocks: list[Block]) -> None:
    kinds = [(b.kind, b.path) for b in blocks]
    assert {kind for kind, _ in kinds} == {"run", "sql", "file", "restart"}
    files = [path for kind, path in kinds if kind == "file"]
    assert files == ["/etc/kefu/kefu.env", "/etc/systemd/system/kefu.service", "/etc/nginx/sites-available/kefu"]
    assert [kind for kind, _ in kinds][-1] == "restart"  # the rolling restart comes last, once all is running
    assert not any(re.search(r"<[A-Za-z ]+>", b.text) for b in blocks), "a placeholder left unfilled"


def test_an_unknown_placeholder_stops_the_check() -> None:
    with pytest.raises(SystemExit, match="admin password"):
        guide_blocks({k: v for k, v in VALUES.items() if k != "admin password"})


def test_the_environment_file_reads_the_same_in_systemd_and_bash(blocks: list[Block], tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "kefu.env"
    path.write_text(one_file(blocks, "/etc/kefu/kefu.env"))
    values = environment_file(str(path))
    assert not [v for v in values.values() if "#" in v or " " in v], "systemd would keep a trailing comment"
    for needed in ("KEFU_DATABASE_URL", "KEFU_SECRET_KEY", "KEFU_BROKER_URL", "KEFU_TRUSTED_PROXIES",
                   "KEFU_UPLOAD_DIR", "KEFU_PUBLIC_URL"):
        assert values.get(needed), f"{needed} missing from the environment file"
    assert values["KEFU_TRUSTED_PROXIES"] == "127.0.0.1"  # the guide's 10.0.0.5, as the check maps it
    settings = Settings.from_env(values)  # every value is one Kefu accepts
    assert settings.trusted_proxies and settings.broker_url


def test_the_unit_listens_where_nginx_looks_and_outlasts_the_graceful_stop(blocks: list[Block]) -> None:
    unit = one_file(blocks, "/etc/systemd/system/kefu.service")
    nginx = one_file(blocks, "/etc/nginx/sites-available/kefu")
    host = re.search(r"^ExecStart=.* --host (\S+) --port (\d+)", unit, re.M)
    assert host, "ExecStart names no --host and --port"
    assert f"server {host.group(1)}:{host.group(2)} " in nginx, "nginx's upstream does not point at the unit"
    stop = int(re.search(r"^TimeoutStopSec=(\d+)", unit, re.M).group(1))  # type: ignore[union-attr]
    assert stop > Settings().shutdown_seconds + FINISH_SENDS_SECONDS, "systemd would kill Kefu mid-stop"


def test_every_proxied_location_speaks_http_1_1_to_kefu(blocks: list[Block]) -> None:
    nginx = one_file(blocks, "/etc/nginx/sites-available/kefu")
    locations = re.findall(r"location (\S+) \{(.*?)\n    \}", nginx, re.S)
    assert {name for name, _ in locations} == {"/events", "/static/", "/"}
    for name, body in locations:
        assert "proxy_http_version 1.1;" in body and 'proxy_set_header Connection "";' in body, name
