"""docs/deploy.md, followed on one machine and tried: `bash deploy/check.sh` (as root, on a disposable machine).

Every block of the guide marked `<!-- check: KIND [PATH] -->` is used as written, in the guide's order:
`run` blocks run in bash (`set -euo pipefail`), `sql` blocks in the mariadb client as root, `file` blocks become the
file at PATH, and the `restart` block (the rolling restart) runs while a person keeps sending messages. Only the
guide's placeholders (`<database password>`…) are filled in, and its addresses mapped to this machine (ADDRESSES).
`systemctl` and `ssh` are stand-ins (this machine has no systemd, and its "machines" are processes on loopback
addresses) that this same file implements: `python3 check.py systemctl …` / `ssh …`.

Prints one line per check and exits 1 if any failed. `--keep` leaves the deployment running afterwards.
"""

from __future__ import annotations

import os
import re
import resource
import secrets
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "deploy.md"
STATE = Path("/run/kefu-check")  # pid files, the stand-ins' folder, the filled-in placeholders
LOGS = Path("/var/log/kefu-check")
MACHINES = {"A": "127.0.0.11", "B": "127.0.0.12"}
# the guide's addresses on this machine: machines A and B on loopback addresses; nginx connects from 127.0.0.1
ADDRESSES = {"10.0.0.11": MACHINES["A"], "10.0.0.12": MACHINES["B"], "10.0.0.5": "127.0.0.1"}
HOSTS = "127.0.0.1 db.internal redis.internal chat.example.com"  # the guide's names, in /etc/hosts
SITE = "https://chat.example.com"
UNIT = Path("/etc/systemd/system/kefu.service")
PATH = f"{STATE / 'bin'}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # root's, stand-ins first
MARK = re.compile(r"^[ \t]*<!-- check: (\w+)(?: (\S+))? -->\n[ \t]*```[\w-]*\n(.*?)\n[ \t]*```", re.M | re.S)
PLACEHOLDER = re.compile(r"<([A-Za-z][A-Za-z ]*[A-Za-z])>")


@dataclass
class Block:
    kind: str  # run, sql, file or restart
    path: str | None
    text: str


def guide_blocks(values: dict[str, str]) -> list[Block]:
    """The guide's marked blocks, in order, placeholders filled in and addresses mapped. An unknown placeholder is an
    error: the guide and this check must not drift apart unseen."""
    blocks = []
    for kind, path, raw in MARK.findall(GUIDE.read_text()):
        text = textwrap.dedent(raw)
        for name in PLACEHOLDER.findall(text):
            if name not in values:
                raise SystemExit(f"docs/deploy.md has a placeholder <{name}> this check cannot fill in")
        text = PLACEHOLDER.sub(lambda m: values[m.group(1)], text)
        for guide_address, here in ADDRESSES.items():
            text = re.sub(rf"\b{re.escape(guide_address)}\b", here, text)
        blocks.append(Block(kind, path or None, text))
    return blocks


# --- the stand-ins: systemctl and ssh ---

def unit_settings() -> dict[str, str]:
    """The [Service] settings of the guide's unit file (the last value of a repeated key wins, as systemd does)."""
    settings, section = {}, ""
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith(("#", ";")):
            key, _, value = line.partition("=")
            settings[key.strip()] = value.strip()
    return settings


def environment_file(path: str) -> dict[str, str]:
    """KEY=VALUE lines as systemd reads an EnvironmentFile: comments only on lines of their own."""
    values = {}
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";")) and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip().strip("'\"")
    return values


def pid_file(machine: str) -> Path:
    return STATE / f"kefu-{machine}.pid"


