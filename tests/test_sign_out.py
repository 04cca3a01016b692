"""Signing out ends the session on the server, on SQLite and MariaDB: a copy of the cookie opens nothing any more,
and the streams opened under it end at once (over real sockets, against `kefu serve`); `kefu admin passwd` and
`kefu admin disable` end an admin's sessions and open monitors too, across processes through Redis.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from litestar.testing import TestClient
from sqlalchemy.orm import Session

from app.chat.admins import create_admin
from app.chat.people import upsert_user
from app.chat.sessions import end_all_sessions
from app.db.engine import make_engine, make_sessionmaker
from tests.admin_support import PASSWORD, login_location, make_admin, post_login, sign_in_admin, use_fast_hashing
from tests.cli_support import run_kefu
from tests.seeding import converse
from tests.streams import Stream
from tests.support import RedisServer, ServerProcess, csrf_of, free_port, post_message, server_env, sign_in

PERSON_COOKIE = "kefu_session"
ADMIN_COOKIE = "kefu_admin"
QUIET_PINGS = "3600"  # the first ping comes after 240 s: a stream that ends here ends because it was told to


@pytest.fixture(autouse=True)
def fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    use_fast_hashing(monkeypatch)


def browser_with(client: TestClient, name: str, value: str) -> TestClient:
    """Another browser on the same app holding a copy of one cookie."""
    other = TestClient(client.app, base_url="http://127.0.0.1")
    other.cookies.set(name, value)
    return other


def log_out(client: httpx.Client | TestClient, csrf_token: str) -> None:
    response = client.post("/logout", data={"_csrf_token": csrf_token}, follow_redirects=False)
    assert response.status_code == 303, response.text


# --- copied cookies ---

def test_a_copy_of_a_persons_cookie_opens_nothing_after_they_log_out(db: Session, app_client: TestClient) -> None:
    cid = converse(db, "b1", "m1")
    token = sign_in(app_client, "b1", target="m1")
    with browser_with(app_client, PERSON_COOKIE, app_client.cookies[PERSON_COOKIE]) as thief, \
            TestClient(app_client.app, base_url="http://127.0.0.1") as phone:
        sign_in(phone, "b1")  # the same person in another browser of theirs
        page = thief.get("/chat")
        assert page.status_code == 200  # the copy works while the session lasts…
        thief_token = csrf_of(page.text)
        typing = thief.post(f"/chat/c/{cid}/typing", headers={"X-CSRFToken": thief_token})
        assert typing.status_code == 204  # (and this process now lets its typing notices through without a query)
        log_out(app_client, token)
        typing = thief.post(f"/chat/c/{cid}/typing", headers={"X-CSRFToken": thief_token})
        assert typing.status_code == 401  # the sign-out took back that permit at once
        assert thief.get("/chat").status_code == 401  # …and not after the person logged out
        assert thief.get(f"/chat/c/{cid}").status_code == 401
        assert thief.get("/events").status_code == 401
        sent = thief.post(f"/chat/c/{cid}/messages", data={"body": "冒充"}, headers={"X-CSRFToken": thief_token})
        assert sent.status_code == 401
        assert phone.get("/chat").status_code == 200  # logging out here ends this browser's session only
    assert app_client.get("/chat").status_code == 401


def test_a_copy_of_an_admins_cookie_opens_nothing_after_they_log_out(db: Session, app_client: TestClient) -> None:
    make_admin(db)
    token = sign_in_admin(app_client, remember=True)
    with browser_with(app_client, ADMIN_COOKIE, app_client.cookies[ADMIN_COOKIE]) as thief:
        assert thief.get("/admin").status_code == 200
        assert thief.get("/admin/audit").status_code == 200
        log_out(app_client, token)
        assert login_location(thief.get("/admin", follow_redirects=False)) == "/admin"
        assert login_location(thief.get("/admin/audit", follow_redirects=False)) == "/admin/audit"
        assert thief.get("/events", params={"monitor": "1"}).status_code == 401
    assert login_location(app_client.get("/admin", follow_redirects=False)) == "/admin"


# --- open streams, over real sockets ---

@contextmanager
def serving(database_url: str, tmp_path: Path, **env: str) -> Iterator[ServerProcess]:
    server = ServerProcess(server_env(database_url, tmp_path, **({"KEFU_SSE_PING_SECONDS": QUIET_PINGS} | env)),
                           free_port()).start()
    try:
        yield server
    finally:
        server.stop()


def make_admin_at(database_url: str, user_id: str = "a1", username: str = "ops") -> None:
    engine = make_engine(database_url)
    with make_sessionmaker(engine)() as session:
        create_admin(session, user_id, username, PASSWORD)
        session.commit()
    engine.dispose()


def conversation_at(database_url: str, a: str, b: str) -> int:
    engine = make_engine(database_url)
    with make_sessionmaker(engine)() as session:
        cid = converse(session, a, b)
    engine.dispose()
    return cid


def assert_ends_signed_out(stream: Stream) -> None:
    """The next event is `closed` (signed-out) and the server ends the response; a stream that stayed open
    would fail on the client's 10 s read timeout instead."""
    event = stream.next()
    assert (event.event, event.data) == ("closed", "signed-out")
    with pytest.raises(EOFError):
        stream.next()


