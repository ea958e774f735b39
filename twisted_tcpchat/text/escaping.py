"""
Making text safe to show: control characters never reach a terminal (or a
log) raw.

C0 (but TAB), DEL, C1, and the bidirectional overrides and isolates that
reorder what is shown ("Trojan Source") each become a visible escape such
as C{\\x1b} or C{\\u202e}.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_CONTROLS = [c for c in range(0x00, 0xA0) if c == 0x7F or c < 0x20 or c >= 0x80]
_ESCAPES: dict[int, str] = {c: f"\\x{c:02x}" for c in _CONTROLS if c != 0x09}
_ESCAPES.update({ord(c): f"\\u{ord(c):04x}" for c in _BIDI})

# LF aside: several lines joined by LF keep it as their separator.
_ESCAPES_BUT_LF = {c: e for c, e in _ESCAPES.items() if c != 0x0A}
# The same set as a regular expression, to find out in one pass that a
# text needs no escaping at all (the usual case) before paying for translate().
_NEEDS_ESCAPE_BUT_LF = re.compile(
    "[" + "".join(re.escape(chr(c)) for c in sorted(_ESCAPES_BUT_LF)) + "]"
)


# In ASCII text only C0 (but TAB and LF) and DEL can need escaping.
_ASCII_CONTROLS_BUT_LF = bytes(c for c in _ESCAPES_BUT_LF if c < 0x80)


def needs_escape(text: str) -> bool:
    """Whether C{text} holds anything L{escape_controls} would change (LF aside)."""
    if text.isascii():
        # (Deleting the controls from the bytes: 5 µs for 8 KiB, the regex 33.)
        data = text.encode("ascii")
        return len(data.translate(None, _ASCII_CONTROLS_BUT_LF)) != len(data)
    return _NEEDS_ESCAPE_BUT_LF.search(text) is not None


def escape_controls(text: str) -> str:
    """
    Return C{text} with every control character and bidi override written as
    a visible escape (C{\\x1b}, C{\\u202e}); TAB and all other text stay.
    """
    if "\n" not in text and not needs_escape(text):
        return text
    return text.translate(_ESCAPES)


def escape_lines(lines: Sequence[str]) -> str:
    """
    Several lines (which hold no LF: framing took them out) as one text,
    LF-separated, every control character in them escaped.
    """
    text = "\n".join(lines)
    if not needs_escape(text):
        return text
    return text.translate(_ESCAPES_BUT_LF)