def running(machine: str) -> int | None:
    try:
        pid = int(pid_file(machine).read_text())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def start_unit(machine: str) -> None:
    """Starts the unit's ExecStart on `machine` (its address in place of machine A's) as the unit says."""
    if running(machine):
        return
    unit = unit_settings()
    argv = unit["ExecStart"].replace(MACHINES["A"], machine).split()
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"} | environment_file(unit["EnvironmentFile"])
    # as root, here (the process inherits it); a container may cap what even root gets (its hard limit)
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    limit = min(int(unit.get("LimitNOFILE", "1024")), hard if hard != resource.RLIM_INFINITY else 1 << 20)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    LOGS.mkdir(parents=True, exist_ok=True)
    with open(LOGS / f"{machine}.log", "ab") as log:
        process = subprocess.Popen(  # the guide's own command line
            argv, cwd=unit.get("WorkingDirectory", "/"), env=env, user=unit["User"], group=unit.get("Group"),
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    pid_file(machine).write_text(str(process.pid))


def stop_unit(machine: str) -> None:
    """KillSignal to the process, SIGKILL after TimeoutStopSec (noted in the machine's log, as systemd would)."""
    pid = running(machine)
    if pid is None:
        return
    unit = unit_settings()
    os.kill(pid, getattr(signal, unit.get("KillSignal", "SIGTERM")))
    deadline = time.monotonic() + float(unit.get("TimeoutStopSec", "90"))
    while running(machine) and time.monotonic() < deadline:
        time.sleep(0.05)
    if running(machine):
        os.kill(pid, signal.SIGKILL)
        with open(LOGS / f"{machine}.log", "a") as log:
            log.write("kefu-check: KILLED after TimeoutStopSec\n")
    pid_file(machine).unlink(missing_ok=True)


def systemctl(args: list[str]) -> int:
    """The subset of systemctl the guide uses: daemon-reload, enable --now / start / stop / restart kefu, reload
    nginx. `kefu` acts on this machine (KEFU_CHECK_MACHINE, set by the ssh stand-in) or, without one, on every
    machine (the install block runs once here for both)."""
    words = [a for a in args if not a.startswith("--")]
    verb, unit = words[0], (words[1] if len(words) > 1 else "")
    here = os.environ.get("KEFU_CHECK_MACHINE")
    machines = [here] if here else list(MACHINES.values())
    if verb == "daemon-reload":
        return 0
    if unit in ("kefu", "kefu.service"):
        for machine in machines:
            if verb in ("restart", "stop"):
                stop_unit(machine)
            if verb in ("restart", "start") or (verb == "enable" and "--now" in args):
                start_unit(machine)
        return 0
    if unit in ("nginx", "nginx.service") and verb in ("reload", "restart", "start"):
        if Path("/run/nginx.pid").exists() and subprocess.run(["nginx", "-s", "reload"], check=False).returncode == 0:
            return 0
        return subprocess.run(["nginx"], check=False).returncode
    print(f"systemctl stand-in: {' '.join(args)} is not something the guide does", file=sys.stderr)
    return 1


def ssh(args: list[str]) -> int:
    """`ssh root@HOST command…`: the command, run here as on HOST."""
    host = args[0].rpartition("@")[2]
    env = os.environ | {"KEFU_CHECK_MACHINE": host, "PATH": PATH}
    return subprocess.run(["bash", "-c", " ".join(args[1:])], env=env, check=False).returncode


# --- setting the machine up by the guide ---

def sh(command: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", command], text=True, capture_output=True, check=False, **kwargs)  # type: ignore[call-overload]


def reset() -> None:
    """A clean slate for the guide: an earlier run's deployment, user, files, database and nginx site removed."""
    for machine in MACHINES.values():
        if Path(UNIT).exists():
            stop_unit(machine)
    sh("nginx -s stop 2>/dev/null; sleep 0.5; userdel kefu 2>/dev/null; true")
    sh(f"rm -rf /srv/kefu /etc/kefu {UNIT} /etc/nginx/sites-enabled/kefu /etc/nginx/sites-available/kefu {LOGS}")
    backup = Path("/etc/nginx/nginx.conf.before-kefu-check")
    if Path("/etc/nginx/nginx.conf").exists():
        if backup.exists():
            backup.replace("/etc/nginx/nginx.conf")
        sh(f"cp -p /etc/nginx/nginx.conf {backup}")
    sh("mariadb -uroot -e \"DROP DATABASE IF EXISTS kefu; DROP USER IF EXISTS 'kefu'@'%'\"")
    sh("redis-cli -n 0 FLUSHDB")
    hosts = Path("/etc/hosts").read_text()
    if HOSTS not in hosts:
        Path("/etc/hosts").write_text(hosts.rstrip("\n") + "\n" + HOSTS + "\n")
    (STATE / "bin").mkdir(parents=True, exist_ok=True)
    for name in ("systemctl", "ssh"):
        stand_in = STATE / "bin" / name
        stand_in.write_text(f'#!/bin/sh\nexec {sys.executable} {Path(__file__).resolve()} {name} "$@"\n')
        stand_in.chmod(0o755)
    if not Path("/etc/ssl/chat.example.com.crt").exists():  # stands in for the operator's certificate, trusted
        sh("openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=chat.example.com "
           "-addext subjectAltName=DNS:chat.example.com -keyout /etc/ssl/chat.example.com.key "
           "-out /etc/ssl/chat.example.com.crt && cp /etc/ssl/chat.example.com.crt "
           "/usr/local/share/ca-certificates/kefu-check.crt && update-ca-certificates")


def apply(block: Block) -> tuple[bool, str]:
    """Carries out one block of the guide; (done, what went wrong)."""
    if block.kind == "file":
        assert block.path
        Path(block.path).parent.mkdir(parents=True, exist_ok=True)
        Path(block.path).write_text(block.text + "\n")
        return True, ""
    if block.kind == "sql":
        done = subprocess.run(["mariadb", "-uroot"], input=block.text, text=True, capture_output=True, check=False)
    else:
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", block.text], cwd="/", text=True, capture_output=True,
                              env={"PATH": PATH, "HOME": "/root", "LANG": "C.UTF-8"}, check=False)
    return done.returncode == 0, (done.stdout + done.stderr)[-2000:]


# --- trying the deployment ---

class Report:
    def __init__(self) -> None:
        self.failed = 0

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        print(f"{'ok  ' if ok else 'FAIL'} {name}" + (f": {detail}" if detail else ""), flush=True)
        self.failed += not ok
        return ok


def kefu_command(*args: str) -> str:
    """A `kefu` command as the guide runs one: as the kefu user, with the deployment's environment loaded."""
    command = "set -a; . /etc/kefu/kefu.env; set +a; /srv/kefu/app/.venv/bin/kefu " + " ".join(args)
    done = subprocess.run(["sudo", "-u", "kefu", "bash", "-c", command], cwd="/", text=True, capture_output=True,
                          check=True)
    return done.stdout.strip()


def wait_until(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def main(argv: list[str]) -> int:
    if argv[:1] == ["systemctl"]:
        return systemctl(argv[1:])
    if argv[:1] == ["ssh"]:
        return ssh(argv[1:])
    values = {"database password": secrets.token_hex(24), "secret key": secrets.token_urlsafe(48),
              "admin password": secrets.token_urlsafe(18), "repository URL": str(ROOT)}
    report = Report()
    reset()
    blocks = guide_blocks(values)
    rolling = [b for b in blocks if b.kind == "restart"]
    for block in blocks:
        if block.kind == "restart":
            continue
        started = time.monotonic()
        done, output = apply(block)
        label = f"guide: {block.kind} {block.path or block.text.splitlines()[0][:70]}"
        if not report.check(label, done, f"{time.monotonic() - started:.1f} s" if done else output):
            return 1
    from deploy.tries import try_deployment  # the tries need the checkout's test environment (Playwright)

    try_deployment(report, values, rolling[0] if rolling else None, apply)
    if "--keep" not in argv:
        for machine in MACHINES.values():
            stop_unit(machine)
        sh("nginx -s stop")
    print(f"\n{'all checks passed' if not report.failed else f'{report.failed} check(s) FAILED'}"
          f" (logs: {LOGS})")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main(sys.argv[1:]))

