"""GET /events over a real socket: `kefu serve` in a child process, httpx clients as browsers, on SQLite and MariaDB.

What people rely on: a message shows up on the other side's stream at once, with its id and page hooks; a tab that
reconnects with Last-Event-ID gets every message it missed, in order and once, even across a server restart; no one
sees other people's conversations; presence follows open streams; pings keep the stream alive.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import insert, select, text

from app.db.engine import make_engine
from app.db.models import Message, utcnow
from tests.support import Event, ServerProcess, free_port, json_data, message_ids, server_env, sign_in
from tests.test_api import new_key

OPEN_CONVERSATION_RE = re.compile(r'data-open-conversation="(\d+)"')
ROOT_TAG_RE = re.compile(r"\s*<[^>]*>")
ATTRIBUTE_RE = re.compile(r'([\w-]+)="([^"]*)"')
PRESENCE_GRACE_SECONDS = 2.0


def root_attributes(html: str) -> dict[str, str]:
    """The attributes of the first (root) element of an HTML fragment."""
    match = ROOT_TAG_RE.match(html)
    assert match, f"no root element in {html[:200]!r}"
    return dict(ATTRIBUTE_RE.findall(match.group(0)))


class Stream:
    """An open /events response, read event by event as EventSource dispatches them, with deadlines.

    Pings arrive every second on an idle stream (KEFU_SSE_PING_SECONDS=1), so a deadline checked after each
    event is always reached; a stream that goes silent altogether fails on the client's 10 s read timeout."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines: Iterator[str] = response.iter_lines()
        self._early: list[Event] = []
        self.comments = 0
        self.last_id: str | None = None
        self.last_ping: Event | None = None

    def _read(self, until_comment: bool = False) -> Event | None:
        event_id, kind, data = None, "message", []
        for line in self._lines:
            if line == "":
                if data:
                    return Event(event_id, kind, "\n".join(data))
                event_id, kind, data = None, "message", []
            elif line.startswith(":"):
                self.comments += 1
                if until_comment:
                    return None
            else:
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "id":
                    event_id = value
                elif name == "event":
                    kind = value
                elif name == "data":
                    data.append(value)
        raise EOFError("the stream closed")

    def opened(self) -> Stream:
        """Returns once the server has subscribed this stream: at its opening comment or, failing that, its first
        event. Whatever is published from then on reaches it."""
        if not self.comments and not self._early and (event := self._read(until_comment=True)) is not None:
            self._early.append(event)
        return self

    def next(self) -> Event:
        event = self._early.pop(0) if self._early else self._read()
        assert event is not None
        assert event.id, f"an event without an id (EventSource dispatches it all the same): {event}"
        self.last_id = event.id
        if event.event == "ping":
            self.last_ping = event
        return event

    def wait_for(self, kind: str, seconds: float = 5.0, where: Callable[[Event], bool] = lambda e: True) -> Event:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            event = self.next()
            if event.event == kind and where(event):
                return event
        raise AssertionError(f"no matching {kind} event within {seconds} s")

    def until_ping(self) -> list[Event]:
        """Every event before the next ping, which comes once the stream has been idle for a second."""
        events = []
        while (event := self.next()).event != "ping":
            events.append(event)
        return events

    def read_for(self, seconds: float) -> list[Event]:
        deadline = time.monotonic() + seconds
        events = []
        while time.monotonic() < deadline:
            events.append(self.next())
        return events


def only_messages(events: list[Event]) -> list[Event]:
    return [e for e in events if e.event == "message"]


