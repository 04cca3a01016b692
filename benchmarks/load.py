"""Kefu load benchmarks over real sockets, as browsers drive the app: sign in, CSRF, POST, Server-Sent Events.

    python benchmarks/load.py latency  [--people 1000] [--rate 200] [--duration 30] [--workers 1]
    python benchmarks/load.py capacity [--pairs 100] [--workers 1 2]
    python benchmarks/load.py idle     [--streams 10000] [--idle-people streams/20] [--rate 4]

By default each mode starts `kefu serve --port <free> [--workers N]` in a child process against MariaDB
(database kefu_bench, created utf8mb4 when missing, migrated, seeded with `kefu demo seed --load-users N`);
with --url it drives a server that is already running (loopback addresses only). Every mode stops by itself:
a duration cap, a message cap and an overall deadline. The figures are printed as exactly one JSON line on
stdout; progress goes to stderr. See benchmarks/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import math
import os
import random
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from http.cookiejar import CookieJar, DefaultCookiePolicy
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DEFAULT_DATABASE_URL = "mysql+pymysql://root@127.0.0.1:3306/kefu_bench?charset=utf8mb4"
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/14"
SECRET_KEY = "kefu-benchmark-secret-key-not-for-production-0123456789"
MAX_DURATION = 600.0
MAX_MESSAGES = 1_000_000
MAX_STREAMS = 50_000

CSRF_RE = re.compile(r'<meta name="csrf-token" content="([^"]+)"')
OPEN_RE = re.compile(r'data-open-conversation="(\d*)"')
LAST_EVENT_RE = re.compile(r'data-last-event-id="(\d+)"')
MESSAGE_ID_RE = re.compile(r'data-message-id="(\d+)"')
SENDER_RE = re.compile(r'data-sender-id="([^"]*)"')

_T0 = time.monotonic()


def log(text: str) -> None:
    print(f"[{time.monotonic() - _T0:7.1f}s] {text}", file=sys.stderr, flush=True)


# --- figures ---


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (q in 0..1)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def summary_ms(seconds: Iterable[float]) -> dict[str, float | None]:
    values = sorted(s * 1000 for s in seconds)
    if not values:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "max": None, "mean": None}
    return {
        "n": len(values),
        "p50": round(percentile(values, 0.50), 2),
        "p95": round(percentile(values, 0.95), 2),
        "p99": round(percentile(values, 0.99), 2),
        "max": round(values[-1], 2),
        "mean": round(sum(values) / len(values), 2),
    }


# --- processes: the server's tree, memory and CPU from /proc ---

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw.rsplit(")", 1)[1].split()  # fields from `state` on; the name may hold spaces


def process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def pids_named(*names: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if Path(f"/proc/{entry}/comm").read_text().strip() in names:
                    found.append(int(entry))
            except OSError:
                continue
    return found


def rss_kib(pids: Iterable[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def cpu_seconds(pids: Iterable[int]) -> float:
    total = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class CpuMeter:
    """CPU used by the server, this client, MariaDB and Redis between start() and stop(), as % of one core."""

    def __init__(self, server_pids: Callable[[], list[int]]) -> None:
        self._server_pids = server_pids
        self._start: dict[str, float] = {}
        self._t = 0.0

    def _sample(self) -> dict[str, float]:
        return {
            "server": cpu_seconds(self._server_pids()),
            "client": own_cpu_seconds(),
            "mariadb": cpu_seconds(pids_named("mariadbd", "mysqld")),
            "redis": cpu_seconds(pids_named("redis-server")),
            "machine": machine_busy_seconds(),
        }

    def start(self) -> None:
        self._start, self._t = self._sample(), time.monotonic()

    def stop(self) -> dict[str, float]:
        """Each figure in % of one core (the machine has os.cpu_count() of them); `others` is everything else
        running on this shared machine meanwhile."""
        elapsed = max(time.monotonic() - self._t, 1e-9)
        end = self._sample()
        used = {k: 100 * (end[k] - self._start[k]) / elapsed for k in end}
        used["others"] = max(0.0, used["machine"] - sum(v for k, v in used.items() if k != "machine"))
        figures = {f"{k}_cpu_pct": round(v, 1) for k, v in used.items()}
        figures["load_average_1m"] = float(Path("/proc/loadavg").read_text().split()[0])
        return figures


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent not idle, from the first line of /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / CLOCK_TICKS


# --- the server ---

CHILDREN: list[Any] = []  # killed by the watchdog if a run overstays its deadline


def kill_children() -> None:
    for child in CHILDREN:
        if child.returncode is not None:
            continue
        for pid in reversed(process_tree(child.pid)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def watchdog(mode: str, seconds: float) -> threading.Timer:
    """The last resort: if cancelling the run at its deadline does not end it, kill what it started and exit."""
    def fire() -> None:
        log(f"watchdog: still running {seconds:.0f} s after the start; killing the server and exiting")
        kill_children()
        print(json.dumps({"mode": mode, "error": "killed by the watchdog"}), flush=True)
        os._exit(3)

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    return timer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def require_loopback(host: str) -> None:
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror as error:
        raise SystemExit(f"cannot resolve {host}: {error}") from error
    for info in infos:
        if not ipaddress.ip_address(info[4][0]).is_loopback:
            raise SystemExit(f"{host} is not a loopback address: this benchmark only drives local servers")


def raise_file_limit(wanted: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def server_env(args: argparse.Namespace, var_dir: Path, broker: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEFU_")}
    env.update(
        KEFU_DATABASE_URL=args.database_url,
        KEFU_SECRET_KEY=SECRET_KEY,
        KEFU_DEMO="1",
        KEFU_VAR_DIR=str(var_dir),
        KEFU_UPLOAD_DIR=str(var_dir / "uploads"),
        KEFU_SSE_PING_SECONDS=str(args.ping_seconds),
        KEFU_ACCESS_LOG="1" if args.access_log else "0",  # off as docs/deploy.md runs it (nginx logs requests)
    )
    if broker:
        env["KEFU_BROKER_URL"] = args.broker_url
    if args.worker_threads:
        env["KEFU_WORKER_THREADS"] = str(args.worker_threads)
    return env


def kefu(args: argparse.Namespace, env: dict[str, str], *command: str) -> str:
    result = subprocess.run([str(BIN / "kefu"), *command], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    if result.returncode != 0:
        raise SystemExit(f"kefu {' '.join(command)} failed: {result.stderr.strip()[-2000:]}")
    return result.stdout.strip()


def prepare_database(args: argparse.Namespace, env: dict[str, str], load_users: int) -> None:
    """Create the benchmark database (utf8mb4) if missing, migrate it, seed lb1…lbN and lm1…lmN."""
    import pymysql
    from sqlalchemy.engine import make_url

    url = make_url(args.database_url)
    if url.get_backend_name() != "mysql" or not url.database:
        raise SystemExit("--database-url must be a mysql+pymysql URL with a database name")
    if url.database == "test":
        raise SystemExit("the database `test` belongs to the test suite; pick another one")
    require_loopback(url.host or "127.0.0.1")
    connection = pymysql.connect(host=url.host or "127.0.0.1", port=url.port or 3306, user=url.username or "root",
                                 password=url.password or "", charset="utf8mb4", autocommit=True)
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE IF NOT EXISTS `{url.database}` "
                           "CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
        kefu(args, env, "db", "upgrade")
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT COUNT(*) FROM `{url.database}`.users WHERE id IN (%s, %s)",
                           (f"lb{load_users}", f"lm{load_users}"))
            (present,) = cursor.fetchone()  # type: ignore[misc]
    finally:
        connection.close()
    if present < 2:
        log(f"seeding {load_users} buyers and {load_users} merchants")
        kefu(args, env, "demo", "seed", "--load-users", str(load_users))


def flush_broker(url: str) -> None:
    """Our own Redis database only (db 14 by default): stale presence leases of an earlier run go away."""
    import redis

    if url.rstrip("/").endswith("/15"):
        raise SystemExit("Redis db 15 belongs to the test suite; pick another one")
    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        client.flushdb()
    finally:
        client.close()


@dataclass
class Server:
    url: str
    pid: int | None = None
    workers: int = 1
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    var_dir: Path | None = None

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 80

    def pids(self) -> list[int]:
        return process_tree(self.pid) if self.pid else []

    def rss_kib(self) -> int:
        return rss_kib(self.pids())

    def rss_by_process(self) -> dict[int, int]:
        return {pid: rss_kib([pid]) for pid in self.pids()}

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.var_dir and self.log_path:
            keep = Path(tempfile.gettempdir()) / f"kefu-bench-server-{self.port}.log"
            with contextlib.suppress(OSError):
                shutil.copy(self.log_path, keep)
                self.log_path = keep
            shutil.rmtree(self.var_dir, ignore_errors=True)


def start_server(args: argparse.Namespace, workers: int, load_users: int, broker: bool) -> Server:
    if args.url:
        parts = urlsplit(args.url)
        require_loopback(parts.hostname or "")
        return Server(url=args.url.rstrip("/"), pid=args.server_pid, workers=workers)
    var_dir = Path(tempfile.mkdtemp(prefix="kefu-bench-"))
    env = server_env(args, var_dir, broker)
    prepare_database(args, env, load_users)
    if broker:
        flush_broker(args.broker_url)
    port = free_port()
    log_path = var_dir / "server.log"
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(
            [str(BIN / "kefu"), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)],
            cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT,
        )
    CHILDREN.append(process)
    server = Server(url=f"http://127.0.0.1:{port}", pid=process.pid, workers=workers, process=process,
                    log_path=log_path, var_dir=var_dir)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with {process.returncode}; see {log_path}")
        try:
            healthy = httpx.get(server.url + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            healthy = False
        if healthy and len(server.pids()) >= (workers + 1 if workers > 1 else 1):
            time.sleep(1.0 if workers > 1 else 0.2)  # every worker's startup hooks have run
            log(f"server up on {server.url} (workers={workers}, pid {process.pid}, log {log_path})")
            return server
        time.sleep(0.2)
    server.stop()
    raise SystemExit("the server did not start within 60 s")


# --- people: demo sign-in, as a browser does it ---


@dataclass
class Person:
    user_id: str
    cookies: dict[str, str] = field(default_factory=dict)
    csrf: str = ""
    conversation_id: int | None = None
    last_event_id: int | None = None

    def headers(self, **extra: str) -> dict[str, str]:
        cookie = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        return ({"Cookie": cookie} if cookie else {}) | extra

    def take_cookies(self, response: httpx.Response) -> None:
        for header in response.headers.get_list("set-cookie"):
            name, _, value = header.split(";", 1)[0].partition("=")
            self.cookies[name.strip()] = value.strip()


def http_client(server: Server, connections: int) -> httpx.AsyncClient:
    # Each person keeps their own cookies (Person.cookies); a shared client must not mix them up.
    jar = CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))
    return httpx.AsyncClient(
        base_url=server.url,
        cookies=jar,
        timeout=httpx.Timeout(30.0, pool=60.0),
        # uvicorn closes a connection idle for 5 s; a POST sent on it at that moment fails with ReadError. Browsers
        # retry such a request; here the client lets go of idle connections first.
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections, keepalive_expiry=3.0),
    )


class Clients:
    """A few small httpx.AsyncClients, each person always on the same one (as a browser keeps its connection).
    Not one big pool: httpcore spends CPU in O(connections) per request, and the client became the limit."""

    def __init__(self, server: Server, count: int = 8, connections: int = 8) -> None:
        self._clients = [http_client(server, connections) for _ in range(count)]

    def _of(self, person: Person) -> httpx.AsyncClient:
        return self._clients[zlib.crc32(person.user_id.encode()) % len(self._clients)]

    async def get(self, person: Person, url: str, **kwargs: Any) -> httpx.Response:
        return await self._of(person).get(url, headers=person.headers(), **kwargs)

    async def post(self, person: Person, url: str, data: dict[str, str], **headers: str) -> httpx.Response:
        headers = {"X-CSRFToken": person.csrf, "HX-Request": "true"} | headers
        return await self._of(person).post(url, data=data, headers=person.headers(**headers))

    async def __aenter__(self) -> Clients:
        return self

    async def __aexit__(self, *_: object) -> None:
        await asyncio.gather(*(client.aclose() for client in self._clients))


async def sign_in(clients: Clients, person: Person, target: str | None, page: bool = True) -> None:
    """GET /chat?user_id=…[&target=…] (303 with the session cookie), then the page it leads to: the CSRF
    token (meta tag), the open conversation and the page's last event id. page=False stops after the 303."""
    params = {"user_id": person.user_id} | ({"target": target} if target else {})
    response = await clients.get(person, "/chat", params=params)
    if response.status_code != 303:
        raise RuntimeError(f"sign-in of {person.user_id}: HTTP {response.status_code}")
    person.take_cookies(response)
    if not page:
        return
    response = await clients.get(person, response.headers["location"])
    if response.status_code != 200:
        raise RuntimeError(f"chat page of {person.user_id}: HTTP {response.status_code}")
    person.take_cookies(response)
    html = response.text
    csrf = CSRF_RE.search(html)
    if csrf is None:
        raise RuntimeError("the chat page has no csrf-token meta tag")
    person.csrf = csrf.group(1)
    opened = OPEN_RE.search(html)
    person.conversation_id = int(opened.group(1)) if opened and opened.group(1) else None
    last = LAST_EVENT_RE.search(html)
    person.last_event_id = int(last.group(1)) if last else None


