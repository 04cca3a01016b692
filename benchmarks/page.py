"""The chat page of a busy person: 1,000 conversations, one of them 100,000 messages long, on MariaDB.

    python benchmarks/page.py [--requests 20] [--rebuild]

Builds the data once in the MariaDB database kefu_bench_page (bulk INSERTs, a few seconds), then requests the
pages in-process with litestar.testing.TestClient over app.main.create_app: the list page, the big conversation
(as a full page and as the htmx fragment), an older page of it, and every page of the conversation list. It
counts the SQL statements of each request with a `before_cursor_execute` listener on the app's engine, and
prints one JSON line of figures (medians over --requests requests) on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import re
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pymysql
from load import commit  # the sibling script (run as `python benchmarks/page.py`, its folder is on sys.path)
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_DATABASE_URL = "mysql+pymysql://root@127.0.0.1:3306/kefu_bench_page?charset=utf8mb4"
SECRET_KEY = "kefu-benchmark-secret-key-not-for-production-0123456789"
PERSON = "pgb1"  # the busy buyer
SMALL_PERSON = "pgb2"  # a buyer with a single conversation (with pgm2), for the N+1 comparison
BATCH = 5000
CONVERSATION_RE = re.compile(r'data-testid="conversation"')
MESSAGE_RE = re.compile(r'data-testid="message"')
CURSOR_RE = re.compile(r'/chat/list\?cursor=([0-9_]+)')
BODIES = (
    "您好，请问这款药品现在有货吗？",
    "有的，今天下单明天发货。",
    "可以开增值税专用发票吗？需要写上公司抬头和税号。",
    "可以，下单时请备注开票信息，我们会随货寄出。",
    "好的，另外想问一下批发价，一次采购五百盒能便宜多少？",
    "五百盒以上九折，一千盒以上八五折，运费我们包。",
)


def log(text: str) -> None:
    print(f"[page] {text}", file=sys.stderr, flush=True)


# --- the data ---


@dataclass
class Shape:
    conversations: int
    big_messages: int
    small_messages: int
    big_unread: int

    @property
    def total_messages(self) -> int:
        return self.big_messages + self.conversations * self.small_messages  # the small person's one too


def connect(url: str, database: str | None) -> pymysql.Connection:  # type: ignore[type-arg]
    parsed = make_url(url)
    return pymysql.connect(host=parsed.host or "127.0.0.1", port=parsed.port or 3306,
                           user=parsed.username or "root", password=parsed.password or "",
                           database=database, charset="utf8mb4", autocommit=False)


def built(url: str, shape: Shape) -> bool:
    database = make_url(url).database
    with contextlib.closing(connect(url, None)) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = %s "
                       "AND table_name = 'messages'", (database,))
        if cursor.fetchone()[0] == 0:  # type: ignore[index]
            return False
        cursor.execute(f"SELECT COUNT(*), (SELECT COUNT(*) FROM `{database}`.messages) "
                       f"FROM `{database}`.conversation_members WHERE user_id = %s", (PERSON,))
        members, messages = cursor.fetchone()  # type: ignore[misc]
    return members == shape.conversations and messages == shape.total_messages


def build(url: str, shape: Shape) -> float:
    """A fresh database: migrate, then bulk-insert people, conversations, members and messages."""
    from app.db.migrate import upgrade

    database = make_url(url).database
    if database in (None, "test"):
        raise SystemExit("pick a database of its own (the test suite uses `test`)")
    started = time.monotonic()
    with contextlib.closing(connect(url, None)) as conn, conn.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS `{database}`")
        cursor.execute(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    upgrade(url)
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    big_start = now - timedelta(seconds=shape.big_messages + 60)
    small_start = big_start - timedelta(days=30)
    peers = [f"pgm{n}" for n in range(1, shape.conversations + 1)]
    with contextlib.closing(connect(url, database)) as conn, conn.cursor() as cursor:
        cursor.execute("SET unique_checks = 0, foreign_key_checks = 0")
        cursor.executemany(
            "INSERT INTO users (id, name, role, created_at) VALUES (%s, %s, %s, %s)",
            [(PERSON, "页面压测买家", "buyer", now), (SMALL_PERSON, "页面压测买家2", "buyer", now)]
            + [(p, f"页面压测商家{p[3:]}", "merchant", now) for p in peers],
        )
        small = len(peers) + 1  # the one conversation of SMALL_PERSON, with pgm2
        # Conversation n is with pgm{n}; conversation 1 is the big one. user_a < user_b ("pgb1" < "pgm…").
        cursor.executemany(
            "INSERT INTO conversations (id, user_a, user_b, created_at, last_activity_at, message_count) "
            "VALUES (%s, %s, %s, %s, %s, 0)",
            [(n, PERSON, p, small_start, small_start) for n, p in enumerate(peers, start=1)]
            + [(small, SMALL_PERSON, peers[1], small_start, small_start)],
        )
        cursor.executemany(
            "INSERT INTO conversation_members (conversation_id, user_id, peer_id, last_read_message_id, "
            "last_activity_at) VALUES (%s, %s, %s, 0, %s)",
            [row for n, p in enumerate(peers, start=1)
             for row in ((n, PERSON, p, small_start), (n, p, PERSON, small_start))]
            + [(small, SMALL_PERSON, peers[1], small_start), (small, peers[1], SMALL_PERSON, small_start)],
        )
        log(f"{len(peers) + 1} people, {len(peers)} conversations; inserting {shape.total_messages} messages")
        rows: list[tuple[int, str, str, datetime]] = []

        def flush() -> None:
            cursor.executemany("INSERT INTO messages (conversation_id, sender_id, kind, body, created_at) "
                               "VALUES (%s, %s, 'text', %s, %s)", rows)
            rows.clear()

        # The small conversations first (older), a few messages each, minutes apart.
        smalls = [(n, PERSON, p) for n, p in enumerate(peers[1:], start=2)] + [(small, SMALL_PERSON, peers[1])]
        for n, me, peer in smalls:
            for k in range(shape.small_messages):
                at = small_start + timedelta(minutes=n * 10 + k)
                rows.append((n, me if k % 2 else peer, BODIES[(n + k) % len(BODIES)], at))
            if len(rows) >= BATCH:
                flush()
        for k in range(shape.big_messages):
            rows.append((1, PERSON if k % 2 else peers[0], f"{BODIES[k % len(BODIES)]}（{k}）",
                         big_start + timedelta(seconds=k)))
            if len(rows) >= BATCH:
                flush()
        if rows:
            flush()
        # Denormalised fields, as the app maintains them: last message, count, activity times.
        cursor.execute(
            "UPDATE conversations c JOIN (SELECT conversation_id, MAX(id) AS last_id, COUNT(*) AS n, "
            "MAX(created_at) AS at FROM messages GROUP BY conversation_id) m ON m.conversation_id = c.id "
            "SET c.last_message_id = m.last_id, c.message_count = m.n, c.last_activity_at = m.at"
        )
        cursor.execute(
            "UPDATE conversation_members cm JOIN conversations c ON c.id = cm.conversation_id "
            "SET cm.last_activity_at = c.last_activity_at, cm.last_read_message_id = c.last_message_id"
        )
        # Unread for the busy person: the newest messages of the big conversation, and one in every
        # third small conversation.
        cursor.execute(
            "UPDATE conversation_members cm JOIN conversations c ON c.id = cm.conversation_id "
            "SET cm.last_read_message_id = c.last_message_id - IF(c.id = 1, %s, 1) "
            "WHERE cm.user_id = %s AND (c.id = 1 OR c.id %% 3 = 0)",
            (shape.big_unread * 2, PERSON),  # every other message in the big one is from the peer
        )
        cursor.execute("SET unique_checks = 1, foreign_key_checks = 1")
        conn.commit()
        cursor.execute("ANALYZE TABLE messages, conversations, conversation_members")
        cursor.fetchall()
    return time.monotonic() - started


# --- counting statements ---


@dataclass
class Counter:
    statements: list[tuple[str, float]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _starts: dict[int, float] = field(default_factory=dict)

    def install(self, engine: Engine) -> None:
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        with self._lock:
            self._starts[id(cursor)] = time.perf_counter()

    def _after(self, conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        with self._lock:
            started = self._starts.pop(id(cursor), time.perf_counter())
            self.statements.append((" ".join(statement.split()), time.perf_counter() - started))

    @contextlib.contextmanager
    def measure(self) -> Iterator[list[tuple[str, float]]]:
        with self._lock:
            self.statements = []
        taken: list[tuple[str, float]] = []
        yield taken
        with self._lock:
            taken.extend(self.statements)


@dataclass
class Measured:
    times: list[float] = field(default_factory=list)
    queries: list[int] = field(default_factory=list)
    db_times: list[float] = field(default_factory=list)
    slowest: dict[str, list[float]] = field(default_factory=dict)
    size: int = 0
    conversations: int = 0
    messages: int = 0
    status: int = 0

    def figures(self) -> dict[str, Any]:
        per_request = max(1, len(self.times))
        ranked = sorted(self.slowest.items(), key=lambda kv: sum(kv[1]), reverse=True)[:3]
        return {
            "status": self.status,
            "median_ms": round(statistics.median(self.times) * 1000, 2),
            "min_ms": round(min(self.times) * 1000, 2),
            "max_ms": round(max(self.times) * 1000, 2),
            "requests": len(self.times),
            "queries": statistics.median(self.queries),
            "queries_min_max": [min(self.queries), max(self.queries)],
            "sql_median_ms": round(statistics.median(self.db_times) * 1000, 2),
            "top_statements": [
                {"sql": sql[:160], "per_request": round(len(took) / per_request, 1),
                 "median_ms": round(statistics.median(took) * 1000, 2)}
                for sql, took in ranked
            ],
            "bytes": self.size,
            "conversations_in_page": self.conversations,
            "messages_in_page": self.messages,
        }


def measure(client: Any, counter: Counter, path: str, requests: int, headers: dict[str, str] | None = None,
            before_each: Callable[[], None] | None = None) -> Measured:
    result = Measured()
    client.get(path, headers=headers)  # warm: templates compiled, statements cached
    for _ in range(requests):
        if before_each is not None:
            before_each()
        with counter.measure() as statements:
            started = time.perf_counter()
            response = client.get(path, headers=headers)
            elapsed = time.perf_counter() - started
        result.times.append(elapsed)
        result.queries.append(len(statements))
        result.db_times.append(sum(t for _, t in statements))
        for sql, took in statements:
            result.slowest.setdefault(sql, []).append(took)
        result.status = response.status_code
        result.size = len(response.content)
        result.conversations = len(CONVERSATION_RE.findall(response.text))
        result.messages = len(MESSAGE_RE.findall(response.text))
    return result


def main(argv: list[str] | None = None) -> int:
    options = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    options.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    options.add_argument("--requests", type=int, default=20, help="timed requests per page (median reported)")
    options.add_argument("--conversations", type=int, default=1000)
    options.add_argument("--messages", type=int, default=100_000, help="messages in the big conversation")
    options.add_argument("--small-messages", type=int, default=3, help="messages in every other conversation")
    options.add_argument("--unread", type=int, default=20, help="unread messages in the big conversation")
    options.add_argument("--rebuild", action="store_true", help="drop and rebuild the data even if present")
    args = options.parse_args(argv)
    if not 1 <= args.requests <= 1000 or not 2 <= args.conversations <= 100_000 or not 1 <= args.messages <= 10**7:
        raise SystemExit("out of bounds: --requests 1..1000, --conversations 2..100000, --messages 1..10^7")

    from litestar.testing import TestClient

    from app.config import Settings
    from app.main import create_app

    shape = Shape(args.conversations, args.messages, args.small_messages, args.unread)
    build_s = None
    if args.rebuild or not built(args.database_url, shape):
        build_s = round(build(args.database_url, shape), 1)
        log(f"built in {build_s} s")
    else:
        from app.db.migrate import upgrade

        upgrade(args.database_url)  # the data stays; newer revisions of the schema apply

    var_dir = Path(tempfile.mkdtemp(prefix="kefu-page-"))
    settings = Settings(database_url=args.database_url, secret_key=SECRET_KEY, demo=True, var_dir=var_dir,
                        upload_dir=var_dir / "uploads")
    app = create_app(settings)
    counter = Counter()
    counter.install(app.state.engine)
    database = make_url(args.database_url).database
    big = 1

    def unread_again() -> None:
        """Opening a conversation marks it read: put the unread back so every request does the same work."""
        with contextlib.closing(connect(args.database_url, database)) as conn, conn.cursor() as cursor:
            cursor.execute("UPDATE conversation_members cm JOIN conversations c ON c.id = cm.conversation_id "
                           "SET cm.last_read_message_id = c.last_message_id - %s "
                           "WHERE cm.conversation_id = %s AND cm.user_id = %s", (args.unread * 2, big, PERSON))
            conn.commit()

    figures: dict[str, Any] = {"database": database, "conversations": args.conversations,
                               "big_conversation_messages": args.messages, "build_s": build_s}
    with TestClient(app=app, base_url="http://127.0.0.1") as client:
        logging.getLogger("httpx").setLevel(logging.WARNING)
        signed = client.get("/chat", params={"user_id": PERSON}, follow_redirects=True)
        assert signed.status_code == 200, signed.status_code
        n = args.requests
        log("GET /chat")
        figures["chat"] = measure(client, counter, "/chat", n).figures()
        log(f"GET /chat/c/{big} (full page, with unread, marks read)")
        figures["conversation"] = measure(client, counter, f"/chat/c/{big}", n, before_each=unread_again).figures()
        log(f"GET /chat/c/{big} (already read)")
        figures["conversation_read"] = measure(client, counter, f"/chat/c/{big}", n).figures()
        log(f"GET /chat/c/{big} (htmx fragment)")
        figures["conversation_fragment"] = measure(client, counter, f"/chat/c/{big}", n,
                                                   headers={"HX-Request": "true"}).figures()
        with contextlib.closing(connect(args.database_url, database)) as conn, conn.cursor() as cursor:
            cursor.execute("SELECT MIN(id), MAX(id) FROM messages WHERE conversation_id = %s", (big,))
            first_id, last_id = cursor.fetchone()  # type: ignore[misc]
        middle = (first_id + last_id) // 2
        log("GET /chat/c/1/messages?before=… (the middle, and near the start)")
        figures["older_middle"] = measure(client, counter, f"/chat/c/{big}/messages?before={middle}", n).figures()
        figures["older_start"] = measure(client, counter, f"/chat/c/{big}/messages?before={first_id + 40}",
                                         n).figures()

        log("GET /chat/list?cursor=… (every page of the list)")
        page = client.get("/chat")
        cursors: list[str] = []
        while (match := CURSOR_RE.search(page.text)) is not None and len(cursors) < 10_000:
            cursors.append(match.group(1))
            page = client.get(f"/chat/list?cursor={match.group(1)}")
        listed = Measured()
        seen = len(CONVERSATION_RE.findall(client.get("/chat").text))
        for _ in range(max(1, n // max(1, len(cursors)))):
            for cursor_value in cursors:
                with counter.measure() as statements:
                    started = time.perf_counter()
                    response = client.get(f"/chat/list?cursor={cursor_value}")
                    listed.times.append(time.perf_counter() - started)
                listed.queries.append(len(statements))
                listed.db_times.append(sum(t for _, t in statements))
                for sql, took in statements:
                    listed.slowest.setdefault(sql, []).append(took)
                listed.status = response.status_code
                listed.size = len(response.content)
                listed.conversations = max(listed.conversations, len(CONVERSATION_RE.findall(response.text)))
        for cursor_value in cursors:
            seen += len(CONVERSATION_RE.findall(client.get(f"/chat/list?cursor={cursor_value}").text))
        figures["list_pages"] = listed.figures() | {"pages": len(cursors) + 1, "conversations_seen": seen}
        if cursors:
            figures["list_last_page"] = measure(client, counter, f"/chat/list?cursor={cursors[-1]}", n).figures()

        # No N+1: a person with one conversation needs as many statements as one with a thousand.
        small = client.get("/chat", params={"user_id": SMALL_PERSON}, follow_redirects=True)
        assert small.status_code == 200
        figures["chat_one_conversation"] = measure(client, counter, "/chat", n).figures()
    figures["queries_independent_of_size"] = figures["chat"]["queries"] == figures["chat_one_conversation"]["queries"]
    figures["small_person"] = SMALL_PERSON
    figures["load_average_1m"] = float(Path("/proc/loadavg").read_text().split()[0])
    figures["commit"] = commit()
    print(json.dumps(figures, ensure_ascii=False, separators=(",", ":")), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
