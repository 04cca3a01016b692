"""A tab's event stream reconnects with Last-Event-ID and gets what it missed (GET /events over a real socket:
`kefu serve` in a child process, httpx clients as browsers, on SQLite and MariaDB).

What people rely on: every message missed comes, in order and once (the page drops by id the one the look-back
sends again), also while messages keep coming during the reconnect, across a server restart, and when a message
with a lower id commits after a higher one was shown; a garbage Last-Event-ID still leaves a working live stream; a
stream far behind is told to reload instead of being sent hundreds of messages.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import insert, select, text

from app.db.engine import make_engine
from app.db.models import Message, utcnow
from tests.streams import Event, OpenBrowser, Serve, message_ids, only_messages
from tests.support import ServerProcess


def test_reconnect_with_last_event_id_replays_the_missed_messages_once(kefu_server: ServerProcess,
                                                                       open_browser: OpenBrowser) -> None:
    b1, m1 = open_browser(kefu_server, "b1", target="m1"), open_browser(kefu_server, "m1")
    cid = b1.conversation_with("m1")
    with m1.events() as stream:
        stream.opened()
        seen = b1.post(cid, "第一条")
        assert stream.wait_for("message").id == str(seen)
        last_event_id = stream.last_id
    assert last_event_id == str(seen)

    missed = [b1.post(cid, f"离线时的第 {n} 条") for n in range(1, 4)]
    with m1.events(last_event_id=last_event_id) as stream:
        replayed = only_messages(stream.until_ping())
        # The replay looks back a few seconds before the resume point (a message may commit after a higher id was
        # shown): the one already seen comes again first, and the page drops it by its id.
        assert message_ids(replayed) == [seen, *missed]
        assert [e.id for e in replayed] == [str(mid) for mid in [seen, *missed]]
        assert stream.last_ping is not None
        assert stream.last_ping.id == str(missed[-1])  # a reconnect from here would not replay them again

        live = b1.post(cid, "重新连上之后")
        sentinel = b1.post(cid, "再后来的一条")  # nothing but `live` comes before it: nothing is sent twice
        after = only_messages(stream.until("message", where=lambda e: message_ids([e]) == [sentinel]))
    assert message_ids(after) == [live, sentinel]
    assert after[0].id == str(live)


def test_messages_sent_while_the_stream_reconnects_arrive_once_in_order(kefu_server: ServerProcess,
                                                                         open_browser: OpenBrowser) -> None:
    """The window between the replay from the database and live delivery neither drops nor repeats a message."""
    b1, m1 = open_browser(kefu_server, "b1", target="m1"), open_browser(kefu_server, "m1")
    cid = b1.conversation_with("m1")
    resume_at = b1.post(cid, "断线前")
    sent = [b1.post(cid, f"断线期间 {n}") for n in range(3)]

    errors: list[BaseException] = []

    def keep_sending() -> None:
        try:
            for n in range(6):
                sent.append(b1.post(cid, f"重连期间 {n}"))
        except BaseException as error:
            errors.append(error)

    sender = threading.Thread(target=keep_sending)
    sender.start()
    try:
        with m1.events(last_event_id=str(resume_at)) as stream:
            received: list[Event] = []
            deadline = time.monotonic() + 10
            while len(received) < 10 and time.monotonic() < deadline:
                received += only_messages([stream.next()])
            sender.join(10)
            sentinel = b1.post(cid, "重连之后")  # whatever has not come by the time it does never comes
            received += only_messages(stream.until("message", where=lambda e: message_ids([e]) == [sentinel]))
    finally:
        sender.join(10)
    assert not errors, errors
    assert len(sent) == 9
    # the look-back resends the resume point's own message; then each message once, in order, up to the sentinel
    assert message_ids(received) == [resume_at, *sent, sentinel]


def test_replay_reaches_across_a_server_restart(serve: Serve, open_browser: OpenBrowser) -> None:
    server = serve()
    b1, m1 = open_browser(server, "b1", target="m1"), open_browser(server, "m1")
    cid = b1.conversation_with("m1")
    with m1.events() as stream:
        stream.opened()
        b1.post(cid, "重启之前")
        last_event_id = stream.wait_for("message").id
    missed = [b1.post(cid, "重启前 m1 不在线 1"), b1.post(cid, "重启前 m1 不在线 2")]

    server.stop()
    serve(server.port)  # same database, same secret key: the browsers' cookies and CSRF tokens still hold

    missed.append(b1.post(cid, "重启之后"))
    assert last_event_id is not None
    with m1.events(last_event_id=last_event_id) as stream:
        replayed = only_messages(stream.until_ping())
    assert message_ids(replayed) == [int(last_event_id), *missed]  # with the look-back's resend of the seen one


def test_a_garbage_last_event_id_leaves_a_working_live_stream(kefu_server: ServerProcess,
                                                              open_browser: OpenBrowser) -> None:
    b1, m1 = open_browser(kefu_server, "b1", target="m1"), open_browser(kefu_server, "m1")
    cid = b1.conversation_with("m1")
    b1.post(cid, "旧消息")
    # Empty, not numbers, too long, too big for a BIGINT, full-width digits, and an id from beyond every stored message
    # (a tab open since before the database was restored from a backup): all leave a live stream that works.
    for garbage in ("abc", "-1", "1" * 40, "9" * 19, "", "１２", "1000000000"):
        for how in ("header", "query"):
            header, params = (garbage, None) if how == "header" else (None, {"last_event_id": garbage})
            with m1.events(last_event_id=header, params=params) as stream:
                stream.opened()
                mid = b1.post(cid, f"Last-Event-ID {garbage!r} 之后")
                event = stream.wait_for("message")
            assert message_ids([event]) == [mid], f"Last-Event-ID {garbage!r} in the {how}"


WAITING_SEND = ("SELECT COUNT(*) FROM information_schema.PROCESSLIST "
                "WHERE INFO LIKE 'UPDATE conversation_members SET last_read_message_id%'")


def waiting_sends(connection) -> int:  # type: ignore[no-untyped-def]
    """How many sends wait after their INSERT now (each poll in a transaction of its own)."""
    count = connection.execute(text(WAITING_SEND)).scalar()
    connection.rollback()
    return int(count)


def wait_until(condition, seconds: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        time.sleep(0.02)


@pytest.mark.parametrize("database_url", ["mysql"], indirect=True)
def test_a_message_that_commits_after_a_later_one_reaches_the_open_stream_and_the_replay(
        database_url: str, kefu_server: ServerProcess, open_browser: OpenBrowser) -> None:
    """MariaDB: b1's send takes its id, then waits for a lock; b2's later send commits first; m1's page and stream
    start after b2's message. b1's message must still reach m1 live, and a reconnect from b2's id replays it."""
    b1, b2 = open_browser(kefu_server, "b1", target="m1"), open_browser(kefu_server, "b2", target="m1")
    m1 = open_browser(kefu_server, "m1")
    c1, c2 = b1.conversation_with("m1"), b2.conversation_with("m1")
    engine = make_engine(database_url)
    stalled: list[int] = []
    try:
        with engine.connect() as blocker, engine.connect() as observer:
            blocker.execute(text("SELECT * FROM conversation_members WHERE conversation_id = :c AND user_id = 'm1' "
                                 "FOR UPDATE"), {"c": c1})  # held until the blocker's transaction ends
            sender = threading.Thread(target=lambda: stalled.append(b1.post(c1, "先拿到编号、后提交的消息")))
            sender.start()
            wait_until(lambda: waiting_sends(observer) == 1)  # b1's send waits after its INSERT
            later = b2.post(c2, "后拿到编号、先提交的消息")
            with m1.events(last_event_id=str(later)) as stream:  # as m1's page opened now would
                stream.opened()
                blocker.rollback()  # b1's send goes on and commits
                sender.join(10)
                assert len(stalled) == 1 and stalled[0] < later  # it did commit after a higher id
                live = stream.wait_for("message", where=lambda e: message_ids([e]) == stalled)
            assert "先拿到编号、后提交的消息" in live.data and live.id == str(later)  # the id: stays the highest
    finally:
        engine.dispose()
    with m1.events(last_event_id=str(later)) as stream:  # a reconnect from the higher id still brings it
        replayed = message_ids([e for e in stream.until_ping() if e.event == "message"])
    assert stalled[0] in replayed and later in replayed


