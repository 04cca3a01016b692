"""What deploy/check.py tries once the guide has been followed: health, what nginx passes on, people chatting in
Chromium through nginx, 1,000 streams through nginx, and the guide's rolling restart while a person is sending."""

from __future__ import annotations

import asyncio
import re
import ssl
import subprocess
import time
from collections.abc import Callable
from typing import Any

import httpx
import pymysql
from playwright.sync_api import Page, sync_playwright

from app.chat.links import LinkIdentity, make_token
from deploy.check import LOGS, MACHINES, SITE, Block, Report, kefu_command, wait_until

HEALTHY = {"status": "ok", "database": "ok", "broker": "redis"}
STREAM_PEOPLE, STREAMS_EACH = 50, 20  # 1,000 streams; KEFU_STREAMS_PER_PERSON is 20
SEND_EVERY = 0.4  # seconds: 25 messages in 10 s, under the 30 a person may send in 10 s


def try_deployment(report: Report, values: dict[str, str], rolling: Block | None,
                   apply: Callable[[Block], tuple[bool, str]]) -> None:
    """Every try, each a line of the report."""
    for name, url in [("machine A", f"http://{MACHINES['A']}:8000"), ("machine B", f"http://{MACHINES['B']}:8000"),
                      ("through nginx", SITE)]:
        answer = httpx.get(f"{url}/healthz", verify=False, timeout=5)
        report.check(f"{name}: /healthz", answer.status_code == 200 and answer.json() == HEALTHY, answer.text)
    behind_nginx(report)
    api_key = kefu_command("apikey", "create", f"check-{int(time.time())}")
    with httpx.Client(base_url=SITE, verify=False, timeout=10, headers={"Authorization": f"Bearer {api_key}"}) as api:
        for user_id, name, role in [("b1", "保安堂药房", "buyer"), ("m1", "保和堂医药集团", "merchant")]:
            put = api.put(f"/api/v1/users/{user_id}", json={"name": name, "role": role})
            report.check(f"API through nginx: PUT /api/v1/users/{user_id}", put.status_code in (200, 201), put.text)
        for n in range(STREAM_PEOPLE):
            api.put(f"/api/v1/users/s{n:03d}", json={"name": f"顾客{n:03d}", "role": "buyer"}).raise_for_status()
    links = {who: kefu_command("link", who, "--target", peer) for who, peer in (("b1", "m1"), ("m1", "b1"))}
    report.check("kefu link prints the public address", all(u.startswith(f"{SITE}/chat?token=") for u in
                                                             links.values()), str(links))
    streams(report, values["secret key"])
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--no-sandbox", "--host-resolver-rules=MAP chat.example.com 127.0.0.1"])
        b1, m1 = (open_page(chromium, links[who]) for who in ("b1", "m1"))
        protocol = b1.evaluate('performance.getEntriesByType("navigation")[0].nextHopProtocol')
        report.check("Chromium reaches Kefu through nginx over HTTP/2", protocol == "h2", protocol)
        m1.fill("textarea[name=body]", "你好，这条经过 nginx")
        m1.keyboard.press("Enter")
        arrived = wait_until(lambda: b1.locator('[data-testid="message"]', has_text="经过 nginx").count() == 1, 10)
        report.check("a message from m1 arrives live on b1's page", arrived)
        if rolling is not None:
            rolling_restart(report, rolling, apply, b1, m1, values)
        chromium.close()
    logs = "".join(path.read_text(errors="replace") for path in sorted(LOGS.glob("*.log")))
    alarms = [line for line in logs.splitlines() if re.search(r"Traceback|CancelledError| ERROR |KILLED", line)]
    report.check("no traceback, error or forced kill in the machines' logs", not alarms, "\n".join(alarms[:5]))


def behind_nginx(report: Report) -> None:
    """Cookies marked Secure, HSTS on, and the client's own address (not nginx's) where Kefu records one."""
    transport = httpx.HTTPTransport(verify=False, local_address="127.0.0.99")  # a client nginx sees as 127.0.0.99
    with httpx.Client(base_url=SITE, transport=transport, timeout=10) as client:
        page = client.get("/login")
        cookies = page.headers.get_list("set-cookie")
        report.check("cookies are Secure behind nginx", bool(cookies) and all("secure" in c.lower() for c in cookies),
                     "; ".join(cookies))
        report.check("HSTS behind nginx", "strict-transport-security" in page.headers)
        token = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
        client.post("/login", data={"username": "ops", "password": "not the password",
                                    "_csrf_token": token.group(1) if token else ""})
    row = query("SELECT action, client FROM audit_log ORDER BY id DESC LIMIT 1")
    report.check("the audit log has the client's address, not nginx's", bool(row) and row[0][1] == "127.0.0.99",
                 str(row))


def query(sql: str, *args: Any) -> tuple[tuple[Any, ...], ...]:
    connection = pymysql.connect(host="127.0.0.1", user="root", database="kefu", charset="utf8mb4")
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, args)
            return cursor.fetchall()
    finally:
        connection.close()


