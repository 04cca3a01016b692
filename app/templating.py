"""The one Jinja environment: pages and fragments rendered by requests, and message fragments rendered
for the event stream (replay) outside any request."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from functools import cache

import regex
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
    """A message as one line of a conversation list (the `preview` filter): "[图片]" or "[文件]" (translated) for an
    image or a file, else its body with each run of whitespace made one space, cut to `limit` characters with "…";
    "" for None."""
    if message is None:
        return ""
    if message.kind == "image":
        return gettext("[图片]")
    if message.kind == "file":
        return gettext("[文件]")
    text = " ".join(message.body.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


_GRAPHEME = regex.compile(r"\X")
_IDEOGRAPH = regex.compile(r"^[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Hangul}]$")


def initials(name: str) -> str:
    """What a person's avatar shows (the `initials` filter): the first two characters of a Chinese (Japanese, Korean)
    name, so that 保安堂药房 (保安) and 保和堂医药集团 (保和) differ; otherwise the whole first grapheme ("🇨🇳" of
    "🇨🇳药房", "É" of "Élodie", never half of one), upper-cased; "?" for a name with nothing visible."""
    graphemes = [g for g in _GRAPHEME.findall(name.strip()) if not g.isspace()][:2]
    if not graphemes:
        return "?"
    if len(graphemes) == 2 and all(_IDEOGRAPH.match(g) for g in graphemes):
        return "".join(graphemes)
    return graphemes[0].upper()


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
    request's language, `static` for versioned static URLs, and the initials, iso, clock, preview, thumb_width,
    thumb_height and filesize filters."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATE_DIR),
        autoescape=select_autoescape(default=True, default_for_string=True),
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.install_gettext_callables(gettext, ngettext, newstyle=True)  # type: ignore[attr-defined]
    env.globals["static"] = static_url
    env.filters.update(initials=initials, iso=iso, clock=clock, preview=preview, thumb_width=thumb_width,
                       thumb_height=thumb_height)
    return env


def render(template: str, **context: object) -> str:
    """`template` rendered with `context` as HTML, in the current request's language; needs no request."""
    return environment().get_template(template).render(**context)


def render_message(message, sender) -> str:  # type: ignore[no-untyped-def]
    """A message's HTML, the same for every viewer (CSS and kefu.js mark one's own messages)."""
    return render("_message.html", m=message, sender=sender)