def test_a_reconnect_replays_a_message_with_a_lower_id_committed_after_the_resume_point(
        database_url: str, kefu_server: ServerProcess, open_browser: OpenBrowser) -> None:
    """The same late commit, stored directly (SQLite commits in id order, so the id is given): a reconnect with the
    higher id replays the lower one, and a message older than the look-back is not sent again."""
    b1, m1 = open_browser(kefu_server, "b1", target="m1"), open_browser(kefu_server, "m1")
    cid = b1.conversation_with("m1")
    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            old = b1.post(cid, "很早的消息")
            connection.execute(Message.__table__.update().where(Message.id == old).values(
                created_at=utcnow() - timedelta(minutes=5)))
        resume_at = b1.post(cid, "m1 已经看到的消息")
        with engine.begin() as connection:
            late_id = connection.execute(select(Message.id).order_by(Message.id.desc())).scalar() + 10
            connection.execute(insert(Message.__table__).values(
                id=late_id + 5, conversation_id=cid, sender_id="b1", kind="text", body="编号更高的",
                created_at=utcnow()))
        with engine.begin() as connection:  # the lower id commits after the higher one
            connection.execute(insert(Message.__table__).values(
                id=late_id, conversation_id=cid, sender_id="b1", kind="text", body="晚提交的", created_at=utcnow()))
    finally:
        engine.dispose()
    with m1.events(last_event_id=str(late_id + 5)) as stream:
        replayed = message_ids([e for e in stream.until_ping() if e.event == "message"])
    assert replayed == [resume_at, late_id, late_id + 5]  # in id order; nothing from before the look-back


