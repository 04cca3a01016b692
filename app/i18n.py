"""Translations. Chinese (zh-CN) is the source language: messages are written in Chinese through gettext,
so the untranslated text is already right for zh-CN and an English catalogue can follow under locale/."""

from __future__ import annotations

import gettext as _gettext
from contextvars import ContextVar
from functools import cache

from app import PACKAGE

DOMAIN = "kefu"
LOCALE_DIR = PACKAGE / "locale"
SUPPORTED = ("zh_CN", "en")
DEFAULT_LOCALE = "zh_CN"

current_locale: ContextVar[str] = ContextVar("kefu_locale", default=DEFAULT_LOCALE)


@cache
def translations(locale: str) -> _gettext.NullTranslations:
    """The gettext catalogue of `locale` (zh-CN text itself when there is none)."""
    return _gettext.translation(DOMAIN, LOCALE_DIR, languages=[locale], fallback=True)


def gettext(message: str) -> str:
    """`message` (the Chinese source text) in the current request's language (`current_locale`); the source text when
    the catalogue has no translation."""
    return translations(current_locale.get()).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    """The singular or plural form for `n`, in the current request's language (`current_locale`)."""
    return translations(current_locale.get()).ngettext(singular, plural, n)


def pick_locale(accept_language: str | None) -> str:
    """zh-CN unless the browser prefers a language we have a catalogue for."""
    for part in (accept_language or "").split(","):
        tag = part.split(";", 1)[0].strip().replace("-", "_")
        if not tag:
            continue
        if tag.lower().startswith("zh"):
            return "zh_CN"
        base = tag.split("_", 1)[0].lower()
        if base in SUPPORTED and (LOCALE_DIR / base).exists():
            return base
    return DEFAULT_LOCALE
