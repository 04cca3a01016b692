"""Who is online, as people see it on their open event streams (GET /events over a real socket: `kefu serve` in a
child process, httpx clients as browsers, on SQLite and MariaDB).

What people rely on: a person is online while any of their tabs has its stream open, and offline only a grace
period after the last one closed (a page reload does not flicker); coming and going is told only to the people who
share a conversation with them.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tests.streams import Event, OpenBrowser, json_data, message_ids
from tests.support import ServerProcess

PRESENCE_GRACE_SECONDS = 2.0


def about(user_id: str) -> Callable[[Event], bool]:
    return lambda event: json_data(event)["user"] == user_id


def test_presence_follows_open_streams_with_a_grace_period(kefu_server: ServerProcess,
                                                           open_browser: OpenBrowser) -> None:
    b1, m1 = open_browser(kefu_server, "b1", target="m1"), open_browser(kefu_server, "m1")
    m2 = open_browser(kefu_server, "m2", target="b1")  # b1 hears m2 come and go too: the sentinel below

    with b1.events() as watcher:
        watcher.opened()  # subscribed to presence
        with m1.events():
            assert json_data(watcher.wait_for("presence", where=about("m1"))) == {"user": "m1", "online": True}
            with m1.events() as second:
                second.opened()  # counted as a second open stream of m1
            # One of m1's two tabs closed: m1 is still online, so nothing is announced, even after the grace period.
            # The sentinel: m2 comes and goes after that tab closed, so m2's offline announcement, a grace period
            # after m2's tab closed, comes after any that the closed tab of m1 could have set off.
            with m2.events() as m2_tab:
                m2_tab.opened()
                quiet = watcher.until("presence", where=about("m2"))
            quiet += watcher.until("presence", seconds=PRESENCE_GRACE_SECONDS + 5, where=about("m2"))
            assert [json_data(e) for e in quiet if e.event == "presence" and about("m2")(e)] == [
                {"user": "m2", "online": True}, {"user": "m2", "online": False}]
            assert [json_data(e) for e in quiet if e.event == "presence" and about("m1")(e)] == []
            closed_at = time.monotonic()
        offline = watcher.wait_for("presence", seconds=5, where=about("m1"))
        waited = time.monotonic() - closed_at
    assert json_data(offline) == {"user": "m1", "online": False}
    assert PRESENCE_GRACE_SECONDS - 0.5 <= waited <= 5  # not at once: a page reload does not flicker


def test_presence_is_told_only_to_people_who_share_a_conversation(kefu_server: ServerProcess,
                                                                  open_browser: OpenBrowser) -> None:
    """Who is online is not broadcast to everyone: b2, who never talked to m1, is not told when m1 comes online
    (nor is their stream flooded with the comings and goings of every person on the platform)."""
    partner, stranger = open_browser(kefu_server, "b1", target="m1"), open_browser(kefu_server, "b2", target="m2")
    m1, m2 = open_browser(kefu_server, "m1"), open_browser(kefu_server, "m2")
    with_m2 = stranger.conversation_with("m2")

    with partner.events() as partner_stream, stranger.events() as stranger_stream:
        partner_stream.opened()
        stranger_stream.opened()
        with m1.events():
            assert json_data(partner_stream.wait_for("presence", where=about("m1"))) == {"user": "m1", "online": True}
            # The sentinel, published after m1's announcement reached b1: what b2 has not heard by then, b2 never hears.
            sentinel = m2.post(with_m2, "您好，订单已发出")
            heard = stranger_stream.until("message", where=lambda e: message_ids([e]) == [sentinel])
    assert [e.data for e in heard if e.event == "presence"] == []
