"""Helpers the tests share: real servers (Kefu, a Redis of a test's own), people signing in and talking over HTTP,
browsers on the same app, and pages in headless Chromium. Event streams are read with tests/streams.py."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import redis
from litestar.testing import TestClient

ROOT = Path(__file__).resolve().parent.parent
CSRF_RE = re.compile(r'<meta name="csrf-token" content="([^"]+)"')
OPEN_CONVERSATION_RE = re.compile(r'data-open-conversation="(\d+)"')
MESSAGE_ID_RE = re.compile(r'data-message-id="(\d+)"')
TEST_SECRET = "test-secret-key-not-for-production-0123456789"


def csrf_of(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, "the page has no csrf-token meta tag"
    return match.group(1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ServerProcess:
    """`kefu serve` in a child process on a free port: the app as people run it."""

    env: dict[str, str]
    port: int
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20) -> ServerProcess:
        log = open(Path(self.env["KEFU_VAR_DIR"]) / f"server-{self.port}.log", "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(self.port)],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("server did not start")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def server_env(database_url: str, var_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEFU_")}
    env.update(
        KEFU_DATABASE_URL=database_url,
        KEFU_SECRET_KEY=TEST_SECRET,
        KEFU_DEMO="1",
        KEFU_VAR_DIR=str(var_dir),
        KEFU_UPLOAD_DIR=str(var_dir / "uploads"),
        KEFU_SSE_PING_SECONDS="1",
        KEFU_WEBHOOK_PRIVATE_TARGETS="1",  # the tests' receivers listen on 127.0.0.1
    )
    env.update(extra)
    return env


def sign_in(client: httpx.Client, user_id: str, target: str | None = None) -> str:
    """Demo sign-in as a browser does it; returns the page's CSRF token."""
    params = {"user_id": user_id} | ({"target": target} if target else {})
    page = client.get("/chat", params=params, follow_redirects=True)
    assert page.status_code == 200, page.text
    return csrf_of(page.text)


def open_conversation_id(client: httpx.Client, target: str) -> int:
    """The conversation the signed-in person has with `target` (opened, and created if missing)."""
    page = client.get("/chat", params={"target": target})
    assert page.status_code == 200, page.text
    match = OPEN_CONVERSATION_RE.search(page.text)
    assert match, "the chat page has no open conversation"
    return int(match.group(1))


def sign_in_to(client: httpx.Client, user_id: str, target: str) -> tuple[str, int]:
    """Demo sign-in as `user_id` with the conversation with `target` open: (CSRF token, conversation id)."""
    token = sign_in(client, user_id, target=target)
    return token, open_conversation_id(client, target)


def post_message(server: ServerProcess, sender: str, cid: int | str, text: str) -> int:
    """`sender` signs in in a browser of their own and sends `text` into conversation `cid`; the message's id."""
    with httpx.Client(base_url=server.url, timeout=10) as client:
        token = sign_in(client, sender)
        response = client.post(f"/chat/c/{cid}/messages", data={"body": text}, headers={"X-CSRFToken": token})
        assert response.status_code == 201, response.text
        return int(MESSAGE_ID_RE.search(response.text).group(1))  # type: ignore[union-attr]


def other_browser(client: TestClient) -> TestClient:
    """Another browser on the same app: its own cookies."""
    return TestClient(client.app, base_url="http://127.0.0.1")


@dataclass
class RedisServer:
    """`redis-server` of a test's own on a free port (pub/sub channels are shared by every database of a server, and a
    test may stop it): started again on the same port by `start`."""

    directory: Path
    port: int
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10) -> RedisServer:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed"
        self.process = subprocess.Popen([binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                         "--appendonly", "no", "--dir", str(self.directory)],
                                        stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            try:
                redis.Redis.from_url(self.url).ping()
                return self
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(5)


# --- the app's routes ---

def all_routes(app) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """Every (method, path) the app answers, from its own route table."""
    return sorted(
        (method, route.path)
        for route in app.routes
        for method in getattr(route, "methods", ())
        if method != "OPTIONS"  # Litestar's automatic CORS preflight answer: no data, no action
    )


def concrete(path: str) -> str:
    """A path of the route table with its parameters filled in."""
    return re.sub(r"\{(\w+):(str|int)\}", "1", path).replace("{file_path:path}", "css/kefu.css")


# --- browser pages ---

def open_chat(browser, server: ServerProcess, query: str, size: tuple[int, int] = (1280, 800),  # type: ignore[no-untyped-def]
              prepare=None, touch: bool = False, **context_options):
    """A new browser context with the chat open at `query`; `prepare(page)` runs before the page loads. `touch`: a
    phone or tablet (a touch screen, `pointer: coarse`, a mobile viewport); `context_options` go to Playwright's
    new_context (timezone_id, permissions…)."""
    context = browser.new_context(viewport={"width": size[0], "height": size[1]}, locale="zh-CN",
                                  has_touch=touch, is_mobile=touch, **context_options)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    if prepare is not None:
        prepare(page)
    page.goto(f"{server.url}/chat?{query}")
    page.wait_for_selector('[data-testid="connection"][data-state="open"]', state="attached")  # hidden on a phone
    page.js_errors = errors  # checked by the tests: a broken script is a broken product
    return page


def send(page, text: str) -> None:  # type: ignore[no-untyped-def]
    page.fill("textarea[name=body]", text)
    page.keyboard.press("Enter")


# Watches the page's event streams from outside the app's script: every EventSource the page opens, and the
# message events each one received. Tests count open streams and replay a delivered event with it.
STREAM_PROBE = """
(() => {
  const Native = window.EventSource;
  window.__streams = [];
  window.EventSource = class extends Native {
    constructor(...args) {
      super(...args);
      this.__messages = [];
      this.addEventListener("message", (e) => this.__messages.push({ data: e.data, lastEventId: e.lastEventId }));
      window.__streams.push(this);
    }
  };
})();
"""
OPEN_STREAMS = "() => window.__streams.filter((s) => s.readyState !== EventSource.CLOSED).length"


def hide_page(page, hidden: bool) -> None:  # type: ignore[no-untyped-def]
    """What a browser reports when the tab goes to the background (True) or comes back (False). Headless
    Chromium never hides a page by itself, so the document's visibility is overridden and the event sent."""
    page.evaluate("""(hidden) => {
      if (hidden) {
        Object.defineProperty(document, "visibilityState", { configurable: true, get: () => "hidden" });
        Object.defineProperty(document, "hidden", { configurable: true, get: () => true });
      } else {
        delete document.visibilityState;
        delete document.hidden;
      }
      document.dispatchEvent(new Event("visibilitychange"));
    }""", hidden)
