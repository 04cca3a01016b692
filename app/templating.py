"""The one Jinja environment: pages and fragments rendered by requests, and message fragments rendered
for the event stream (replay) outside any request."""

from __future__ import annotations

import hashlib
import threading
from datetime import UTC, datetime
from functools import cache

import emoji
import regex
from jinja2 import Environment, FileSystemLoader, select_autoescape
from linkify_it import LinkifyIt
from markupsafe import Markup, escape

from app import PACKAGE
from app.chat.cards import from_json, money
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
    "[文件]" (translated) for an image or a file, "[商品] title" or "[订单] 订单号 …" for a card, else its body
    with each run of whitespace made one space, cut to `limit` characters with "…"; "" for None."""
    if message is None:
        return ""
    if message.recalled_at is not None:
        return gettext("[已撤回]")
    if message.kind == "image":
        return gettext("[图片]")
    if message.kind == "file":
        return gettext("[文件]")
    if message.kind == "product":
        text = gettext("[商品] {title}").format(title=" ".join(message.body.split()))
        return text if len(text) <= limit else text[: limit - 1] + "…"
    if message.kind == "order":
        return gettext("[订单] 订单号 {order_no}").format(order_no=message.body)
    text = " ".join(message.body.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- links and emoji in a message's text ---

_linkifiers = threading.local()  # a LinkifyIt keeps the state of its last match: one per thread


def _linkifier() -> LinkifyIt:
    found = getattr(_linkifiers, "one", None)
    if found is None:
        # http(s) links and bare "www." addresses only: no ftp:, protocol-relative //, mailto: or e-mail addresses
        found = LinkifyIt().add("ftp:", None).add("//", None).add("mailto:", None)
        found.set({"fuzzy_email": False, "fuzzy_ip": False, "fuzzy_link": True})
        _linkifiers.one = found
    return found


LINK = Markup('<a data-testid="link" href="{}" rel="noopener noreferrer nofollow" target="_blank">{}</a>')


def linked(text: str | None) -> Markup:
    """A message's text as HTML (the `linked` filter): escaped, with each http:// or https:// URL and each bare
    "www." address made a link (`data-testid="link"`, opening in a new tab with rel="noopener noreferrer nofollow").
    A "www." address gets "https://" (the secure scheme every browser now tries first; a plain-HTTP link opened from
    a chat could be rewritten on the way). Nothing else becomes a link: no other scheme (javascript:, data:, mailto:,
    ftp:), no bare domain without "www.", no e-mail address, no address holding a bidi control character (U+202E
    would show it reversed). Links are found by linkify-it-py; "" for None."""
    if not text:
        return Markup("")
    finder = _linkifier()
    parts: list[str] = []
    done = 0
    start = 0
    for piece in _AFTER_CJK.split(text):
        matches = finder.match(piece) if finder.pretest(piece) else None
        for match in matches or []:
            if _BIDI_CONTROL.search(match.raw):  # it would show one address and lead to another: left as text
                continue
            scheme = match.schema.lower()
            if scheme in ("http:", "https:"):
                href = match.url
            elif scheme == "" and match.raw[:4].lower() == "www.":
                href = "https://" + match.raw
            else:
                continue
            parts.append(escape(text[done:start + match.index]))
            parts.append(LINK.format(href, match.raw))
            done = start + match.last_index
        start += len(piece)
    parts.append(escape(text[done:]))
    return Markup("").join(parts)


# linkify-it wants a link to start a word, and takes full-width punctuation into a link's path; Chinese is written
# without spaces ("看这个https://…，谢谢", "访问www.…。"), so the text is also cut where a link starts right after a
# character outside ASCII, and before each CJK or full-width punctuation mark (Chinese letters stay: 例子.中国/路径)
_AFTER_CJK = regex.compile(r"(?<=[^\x00-\x7F])(?=(?i:https?://|www\.))|(?=[\u3000-\u303F\uFF01-\uFF0F\uFF1A-\uFF20"
                           r"\uFF3B-\uFF40\uFF5B-\uFF65])")


_BIDI_CONTROL = regex.compile(r"\p{Bidi_Control}")  # U+202E and the like: they reorder what follows them


MOST_EMOJI = 3  # a message of one to this many emoji (and spaces) is shown large


def _shown_as_emoji(grapheme: str) -> bool:
    # an emoji that is drawn as a picture: one with emoji presentation (😀), or a sequence (❤️, 👍🏽, 🇨🇳, 👨‍👩‍👧);
    # a lone text-style character such as © or ❤ is text
    return emoji.is_emoji(grapheme) and (len(grapheme) > 1 or bool(regex.match(r"\p{Emoji_Presentation}", grapheme)))


def emoji_only(text: str | None) -> bool:
    """Whether a message's whole text is one to three emoji, spaces aside (the `emoji_only` filter): graphemes (Unicode
    extended grapheme clusters, so 👨‍👩‍👧 or 🇨🇳 count once) that are emoji drawn as pictures."""
    if not text or len(text) > 64:
        return False
    graphemes = [g for word in text.split() for g in regex.findall(r"\X", word)]
    return 0 < len(graphemes) <= MOST_EMOJI and all(_shown_as_emoji(g) for g in graphemes)


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
    request's language, `static` for versioned static URLs, and the initials, iso, clock, preview, linked, emoji_only,
    thumb_width, thumb_height, card (a stored card's fields) and money (fen and currency as "¥12.34") filters (and
    Jinja's own, filesizeformat among them)."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATE_DIR),
        autoescape=select_autoescape(default=True, default_for_string=True),
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.install_gettext_callables(gettext, ngettext, newstyle=True)  # type: ignore[attr-defined]
    env.globals["static"] = static_url
    env.filters.update(initials=initials, iso=iso, clock=clock, preview=preview, linked=linked, emoji_only=emoji_only,
                       thumb_width=thumb_width, thumb_height=thumb_height, card=from_json, money=money)
    return env


def render(template: str, **context: object) -> str:
    """`template` rendered with `context` as HTML, in the current request's language; needs no request."""
    return environment().get_template(template).render(**context)


def render_message(message, sender, monitor: bool = False) -> str:  # type: ignore[no-untyped-def]
    """A message's HTML, the same for both participants (CSS and kefu.js mark one's own messages); `monitor`: as
    the admins' monitor shows it (a recalled message's original, marked recalled)."""
    return render("_message.html", m=message, sender=sender, monitor=monitor)