def test_logging_out_ends_the_persons_open_stream_at_once(database_url: str, tmp_path: Path) -> None:
    cid = conversation_at(database_url, "b1", "m1")
    with serving(database_url, tmp_path) as server, httpx.Client(base_url=server.url, timeout=10) as browser, \
            httpx.Client(base_url=server.url, timeout=10) as phone:
        token = sign_in(browser, "b1")
        sign_in(phone, "b1")  # the same person in another browser of theirs
        with browser.stream("GET", "/events", params={"as": "b1"}) as response, \
                phone.stream("GET", "/events", params={"as": "b1"}) as on_phone:
            stream, kept = Stream(response).opened(), Stream(on_phone).opened()
            post_message(server, "m1", cid, "在吗")
            assert "在吗" in stream.wait_for("message").data  # both streams are live
            assert "在吗" in kept.wait_for("message").data
            log_out(browser, token)
            assert_ends_signed_out(stream)
            post_message(server, "m1", cid, "还在")
            assert "还在" in kept.wait_for("message").data  # the phone's session was not this browser's
        assert browser.get("/events", params={"as": "b1"}).status_code == 401


def test_a_session_ended_without_the_stream_hearing_it_still_ends_the_stream(database_url: str,
                                                                            tmp_path: Path) -> None:
    """The logout's announcement lost (the broker away at that moment), or the session ended before the stream
    subscribed: the stream checks its session when it opens and every KEFU_SESSION_RECHECK_SECONDS."""
    with serving(database_url, tmp_path, KEFU_SSE_PING_SECONDS="1", KEFU_SESSION_RECHECK_SECONDS="2") as server, \
            httpx.Client(base_url=server.url, timeout=10) as browser:
        sign_in(browser, "b1")
        with browser.stream("GET", "/events", params={"as": "b1"}) as response:
            stream = Stream(response)
            assert stream.wait_for("ping").event == "ping"  # open and live
            end_sessions_silently(database_url, "b1")
            opened = time.monotonic()
            while (event := stream.next()).event == "ping":
                assert time.monotonic() - opened < 4, "the stream outlived its session"
            assert (event.event, event.data) == ("closed", "signed-out")


def end_sessions_silently(database_url: str, user_id: str) -> None:
    """Every session of `user_id` ended in the database, with no announcement to the streams."""
    engine = make_engine(database_url)
    with make_sessionmaker(engine)() as session:
        end_all_sessions(session, user_id)
        session.commit()
    engine.dispose()


def test_logging_out_ends_the_admins_open_monitor_stream_at_once(database_url: str, tmp_path: Path) -> None:
    make_admin_at(database_url)
    cid = conversation_at(database_url, "b1", "m1")
    with serving(database_url, tmp_path) as server, httpx.Client(base_url=server.url, timeout=10) as browser:
        assert post_login(browser, "ops", PASSWORD).status_code == 303
        token = csrf_of(browser.get("/admin").text)
        with browser.stream("GET", "/events", params={"monitor": "1"}) as response:
            monitor = Stream(response).opened()
            post_message(server, "b1", cid, "你好")
            assert "你好" in monitor.wait_for("message").data
            log_out(browser, token)
            assert_ends_signed_out(monitor)


