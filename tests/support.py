"""Helpers the tests share: real servers, sign-in over HTTP, and a small SSE reader."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
CSRF_RE = re.compile(r'<meta name="csrf-token" content="([^"]+)"')
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


@dataclass
class Event:
    id: str | None
    event: str
    data: str


class SSEReader:
    """Reads events from an open text/event-stream response, one at a time, as EventSource does."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines: Iterator[str] = response.iter_lines()
        self.last_id: str | None = None

    def next(self) -> Event:
        event_id, kind, data = None, "message", []
        for line in self._lines:
            if line == "":
                if data:
                    if event_id is not None:
                        self.last_id = event_id
                    return Event(event_id, kind, "\n".join(data))
                event_id, kind, data = None, "message", []
                continue
            if line.startswith(":"):
                continue
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "id":
                event_id = value
            elif field == "event":
                kind = value
            elif field == "data":
                data.append(value)
        raise EOFError("stream closed")

    def next_of(self, kind: str, limit: int = 50) -> Event:
        for _ in range(limit):
            event = self.next()
            if event.event == kind:
                return event
        raise AssertionError(f"no {kind} event among the next {limit}")

    def messages(self, count: int) -> list[Event]:
        return [self.next_of("message") for _ in range(count)]


def message_ids(events: list[Event]) -> list[int]:
    return [int(re.search(r'data-message-id="(\d+)"', e.data).group(1)) for e in events]  # type: ignore[union-attr]


def json_data(event: Event) -> dict:
    return json.loads(event.data)


# --- browser pages ---

def open_chat(browser, server: ServerProcess, query: str, size: tuple[int, int] = (1280, 800),  # type: ignore[no-untyped-def]
              prepare=None):
    """A new browser context with the chat open at `query`; `prepare(page)` runs before the page loads."""
    context = browser.new_context(viewport={"width": size[0], "height": size[1]}, locale="zh-CN")
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
