"""Who is online, as people see it on their open event streams (GET /events over a real socket: `kefu serve` in a
child process, httpx clients as browsers, on SQLite and MariaDB).

What people rely on: a person is online while any of their tabs has its stream open, and offline only a grace
period after the last one closed (a page reload does not flicker); coming and going is told only to the people who
share a conversation with them.
"""

from __future__ import annotations

import time

from tests.streams import Event, OpenBrowser, json_data
from tests.support import ServerProcess

PRESENCE_GRACE_SECONDS = 2.0


def test_presence_follows_open_streams_with_a_grace_period(kefu_server: ServerProcess,
                                                           open_browser: OpenBrowser) -> None:
    b1, m1 = open_browser(kefu_server, "b1", target="m1"), open_browser(kefu_server, "m1")

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


def test_presence_is_told_only_to_people_who_share_a_conversation(kefu_server: ServerProcess,
                                                                  open_browser: OpenBrowser) -> None:
    """Who is online is not broadcast to everyone: b2, who never talked to m1, is not told when m1 comes online
    (nor is their stream flooded with the comings and goings of every person on the platform)."""
    partner, stranger = open_browser(kefu_server, "b1", target="m1"), open_browser(kefu_server, "b2", target="m2")
    m1 = open_browser(kefu_server, "m1")

    def about_m1(event: Event) -> bool:
        return json_data(event)["user"] == "m1"

    with partner.events() as partner_stream, stranger.events() as stranger_stream:
        partner_stream.opened()
        stranger_stream.opened()
        with m1.events():
            assert json_data(partner_stream.wait_for("presence", where=about_m1)) == {"user": "m1", "online": True}
            heard = stranger_stream.read_for(1.5)  # the same publish reached every subscriber long ago
    assert [e.data for e in heard if e.event == "presence"] == []
