"""Several server processes sharing MariaDB and Redis: events, presence and replay cross processes, and
the app keeps working (and catches up) when Redis goes away and comes back."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from app.db.migrate import upgrade
from tests.conftest import REDIS_URL, require_or_skip
from tests.streams import Browser, Stream, json_data, message_ids
from tests.support import RedisServer, ServerProcess, free_port, server_env, sign_in

pytestmark = pytest.mark.redis


@pytest.fixture
def redis_url() -> str:
    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
        client.ping()
        client.flushdb()
        client.close()
    except redis.RedisError as error:
        require_or_skip(f"Redis not reachable at {REDIS_URL} ({error})")
    return REDIS_URL


@pytest.fixture
def two_servers(mysql_database: str, redis_url: str, tmp_path: Path) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    from tests.conftest import _empty_mysql, seed_url

    _empty_mysql(mysql_database)
    seed_url(mysql_database)
    env = server_env(mysql_database, tmp_path, KEFU_BROKER_URL=redis_url)
    first, second = ServerProcess(env, free_port()), ServerProcess(env, free_port())
    first.start()
    second.start()
    yield first, second
    first.stop()
    second.stop()


def test_a_message_posted_on_one_process_reaches_a_stream_on_the_other(two_servers) -> None:  # type: ignore[no-untyped-def]
    first, second = two_servers
    with Browser.open(first, "b1", target="m1") as b1, Browser.open(second, "m1") as m1:
        cid = b1.conversation_with("m1")
        with m1.events() as stream:
            stream.wait_for("ping")
            b1.post(cid, "跨进程的消息")
            event = stream.wait_for("message")
            assert "跨进程的消息" in event.data
            assert f'data-conversation-id="{cid}"' in event.data


def test_presence_is_the_same_seen_from_both_processes(two_servers) -> None:  # type: ignore[no-untyped-def]
    first, second = two_servers
    with httpx.Client(base_url=first.url, timeout=10) as b1, httpx.Client(base_url=second.url, timeout=10) as m1:
        sign_in(b1, "b1", target="m1")
        sign_in(m1, "m1")
        with b1.stream("GET", "/events") as watch:
            watcher = Stream(watch)
            watcher.wait_for("ping")
            with m1.stream("GET", "/events") as response:
                Stream(response).wait_for("ping")
                assert json_data(watcher.wait_for("presence")) == {"user": "m1", "online": True}
                # b1's page, served by the other process, shows m1 online
                page = b1.get("/chat", params={"target": "m1"}).text
                assert 'data-user-id="m1" data-online="true"' in page
            assert json_data(watcher.wait_for("presence")) == {"user": "m1", "online": False}
        page = b1.get("/chat", params={"target": "m1"}).text
        assert 'data-user-id="m1" data-online="false"' in page


def test_a_stream_that_moves_to_the_other_process_misses_nothing(two_servers) -> None:  # type: ignore[no-untyped-def]
    first, second = two_servers
    with Browser.open(first, "b1", target="m1") as b1, Browser.open(first, "m1") as m1:
        cid = b1.conversation_with("m1")
        with m1.events() as stream:
            stream.wait_for("ping")
            b1.post(cid, "第一条")
            last = stream.wait_for("message").id
        for n in (2, 3, 4):
            b1.post(cid, f"第{n}条")
        # the reconnect lands on the other process: no sticky sessions needed
        moved = Browser(httpx.Client(base_url=second.url, timeout=10, cookies=m1.client.cookies), "m1", m1.token)
        with moved, moved.events(last_event_id=str(last)) as stream:
            replayed = stream.messages(4)  # the look-back resends the last one seen (the page drops it by id)
            assert message_ids(replayed)[0] == int(last)
            assert ["第2条" in replayed[1].data, "第3条" in replayed[2].data, "第4条" in replayed[3].data] == [True] * 3
            assert message_ids(replayed) == sorted(message_ids(replayed))
            b1.post(cid, "第5条")
            assert "第5条" in stream.wait_for("message").data


def test_without_redis_pages_and_messages_keep_working_and_streams_catch_up(
        private_redis: RedisServer, sqlite_url: str, tmp_path: Path) -> None:
    server = ServerProcess(server_env(sqlite_url, tmp_path, KEFU_BROKER_URL=private_redis.url), free_port()).start()
    try:
        with Browser.open(server, "b1", target="m1") as b1, Browser.open(server, "m1") as m1:
            cid = b1.conversation_with("m1")
            with m1.events() as stream:
                stream.wait_for("ping")
                private_redis.stop()
                b1.post(cid, "Redis 不在时发的消息")  # stored all the same
                health = httpx.get(server.url + "/healthz")
                assert health.status_code == 503
                assert "redis unavailable" in health.json()["broker"]
                assert b1.client.get("/chat", params={"target": "m1"}).status_code == 200
                # Redis comes back on the same port: the stream catches up by itself, without a reconnect (the
                # broker looks again after at most 5 s)
                private_redis.start()
                assert "Redis 不在时发的消息" in stream.wait_for("message", seconds=30).data
                deadline = time.monotonic() + 10
                while httpx.get(server.url + "/healthz").status_code != 200:
                    assert time.monotonic() < deadline, "healthz did not recover"
                    time.sleep(0.2)
                b1.post(cid, "Redis 回来之后的消息")
                assert "Redis 回来之后的消息" in stream.wait_for("message").data
                log = (tmp_path / f"server-{server.port}.log").read_text()
                assert log.count("broker redis unavailable") == 1  # logged once, not once per failure
                assert log.count("broker redis is back") == 1
    finally:
        server.stop()


def test_two_deployments_on_one_redis_never_hear_each_other(redis_url: str, tmp_path: Path) -> None:
    """Staging on one database number, production on another, same Redis server, the same people ids and the same
    conversation ids: a message in one never reaches a stream of the other (pub/sub channels ignore the database
    number; every channel is in its deployment's namespace)."""
    from tests.conftest import seed_url

    base = redis_url.rsplit("/", 1)[0]
    deployments = []
    for name, db in (("staging", 13), ("production", 14)):
        url = f"sqlite:///{tmp_path / f'{name}.db'}"
        upgrade(url)
        seed_url(url)
        var = tmp_path / name
        var.mkdir()
        deployments.append(ServerProcess(server_env(url, var, KEFU_BROKER_URL=f"{base}/{db}"), free_port()).start())
    staging, production = deployments
    try:
        with Browser.open(staging, "b1", target="m1") as staging_b1, \
                Browser.open(production, "b1", target="m1") as production_b1, \
                Browser.open(production, "m1") as production_m1:
            staging_cid, production_cid = staging_b1.conversation_with("m1"), production_b1.conversation_with("m1")
            assert staging_cid == production_cid  # the same ids on both: only the namespace keeps them apart
            with production_m1.events() as stream:
                stream.wait_for("ping")
                staging_b1.post(staging_cid, "测试环境的消息")
                production_b1.post(production_cid, "生产环境的消息")
                event = stream.wait_for("message")
            assert "生产环境的消息" in event.data and "测试环境" not in event.data
    finally:
        for server in deployments:
            server.stop()