def streams(report: Report, secret: str) -> None:
    """STREAM_PEOPLE people, each with STREAMS_EACH open event streams, all at once through nginx."""
    cookies = []
    with httpx.Client(base_url=SITE, verify=False, timeout=10) as client:
        for n in range(STREAM_PEOPLE):
            client.cookies.clear()
            token = make_token(secret, LinkIdentity(f"s{n:03d}", f"顾客{n:03d}", "buyer"), 300)
            client.get("/chat", params={"token": token}, follow_redirects=True).raise_for_status()
            cookies.append((f"s{n:03d}", "; ".join(f"{k}={v}" for k, v in client.cookies.items())))
    opened = asyncio.run(open_streams(cookies))
    report.check(f"{STREAM_PEOPLE * STREAMS_EACH} event streams open at once through nginx",
                 opened == STREAM_PEOPLE * STREAMS_EACH, f"{opened} opened")


async def open_streams(cookies: list[tuple[str, str]]) -> int:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    writers: list[asyncio.StreamWriter] = []

    async def one(user_id: str, cookie: str) -> bool:
        reader, writer = await asyncio.open_connection("127.0.0.1", 443, ssl=context,
                                                       server_hostname="chat.example.com")
        writers.append(writer)
        writer.write(f"GET /events?as={user_id} HTTP/1.1\r\nHost: chat.example.com\r\nAccept: text/event-stream\r\n"
                     f"Cookie: {cookie}\r\n\r\n".encode())
        seen = b""
        while b": connected" not in seen:
            chunk = await reader.read(4096)
            if not chunk:
                return False
            seen += chunk
        return True

    tasks = [one(user_id, cookie) for user_id, cookie in cookies for _ in range(STREAMS_EACH)]
    try:
        results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 60)
    except TimeoutError:
        results = []
    for writer in writers:
        writer.close()
    return sum(1 for r in results if r is True)


def open_page(chromium: Any, link: str) -> Page:
    context = chromium.new_context(ignore_https_errors=True, locale="zh-CN", viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.js_errors = []  # type: ignore[attr-defined]
    page.on("pageerror", lambda error: page.js_errors.append(str(error)))  # type: ignore[attr-defined]
    page.goto(link)
    page.wait_for_selector('[data-testid="connection"][data-state="open"]', state="attached")
    return page


SENDER = """(every) => {
  window.__sent = 0; window.__stop = false; window.__retried = new Set();
  new MutationObserver(() => {
    for (const row of document.querySelectorAll('[data-send-state="retrying"]')) window.__retried.add(row.textContent);
  }).observe(document.body, { subtree: true, childList: true, attributes: true });
  (async () => {
    while (!window.__stop) {
      window.__sent += 1;
      document.querySelector("textarea[name=body]").value = "滚动重启 " + String(window.__sent).padStart(3, "0");
      document.querySelector('[data-testid="composer"]').requestSubmit();
      await new Promise((done) => setTimeout(done, every));
    }
  })();
}"""


def rolling_restart(report: Report, block: Block, apply: Callable[[Block], tuple[bool, str]], b1: Page, m1: Page,
                    values: dict[str, str]) -> None:
    """The guide's rolling restart while b1 sends a message every SEND_EVERY seconds: every one stored once and
    shown once on both sides, no error on the page."""
    b1.evaluate(SENDER, int(SEND_EVERY * 1000))
    time.sleep(2)
    started = time.monotonic()
    done, output = apply(block)
    took = time.monotonic() - started
    report.check("guide: restart (machine A, then B, each waiting for health)", done, output if not done else
                 f"{took:.1f} s")
    time.sleep(2)
    sent = b1.evaluate("() => { window.__stop = true; return window.__sent; }")
    bodies = [f"滚动重启 {n:03d}" for n in range(1, sent + 1)]
    settled = wait_until(lambda: b1.locator('[data-testid="pending-message"]').count() == 0, 90)
    report.check(f"every one of the {sent} messages sent over the restart was answered", settled)
    stored = dict(query("SELECT body, COUNT(*) FROM messages WHERE body LIKE %s GROUP BY body", "滚动重启 %"))
    report.check("each stored exactly once", stored == dict.fromkeys(bodies, 1),
                 f"{len(stored)} of {sent} stored; repeated: {[b for b, c in stored.items() if c > 1]}")
    for name, page in (("b1", b1), ("m1", m1)):
        shown = lambda page=page: page.locator('[data-testid="message"]', has_text="滚动重启").all_inner_texts()  # noqa: E731
        complete = wait_until(lambda shown=shown: len(shown()) == sent, 30)
        texts = [re.search(r"滚动重启 \d+", text).group(0) for text in shown()]  # type: ignore[union-attr]
        report.check(f"{name}'s page shows each once, in order", complete and texts == bodies,
                     f"{len(texts)} shown of {sent}")
    text = b1.locator("body").inner_text()
    error = b1.locator(".composer-error").inner_text()
    report.check("the page showed no proxy page and no error", "Bad Gateway" not in text and "nginx/" not in text
                 and not error and not b1.js_errors and not m1.js_errors,  # type: ignore[attr-defined]
                 f"composer: {error!r}; script errors: {b1.js_errors + m1.js_errors}")  # type: ignore[attr-defined]
    retried = b1.evaluate("window.__retried.size")
    print(f"     ({retried} of the {sent} messages met a stopping machine and showed 重试中… before they were stored)")
    for machine in MACHINES.values():
        answer = subprocess.run(["curl", "-fsS", f"http://{machine}:8000/healthz"], capture_output=True, text=True,
                                check=False)
        report.check(f"{machine} healthy after the restart", answer.returncode == 0, answer.stdout + answer.stderr)