def store_many(database_url: str, cid: int, sender: str, count: int) -> list[int]:
    """`count` messages a second apart, the last a minute ago (straight into the table: over HTTP the rate limit
    would refuse them)."""
    engine = make_engine(database_url)
    start = utcnow() - timedelta(seconds=count + 60)
    try:
        with engine.begin() as connection:
            connection.execute(insert(Message.__table__), [
                {"conversation_id": cid, "sender_id": sender, "kind": "text", "body": f"第{n}条",
                 "created_at": start + timedelta(seconds=n)} for n in range(count)])
            return list(connection.execute(select(Message.id).where(Message.conversation_id == cid)
                                           .order_by(Message.id)).scalars())
    finally:
        engine.dispose()


def test_a_stream_far_behind_is_told_to_reload_instead_of_replaying_everything(
        database_url: str, kefu_server: ServerProcess, open_browser: OpenBrowser) -> None:
    b1, m1 = open_browser(kefu_server, "b1", target="m1"), open_browser(kefu_server, "m1")
    cid = b1.conversation_with("m1")
    ids = store_many(database_url, cid, "b1", 400)
    with m1.events(last_event_id="0") as stream:
        first = stream.next()
        assert first.event == "stale" and first.id == str(ids[-1])  # nothing replayed: the page reloads instead
        live = b1.post(cid, "之后的消息照常实时到达")
        assert message_ids([stream.wait_for("message")]) == [live]
    with m1.events(last_event_id=str(ids[-101])) as stream:  # 100 behind: replayed as usual, after the look-back
        replayed = message_ids(only_messages(stream.until_ping()))
    looked_back = replayed[:-101]
    assert replayed[-101:] == [*ids[-100:], live]
    assert looked_back == ids[-100 - len(looked_back):-100] and 10 <= len(looked_back) <= 20  # 15 s, one a second
