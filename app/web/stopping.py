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
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors.multiprocess import Multiprocess

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
        """While stopping, a cancelled request's record becomes one warning line, and so does uvicorn's count of them
        ("Cancel N running task(s)…": a client too slow to finish in time, not a fault); every other record passes
        unchanged."""
        error = record.exc_info[1] if record.exc_info else None
        if not _begun:
            return True
        if isinstance(error, asyncio.CancelledError):
            record.msg, record.args, record.exc_info, record.exc_text = (
                "a request still running at the end of the graceful shutdown was cancelled", (), None, None)
        elif not str(record.msg).startswith("Cancel %s running task(s)"):
            return True
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


class WorkersThatStopListening(Multiprocess):
    """uvicorn's supervisor of `--workers N`, whose own copy of the listening socket is closed as it tells its
    workers to stop: each worker closes its copy at once (uvicorn's shutdown), so nothing listens any more and new
    connections are refused (nginx tries the next machine). uvicorn's parent kept its copy until every worker had
    exited: the kernel went on completing handshakes no one accepted, and a request sent then hung for up to
    KEFU_SHUTDOWN_SECONDS."""

    def terminate_all(self) -> None:
        """Closes this process's copy of the listening sockets, then asks every worker to stop (SIGTERM)."""
        for sock in self.sockets:
            sock.close()
        super().terminate_all()


def run_server(config: uvicorn.Config) -> None:
    """`uvicorn.run` for `config` (an import string and factory; no reload): one process, or a supervisor of
    `config.workers` that stops listening as soon as it stops (WorkersThatStopListening). Exits with uvicorn's
    start-up failure status (3) if a single server did not start."""
    if config.workers > 1:
        WorkersThatStopListening(config, sockets=[config.bind_socket()]).run()
        return
    server = uvicorn.Server(config)
    server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE)


FINISH_SENDS_SECONDS = 5.0  # after uvicorn's graceful time, how long a stop waits for sends still in progress
_sends = 0
_sends_done = threading.Condition()


@contextmanager
def send_in_progress() -> Iterator[None]:
    """Marks work in a worker thread that stores something (a message, an upload's file): `wait_for_sends` waits for
    it at shutdown. A request uvicorn cancels at the end of its graceful time leaves its thread running, and the
    process then exits by SIGTERM at once: an upload's file was left on disk with no message."""
    global _sends
    with _sends_done:
        _sends += 1
    try:
        yield
    finally:
        with _sends_done:
            _sends -= 1
            _sends_done.notify_all()


def wait_for_sends(seconds: float) -> bool:
    """Blocks (in a worker thread) until no send is in progress, or `seconds` have passed; whether none is."""
    deadline = time.monotonic() + seconds
    with _sends_done:
        while _sends and (left := deadline - time.monotonic()) > 0:
            _sends_done.wait(left)
        return _sends == 0
