"""A process that is stopping (SIGTERM, SIGINT): what the app does before uvicorn waits for its requests.

uvicorn's graceful shutdown stops accepting connections, closes idle ones, lets requests in flight finish for
`timeout_graceful_shutdown` seconds, then cancels what is left. Event streams never finish by themselves, so every
stop used to end in that cancellation, a `CancelledError` traceback per open stream. uvicorn tells each connection
to shut down (`HttpToolsProtocol.shutdown`) before it waits; Kefu's protocol (`app.web.http_protocol`) calls
`begin` from there, and the app's hooks run once, first: the streams end with a retry hint (`StreamRegistry.drain`)
and their browsers reconnect to a process that stays. ASGI's lifespan protocol has no "draining" message, and
uvicorn builds its worker servers itself, so the connection's shutdown is the one place every worker hears it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

log = logging.getLogger("kefu.stopping")

_hooks: list[Callable[[], object]] = []
_begun = False


def when_stopping(hook: Callable[[], object]) -> Callable[[], None]:
    """Run `hook` (synchronous, quick: it runs on the event loop) once, when this process starts to stop. Returns a
    function that takes it back (an app that shuts down, as tests create many in one process)."""
    _hooks.append(hook)
    return lambda: _hooks.remove(hook) if hook in _hooks else None


def stopping() -> bool:
    """Whether this process has begun to stop."""
    return _begun


def begin() -> None:
    """The process starts to stop: run every hook once (a failing hook is logged; the others still run)."""
    global _begun
    if _begun:
        return
    _begun = True
    log.info("stopping: ending event streams, finishing requests in flight")
    for hook in tuple(_hooks):
        try:
            hook()
        except Exception:
            log.exception("a stopping hook failed")


class CancelledAtShutdown(logging.Filter):
    """uvicorn cancels requests still running when its graceful shutdown time is over and logs each with a
    `CancelledError` traceback ("Exception in ASGI application"). Once the process is stopping, such a record
    becomes one line: the request was cut by the stop (its client retries), not an error in the app."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrites a cancelled request's record while stopping; lets every other record through unchanged."""
        error = record.exc_info[1] if record.exc_info else None
        if _begun and isinstance(error, asyncio.CancelledError):
            record.msg, record.args, record.exc_info, record.exc_text = (
                "a request still running at the end of the graceful shutdown was cancelled", (), None, None)
        return True
