"""Rate limits: someone sending too fast gets 429 with Retry-After and nothing more is stored; opening streams too
often gets 429, and past the streams allowed per person the oldest is closed while the newer stay open.

The limits count only accepted work (refused messages and uploads use none of them), and mean the same everywhere: at
most N in any window of W seconds, in one process and across processes through Redis (no burst of 2 × N at a
window's edge)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
import redis
from litestar.testing import TestClient

from app.main import create_app
from app.realtime.limits import RateLimiter, RedisRateLimiter
from tests.conftest import REDIS_URL, make_settings, require_or_skip
from tests.file_samples import image_bytes, upload
from tests.streams import OpenBrowser, Stream
from tests.support import ServerProcess, free_port, open_conversation_id, server_env, sign_in, sign_in_to


def send_status(client: TestClient, cid: int, token: str, body: str) -> int:
    return client.post(f"/chat/c/{cid}/messages", data={"body": body}, headers={"X-CSRFToken": token}).status_code


def test_sending_too_fast_gets_429_and_stores_nothing_more(database_url: str, tmp_path: Path) -> None:
    app = create_app(make_settings(database_url, tmp_path, message_limit=(5, 10.0)))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        token = sign_in(client, "b1", target="m1")
        cid = open_conversation_id(client, "m1")
        statuses = [client.post(f"/chat/c/{cid}/messages", data={"body": f"第{n}条"},
                                headers={"X-CSRFToken": token}) for n in range(7)]
        assert [r.status_code for r in statuses] == [201] * 5 + [429] * 2
        assert "发送太频繁" in statuses[-1].text
        assert 0 < int(statuses[-1].headers["retry-after"]) <= 10
        page = client.get(f"/chat/c/{cid}").text
        assert page.count('data-testid="message"') == 5


def test_opening_streams_too_often_gets_429_with_retry_after(kefu_server: ServerProcess,
                                                         open_browser: OpenBrowser) -> None:
    m1 = open_browser(kefu_server, "m1")
    statuses = []
    for _ in range(61):
        with m1.client.stream("GET", "/events") as response:
            statuses.append(response.status_code)
            if response.status_code == 429:
                assert int(response.headers["retry-after"]) >= 1
                assert "连接太频繁" in response.read().decode()
    assert statuses == [200] * 60 + [429]


def test_the_oldest_stream_is_closed_past_the_limit_per_person(sqlite_url: str, tmp_path: Path) -> None:
    server = ServerProcess(server_env(sqlite_url, tmp_path, KEFU_STREAMS_PER_PERSON="2"), free_port()).start()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as m1:
            sign_in(m1, "m1")
            with m1.stream("GET", "/events") as first:
                oldest = Stream(first)
                oldest.wait_for("ping")
                with m1.stream("GET", "/events") as second, m1.stream("GET", "/events") as third:
                    newer = Stream(second)
                    newer.wait_for("ping")
                    Stream(third).wait_for("ping")
                    closed = oldest.wait_for("closed")
                    assert closed.data == "too-many-streams"
                    with pytest.raises(EOFError):
                        oldest.next()
                    newer.wait_for("ping")  # the newer ones stay open
    finally:
        server.stop()


def test_refused_messages_do_not_use_up_the_limit(app_client: TestClient) -> None:
    token, cid = sign_in_to(app_client, "b1", "m1")
    refused = [send_status(app_client, cid, token, body) for body in ["   ", "\u200b", "\u3164\u2800"] * 10]
    assert refused == [422] * 30
    assert send_status(app_client, cid, token, "这条是真的消息") == 201


def test_refused_uploads_do_not_use_up_the_limit(app_client: TestClient) -> None:
    token, cid = sign_in_to(app_client, "b1", "m1")
    refused = [upload(app_client, cid, token, "网页.png", b"<html><script>x</script>", "image/png").status_code
               for _ in range(10)]
    assert refused == [415] * 10
    accepted = upload(app_client, cid, token, "照片.png", image_bytes("PNG"), "image/png")
    assert accepted.status_code == 201, accepted.text


def shared_limiter() -> RedisRateLimiter:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as error:
        require_or_skip(f"Redis not reachable at {REDIS_URL} ({error})")
    return RedisRateLimiter(REDIS_URL, prefix=f"kefu:test-rate:{time.time_ns()}")


@pytest.mark.parametrize("kind", ["in-process", "redis"])
def test_at_most_n_hits_in_any_window_even_across_a_window_edge(kind: str) -> None:
    limiter = RateLimiter() if kind == "in-process" else shared_limiter()
    limit, window = 5, 1.0
    while time.time() % window < 0.8:  # start just before a whole second: a fixed window would restart there
        time.sleep(0.01)
    allowed: list[float] = []
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        if limiter.retry_after("b1", limit, window) is None:
            allowed.append(time.monotonic())
        time.sleep(0.005)
    assert len(allowed) >= limit + 1  # the window slid on and let more through
    for first, sixth in zip(allowed, allowed[limit:], strict=False):
        assert sixth - first >= window * 0.98, f"{limit + 1} hits within {sixth - first:.3f} s"


@pytest.mark.parametrize("kind", ["in-process", "redis"])
def test_the_event_loops_hits_and_the_worker_threads_hits_are_one_count(kind: str) -> None:
    limiter = RateLimiter() if kind == "in-process" else shared_limiter()

    async def from_the_loop() -> list[int | None]:
        return [await limiter.retry_after_async("b1", 5, 30.0) for _ in range(3)]

    from_threads = [limiter.retry_after("b1", 5, 30.0) for _ in range(2)]
    assert from_threads + asyncio.run(from_the_loop()) == [None, None, None, None, None]
    refused = asyncio.run(from_the_loop())
    assert all(wait is not None and 0 < wait <= 30 for wait in refused), refused
    assert limiter.retry_after("b1", 5, 30.0) is not None


def test_a_stalled_redis_does_not_stall_the_event_loop() -> None:
    """The typing route and stream opens count on the event loop: while Redis does not answer, the loop must go on
    serving every other stream of the process (a blocking round trip would freeze them all)."""
    limiter = shared_limiter()
    pauser = redis.Redis.from_url(REDIS_URL)

    async def scenario() -> int | None:
        ticks = 0

        async def other_work() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        pauser.execute_command("CLIENT", "PAUSE", 5000, "WRITE")  # scripts wait; reads such as UNPAUSE do not
        try:
            worker = asyncio.create_task(other_work())
            hit = asyncio.create_task(limiter.retry_after_async("b1", 5, 30.0))
            while ticks < 200:
                await asyncio.sleep(0)
            assert not hit.done(), "the count answered while Redis was paused"
        finally:
            pauser.execute_command("CLIENT", "UNPAUSE")
        worker.cancel()
        return await hit

    assert asyncio.run(scenario()) is None
    assert [limiter.retry_after("b1", 5, 30.0) for _ in range(5)] == [None, None, None, None, 30]


def test_the_event_loops_count_goes_on_in_this_process_when_redis_is_away() -> None:
    limiter = RedisRateLimiter(f"redis://127.0.0.1:{free_port()}/0", prefix="kefu:test-rate:away")

    async def hits() -> list[int | None]:
        return [await limiter.retry_after_async("b1", 2, 30.0) for _ in range(3)]

    assert asyncio.run(hits()) == [None, None, 30]
