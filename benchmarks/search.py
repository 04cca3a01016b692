"""Message search over 1,000,000 messages: p50/p95 of a person's search and of the admins' monitor text match.

    python benchmarks/search.py sqlite [--messages 1000000] [--runs 30] [--path var/bench_search.db]
    python benchmarks/search.py mysql  [--messages 1000000] [--runs 30] [--url mysql+pymysql://root@127.0.0.1:3306/bench_search]

The first run fills the database (bulk inserts: realistic Chinese shop talk with order numbers, 100,000
conversations, one merchant `bm0` with 5,000 of them and a tenth of all messages, a buyer `bb1` with 3); later runs
reuse it (`--refill` starts again). Each search is run `--runs` times through the app's own functions
(app.chat.search, app.chat.monitor) on one session, as a request would. Prints one JSON line; progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.chat import search
from app.chat.monitor import MonitorFilter, list_all_conversations
from app.db.engine import make_engine, make_sessionmaker
from app.db.migrate import upgrade

CONVERSATIONS = 100_000
HEAVY_CONVERSATIONS = 5_000
BUYERS, MERCHANTS = 20_000, 2_000
RARE = "退款凭证"  # in about 1 message in 20,000
ORDER_NUMBER = "DD20251128001"  # in a handful of messages, one of them bm0's

GREETINGS = ["你好", "您好", "在吗", "亲，在的", "老板好", "早上好", "晚上好", "谢谢", "好的", "收到", "嗯嗯", "麻烦了"]
PRODUCTS = ["布洛芬缓释胶囊", "阿莫西林", "维生素C泡腾片", "感冒灵颗粒", "板蓝根", "医用口罩", "酒精棉片", "血压计",
            "体温计", "创可贴", "止咳糖浆", "钙片", "鱼油", "蛋白粉", "iPhone 数据线", "蓝牙耳机"]
QUESTIONS = ["什么时候发货呀", "能便宜一点吗", "有没有现货", "包邮吗", "可以开发票吗", "保质期到什么时候", "一盒有几片",
             "怎么吃比较好", "孕妇可以用吗", "物流到哪了", "可以改地址吗", "能不能加急", "有赠品吗"]
ANSWERS = ["今天下午就发货", "已经给您安排发货了", "现货充足，放心拍", "满99包邮哦", "可以开电子发票", "保质期到2027年",
           "一盒24片", "饭后服用，一天两次", "请遵医嘱", "快递已经到转运中心了", "地址已经帮您改好了", "好的，马上处理"]


def order_number(rng: random.Random) -> str:
    return f"DD2025{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}{rng.randint(0, 99999):05d}"


def body_of(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.15:
        return rng.choice(GREETINGS)
    if roll < 0.45:
        return f"{rng.choice(PRODUCTS)}{rng.choice(QUESTIONS)}？"
    if roll < 0.75:
        return f"{rng.choice(ANSWERS)}，{rng.choice(GREETINGS)}"
    if roll < 0.95:
        return f"订单号 {order_number(rng)}，{rng.choice(QUESTIONS)}"
    return f"我的{rng.choice(PRODUCTS)}收到了，{rng.choice(ANSWERS)}"


def log(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


def fill(url: str, messages: int, seed: int = 7) -> None:
    """Users, conversations, members and `messages` messages (ids in time order), then the search index, in bulk."""
    rng = random.Random(seed)
    engine = make_engine(url)
    mysql = engine.dialect.name == "mysql"
    started = time.monotonic()
    now = datetime(2025, 11, 28, tzinfo=UTC).replace(tzinfo=None)
    with engine.begin() as c:
        if mysql:
            c.execute(text("SET foreign_key_checks=0, unique_checks=0"))
        users = [{"id": f"bb{i}", "name": f"买家{i}", "role": "buyer"} for i in range(BUYERS)]
        users += [{"id": f"bm{i}", "name": f"商家{i}", "role": "merchant"} for i in range(MERCHANTS)]
        c.execute(text("INSERT INTO users (id, name, role, created_at) VALUES (:id, :name, :role, '2025-01-01')"),
                  users)
        pairs: list[tuple[str, str]] = [(f"bb{i}", "bm0") for i in range(HEAVY_CONVERSATIONS)]
        pairs += [("bb1", "bm1"), ("bb1", "bm2")]
        seen = set(pairs)
        while len(pairs) < CONVERSATIONS:
            pair = (f"bb{rng.randrange(BUYERS)}", f"bm{rng.randrange(1, MERCHANTS)}")
            if pair not in seen:
                seen.add(pair)
                pairs.append(pair)
        # bm0's conversations hold a tenth of the messages; the rest share the others
        heavy_share = messages // 10
        counts = [heavy_share // HEAVY_CONVERSATIONS] * HEAVY_CONVERSATIONS
        rest = (messages - sum(counts)) // (CONVERSATIONS - HEAVY_CONVERSATIONS)
        counts += [rest] * (CONVERSATIONS - HEAVY_CONVERSATIONS)
        counts[-1] += messages - sum(counts)
        owners = [cid for cid, n in enumerate(counts, start=1) for _ in range(n)]
        rng.shuffle(owners)  # conversations interleave in time
        last: dict[int, tuple[int, datetime]] = {}
        rows = []
        for mid, cid in enumerate(owners, start=1):
            at = now - timedelta(seconds=(messages - mid) * 3)
            buyer, merchant = pairs[cid - 1]
            body = body_of(rng)
            if mid % 20_000 == 0:
                body = f"请上传{RARE}，{rng.choice(GREETINGS)}"
            rows.append({"id": mid, "cid": cid, "sender": buyer if rng.random() < 0.5 else merchant, "body": body,
                         "at": at})
            last[cid] = (mid, at)
        for mid in (messages // 3, messages // 2, messages - 5):  # the order number, also in bm0's conversation 1
            rows[mid - 1]["body"] = f"订单 {ORDER_NUMBER} 已经发货了"
            rows[mid - 1]["cid"] = 1 if mid == messages - 5 else rows[mid - 1]["cid"]
        log(f"generated {messages} messages in {time.monotonic() - started:.0f} s")
        conv_rows = [{"id": cid, "a": min(p), "b": max(p), "last": last.get(cid, (None, now))[0],
                      "at": last.get(cid, (None, now))[1], "n": counts[cid - 1]} for cid, p in enumerate(pairs, 1)]
        c.execute(text("INSERT INTO conversations (id, user_a, user_b, created_at, last_activity_at, last_message_id, "
                       "message_count) VALUES (:id, :a, :b, '2025-01-01', :at, :last, :n)"), conv_rows)
        member_rows = [{"cid": r["id"], "u": u, "p": p, "at": r["at"]}
                       for r in conv_rows for u, p in ((r["a"], r["b"]), (r["b"], r["a"]))]
        c.execute(text("INSERT INTO conversation_members (conversation_id, user_id, peer_id, last_read_message_id, "
                       "last_activity_at) VALUES (:cid, :u, :p, 0, :at)"), member_rows)
        for start in range(0, len(rows), 20_000):
            c.execute(text("INSERT INTO messages (id, conversation_id, sender_id, kind, body, created_at) "
                           "VALUES (:id, :cid, :sender, 'text', :body, :at)"), rows[start:start + 20_000])
        log(f"stored the messages after {time.monotonic() - started:.0f} s")
        if mysql:
            c.execute(text("ALTER TABLE message_grams DROP PRIMARY KEY"))
            batch = []
            for r in rows:
                batch += [{"g": g, "m": r["id"], "c": r["cid"]} for g in search.bigrams(r["body"])]
                if len(batch) >= 50_000:
                    c.execute(text("INSERT INTO message_grams (gram, message_id, conversation_id) VALUES (:g, :m, :c)"),
                              batch)
                    batch = []
            if batch:
                c.execute(text("INSERT INTO message_grams (gram, message_id, conversation_id) VALUES (:g, :m, :c)"),
                          batch)
            log(f"stored the bigrams after {time.monotonic() - started:.0f} s")
            c.execute(text("ALTER TABLE message_grams ADD PRIMARY KEY (gram, message_id)"))
            c.execute(text("ANALYZE TABLE messages, message_grams, conversations, conversation_members"))
        else:
            c.execute(text("INSERT INTO message_fts (rowid, body) SELECT id, body FROM messages"))
            c.execute(text("ANALYZE"))
    log(f"filled in {time.monotonic() - started:.0f} s")
    engine.dispose()


def timed(runs: int, work) -> dict[str, float]:  # type: ignore[no-untyped-def]
    work()  # warm
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        found = work()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    return {"p50_ms": round(statistics.median(times), 1), "p95_ms": round(p95, 1), "found": found}


QUERIES = {
    "1 char, common (好)": "好",
    "1 char, rare (鑫)": "鑫",
    "2 chars, common (发货)": "发货",
    "2 chars, none (鑫鑫)": "鑫鑫",
    "3+ chars, common (什么时候发货)": "什么时候发货",
    "3+ chars, rare (退款凭证)": RARE,
    "order number": ORDER_NUMBER,
    "Latin word (iphone)": "iphone",
    "3+ chars, none (不存在的词)": "不存在的词",
}


def measure(url: str, runs: int) -> dict[str, object]:
    engine = make_engine(url)
    results: dict[str, object] = {"database": engine.dialect.name}
    with make_sessionmaker(engine)() as session:
        total = session.scalar(text("SELECT COUNT(*) FROM messages"))
        results["messages"] = total
        for who, label in (("bm0", "person with 5,000 conversations (bm0)"), ("bb1", "person with 3 conversations")):
            section: dict[str, object] = {}
            for name, query in QUERIES.items():
                strategies = (None, "index", "scan") if who == "bm0" else (None,)
                for strategy in strategies:
                    key = name if strategy is None else f"{name} [{strategy}]"
                    section[key] = timed(runs, lambda q=query, s=strategy, w=who:
                                         len(search.search_messages(session, w, q, strategy=s)[0]))
                    log(label, key, section[key])
            results[label] = section
        monitor: dict[str, object] = {}
        for name, query in QUERIES.items():
            monitor[name] = timed(runs, lambda q=query: len(list_all_conversations(session, MonitorFilter(query=q))[0]))
            log("monitor", name, monitor[name])
        results["admin monitor (conversations holding the text)"] = monitor
    engine.dispose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("database", choices=["sqlite", "mysql"])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--path", default="var/bench_search.db")
    parser.add_argument("--url", default="mysql+pymysql://root@127.0.0.1:3306/bench_search")
    parser.add_argument("--refill", action="store_true")
    args = parser.parse_args()
    if args.database == "sqlite":
        path = Path(args.path)
        if args.refill and path.exists():
            path.unlink()
        url, fresh = f"sqlite:///{path}", not path.exists()
    else:
        url = args.url
        server = make_engine(url.rsplit("/", 1)[0] + "/")
        name = url.rsplit("/", 1)[1].split("?")[0]
        with server.begin() as c:
            if args.refill:
                c.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
            fresh = not c.execute(text("SHOW DATABASES LIKE :n"), {"n": name}).first()
            c.execute(text(f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"))
        server.dispose()
    if fresh:
        upgrade(url)
        fill(url, args.messages)
    print(json.dumps(measure(url, args.runs), ensure_ascii=False))


if __name__ == "__main__":
    main()
