"""Settings: one frozen object read from the environment (and a `.env` file in the working directory)."""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dotenv import load_dotenv

log = logging.getLogger("kefu")

DEFAULT_DATABASE_URL = "sqlite:///var/kefu.db"
DEFAULT_TIMEZONE = "Asia/Shanghai"
DEFAULT_SUPPORT_USER = "p1"


@cache
def time_zone(name: str) -> ZoneInfo:
    """The IANA time zone `name` (from the system's zone files, else the tzdata package). Raises ValueError with
    one clear line when there is no such zone."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as error:
        raise ValueError(f"KEFU_TIMEZONE: unknown time zone {name!r}: use an IANA name such as Asia/Shanghai, "
                         "Europe/Berlin or UTC") from error


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _local_secret_key(var_dir: Path) -> str:
    """The generated key under var/: created once, then reused so sessions survive restarts."""
    path = var_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    var_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    return key


class Rate(NamedTuple):
    """A rate limit: at most `count` in any `seconds` (a sliding window; app.realtime.limits)."""

    count: int
    seconds: float


MESSAGES, UPLOADS, DECODES = Rate(30, 10.0), Rate(10, 60.0), Rate(20, 60.0)  # per person
NEW_CONVERSATIONS, STREAM_OPENS = Rate(30, 3600.0), Rate(60, 60.0)  # per person (stream opens: or admin)
# typing notices a person's pages may post (one per 3 s per conversation: room for several conversations at once);
# past it they are refused before any database work (429)
TYPING_POSTS = Rate(20, 10.0)


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    secret_key: str = field(default="", repr=False)
    secret_key_generated: bool = False
    demo: bool = False
    broker_url: str = ""
    broker_namespace: str = ""  # pub/sub channel prefix; empty: "kefu:<the broker URL's database>"
    upload_dir: Path = Path("var/uploads")
    max_upload_mb: int = 10
    var_dir: Path = Path("var")
    debug: bool = False
    sse_ping_seconds: float = 15.0
    session_recheck_seconds: float = 300.0  # how often a person's open stream checks that its session still stands
    # on SIGTERM, how long requests in flight may take to finish before they are cancelled (streams end at once)
    shutdown_seconds: float = 10.0
    frame_ancestors: str = "'self'"
    trusted_proxies: tuple[str, ...] = ()
    message_limit: Rate = MESSAGES
    upload_limit: Rate = UPLOADS
    decode_limit: Rate = DECODES  # images decoded, whether accepted or not
    conversation_limit: Rate = NEW_CONVERSATIONS  # new conversations a person starts
    stream_limit: Rate = STREAM_OPENS
    typing_limit: Rate = TYPING_POSTS
    streams_per_person: int = 20
    webhook_poll_seconds: float = 1.0
    webhook_backoff_seconds: float = 10.0
    webhook_private_targets: bool = False  # webhooks may go to loopback and private addresses
    card_image_private_targets: bool = False  # cards' pictures may be fetched from loopback and private addresses
    card_image_seconds: float = 3.0  # a card's picture is fetched within this (else the card is sent without it)
    worker_threads: int = 16  # database work runs in threads; more of them only fight over the GIL
    timezone: str = DEFAULT_TIMEZONE  # the days of statistics and the times of the audit log
    support_user: str = DEFAULT_SUPPORT_USER  # the platform's support person: buyers' and merchants' "联系平台客服"

    def __post_init__(self) -> None:
        time_zone(self.timezone)  # an unknown zone stops the start, with one clear line

    @property
    def zone(self) -> ZoneInfo:
        """KEFU_TIMEZONE as a tzinfo: server-side days (statistics) and times (the audit log) are in it."""
        return time_zone(self.timezone)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: object) -> Settings:
        """Settings from KEFU_* variables (`env`, else the process environment and ./.env); ValueError for a
        value that makes no sense."""
        if env is None:
            load_dotenv(Path.cwd() / ".env", override=False)
            env = dict(os.environ)
        var_dir = Path(env.get("KEFU_VAR_DIR", "var"))
        secret = env.get("KEFU_SECRET_KEY", "").strip()
        generated = not secret
        values: dict[str, object] = {
            "database_url": env.get("KEFU_DATABASE_URL", "").strip() or DEFAULT_DATABASE_URL,
            "secret_key": secret or _local_secret_key(var_dir),
            "secret_key_generated": generated,
            "demo": _flag(env.get("KEFU_DEMO")),
            "broker_url": env.get("KEFU_BROKER_URL", "").strip(),
            "broker_namespace": env.get("KEFU_BROKER_NAMESPACE", "").strip(),
            "upload_dir": Path(env.get("KEFU_UPLOAD_DIR", "").strip() or var_dir / "uploads"),
            "max_upload_mb": int(env.get("KEFU_MAX_UPLOAD_MB", "10") or 10),
            "var_dir": var_dir,
            "debug": _flag(env.get("KEFU_DEBUG")),
            "sse_ping_seconds": float(env.get("KEFU_SSE_PING_SECONDS", "15") or 15),
            "session_recheck_seconds": float(env.get("KEFU_SESSION_RECHECK_SECONDS", "300") or 300),
            "shutdown_seconds": float(env.get("KEFU_SHUTDOWN_SECONDS", "10") or 10),
            "webhook_backoff_seconds": float(env.get("KEFU_WEBHOOK_BACKOFF_SECONDS", "10") or 10),
            "webhook_poll_seconds": float(env.get("KEFU_WEBHOOK_POLL_SECONDS", "1") or 1),
            "webhook_private_targets": _flag(env.get("KEFU_WEBHOOK_PRIVATE_TARGETS")),
            "card_image_private_targets": _flag(env.get("KEFU_CARD_IMAGE_PRIVATE_TARGETS")),
            "card_image_seconds": float(env.get("KEFU_CARD_IMAGE_SECONDS", "3") or 3),
            "worker_threads": max(1, int(env.get("KEFU_WORKER_THREADS", "16") or 16)),
            "streams_per_person": int(env.get("KEFU_STREAMS_PER_PERSON", "20") or 20),
            "frame_ancestors": env.get("KEFU_FRAME_ANCESTORS", "").strip() or "'self'",
            "trusted_proxies": tuple(p.strip() for p in env.get("KEFU_TRUSTED_PROXIES", "").split(",") if p.strip()),
            "timezone": env.get("KEFU_TIMEZONE", "").strip() or DEFAULT_TIMEZONE,
            "support_user": env.get("KEFU_SUPPORT_USER", "").strip() or DEFAULT_SUPPORT_USER,
        }
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]
