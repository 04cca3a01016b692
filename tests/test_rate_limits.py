"""Rate limits count only accepted work, and mean the same everywhere: at most N in any window of W seconds, in one
process and across processes through Redis (no burst of 2 × N at a window's edge)."""

from __future__ import annotations

import time

import pytest
import redis
from litestar.testing import TestClient

from app.realtime.limits import RateLimiter, RedisRateLimiter
from tests.conftest import REDIS_URL, require_or_skip
from tests.file_samples import image_bytes, sign_in_to, upload


def post_message(client: TestClient, cid: int, token: str, body: str) -> int:
    return client.post(f"/chat/c/{cid}/messages", data={"body": body}, headers={"X-CSRFToken": token}).status_code


def test_refused_messages_do_not_use_up_the_limit(app_client: TestClient) -> None:
    token, cid = sign_in_to(app_client, "b1", "m1")
    refused = [post_message(app_client, cid, token, body) for body in ["   ", "\u200b", "\u3164\u2800"] * 10]
    assert refused == [422] * 30
    assert post_message(app_client, cid, token, "这条是真的消息") == 201


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
        if limiter.hit("b1", limit, window) is None:
            allowed.append(time.monotonic())
        time.sleep(0.005)
    assert len(allowed) >= limit + 1  # the window slid on and let more through
    for first, sixth in zip(allowed, allowed[limit:], strict=False):
        assert sixth - first >= window * 0.98, f"{limit + 1} hits within {sixth - first:.3f} s"