@dataclass
class Browser:
    """One person in their own browser (own cookie jar), signed in with the demo sign-in."""

    client: httpx.Client
    user_id: str
    token: str

    def conversation_with(self, peer_id: str) -> int:
        page = self.client.get("/chat", params={"target": peer_id})
        assert page.status_code == 200, page.text
        match = OPEN_CONVERSATION_RE.search(page.text)
        assert match, "the chat page has no data-open-conversation"
        return int(match.group(1))

    def post(self, cid: int, body: str) -> int:
        response = self.client.post(f"/chat/c/{cid}/messages", data={"body": body},
                                    headers={"X-CSRFToken": self.token})
        assert response.status_code == 201, response.text
        return int(root_attributes(response.text)["data-message-id"])

    @contextmanager
    def events(self, last_event_id: str | None = None, params: dict[str, str] | None = None) -> Iterator[Stream]:
        # Raw UTF-8, as EventSource sends whatever id it was given.
        headers = {} if last_event_id is None else {"Last-Event-ID": last_event_id.encode()}
        with self.client.stream("GET", "/events", headers=headers, params=params) as response:
            assert response.status_code == 200, response.read()
            yield Stream(response)


Serve = Callable[..., ServerProcess]
OpenBrowser = Callable[..., Browser]


@pytest.fixture
def serve(database_url: str, tmp_path: Path) -> Iterator[Serve]:
    """Starts `kefu serve` on the test database (on a given port, or a free one); stops every server at the end."""
    env = server_env(database_url, tmp_path)
    started: list[ServerProcess] = []

    def start(port: int | None = None) -> ServerProcess:
        server = ServerProcess(env, port or free_port())
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def server(serve: Serve) -> ServerProcess:
    return serve()


@pytest.fixture
def browser() -> Iterator[OpenBrowser]:
    clients: list[httpx.Client] = []

    def open_browser(server: ServerProcess, user_id: str, target: str | None = None) -> Browser:
        client = httpx.Client(base_url=server.url, timeout=httpx.Timeout(10))
        clients.append(client)
        return Browser(client, user_id, sign_in(client, user_id, target=target))

    yield open_browser
    for client in clients:
        client.close()


def test_a_message_arrives_live_with_its_id_and_page_hooks(server: ServerProcess, browser: OpenBrowser) -> None:
    b1, m1 = browser(server, "b1", target="m1"), browser(server, "m1")
    cid = b1.conversation_with("m1")
    b1.post(cid, "连接之前的消息")  # stored before the stream opened: not replayed without Last-Event-ID
    with m1.client.stream("GET", "/events") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].split(";")[0] == "text/event-stream"
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        stream = Stream(response)
        mid = b1.post(cid, "请问板蓝根颗粒还有货吗？🙂")
        event = stream.wait_for("message")
    assert event.id == str(mid)
    attributes = root_attributes(event.data)
    assert attributes["data-testid"] == "message"
    assert attributes["data-message-id"] == str(mid)
    assert attributes["data-conversation-id"] == str(cid)
    assert attributes["data-sender-id"] == "b1"
    assert "请问板蓝根颗粒还有货吗？🙂" in event.data


def test_reconnect_with_last_event_id_replays_the_missed_messages_once(server: ServerProcess,
                                                                       browser: OpenBrowser) -> None:
    b1, m1 = browser(server, "b1", target="m1"), browser(server, "m1")
    cid = b1.conversation_with("m1")
    with m1.events() as stream:
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
        after = only_messages(stream.until_ping())
    assert message_ids(after) == [live]
    assert after[0].id == str(live)


def test_messages_sent_while_the_stream_reconnects_arrive_once_in_order(server: ServerProcess,
                                                                         browser: OpenBrowser) -> None:
    """The window between the replay from the database and live delivery neither drops nor repeats a message."""
    b1, m1 = browser(server, "b1", target="m1"), browser(server, "m1")
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
            received += only_messages(stream.until_ping())
    finally:
        sender.join(10)
    assert not errors, errors
    assert len(sent) == 9
    assert message_ids(received) == [resume_at, *sent]  # the look-back resends the resume point's own message


def test_replay_reaches_across_a_server_restart(serve: Serve, browser: OpenBrowser) -> None:
    server = serve()
    b1, m1 = browser(server, "b1", target="m1"), browser(server, "m1")
    cid = b1.conversation_with("m1")
    with m1.events() as stream:
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


