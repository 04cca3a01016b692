"""An admin's monitor stream: it hears everyone's presence, and ends at the next ping once the admin is disabled."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from app.chat.admins import create_admin, set_disabled
from app.db.engine import make_engine, make_sessionmaker
from tests.admin_support import PASSWORD, post_login
from tests.seeding import converse
from tests.streams import Stream, json_data
from tests.support import ServerProcess, free_port, server_env, sign_in


def test_disabling_an_admin_ends_their_open_monitor_stream(sqlite_url: str, tmp_path: Path) -> None:
    engine = make_engine(sqlite_url)
    sessions = make_sessionmaker(engine)
    with sessions() as session:
        create_admin(session, "a1", "ops", PASSWORD)
        session.commit()
    server = ServerProcess(server_env(sqlite_url, tmp_path), free_port()).start()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as browser:
            assert post_login(browser, "ops", PASSWORD).status_code == 303
            with browser.stream("GET", "/events", params={"monitor": "1"}) as response:
                stream = Stream(response)
                stream.wait_for("ping")
                with sessions() as session:
                    set_disabled(session, "a1", True)
                    session.commit()
                assert stream.wait_for("closed").data == "signed-out"
                with pytest.raises(EOFError):
                    stream.next()
            assert browser.get("/events", params={"monitor": "1"}).status_code == 401
    finally:
        server.stop()
        engine.dispose()


def test_the_monitor_hears_everyones_presence(sqlite_url: str, tmp_path: Path) -> None:
    """People hear only their peers come and go; the admins watching every conversation hear everyone."""
    engine = make_engine(sqlite_url)
    with make_sessionmaker(engine)() as session:
        create_admin(session, "a1", "ops", PASSWORD)
        session.commit()
    engine.dispose()
    server = ServerProcess(server_env(sqlite_url, tmp_path), free_port()).start()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as admin, \
                httpx.Client(base_url=server.url, timeout=10) as person:
            assert post_login(admin, "ops", PASSWORD).status_code == 303
            sign_in(person, "m3")  # no conversation with anyone yet
            with admin.stream("GET", "/events", params={"monitor": "1"}) as response:
                monitor = Stream(response)
                monitor.wait_for("ping")
                with person.stream("GET", "/events") as own:
                    Stream(own).wait_for("ping")
                    assert json_data(monitor.wait_for("presence")) == {"user": "m3", "online": True}
                assert json_data(monitor.wait_for("presence")) == {"user": "m3", "online": False}
    finally:
        server.stop()


def test_an_admin_gets_the_monitor_stream_from_plain_events(sqlite_url: str, tmp_path: Path) -> None:
    """CONTRACT §5: GET /events is the signed-in person's or admin's stream; `?monitor=1` is not needed."""
    engine = make_engine(sqlite_url)
    with make_sessionmaker(engine)() as session:
        create_admin(session, "a1", "ops", PASSWORD)
        cid = converse(session, "b1", "m1")
    engine.dispose()
    server = ServerProcess(server_env(sqlite_url, tmp_path), free_port()).start()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as admin, \
                httpx.Client(base_url=server.url, timeout=10) as buyer:
            assert post_login(admin, "ops", PASSWORD).status_code == 303
            token = sign_in(buyer, "b1")
            with admin.stream("GET", "/events") as response:
                assert response.status_code == 200
                monitor = Stream(response)
                monitor.wait_for("ping")
                sent = buyer.post(f"/chat/c/{cid}/messages", data={"body": "管理员看得见"},
                                  headers={"X-CSRFToken": token})
                assert sent.status_code == 201
                assert "管理员看得见" in monitor.wait_for("message").data
            # A page that names a person acts for that person only, never silently for the admin instead.
            assert admin.get("/events", params={"as": "b1"}).status_code == 401
    finally:
        server.stop()