async def gather_limited(jobs: Sequence[Callable[[], Awaitable[Any]]], limit: int) -> list[Any]:
    semaphore = asyncio.Semaphore(limit)

    async def run(job: Callable[[], Awaitable[Any]]) -> Any:
        async with semaphore:
            return await job()

    return await asyncio.gather(*(run(job) for job in jobs))


# --- the event stream: a small HTTP/1.1 + text/event-stream reader on a raw socket ---


class Stream:
    """One tab's GET /events. Records the first arrival time of every message id and counts duplicates."""

    def __init__(self, person: Person, server: Server) -> None:
        self.person = person
        self.server = server
        self.arrivals: dict[int, float] = {}
        self.duplicates = 0
        self.counts: Counter[str] = Counter()
        self.connected = asyncio.Event()
        self.error: str | None = None
        self.on_message: Callable[[Stream, int, str], None] | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._buffer = b""
        self._kind = "message"
        self._data: list[str] = []

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def wait_connected(self, timeout: float) -> None:
        await asyncio.wait_for(self.connected.wait(), timeout)
        if self.error is not None:
            raise RuntimeError(f"stream of {self.person.user_id}: {self.error}")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _run(self) -> None:
        try:
            reader, writer = await asyncio.open_connection(self.server.host, self.server.port)
            self._writer = writer
            query = {"last_event_id": str(self.person.last_event_id)} if self.person.last_event_id is not None else {}
            target = "/events" + (f"?{urlencode(query)}" if query else "")
            cookie = "; ".join(f"{k}={v}" for k, v in self.person.cookies.items())
            writer.write(
                f"GET {target} HTTP/1.1\r\nHost: {self.server.host}:{self.server.port}\r\n"
                f"Accept: text/event-stream\r\nCache-Control: no-cache\r\nCookie: {cookie}\r\n\r\n".encode()
            )
            await writer.drain()
            status = await reader.readline()
            if b" 200 " not in status:
                raise RuntimeError(f"GET /events: {status.decode(errors='replace').strip()}")
            chunked = False
            while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                if name.strip().lower() == "transfer-encoding" and "chunked" in value.lower():
                    chunked = True
            while True:
                if chunked:
                    size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        break
                    data = await reader.readexactly(size + 2)
                    self._feed(data[:-2], time.perf_counter())
                else:
                    data = await reader.read(65536)
                    if not data:
                        break
                    self._feed(data, time.perf_counter())
            raise RuntimeError("the server closed the stream")
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self.error = f"{type(error).__name__}: {error}"
            self.counts["errors"] += 1
        finally:
            self.connected.set()
            if self._writer is not None:
                self._writer.close()

    def _feed(self, data: bytes, now: float) -> None:
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for raw in lines:
            line = raw.rstrip(b"\r").decode()
            if not line:
                self._dispatch(now)
            elif line.startswith(":"):
                if line[1:].strip() == "connected":
                    self.connected.set()
            else:
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "event":
                    self._kind = value
                elif name == "data":
                    self._data.append(value)

    def _dispatch(self, now: float) -> None:
        kind, data = self._kind, self._data
        self._kind, self._data = "message", []
        if not data:
            return
        self.counts[kind] += 1
        if kind != "message":
            return
        html = data[0] if len(data) == 1 else "\n".join(data)
        match = MESSAGE_ID_RE.search(html)
        if match is None:
            self.counts["unparsed"] += 1
            return
        message_id = int(match.group(1))
        if message_id in self.arrivals:
            self.duplicates += 1
            return
        self.arrivals[message_id] = now
        if self.on_message is not None:
            self.on_message(self, message_id, html)