def test_no_one_sees_other_peoples_conversations(server: ServerProcess, browser: OpenBrowser) -> None:
    b1, m1, b2 = browser(server, "b1", target="m1"), browser(server, "m1", target="b2"), browser(server, "b2")
    private = b1.conversation_with("m1")
    b2_m1 = m1.conversation_with("b2")
    with b2.events() as stream:
        stream.opened()
        b1.post(private, "b1 和 m1 的私事")
        m1.post(private, "m1 回复 b1")
        m1.conversation_with("b1")  # m1 reads it: a read event for the participants only
        for_b2 = m1.post(b2_m1, "m1 给 b2 的消息")
        live = stream.wait_for("message")
        live_others = stream.until_ping()
    assert message_ids([live]) == [for_b2]
    assert root_attributes(live.data)["data-conversation-id"] == str(b2_m1)
    assert only_messages(live_others) == []
    assert [json_data(e) for e in live_others if e.event == "read" and json_data(e)["cid"] == private] == []

    with b2.events(last_event_id="0") as stream:
        replayed = only_messages(stream.until_ping())
    assert message_ids(replayed) == [for_b2]

    with httpx.Client(base_url=server.url, timeout=httpx.Timeout(10)) as stranger:
        with stranger.stream("GET", "/events") as response:
            assert response.status_code == 401
        with stranger.stream("GET", "/events", headers={"Last-Event-ID": "0"}) as response:
            assert response.status_code == 401


def test_presence_follows_open_streams_with_a_grace_period(server: ServerProcess, browser: OpenBrowser) -> None:
    b1, m1 = browser(server, "b1", target="m1"), browser(server, "m1")

    def about_m1(event: Event) -> bool:
        return json_data(event)["user"] == "m1"

    with b1.events() as watcher:
        watcher.opened()  # subscribed to presence
        with m1.events():
            assert json_data(watcher.wait_for("presence", where=about_m1)) == {"user": "m1", "online": True}
            with m1.events() as second:
                second.opened()  # counted as a second open stream of m1
            # One of m1's two tabs closed: m1 is still online, so nothing is announced, even after the grace period.
            quiet = watcher.read_for(PRESENCE_GRACE_SECONDS + 0.8)
            assert [json_data(e) for e in quiet if e.event == "presence" and about_m1(e)] == []
            closed_at = time.monotonic()
        offline = watcher.wait_for("presence", seconds=5, where=about_m1)
        waited = time.monotonic() - closed_at
    assert json_data(offline) == {"user": "m1", "online": False}
    assert PRESENCE_GRACE_SECONDS - 0.5 <= waited <= 5  # not at once: a page reload does not flicker


def test_presence_is_told_only_to_people_who_share_a_conversation(server: ServerProcess, browser: OpenBrowser) -> None:
    """Who is online is not broadcast to everyone: b2, who never talked to m1, is not told when m1 comes online
    (nor is their stream flooded with the comings and goings of every person on the platform)."""
    partner, stranger = browser(server, "b1", target="m1"), browser(server, "b2", target="m2")
    m1 = browser(server, "m1")

    def about_m1(event: Event) -> bool:
        return json_data(event)["user"] == "m1"

    with partner.events() as partner_stream, stranger.events() as stranger_stream:
        partner_stream.opened()
        stranger_stream.opened()
        with m1.events():
            assert json_data(partner_stream.wait_for("presence", where=about_m1)) == {"user": "m1", "online": True}
            heard = stranger_stream.read_for(1.5)  # the same publish reached every subscriber long ago
    assert [e.data for e in heard if e.event == "presence"] == []


def test_an_idle_stream_gets_a_ping_within_seconds(server: ServerProcess, browser: OpenBrowser) -> None:
    b1, m1 = browser(server, "b1", target="m1"), browser(server, "m1")
    latest = b1.post(b1.conversation_with("m1"), "最新的一条")
    with m1.events() as stream:
        opened = time.monotonic()
        ping = stream.wait_for("ping", seconds=3)
        assert time.monotonic() - opened < 3
    # A live-only stream starts at the newest message: a reconnect from its ping's id replays nothing old.
    assert ping.id == str(latest)


