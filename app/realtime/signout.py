"""Telling open streams that their sessions ended (logout, a new admin password, a disabled admin).

The event `{"t": "signed_out", "sessions": [session key, …]}` goes on the channels of the people (and the
`admins` channel for admins) whose sessions ended; every stream opened under one of those sessions writes
`event: closed` (data `signed-out`) and ends at once (app/realtime/stream.py). Through Redis with
KEFU_BROKER_URL, so it reaches every process; the `kefu` command, which runs outside the server, publishes
straight to Redis. Without a broker the command cannot reach the server: admins' streams then end at their
next ping, when they check their session.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any

from app.realtime.broker import channel_namespace
from app.realtime.bus import ADMINS, Bus, person_channel

log = logging.getLogger("kefu.signout")


def signed_out(session_keys: Iterable[str]) -> dict[str, Any]:
    """The event that ends the streams of these sessions (keys as app.chat.sessions.session_key makes them)."""
    return {"t": "signed_out", "sessions": sorted(set(session_keys))}


def channels_of(people: Iterable[str], admins: bool) -> list[str]:
    """The channels the streams of these people (and of admins, when `admins`) listen on."""
    return sorted({person_channel(user_id) for user_id in people} | ({ADMINS} if admins else set()))


async def announce(bus: Bus, session_keys: list[str], channels: list[str]) -> None:
    """From the event loop: ends the open streams of these sessions, in every process, and this process's typing
    permits of them (app.realtime.typing; other processes let theirs run out)."""
    bus.typing_permits.forget_sessions(session_keys)
    if session_keys and channels:
        await bus.publish(signed_out(session_keys), channels)


def announce_through_broker(broker_url: str, session_keys: list[str], channels: list[str],
                            namespace: str = "") -> bool:
    """For the `kefu` command: publishes straight to Redis (as Litestar's Redis pub/sub backend does: the JSON
    on each channel). False when there is no broker or it did not answer (the sessions are ended all the same;
    admins' streams then end at their next ping)."""
    if not broker_url or not session_keys or not channels:
        return False
    from redis import Redis
    from redis.exceptions import RedisError

    data = json.dumps(signed_out(session_keys))
    try:
        with Redis.from_url(broker_url, socket_connect_timeout=2, socket_timeout=2) as redis:
            prefix = channel_namespace(broker_url, namespace)
            for channel in channels:
                redis.publish(prefix + channel, data)
    except RedisError as error:
        log.warning("could not tell open streams that sessions ended: %s", error)
        return False
    return True