async def open_streams(people: Sequence[Person], server: Server, concurrency: int, timeout: float) -> list[Stream]:
    streams = [Stream(person, server) for person in people]

    async def open_one(stream: Stream) -> None:
        stream.start()
        await stream.wait_connected(timeout)

    await gather_limited([lambda s=s: open_one(s) for s in streams], concurrency)
    return streams


def expected_presence(streams: Sequence[Stream]) -> int:
    """Presence goes to the people who share a conversation: in each pair, whoever connects second is announced
    to the first (both ways when they connect at the same moment, hence "at least")."""
    return len(streams) // 2


async def settle(streams: Sequence[Stream], quiet: float = 1.0, cap: float = 90.0,
                 expected: int | None = None) -> float:
    """Wait until the presence events of the connects have died down: `expected` of them received (when known;
    not with a broker, whose streams may be deaf, see verify_streams) and none for `quiet` seconds. Returns the
    seconds waited (minus the quiet period)."""
    start = time.monotonic()
    last_total, last_change = -1, time.monotonic()
    while time.monotonic() - start < cap:
        total = sum(s.counts["presence"] for s in streams)
        if total != last_total:
            last_total, last_change = total, time.monotonic()
        elif time.monotonic() - last_change >= quiet and (expected is None or total >= 0.99 * expected):
            break
        await asyncio.sleep(0.1)
    else:
        log(f"the presence events did not die down within {cap:.0f} s ({last_total} received)")
    return round(time.monotonic() - start - quiet, 2)


