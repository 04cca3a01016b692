"""Translations. Chinese (zh-CN) is the source language: messages are written in Chinese through gettext,
so the untranslated text is already right for zh-CN and an English catalogue can follow under locale/."""

from __future__ import annotations

import gettext as _gettext
import re
from contextvars import ContextVar
from functools import cache

from babel.core import negotiate_locale

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


MAX_LANGUAGES = 20  # of an Accept-Language header, the first this many ranges are read


def pick_locale(accept_language: str | None) -> str:
    """The locale to answer in (one of SUPPORTED that has a catalogue; zh-CN otherwise), from an Accept-Language
    header: ranges in the order of their q-values (RFC 9110, section 12.5.4; q=0 means "not this"), matched by
    Babel's `negotiate_locale`. Every Chinese range gets zh-CN, the one Chinese Kefu has."""
    ranked = []
    for position, part in enumerate((accept_language or "").split(",")[:MAX_LANGUAGES]):
        tag, _, parameters = part.strip().partition(";")
        weight = re.fullmatch(r"\s*q\s*=\s*([01](?:\.\d{0,3})?)\s*", parameters)
        quality = float(weight.group(1)) if weight else (1.0 if not parameters.strip() else 0.0)
        language, _, region = tag.strip().replace("-", "_").partition("_")
        language = language.lower()
        if language and quality > 0:
            tag = "zh_CN" if language == "zh" else language + ("_" + region.upper() if region else "")
            ranked.append((-quality, position, tag))
    available = [name for name in SUPPORTED if name == DEFAULT_LOCALE or (LOCALE_DIR / name).exists()]
    return negotiate_locale([tag for *_, tag in sorted(ranked)], available) or DEFAULT_LOCALE
