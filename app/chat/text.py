"""The one set of rules for text that people and marketplaces set: message bodies, quick replies and names.

"Visible" follows Unicode properties (with the `regex` module, which knows them): a text must hold at least one
character that is neither white space, a default-ignorable code point (zero-width spaces and joiners, the Hangul
fillers, variation selectors, bidi marks: Unicode's DerivedCoreProperties), a control, format, unassigned or private
character, a separator, a mark on its own, nor a symbol whose Unicode name says it draws nothing (U+2800 BRAILLE
PATTERN BLANK, U+303F, U+1D159, U+FFFC).
"""

from __future__ import annotations

import unicodedata

import regex

from app.chat.errors import InvalidInput
from app.i18n import gettext as _

_NO_INK = regex.compile(r"[\p{Default_Ignorable_Code_Point}\p{White_Space}\p{C}\p{Z}\p{M}]")
_CONTROL = regex.compile(r"\p{Cc}")
_BIDI_CONTROL = regex.compile(r"\p{Bidi_Control}")


# Symbols whose Unicode name says they draw nothing: U+2800 BRAILLE PATTERN BLANK, U+303F IDEOGRAPHIC HALF FILL
# SPACE, U+1D159 MUSICAL SYMBOL NULL NOTEHEAD; and U+FFFC, which stands for an object that is not there.
_EMPTY_NAMES = (" BLANK", " FILL SPACE", " NULL NOTEHEAD", "OBJECT REPLACEMENT CHARACTER")


def is_visible(char: str) -> bool:
    """Whether one character leaves a mark on the screen by itself (see the module's rule)."""
    return _NO_INK.match(char) is None and not unicodedata.name(char, "").endswith(_EMPTY_NAMES)


def has_visible(text: str) -> bool:
    """Whether `text` shows anything at all."""
    return any(is_visible(char) for char in text)


def clean_text(raw: str | None, what: str, max_length: int, multiline: bool) -> str:
    """`raw` with its line breaks made "\\n" and outer white space trimmed, or InvalidInput naming `what` ("消息",
    "名称", …): empty, nothing visible, longer than `max_length` characters, or holding control characters (line
    breaks and tabs are allowed in multi-line text; single-line text, such as a name, also refuses bidi controls,
    which would reorder the text shown around it)."""
    text = (raw or "").replace("\r\n", "\n").replace("\r", "\n").strip()
    if not text:
        raise InvalidInput(_("{what}不能为空。").format(what=what))
    if not has_visible(text):
        raise InvalidInput(_("{what}只有看不见的字符。").format(what=what))
    if len(text) > max_length:
        raise InvalidInput(_("{what}太长了：最多 {limit} 个字符，现在有 {count} 个。").format(
            what=what, limit=max_length, count=len(text)))
    allowed = {"\n", "\t"} if multiline else set()
    if any(char not in allowed for char in _CONTROL.findall(text)) or (not multiline and _BIDI_CONTROL.search(text)):
        raise InvalidInput(_("{what}含有无法显示的控制字符。").format(what=what))
    return text