class LoopLag:
    """How late this client's own event loop wakes up: the error bar of every latency it measures."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.lags: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(self.interval)
            self.lags.append(time.perf_counter() - before - self.interval)

    def start(self) -> None:
        self.lags = []
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> dict[str, float | None]:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        figures = summary_ms(self.lags)
        return {"p50": figures["p50"], "p99": figures["p99"], "max": figures["max"]}


# --- chatting at an offered rate ---


@dataclass
class Pair:
    buyer: Person
    merchant: Person
    buyer_stream: Stream | None = None
    merchant_stream: Stream | None = None

    @property
    def conversation_id(self) -> int:
        assert self.buyer.conversation_id is not None
        return self.buyer.conversation_id


@dataclass
class Sent:
    message_id: int
    started: float
    answered: float
    peer: Stream
    own: Stream


async def sign_in_pairs(clients: Clients, first: int, count: int, concurrency: int) -> list[Pair]:
    pairs = [Pair(Person(f"lb{n}"), Person(f"lm{n}")) for n in range(first, first + count)]
    await gather_limited([lambda p=p: sign_in(clients, p.buyer, p.merchant.user_id) for p in pairs], concurrency)
    # The merchant opens the chat app without a target: the buyer's conversation is in the list.
    await gather_limited([lambda p=p: sign_in(clients, p.merchant, None) for p in pairs], concurrency)
    for pair in pairs:
        if pair.buyer.conversation_id is None or not pair.merchant.csrf:
            raise RuntimeError(f"{pair.buyer.user_id} and {pair.merchant.user_id}: no conversation or CSRF token")
    return pairs


async def connect_pairs(pairs: Sequence[Pair], server: Server, concurrency: int) -> list[Stream]:
    people = [person for pair in pairs for person in (pair.buyer, pair.merchant)]
    streams = await open_streams(people, server, concurrency, timeout=60)
    for pair, (buyer_stream, merchant_stream) in zip(pairs, zip(streams[::2], streams[1::2], strict=True),
                                                     strict=True):
        pair.buyer_stream, pair.merchant_stream = buyer_stream, merchant_stream
    return streams


async def verify_streams(clients: Clients, pairs: Sequence[Pair], server: Server,
                         concurrency: int) -> tuple[int, list[Stream]]:
    """Every stream must hear its peer: one message each way per pair (buyers first, then merchants, so that no
    two POSTs of one conversation overlap). A stream that hears nothing within 5 s is counted dead, closed and
    opened again (at most twice). Returns the number found dead on the first round, and the streams now open."""
    dead_first = 0

    async def post(pair: Pair, from_buyer: bool, probes: list[tuple[int, Pair, bool]]) -> None:
        sender = pair.buyer if from_buyer else pair.merchant
        response = await clients.post(sender, f"/chat/c/{pair.conversation_id}/messages", data={"body": "连接检查"})
        match = MESSAGE_ID_RE.search(response.text) if response.status_code == 201 else None
        if match is not None:
            probes.append((int(match.group(1)), pair, not from_buyer))  # (id, pair, heard on the buyer's side)

    for attempt in range(3):
        probes: list[tuple[int, Pair, bool]] = []
        for from_buyer in (True, False):
            await gather_limited([lambda p=p, b=from_buyer, r=probes: post(p, b, r) for p in pairs], concurrency)

        def hears(probe: tuple[int, Pair, bool]) -> bool:
            message_id, pair, buyer_side = probe
            stream = pair.buyer_stream if buyer_side else pair.merchant_stream
            return stream is not None and message_id in stream.arrivals

        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not all(hears(p) for p in probes):
            await asyncio.sleep(0.05)
        dead = [(pair, buyer_side) for (message_id, pair, buyer_side) in probes
                if not hears((message_id, pair, buyer_side))]
        if attempt == 0:
            dead_first = len(dead)
        if not dead or attempt == 2:
            if dead:
                log(f"{len(dead)} streams still hear nothing after two reopenings")
            break
        log(f"{len(dead)} streams hear nothing (round {attempt + 1}); reopening them")
        for pair, buyer_side in dead:
            old = pair.buyer_stream if buyer_side else pair.merchant_stream
            if old is not None:
                await old.close()
            person = pair.buyer if buyer_side else pair.merchant
            (fresh,) = await open_streams([person], server, 1, timeout=60)
            if buyer_side:
                pair.buyer_stream = fresh
            else:
                pair.merchant_stream = fresh
    streams = [s for pair in pairs for s in (pair.buyer_stream, pair.merchant_stream) if s is not None]
    return dead_first, streams


class ReadReceipts:
    """Optionally acts like a visible tab: every message that arrives from the peer is marked read (a POST)."""

    def __init__(self, clients: Clients, pairs: Sequence[Pair]) -> None:
        self.clients = clients
        self.errors = 0
        self.sent = 0
        self._tasks: set[asyncio.Task[None]] = set()
        for pair in pairs:
            for stream, person in ((pair.buyer_stream, pair.buyer), (pair.merchant_stream, pair.merchant)):
                assert stream is not None
                cid = pair.conversation_id
                stream.on_message = lambda _s, mid, html, p=person, c=cid: self._read(p, c, mid, html)

    def _read(self, person: Person, cid: int, message_id: int, html: str) -> None:
        sender = SENDER_RE.search(html)
        if sender is None or sender.group(1) == person.user_id:
            return  # one's own message: nothing to mark read
        task = asyncio.create_task(self._post(person, cid, message_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post(self, person: Person, cid: int, message_id: int) -> None:
        try:
            response = await self.clients.post(person, f"/chat/c/{cid}/read", data={"up_to": str(message_id)})
            self.sent += 1
            if response.status_code != 204:
                self.errors += 1
        except httpx.HTTPError:
            self.errors += 1

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


class Typists:
    """Optionally, everyone types all the time: each person POSTs /chat/c/{cid}/typing every `every` seconds (the
    page's own pace, static/js/conversation.js: 4.5 s), each starting at a random moment, until stopped. Over raw
    keep-alive connections of their own with each request's bytes built once: 1,000 typists make ~220 requests/s, which
    through httpx cost this machine's shared cores more than the server spends answering them (a browser's cost is
    on its own machine)."""

    def __init__(self, server: Server, pairs: Sequence[Pair], every: float = 4.5, connections: int = 32) -> None:
        self.server = server
        self.people = [(person, pair.conversation_id) for pair in pairs for person in (pair.buyer, pair.merchant)]
        self.every = every
        self.posted = 0
        self.errors: Counter[str] = Counter()
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._connections = connections

    def _request(self, person: Person, cid: int) -> bytes:
        headers = person.headers(**{"X-CSRFToken": person.csrf, "HX-Request": "true"})
        lines = [f"POST /chat/c/{cid}/typing HTTP/1.1", f"Host: {self.server.host}:{self.server.port}",
                 "Content-Length: 0", *(f"{k}: {v}" for k, v in headers.items())]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._type(self._request(person, cid))) for person, cid in self.people]
        self._tasks += [asyncio.create_task(self._connection()) for _ in range(self._connections)]

    async def _type(self, request: bytes) -> None:
        await asyncio.sleep(random.uniform(0, self.every))
        while True:
            due = time.perf_counter() + self.every
            self._queue.put_nowait(request)
            await asyncio.sleep(max(0.0, due - time.perf_counter()))

    async def _connection(self) -> None:
        reader, writer = await asyncio.open_connection(self.server.host, self.server.port)
        try:
            while True:
                writer.write(await self._queue.get())
                status = await reader.readline()
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip())
                if length:
                    await reader.readexactly(length)
                self.posted += 1
                if b" 204 " not in status:
                    self.errors[status.decode(errors="replace").strip()] += 1
        except (ConnectionError, asyncio.IncompleteReadError) as error:
            self.errors[type(error).__name__] += 1
        finally:
            writer.close()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


IN_FLIGHT = 64  # POSTs handed to httpx at once (8 clients × 8 connections); the others wait their turn


async def chat(
    clients: Clients,
    pairs: Sequence[Pair],
    rate: float,
    duration: float,
    max_messages: int,
    grace: float,
) -> dict[str, Any]:
    """Open loop: a message is due every 1/rate seconds, pairs in turn, buyer and merchant in turn. Then wait up
    to `grace` seconds for POSTs still unanswered (the rest are cancelled and counted as errors) and as long
    again for every message to arrive on the peer's stream."""
    sent: list[Sent] = []
    due_at: dict[int, float] = {}
    errors: Counter[str] = Counter()
    tasks: set[asyncio.Task[None]] = set()
    gate = asyncio.Semaphore(IN_FLIGHT)
    own_streams = [s for p in pairs for s in (p.buyer_stream, p.merchant_stream) if s is not None]
    dup_before = sum(s.duplicates for s in own_streams)

    async def send(n: int, due: float) -> None:
        pair = pairs[n % len(pairs)]
        from_buyer = (n // len(pairs)) % 2 == 0
        sender, peer_stream, own_stream = (
            (pair.buyer, pair.merchant_stream, pair.buyer_stream) if from_buyer
            else (pair.merchant, pair.buyer_stream, pair.merchant_stream)
        )
        assert peer_stream is not None and own_stream is not None
        body = f"压测消息 #{n}：请问这款药品今天能发货吗？"
        async with gate:
            started = time.perf_counter()
            try:
                response = await clients.post(sender, f"/chat/c/{pair.conversation_id}/messages", data={"body": body})
            except httpx.HTTPError as error:
                errors[type(error).__name__] += 1
                return
        answered = time.perf_counter()
        match = MESSAGE_ID_RE.search(response.text) if response.status_code == 201 else None
        if match is None:
            errors[f"HTTP {response.status_code}"] += 1
            return
        message_id = int(match.group(1))
        due_at[message_id] = due
        sent.append(Sent(message_id, started, answered, peer_stream, own_stream))

    interval = 1.0 / rate
    begin = time.perf_counter()
    scheduled = 0
    behind: list[float] = []
    while scheduled < max_messages:
        due = begin + scheduled * interval
        if due - begin >= duration:
            break
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        behind.append(max(0.0, time.perf_counter() - due))
        task = asyncio.create_task(send(scheduled, due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        scheduled += 1
    sending_ended = time.perf_counter()
    if tasks:
        _, pending = await asyncio.wait(set(tasks), timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
            errors["unanswered"] += len(pending)
    answers_ended = max((s.answered for s in sent), default=sending_ended)
    grace_end = time.perf_counter() + grace
    while time.perf_counter() < grace_end and any(s.message_id not in s.peer.arrivals for s in sent):
        await asyncio.sleep(0.05)

    latencies, from_due, lost, own_lost, arrivals = [], [], 0, 0, []
    for s in sent:
        arrived = s.peer.arrivals.get(s.message_id)
        if arrived is None:
            lost += 1
        else:
            latencies.append(arrived - s.started)
            from_due.append(arrived - due_at[s.message_id])
            arrivals.append(arrived)
        if s.message_id not in s.own.arrivals:
            own_lost += 1
    window = max(sending_ended - begin, 1e-9)
    delivered_window = (max(arrivals) - begin) if arrivals else window
    return {
        "offered_rate": rate,
        "scheduled": scheduled,
        "sent": len(sent),
        "post_errors": sum(errors.values()),
        "post_error_kinds": dict(errors),
        "achieved_rate": round(len(sent) / max(answers_ended - begin, window), 1),
        "delivered_rate": round(len(arrivals) / max(delivered_window, 1e-9), 1),
        "lost": lost,
        "lost_on_own_stream": own_lost,
        "duplicated": sum(s.duplicates for s in own_streams) - dup_before,
        "latency_ms": summary_ms(latencies),
        "latency_from_due_ms": summary_ms(from_due),
        "post_ms": summary_ms(s.answered - s.started for s in sent),
        "client_wait_ms": summary_ms(s.started - due_at[s.message_id] for s in sent),
        "schedule_lag_ms_p99": summary_ms(behind)["p99"],
    }


def passes(result: dict[str, Any], p99_limit_ms: float) -> bool:
    p99 = result["latency_from_due_ms"]["p99"]  # client-side queueing counts: the server fell behind
    return (
        p99 is not None
        and p99 < p99_limit_ms
        and result["lost"] == 0
        and result["duplicated"] == 0
        and result["post_errors"] == 0
        and result["achieved_rate"] >= 0.95 * result["offered_rate"]
    )


# --- profiling the server while it works ---


class Profiler:
    """py-spy record on the server (and its workers) for the measured phase; SIGINT makes it write the file.
    By default only samples that hold the GIL (where the CPU goes); --profile-wall samples every thread."""

    def __init__(self, path: str | None, server: Server, wall: bool = False) -> None:
        self.path = path
        self.server = server
        self.wall = wall
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        if not self.path or not self.server.pid:
            return
        spy = shutil.which("py-spy", path=str(BIN)) or shutil.which("py-spy")
        if spy is None:
            raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
        fmt = {".svg": "flamegraph", ".json": "speedscope"}.get(Path(self.path).suffix, "raw")
        command = [spy, "record", "--pid", str(self.server.pid), "--output", self.path, "--format", fmt,
                   "--rate", "200", "--nonblocking"]
        # CPU: only the thread holding the GIL; wall: every thread, waiting ones too (MariaDB round trips).
        command.append("--idle" if self.wall else "--gil")
        if self.server.workers > 1:
            command.append("--subprocesses")
        self._process = await asyncio.create_subprocess_exec(*command, stdout=subprocess.DEVNULL,
                                                             stderr=subprocess.DEVNULL)
        CHILDREN.append(self._process)
        await asyncio.sleep(0.5)

    async def stop(self) -> None:
        if self._process is None:
            return
        self._process.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(self._process.wait(), 30)
        except TimeoutError:
            self._process.kill()
            await self._process.wait()
        log(f"profile written to {self.path}")


# --- the three modes ---


async def close_all(streams: Iterable[Stream]) -> None:
    await asyncio.gather(*(s.close() for s in streams))


async def run_latency(args: argparse.Namespace) -> dict[str, Any]:
    pairs_count = max(1, args.people // 2)
    raise_file_limit(pairs_count * 2 + 2048)
    server = await asyncio.to_thread(start_server, args, args.workers[0], pairs_count,
                                     args.workers[0] > 1 or args.broker)
    meter = CpuMeter(server.pids)
    try:
        async with Clients(server) as clients:
            started = time.monotonic()
            pairs = await sign_in_pairs(clients, 1, pairs_count, args.concurrency)
            sign_in_s = round(time.monotonic() - started, 1)
            log(f"{pairs_count * 2} people signed in in {sign_in_s} s; opening their streams")
            rss_before = server.rss_kib()
            started = time.monotonic()
            streams = await connect_pairs(pairs, server, args.concurrency * 4)
            connect_s = round(time.monotonic() - started, 1)
            expected = expected_presence(streams)
            broker = args.workers[0] > 1 or args.broker
            settle_s = await settle(streams, cap=args.settle_cap, expected=None if broker else expected)
            presence = sum(s.counts["presence"] for s in streams)
            log(f"{len(streams)} streams open in {connect_s} s, presence storm settled {settle_s} s later "
                f"({presence} of {expected} presence events)")
            dead_streams = None
            if broker:
                dead_streams, streams = await verify_streams(clients, pairs, server, args.concurrency)
            reads = ReadReceipts(clients, pairs) if args.reads else None
            typists = Typists(server, pairs) if args.typing else None
            if typists is not None:
                log(f"everyone types: {len(typists.people)} people, one typing POST every {typists.every} s each")
                typists.start()
            if args.warmup > 0:
                log(f"warm-up: {args.warmup} s at {args.rate}/s")
                await chat(clients, pairs, args.rate, args.warmup, args.max_messages, args.grace)
            lag = LoopLag()
            profiler = Profiler(args.profile, server, args.profile_wall)
            await profiler.start()
            lag.start()
            meter.start()
            log(f"measuring: {args.duration} s at {args.rate}/s over {pairs_count} pairs")
            result = await chat(clients, pairs, args.rate, args.duration, args.max_messages, args.grace)
            cpu = meter.stop()
            loop_lag = await lag.stop()
            await profiler.stop()
            if reads is not None:
                await reads.drain()
            typing_events = sum(st.counts["typing"] for st in streams)
            if typists is not None:
                await typists.stop()
            rss_after = server.rss_kib()
            await close_all(streams)
    finally:
        server.stop()
    return {
        "mode": "latency",
        "workers": args.workers[0],
        "people": pairs_count * 2,
        "pairs": pairs_count,
        "duration_s": args.duration,
        "read_receipts": bool(args.reads),
        **result,
        "typing": bool(args.typing),
        "access_log": bool(args.access_log),
        "typing_posts": typists.posted if typists else 0,
        "typing_errors": dict(typists.errors) if typists else {},
        "typing_events_received": typing_events,
        "read_posts": reads.sent if reads else 0,
        "read_errors": reads.errors if reads else 0,
        "stream_errors": sum(s.counts["errors"] for s in streams),
        "sign_in_s": sign_in_s,
        "connect_s": connect_s,
        "presence_settle_s": settle_s,
        "presence_events": presence,
        "presence_events_expected": expected,
        "dead_streams_on_connect": dead_streams,
        "server_rss_mib": {"before_streams": round(rss_before / 1024, 1), "end": round(rss_after / 1024, 1)},
        **cpu,
        "client_loop_lag_ms": loop_lag,
        "server_log": str(server.log_path) if server.log_path else None,
    }


async def capacity_for(args: argparse.Namespace, workers: int) -> dict[str, Any]:
    broker = workers > 1 or args.broker
    raise_file_limit(args.pairs * 2 + 2048)
    server = await asyncio.to_thread(start_server, args, workers, args.pairs, broker)
    steps: list[dict[str, Any]] = []
    meter = CpuMeter(server.pids)
    try:
        async with Clients(server) as clients:
            pairs = await sign_in_pairs(clients, 1, args.pairs, args.concurrency)
            streams = await connect_pairs(pairs, server, args.concurrency * 4)
            await settle(streams, cap=args.settle_cap,
                         expected=None if broker else expected_presence(streams))
            dead_streams = None
            if broker:
                dead_streams, streams = await verify_streams(clients, pairs, server, args.concurrency)
            log(f"workers={workers}: {len(streams)} streams open; warming up")
            await chat(clients, pairs, args.start_rate, 2.0, args.max_messages, args.grace)
            budget_end = time.monotonic() + args.budget
            best: float | None = None
            failed: float | None = None
            rate = float(args.start_rate)
            refinements = 0
            while time.monotonic() < budget_end:
                meter.start()
                result = await chat(clients, pairs, rate, args.step_seconds, args.max_messages, args.grace)
                result.update(meter.stop())
                ok = passes(result, args.p99_limit)
                result["pass"] = ok
                steps.append(result)
                log(f"workers={workers} rate {rate:.0f}/s: p99 {result['latency_from_due_ms']['p99']} ms, "
                    f"achieved {result['achieved_rate']}/s, lost {result['lost']}, server CPU "
                    f"{result['server_cpu_pct']}% -> {'pass' if ok else 'fail'}")
                if ok:
                    best = rate if best is None else max(best, rate)
                else:
                    failed = rate if failed is None else min(failed, rate)
                if failed is None:
                    rate = round(rate * args.factor)
                elif best is None:
                    if rate <= 5:
                        break
                    rate = round(rate / args.factor)
                else:
                    if refinements >= args.refine or failed - best <= max(5.0, 0.05 * best):
                        break
                    refinements += 1
                    rate = round((best + failed) / 2)
                await asyncio.sleep(0.5)
            await close_all(streams)
    finally:
        server.stop()
    return {"workers": workers, "broker": "redis" if broker else "memory", "best_rate": best,
            "first_failing_rate": failed, "dead_streams_on_connect": dead_streams, "steps": steps}


async def run_capacity(args: argparse.Namespace) -> dict[str, Any]:
    results = []
    for workers in args.workers:
        results.append(await capacity_for(args, workers))
        await asyncio.sleep(2)
    by_workers = {r["workers"]: r["best_rate"] for r in results}
    ratio = None
    if by_workers.get(1) and by_workers.get(2):
        ratio = round(by_workers[2] / by_workers[1], 2)
    return {
        "mode": "capacity",
        "pairs": args.pairs,
        "p99_limit_ms": args.p99_limit,
        "step_seconds": args.step_seconds,
        "best_rate": {str(k): v for k, v in by_workers.items()},
        "ratio_2_to_1": ratio,
        "runs": results,
    }


async def run_idle(args: argparse.Namespace) -> dict[str, Any]:
    count = args.streams
    idle_people = max(1, min(args.idle_people or math.ceil(count / 20), count))
    load_users = 1 + (idle_people + 1) // 2
    limit = raise_file_limit(count + 4096)
    if limit < count + 512:
        raise SystemExit(f"the file limit is {limit}: too low for {count} streams; lower --streams")
    workers = args.workers[0]
    server = await asyncio.to_thread(start_server, args, workers, load_users, workers > 1 or args.broker)
    meter = CpuMeter(server.pids)
    idle_streams: list[Stream] = []
    try:
        async with Clients(server) as clients:
            (pair,) = await sign_in_pairs(clients, 1, 1, 1)
            active = await connect_pairs([pair], server, 2)
            if workers > 1 or args.broker:
                _, active = await verify_streams(clients, [pair], server, 1)
            await chat(clients, [pair], args.rate, 2.0, args.max_messages, args.grace)  # warm the code paths
            people = [Person(f"{'lb' if i % 2 == 0 else 'lm'}{2 + i // 2}") for i in range(idle_people)]
            started = time.monotonic()
            await gather_limited([lambda p=p: sign_in(clients, p, None, page=False) for p in people], args.concurrency)
            sign_in_s = round(time.monotonic() - started, 1)
            await asyncio.sleep(1.0)
            rss_before = server.rss_kib()
            per_process_before = server.rss_by_process()
            log(f"{idle_people} idle people signed in ({sign_in_s} s); server RSS {rss_before / 1024:.1f} MiB; "
                f"opening {count} streams")
            started = time.monotonic()
            connect_meter = CpuMeter(server.pids)
            connect_meter.start()
            server_cpu_before = cpu_seconds(server.pids())
            # The first stream of every person first (they announce presence), then the other tabs.
            batch = 500
            for first in range(0, count, batch):
                chunk = [people[i % idle_people] for i in range(first, min(first + batch, count))]
                idle_streams += await open_streams(chunk, server, args.concurrency * 8, timeout=120)
                if first // batch % 4 == 0:
                    log(f"  {len(idle_streams)} streams open, server RSS {server.rss_kib() / 1024:.1f} MiB")
            connect_s = round(time.monotonic() - started, 1)
            connect_cpu = connect_meter.stop()
            server_cpu_ms_per_connect = 1000 * (cpu_seconds(server.pids()) - server_cpu_before) / count
            settle_s = await settle([*idle_streams, *active], quiet=3.0, cap=args.settle_cap)
            await asyncio.sleep(2.0)
            rss_open = server.rss_kib()
            per_process_open = server.rss_by_process()
            per_stream_kib = (rss_open - rss_before) / count
            log(f"{count} streams open in {connect_s} s; server RSS {rss_open / 1024:.1f} MiB, "
                f"{per_stream_kib:.1f} KiB per stream; measuring the active pair")
            lag = LoopLag()
            profiler = Profiler(args.profile, server, args.profile_wall)
            await profiler.start()
            lag.start()
            meter.start()
            result = await chat(clients, [pair], args.rate, args.duration, args.max_messages, args.grace)
            cpu = meter.stop()
            loop_lag = await lag.stop()
            await profiler.stop()
            rss_end = server.rss_kib()
            stream_errors = sum(s.counts["errors"] for s in idle_streams)
            closed_by_server = sum(s.counts["closed"] for s in idle_streams)
            pings = sum(s.counts["ping"] for s in idle_streams)
            presence = sum(s.counts["presence"] for s in idle_streams)
            await close_all([*idle_streams, *active])
    finally:
        server.stop()
    return {
        "mode": "idle",
        "workers": workers,
        "streams": count,
        "idle_people": idle_people,
        "file_limit": limit,
        "idle_sign_in_s": sign_in_s,
        "connect_s": connect_s,
        "connect_cpu": connect_cpu,
        "server_cpu_ms_per_connect": round(server_cpu_ms_per_connect, 2),
        "presence_settle_s": settle_s,
        "presence_events": presence,
        "pings_received": pings,
        "stream_errors": stream_errors,
        "streams_closed_by_server": closed_by_server,
        "server_rss_mib": {"before": round(rss_before / 1024, 1), "streams_open": round(rss_open / 1024, 1),
                           "end": round(rss_end / 1024, 1)},
        "server_rss_by_process_kib": {"before": per_process_before, "streams_open": per_process_open},
        "rss_per_stream_kib": round(per_stream_kib, 2),
        "rss_per_stream_kib_at_end": round((rss_end - rss_before) / count, 2),
        "extrapolated_rss_10000_streams_mib": round(per_stream_kib * 10_000 / 1024, 1),
        "active_pair": result,
        **cpu,
        "client_loop_lag_ms": loop_lag,
        "server_log": str(server.log_path) if server.log_path else None,
    }


# --- the command line ---


def positive(kind: type[float] | type[int], high: float) -> Callable[[str], Any]:
    def parse(raw: str) -> Any:
        value = kind(raw)
        if not 0 < value <= high:
            raise argparse.ArgumentTypeError(f"must be in (0, {high}]")
        return value
    return parse


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help="drive this running server (loopback only) instead of starting one")
    common.add_argument("--server-pid", type=int, help="with --url: the server's pid, for memory and CPU figures")
    common.add_argument("--database-url", default=os.environ.get("KEFU_BENCH_DATABASE_URL", DEFAULT_DATABASE_URL))
    common.add_argument("--broker-url", default=os.environ.get("KEFU_BENCH_BROKER_URL", DEFAULT_BROKER_URL))
    common.add_argument("--access-log", action="store_true", help="a server log line per request (KEFU_ACCESS_LOG; "
                        "off by default, as docs/deploy.md runs Kefu behind nginx)")
    common.add_argument("--broker", action="store_true", help="use the Redis broker even with one worker")
    common.add_argument("--max-messages", type=positive(int, MAX_MESSAGES), default=100_000,
                        help="cap on the messages of one phase")
    common.add_argument("--grace", type=positive(float, 60), default=5.0,
                        help="seconds to wait for late messages before counting them lost")
    common.add_argument("--concurrency", type=positive(int, 256), default=16, help="parallel sign-ins")
    common.add_argument("--worker-threads", type=positive(int, 1000), default=None,
                        help="KEFU_WORKER_THREADS of the server (default: the server's own, 16)")
    common.add_argument("--ping-seconds", type=positive(float, 3600), default=15.0, help="KEFU_SSE_PING_SECONDS")
    common.add_argument("--deadline", type=positive(float, 1800), default=480.0,
                        help="hard cap on the whole run, in seconds")
    common.add_argument("--settle-cap", type=positive(float, 1200), default=240.0,
                        help="longest wait for the presence events of connecting streams to die down, in seconds")
    common.add_argument("--profile", help="write a py-spy profile of the server for the measured phase "
                        "(.txt collapsed stacks, .svg flame graph, .json speedscope)")
    common.add_argument("--profile-wall", action="store_true", help="profile every thread, waiting ones too")

    main = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    modes = main.add_subparsers(dest="mode", required=True)

    latency = modes.add_parser("latency", parents=[common], help="delivery latency of P pairs at a rate")
    latency.add_argument("--people", type=positive(int, 20_000), default=1000, help="connected people (2 per pair)")
    latency.add_argument("--rate", type=positive(float, 20_000), default=200.0, help="offered messages per second")
    latency.add_argument("--duration", type=positive(float, MAX_DURATION), default=30.0)
    latency.add_argument("--warmup", type=float, default=3.0, help="seconds at the rate before measuring")
    latency.add_argument("--workers", type=positive(int, 16), nargs=1, default=[1])
    latency.add_argument("--typing", action="store_true", help="everyone also types: a typing POST every 4.5 s "
                         "per person, from before the warm-up to the end")
    latency.add_argument("--reads", action="store_true", help="also mark every arriving message read, as a "
                         "visible tab does (POST /chat/c/{cid}/read)")

    capacity = modes.add_parser("capacity", parents=[common], help="the best rate with p99 under a limit")
    capacity.add_argument("--pairs", type=positive(int, 10_000), default=100)
    capacity.add_argument("--workers", type=positive(int, 16), nargs="+", default=[1, 2])
    capacity.add_argument("--start-rate", type=positive(float, 20_000), default=40.0)
    capacity.add_argument("--factor", type=float, default=1.5, help="rate multiplier between steps")
    capacity.add_argument("--step-seconds", type=positive(float, 120), default=6.0)
    capacity.add_argument("--refine", type=int, default=2, help="bisection steps after the first failure")
    capacity.add_argument("--budget", type=positive(float, MAX_DURATION), default=70.0,
                          help="seconds of stepping per worker count")
    capacity.add_argument("--p99-limit", type=positive(float, 10_000), default=100.0, help="ms")

    idle = modes.add_parser("idle", parents=[common], help="memory per open stream, one active pair meanwhile")
    idle.add_argument("--streams", type=positive(int, MAX_STREAMS), default=10_000)
    idle.add_argument("--idle-people", type=positive(int, MAX_STREAMS), default=None,
                      help="distinct people behind the idle streams; default streams/20, as the server keeps at "
                      "most 20 streams per person (KEFU_STREAMS_PER_PERSON) and each person's first stream "
                      "announces them to every open stream")
    idle.add_argument("--rate", type=positive(float, 20_000), default=4.0,
                      help="the active pair's messages/s (the server allows 3 per person per second)")
    idle.add_argument("--duration", type=positive(float, MAX_DURATION), default=20.0)
    idle.add_argument("--workers", type=positive(int, 16), nargs=1, default=[1])
    return main


def commit() -> str:
    """The code measured: HEAD, and `+changes` when app/ differs from it (the working tree is measured)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip()
        changed = subprocess.run(["git", "status", "--porcelain", "--", "app"], cwd=ROOT,
                                 capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+changes" if changed else "")


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    runner = {"latency": run_latency, "capacity": run_capacity, "idle": run_idle}[args.mode]
    try:
        return await asyncio.wait_for(runner(args), args.deadline)
    except TimeoutError:
        log(f"deadline of {args.deadline:.0f} s reached: stopping")
        raise


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.url:
        require_loopback(urlsplit(args.url).hostname or "")
        if args.mode == "capacity" and len(args.workers) > 1:
            raise SystemExit("with --url, give the running server's --workers (one value)")
    started = time.time()
    watchdog(args.mode, args.deadline + 90)
    signal.signal(signal.SIGTERM, lambda *_: (kill_children(), os._exit(143)))
    try:
        figures = asyncio.run(main_async(args))
        status = 0
    except TimeoutError:
        figures = {"mode": args.mode, "error": f"stopped at the {args.deadline:.0f} s deadline"}
        status = 2
    figures["wall_s"] = round(time.time() - started, 1)
    figures["commit"] = commit()
    figures["cpus"] = os.cpu_count()
    print(json.dumps(figures, ensure_ascii=False, separators=(",", ":")), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
