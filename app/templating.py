"""The one Jinja environment: pages and fragments rendered by requests, and message fragments rendered
for the event stream (replay) outside any request."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from functools import cache

from jinja2 import Environment, FileSystemLoader, select_autoescape

from app import PACKAGE
from app.i18n import gettext, ngettext

TEMPLATE_DIR = PACKAGE / "templates"
STATIC_DIR = PACKAGE / "static"


@cache
def static_url(path: str) -> str:
    """The URL of a file under static/, versioned by a hash of its content ("/static/js/kefu.js?v=3f2a…"): browsers
    may keep it for a year, and an upgrade changes the URL of every file that changed. Read once per process."""
    content = (STATIC_DIR / path).read_bytes()
    return f"/static/{path}?v={hashlib.sha256(content).hexdigest()[:12]}"


def iso(value: datetime | None) -> str:
    """The moment in ISO 8601, in UTC with its +00:00 offset, or "" for None (the `iso` filter, for <time datetime>)."""
    return value.astimezone(UTC).isoformat() if value else ""


def clock(value: datetime | None) -> str:
    """A UTC fallback; static/js/kefu.js rewrites <time> elements in the reader's own time zone."""
    return value.astimezone(UTC).strftime("%H:%M") if value else ""


def preview(message, limit: int = 60) -> str:  # type: ignore[no-untyped-def]
    """A message as one line of a conversation list (the `preview` filter): "[已撤回]" once recalled, "[图片]" or
    "[文件]" (translated) for an image or a file, else its body with each run of whitespace made one space, cut to
    `limit` characters with "…"; "" for None."""
    if message is None:
        return ""
    if message.recalled_at is not None:
        return gettext("[已撤回]")
    if message.kind == "image":
        return gettext("[图片]")
    if message.kind == "file":
        return gettext("[文件]")
    text = " ".join(message.body.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


THUMB = 240  # the largest side of an image in the thread, in CSS pixels


def _thumb_scale(width: int | None, height: int | None) -> float:
    if not width or not height:
        return 1.0
    return min(1.0, THUMB / max(width, height))


def thumb_width(width: int | None, height: int | None) -> int:
    """The width, in CSS pixels, an image is shown at in the thread: with both sides known, scaled down (never up) so
    that the larger is at most THUMB (240); else the width as it is, or THUMB when unknown. As a filter:
    `width|thumb_width(height)`."""
    return round((width or THUMB) * _thumb_scale(width, height))


def thumb_height(height: int | None, width: int | None) -> int:
    """The height matching `thumb_width`, in CSS pixels (THUMB when unknown). Height first, unlike thumb_width, for
    the filter: `height|thumb_height(width)`."""
    return round((height or THUMB) * _thumb_scale(width, height))


@cache
def environment() -> Environment:
    """The app's one Jinja environment (built once per process): templates/ with autoescaping, gettext in the current
    request's language, `static` for versioned static URLs, and the iso, clock, preview, thumb_width, thumb_height and
    filesize filters."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATE_DIR),
        autoescape=select_autoescape(default=True, default_for_string=True),
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.install_gettext_callables(gettext, ngettext, newstyle=True)  # type: ignore[attr-defined]
    env.globals["static"] = static_url
    env.filters.update(iso=iso, clock=clock, preview=preview, thumb_width=thumb_width, thumb_height=thumb_height)
    return env


def render(template: str, **context: object) -> str:
    """`template` rendered with `context` as HTML, in the current request's language; needs no request."""
    return environment().get_template(template).render(**context)


def render_message(message, sender, monitor: bool = False) -> str:  # type: ignore[no-untyped-def]
    """A message's HTML, the same for both participants (CSS and kefu.js mark one's own messages); `monitor`: as
    the admins' monitor shows it (a recalled message's original, marked recalled)."""
    return render("_message.html", m=message, sender=sender, monitor=monitor)