def test_a_garbage_last_event_id_leaves_a_working_live_stream(server: ServerProcess, browser: OpenBrowser) -> None:
    b1, m1 = browser(server, "b1", target="m1"), browser(server, "m1")
    cid = b1.conversation_with("m1")
    b1.post(cid, "旧消息")
    # Empty, not numbers, too long, too big for a BIGINT, full-width digits, and an id from beyond every stored message
    # (a tab open since before the database was restored from a backup): all leave a live stream that works.
    for garbage in ("abc", "-1", "1" * 40, "9" * 19, "", "１２", "1000000000"):
        for how in ("header", "query"):
            header, params = (garbage, None) if how == "header" else (None, {"last_event_id": garbage})
            with m1.events(last_event_id=header, params=params) as stream:
                mid = b1.post(cid, f"Last-Event-ID {garbage!r} 之后")
                event = stream.wait_for("message")
            assert message_ids([event]) == [mid], f"Last-Event-ID {garbage!r} in the {how}"


# --- nothing lost, whatever order the commits land in; watermarks heard by both sides ---

# A send that has taken its id (INSERT) and now waits on the members' rows (the statement after it).
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
        database_url: str, server: ServerProcess, browser: OpenBrowser) -> None:
    """MariaDB: b1's send takes its id, then waits for a lock; b2's later send commits first; m1's page and stream
    start after b2's message. b1's message must still reach m1 live, and a reconnect from b2's id replays it."""
    b1, b2, m1 = browser(server, "b1", target="m1"), browser(server, "b2", target="m1"), browser(server, "m1")
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
        database_url: str, server: ServerProcess, browser: OpenBrowser) -> None:
    """The same late commit, stored directly (SQLite commits in id order, so the id is given): a reconnect with the
    higher id replays the lower one, and a message older than the look-back is not sent again."""
    b1, m1 = browser(server, "b1", target="m1"), browser(server, "m1")
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


def test_a_reply_tells_the_other_side_that_their_messages_were_read(
        database_url: str, server: ServerProcess, browser: OpenBrowser) -> None:
    """m1 answers without having opened the conversation in a tab (a reply from the API too): the reply moved m1's
    read watermark, so b1 hears a read receipt up to the reply and stops seeing 未读."""
    b1, m1 = browser(server, "b1", target="m1"), browser(server, "m1")
    cid = b1.conversation_with("m1")
    with b1.events() as stream:
        stream.opened()
        b1.post(cid, "在吗？")
        b1.post(cid, "想问下发货时间")
        reply = m1.post(cid, "在的，今天发货")
        read = stream.wait_for("read", where=lambda e: json_data(e)["user"] == "m1")
    assert json_data(read) == {"cid": cid, "user": "m1", "upto": reply}
    with b1.events() as stream:  # the same for a reply that comes through the API, as the sender's own message
        stream.opened()
        asked = b1.post(cid, "能开发票吗？")
        auth = {"Authorization": f"Bearer {new_key(database_url)}"}
        answer = httpx.post(f"{server.url}/api/v1/conversations/{cid}/messages", headers=auth,
                            json={"body": "可以开", "sender_id": "m1"}, timeout=10)
        assert answer.status_code == 201, answer.text
        read = stream.wait_for("read", where=lambda e: json_data(e)["upto"] > asked)
    assert json_data(read) == {"cid": cid, "user": "m1", "upto": answer.json()["id"]}


# --- what a stream open may cost ---

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
        database_url: str, server: ServerProcess, browser: OpenBrowser) -> None:
    b1, m1 = browser(server, "b1", target="m1"), browser(server, "m1")
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


def test_opening_streams_too_often_gets_429_with_retry_after(server: ServerProcess, browser: OpenBrowser) -> None:
    m1 = browser(server, "m1")
    statuses = []
    for _ in range(61):
        with m1.client.stream("GET", "/events") as response:
            statuses.append(response.status_code)
            if response.status_code == 429:
                assert int(response.headers["retry-after"]) >= 1
                assert "连接太频繁" in response.read().decode()
    assert statuses == [200] * 60 + [429]