# --- the `kefu` command ends admins' sessions in the running server, through Redis ---

def kefu(server: ServerProcess, *args: str) -> None:
    """`kefu ARGS` as the server's operator runs it, in the server's environment (its database, its Redis)."""
    ran = run_kefu(server.env, *args)
    assert ran.code == 0, ran.output
    assert "warning" not in ran.err.lower(), ran.err


@pytest.mark.parametrize("command", [("admin", "passwd", "a1", "a-brand-new-one"), ("admin", "disable", "a1")])
def test_kefu_admin_passwd_and_disable_end_open_monitor_streams_at_once(
        command: tuple[str, ...], database_url: str, private_redis: RedisServer, tmp_path: Path) -> None:
    make_admin_at(database_url)
    make_admin_at(database_url, "a2", "ops2")  # another admin, whose monitor stays open
    cid = conversation_at(database_url, "b1", "m1")
    with serving(database_url, tmp_path, KEFU_BROKER_URL=private_redis.url) as server, \
            httpx.Client(base_url=server.url, timeout=10) as browser, \
            httpx.Client(base_url=server.url, timeout=10) as colleague:
        assert post_login(browser, "ops", PASSWORD).status_code == 303
        assert post_login(colleague, "ops2", PASSWORD).status_code == 303
        with browser.stream("GET", "/events", params={"monitor": "1"}) as mine, \
                colleague.stream("GET", "/events", params={"monitor": "1"}) as theirs:
            monitor, other = Stream(mine).opened(), Stream(theirs).opened()
            post_message(server, "b1", cid, "你好")
            assert "你好" in monitor.wait_for("message").data
            assert "你好" in other.wait_for("message").data
            kefu(server, *command)
            assert_ends_signed_out(monitor)
            post_message(server, "m1", cid, "收到")
            assert "收到" in other.wait_for("message").data
        assert login_location(browser.get("/admin", follow_redirects=False)) == "/admin"


def test_many_people_signing_in_at_the_same_moment_all_get_in(database_url: str, tmp_path: Path) -> None:
    """Sign-ins start sessions concurrently: none may fail (MariaDB deadlocked on the expired-session clean-up)."""
    engine = make_engine(database_url)
    with make_sessionmaker(engine)() as session:
        for n in range(60):
            upsert_user(session, f"lb{n}", f"买家{n}", "buyer")
        session.commit()
    engine.dispose()
    people = [f"lb{n}" for n in range(60)] * 2

    def sign_in_once(user_id: str) -> int:
        with httpx.Client(base_url=server.url, timeout=20) as client:
            return client.get("/chat", params={"user_id": user_id}, follow_redirects=False).status_code

    with serving(database_url, tmp_path) as server, ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(sign_in_once, people))
    assert statuses == [303] * len(people)


def test_signing_in_a_ninth_person_in_one_browser_ends_the_oldest_ones_session(db: Session,
                                                                               app_client: TestClient) -> None:
    """A browser holds at most eight people: the ninth sign-in works, and the first person's session ends (a copy
    of the cookie from before no longer opens their chat)."""
    for n in range(9):
        upsert_user(db, f"lb{n}", f"买家{n}", "buyer")
    db.commit()
    sign_in(app_client, "lb0")
    copied = browser_with(app_client, PERSON_COOKIE, app_client.cookies[PERSON_COOKIE])
    assert copied.get("/chat", params={"as": "lb0"}).status_code == 200
    for n in range(1, 9):
        page = app_client.get("/chat", params={"user_id": f"lb{n}"}, follow_redirects=False)
        assert page.status_code == 303, page.text
    assert copied.get("/chat", params={"as": "lb0"}).status_code == 401
    assert app_client.get("/chat", params={"as": "lb8"}).status_code == 200
