"""Sends stored webhook deliveries: signed, retried with backoff, one worker task per process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import httpx
from anyio import to_thread
from sqlalchemy.orm import Session, sessionmaker

from app.chat import webhooks

log = logging.getLogger("kefu.webhooks")


class WebhookWorker:
    def __init__(self, sessions: sessionmaker[Session], poll_seconds: float = 1.0, backoff_seconds: float = 10.0,
                 timeout: float = 10.0) -> None:
        self._sessions = sessions
        self._poll = poll_seconds
        self._backoff = backoff_seconds
        self._timeout = timeout
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                sent = await to_thread.run_sync(self.send_due)
            except Exception:  # the database may be away for a moment: try again next round
                log.exception("webhook round failed")
                sent = 0
            if not sent:
                await asyncio.sleep(self._poll)

    def send_due(self) -> int:
        """One round: claim what is due, send each, record the outcome. Returns how many were attempted."""
        with self._sessions() as session, httpx.Client(timeout=self._timeout, follow_redirects=False) as client:
            due = webhooks.claim_due(session)
            for delivery, hook in due:
                body = delivery.payload.encode()
                timestamp = str(int(time.time()))
                headers = {
                    "Content-Type": "application/json",
                    "User-Agent": "Kefu-Webhooks/1",
                    "X-Kefu-Event": delivery.event,
                    "X-Kefu-Delivery": str(delivery.id),
                    "X-Kefu-Timestamp": timestamp,
                    "X-Kefu-Signature": webhooks.sign(hook.secret, timestamp, body),
                }
                try:
                    response = client.post(hook.url, content=body, headers=headers)
                    status, error = response.status_code, "" if response.is_success else response.text[:200]
                except httpx.HTTPError as exc:
                    status, error = None, f"{type(exc).__name__}: {exc}"
                webhooks.record_attempt(session, delivery, status, error, self._backoff)
            return len(due)
