"""Sends stored webhook deliveries: signed, retried with backoff, one worker task per process.

One delivery at a time: claim it (a short transaction, committed, connection returned to the pool), POST it on the
event loop with a hard deadline of `timeout` seconds for the whole request, then record the outcome (another short
transaction). No database connection is held while waiting for the receiver. The claim's lease is the deadline plus
`lease_margin`, so it outlasts the send it covers and the recording after it; another process takes a delivery over
only when the lease ran out, i.e. when this process died (or stalled longer than the margin) mid-attempt."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import timedelta

import httpx
from anyio import to_thread
from sqlalchemy.orm import Session, sessionmaker

from app.chat import webhooks
from app.chat.errors import InvalidInput
from app.chat.webhook_targets import pinned
from app.db.models import utcnow

log = logging.getLogger("kefu.webhooks")
ANSWER_BYTES = 1024  # what is kept of a failed delivery's answer


class WebhookWorker:
    """Polls every `poll_seconds` when idle; `backoff_seconds` is the first retry delay; `timeout` bounds one POST
    (connect, send, answer) in seconds; `lease_margin` is how much longer than that a claim lasts (seconds)."""

    def __init__(self, sessions: sessionmaker[Session], poll_seconds: float = 1.0, backoff_seconds: float = 10.0,
                 timeout: float = 10.0, lease_margin: float = 50.0, private_allowed: bool = False) -> None:
        self._sessions = sessions
        self._poll = poll_seconds
        self._backoff = backoff_seconds
        self._timeout = timeout
        self._lease = timedelta(seconds=timeout + lease_margin)
        self._private_allowed = private_allowed  # KEFU_WEBHOOK_PRIVATE_TARGETS
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        """Start the worker task on the running event loop (an app may be started again on another loop)."""
        self._stopping = asyncio.Event()
        self._client = httpx.AsyncClient(timeout=self._timeout, follow_redirects=False)
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Let an attempt in flight finish and be recorded (at most `timeout` seconds and a little), then end. Only
        when that fails is it cancelled: then the attempt is left to its lease, as if the process had died."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            self._stopping.set()
            with contextlib.suppress(TimeoutError):  # then wait_for has cancelled it
                await asyncio.wait_for(task, self._timeout + 5)
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                sent = await self.send_next()
            except Exception:  # the database may be away for a moment: try again next round
                log.exception("webhook round failed")
                sent = False
            if not sent:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self._poll)

    async def send_next(self) -> bool:
        """Claim, send and record one due delivery. Returns False when nothing was due."""
        claim = await to_thread.run_sync(self._claim)
        if claim is None:
            return False
        status, error = await self._post(claim)
        await self._record_outcome(claim, status, error)
        return True

    async def _record_outcome(self, claim: webhooks.Claim, status: int | None, error: str) -> None:
        """Record the attempt; while the database is away, try again every poll until the lease is nearly over (then
        the delivery is sent again once the lease has run out, as after a crash)."""
        while True:
            try:
                recorded = await to_thread.run_sync(self._record, claim, status, error)
                break
            except Exception:
                if utcnow() + timedelta(seconds=2 * self._poll) >= claim.lease_until:
                    raise
                log.exception("webhook delivery %s: recording attempt %s failed", claim.delivery_id, claim.attempt)
                await asyncio.sleep(self._poll)
        if not recorded:
            log.warning("webhook delivery %s: lease ran out before attempt %s was recorded",
                        claim.delivery_id, claim.attempt)

    def _claim(self) -> webhooks.Claim | None:
        with self._sessions() as session:
            return webhooks.claim_next(session, self._lease)

    def _record(self, claim: webhooks.Claim, status: int | None, error: str) -> bool:
        with self._sessions() as session:
            return webhooks.record_attempt(session, claim, status, error, self._backoff)

    async def _post(self, claim: webhooks.Claim) -> tuple[int | None, str]:
        """POST the delivery, whole request within `timeout` seconds: (status, error text) or (None, error)."""
        assert self._client is not None, "start() first"
        body = claim.payload.encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Kefu-Webhooks/1",
            "X-Kefu-Event": claim.event,
            "X-Kefu-Delivery": str(claim.delivery_id),
            "X-Kefu-Timestamp": timestamp,
            "X-Kefu-Signature": webhooks.sign(claim.secret, timestamp, body),
        }
        try:
            async with asyncio.timeout(self._timeout):
                url, host, extensions = await pinned(claim.url, self._private_allowed)
        except InvalidInput as refused:
            return None, f"refused: {refused}"
        except TimeoutError:
            return None, f"no answer within {self._timeout:g} s"
        try:
            async with asyncio.timeout(self._timeout), self._client.stream(
                    "POST", url, content=body, headers=headers | {"Host": host}, extensions=extensions) as response:
                if response.is_success:
                    return response.status_code, ""
                return response.status_code, await _answer_start(response)
        except TimeoutError:
            return None, f"no answer within {self._timeout:g} s"
        except Exception as exc:  # httpx's errors, and anything else (a URL it cannot use): a failed attempt
            return None, f"{type(exc).__name__}: {exc}"


async def _answer_start(response: httpx.Response) -> str:
    """The first ANSWER_BYTES of a receiver's answer as text, for `kefu webhook deliveries`: the rest is never read
    (a receiver answering with 150 MB costs nothing), and control characters are shown escaped, so an answer
    cannot drive the operator's terminal."""
    kept = b""
    async for chunk in response.aiter_raw():
        kept += chunk
        if len(kept) >= ANSWER_BYTES:
            break
    text = kept[:ANSWER_BYTES].decode("utf-8", errors="replace")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)[:200]
