"""
Names of people and rooms, and how long someone has been idle.

Both kinds of name are ASCII only, as IRC servers have them by default:
Unicode letters would let "alice" with a Cyrillic a (U+0430) pass for
"alice".  Both are unique ignoring case.
"""

from __future__ import annotations

import re

#: What a name may hold, in words.
NAME_RULE = "1-30 letters (A-Z, a-z), digits, _ or -"
_NAME = re.compile(r"[A-Za-z0-9_-]{1,30}")

#: Names no client may take: the operator console speaks as one of them.
RESERVED_NAMES = ("server",)


def name_problem(name: str) -> str | None:
    """Why C{name} cannot be someone's name, or None when it can."""
    if _NAME.fullmatch(name) is None:
        return f"invalid name {name!r}: use {NAME_RULE}"
    return None


def room_name(text: str) -> str | None:
    """
    The room C{text} names (a leading C{#} is not part of it: C{#dev} and
    C{dev} are one room), or None when it names none.
    """
    name = text[1:] if text.startswith("#") else text
    return name if _NAME.fullmatch(name) else None


def room_problem(text: str) -> str:
    """Why C{text} is not a room name (see L{room_name})."""
    return f"invalid room name {text!r}: use {NAME_RULE}, with or without a leading #"


def format_idle(seconds: float) -> str:
    """Idle time in the largest whole unit: 42s, 5m, 3h, 2d."""
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
