"""A message shows up on the other side's open event stream at once (GET /events over a real socket: `kefu serve` in
a child process, httpx clients as browsers, on SQLite and MariaDB).

What people rely on: a message arrives live with its id and the hooks the page needs, and nothing stored before the
stream opened is sent again; no one hears of other people's conversations, live or replayed, and no one signed in
gets no stream at all; an idle stream is pinged within seconds, with the id to resume from; a reply tells the other
side that their messages were read, whether sent from a page or through the API.
"""

from __future__ import annotations

import time

import httpx

from tests.api_support import new_key
from tests.streams import OpenBrowser, Stream, json_data, message_ids, only_messages, root_attributes
from tests.support import ServerProcess


def test_a_message_arrives_live_with_its_id_and_page_hooks(kefu_server: ServerProcess,
                                                           open_browser: OpenBrowser) -> None:
    b1, m1 = open_browser(kefu_server, "b1", target="m1"), open_browser(kefu_server, "m1")
    cid = b1.conversation_with("m1")
    b1.post(cid, "连接之前的消息")  # stored before the stream opened: not replayed without Last-Event-ID
    with m1.client.stream("GET", "/events") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].split(";")[0] == "text/event-stream"
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        stream = Stream(response).opened()
        mid = b1.post(cid, "请问板蓝根颗粒还有货吗？🙂")
        event = stream.wait_for("message")
    assert event.id == str(mid)
    attributes = root_attributes(event.data)
    assert attributes["data-testid"] == "message"
    assert attributes["data-message-id"] == str(mid)
    assert attributes["data-conversation-id"] == str(cid)
    assert attributes["data-sender-id"] == "b1"
    assert "请问板蓝根颗粒还有货吗？🙂" in event.data


def test_no_one_sees_other_peoples_conversations(kefu_server: ServerProcess, open_browser: OpenBrowser) -> None:
    b1, m1 = open_browser(kefu_server, "b1", target="m1"), open_browser(kefu_server, "m1", target="b2")
    b2 = open_browser(kefu_server, "b2")
    private = b1.conversation_with("m1")
    b2_m1 = m1.conversation_with("b2")
    with b2.events() as stream:
        stream.opened()
        b1.post(private, "b1 和 m1 的私事")
        m1.post(private, "m1 回复 b1")
        m1.conversation_with("b1")  # m1 reads it: a read event for the participants only
        for_b2 = m1.post(b2_m1, "m1 给 b2 的消息")
        heard = stream.until("message")  # with every event before it: what was published earlier came first
        live = heard[-1]
        # A sentinel published after all of the above: whatever b2 has not heard by then, b2 never hears.
        sentinel = m1.post(b2_m1, "m1 给 b2 的第二条")
        heard += stream.until("message", where=lambda e: message_ids([e]) == [sentinel])
    assert message_ids([live]) == [for_b2]
    assert root_attributes(live.data)["data-conversation-id"] == str(b2_m1)
    assert message_ids(only_messages(heard)) == [for_b2, sentinel]
    assert [json_data(e) for e in heard if e.event == "read" and json_data(e)["cid"] == private] == []

    with b2.events(last_event_id="0") as stream:
        replayed = only_messages(stream.until_ping())
    assert message_ids(replayed) == [for_b2, sentinel]  # b2's own conversation only

    with httpx.Client(base_url=kefu_server.url, timeout=httpx.Timeout(10)) as stranger:
        with stranger.stream("GET", "/events") as response:
            assert response.status_code == 401
        with stranger.stream("GET", "/events", headers={"Last-Event-ID": "0"}) as response:
            assert response.status_code == 401


def test_an_idle_stream_gets_a_ping_within_seconds(kefu_server: ServerProcess, open_browser: OpenBrowser) -> None:
    b1, m1 = open_browser(kefu_server, "b1", target="m1"), open_browser(kefu_server, "m1")
    latest = b1.post(b1.conversation_with("m1"), "最新的一条")
    with m1.events() as stream:
        opened = time.monotonic()
        ping = stream.wait_for("ping", seconds=3)
        assert time.monotonic() - opened < 3
    # A live-only stream starts at the newest message: a reconnect from its ping's id replays nothing old.
    assert ping.id == str(latest)


def test_a_reply_tells_the_other_side_that_their_messages_were_read(
        database_url: str, kefu_server: ServerProcess, open_browser: OpenBrowser) -> None:
    """m1 answers without having opened the conversation in a tab (a reply from the API too): the reply moved m1's
    read watermark, so b1 hears a read receipt up to the reply and stops seeing 未读."""
    b1, m1 = open_browser(kefu_server, "b1", target="m1"), open_browser(kefu_server, "m1")
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
        answer = httpx.post(f"{kefu_server.url}/api/v1/conversations/{cid}/messages", headers=auth,
                            json={"body": "可以开", "sender_id": "m1"}, timeout=10)
        assert answer.status_code == 201, answer.text
        read = stream.wait_for("read", where=lambda e: json_data(e)["upto"] > asked)
    assert json_data(read) == {"cid": cid, "user": "m1", "upto": answer.json()["id"]}
