"""
How the terminal client shows tcpchat's typed events, as pure functions:
each line with its time (C{HH:MM}, local), names in stable colours, your
own lines as C{<you> text}, presence and notices dimmed, errors and private
messages marked, a line that mentions you highlighted (and the bell rung).

Colour is ANSI SGR: 256-colour mid-tones for names (readable on dark and
light backgrounds alike, no yellow), dim, bold, reverse, red.  Without
colour (C{--no-color}, C{NO_COLOR}) the same text comes without any of it.
Every string of an event is already safe to show (L{events.parse_event}
escaped its control characters); this module adds escapes of its own only.
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from twisted_tcpchat.client.events import ChatEvent, ChatState, mentions
from twisted_tcpchat.core.names import format_idle

#: Colours for names (xterm 256-colour numbers): mid-tones with a contrast
#: of at least 3.6:1 both on near-black (#1e1e1e) and on near-white
#: (#fafafa) backgrounds; no yellows, and no pure red (that marks errors).
PALETTE = (29, 31, 63, 64, 98, 131, 133, 166, 32, 164)

#: The keys of the client itself, told at the end of /help.
CLIENT_KEYS = (
    "keys: Tab completes commands, names and rooms; Up, Down and Ctrl-R recall lines; "
    "Ctrl-C clears the line, or leaves on an empty one; Ctrl-D leaves"
)

_RESET = "\x1b[0m"
_DIM, _BOLD, _REVERSE, _RED = "2", "1", "7", "31"

#: A piece of a line: its text and its SGR codes.
Span = tuple[str, tuple[str, ...]]


def name_colour(name: str) -> int:
    """A name's colour: the same on every run and terminal (names are one ignoring case)."""
    return PALETTE[zlib.crc32(name.casefold().encode("utf-8")) % len(PALETTE)]


def clock_time(at: float) -> str:
    """C{at} (seconds since the epoch) as local C{HH:MM}."""
    return time.strftime("%H:%M", time.localtime(at))


def paint(spans: Sequence[Span], colour: bool) -> str:
    """Spans as one string: each styled span reset after itself (nothing nests)."""
    if not colour:
        return "".join(text for text, _ in spans)
    out = []
    for text, codes in spans:
        if codes and text:
            out.append(f"\x1b[{';'.join(codes)}m{text}{_RESET}")
        else:
            out.append(text)
    return "".join(out)


@dataclass(frozen=True)
class Rendered:
    """An event as lines to print, and whether it calls for the bell."""

    lines: tuple[str, ...]
    bell: bool = False


def _name(name: str, *more: str) -> Span:
    return (name, (f"38;5;{name_colour(name)}", *more))


def _when(event: ChatEvent, now: float) -> float:
    """When an event was said (C{at}), or C{now} for one without a (usable) time."""
    at = event.number("at")
    if at is None:
        return now
    try:
        time.localtime(at)
    except (OverflowError, OSError, ValueError):
        return now
    return at


class _Lines:
    """The lines of one event, each started with its time."""

    def __init__(self, colour: bool) -> None:
        self.colour = colour
        self.lines: list[str] = []

    def add(self, at: float, *spans: Span, dim: bool = False) -> None:
        stamp: Span = (clock_time(at) + " ", (_DIM,))
        if dim:
            spans = tuple((text, (*codes, _DIM)) for text, codes in spans)
        self.lines.append(paint([stamp, *spans], self.colour))

    def info(self, at: float, text: str, *spans: Span) -> None:
        """A dimmed line from the server, not said by anyone: presence, notices."""
        self.add(at, ("-- ", ()), *spans, (text, ()), dim=True)


def _said(out: _Lines, entry: ChatEvent, state: ChatState, now: float) -> bool:
    """A message or an action; True when it mentions me (said by someone else)."""
    at, sender = _when(entry, now), entry.text("sender")
    mine = state.is_me(sender)
    texts = [entry.text("text")] if entry.kind == "action" else entry.texts("lines")
    mention = not mine and any(mentions(t, state.name) for t in texts)
    name_codes = (_BOLD,) if mine else (_BOLD, _REVERSE) if mention else ()
    text_codes = (_BOLD,) if mention else ()
    for text in texts:
        if entry.kind == "action":
            out.add(at, ("* ", ()), _name(sender, *name_codes), (" " + text, text_codes))
        else:
            out.add(at, ("<", ()), _name(sender, *name_codes), ("> ", ()), (text, text_codes))
    return mention


def _private(out: _Lines, event: ChatEvent, state: ChatState, now: float) -> bool:
    at = _when(event, now)
    if event.flag("echo"):
        who: list[Span] = [("[you → ", (_BOLD,)), _name(event.text("recipient"), _BOLD)]
    else:
        who = [("[", (_BOLD,)), _name(event.text("sender"), _BOLD), (" → you", (_BOLD,))]
    out.add(at, *who, ("] ", (_BOLD,)), (event.text("text"), ()))
    return not event.flag("echo")


def _presence(out: _Lines, event: ChatEvent, now: float) -> None:
    name, change, other = event.text("name"), event.text("change"), event.text("other")
    said = {
        "joined": "joined",
        "moved-out": f"left for #{other}",
        "moved-in": f"came from #{other}",
        "renamed": f"is now known as {other}",
    }.get(change, f"left ({event.text('reason')})")
    out.info(now, " " + said, _name(name))


def _topic(out: _Lines, event: ChatEvent, now: float) -> None:
    room, text, by = event.text("room"), event.text("text"), event.optional_text("by")
    if by is None:
        said = f"the topic of #{room}: {text}" if text else f"#{room} has no topic"
        out.info(now, said)
    elif text:
        out.info(now, f" set the topic of #{room}: {text}", _name(by))
    else:
        out.info(now, f" cleared the topic of #{room}", _name(by))


def _you(out: _Lines, event: ChatEvent, now: float) -> None:
    name, room, change = event.text("name"), event.text("room"), event.text("change")
    role = ", an operator" if event.flag("operator") else ""
    if change == "welcome":
        out.info(now, f" in #{room}{role}; /help lists the commands", ("you are ", ()), _name(name))
    elif change == "renamed":
        out.info(now, "", ("you are now ", ()), _name(name))
    elif change == "same":
        out.info(now, "", ("you are already ", ()), _name(name))
    else:
        out.info(now, f"you are now in #{room}")


def _member(member: ChatEvent, with_room: bool) -> tuple[str, Span]:
    where = f" in #{member.text('room')}" if with_room else ""
    idle = member.number("idle")
    flags = [f"idle {format_idle(idle)}"] if idle is not None else []
    if member.flag("operator"):
        flags.append("operator")
    return member.text("name"), (f"{where} ({', '.join(flags)})" if flags else where, ())


def _members(out: _Lines, event: ChatEvent, now: float) -> None:
    room, members = event.optional_text("room"), event.items("members")
    out.info(now, f"{len(members)} online:" if room is None else f"{len(members)} in #{room}:")
    for member in members:
        name, rest = _member(member, room is None)
        out.info(now, rest[0], ("  ", ()), _name(name))


def _rooms(out: _Lines, event: ChatEvent, state: ChatState, now: float) -> None:
    rooms = event.items("rooms")
    out.info(now, f"{len(rooms)} {'room' if len(rooms) == 1 else 'rooms'}:")
    for room in rooms:
        name, topic = room.text("name"), room.text("topic")
        count = room.number("members")
        here = ", you are here" if name == state.room else ""
        size = f" ({count:g}{here})" if count is not None else ""
        out.info(now, f"  #{name}{size}" + (f": {topic}" if topic else ""))


def _help(out: _Lines, event: ChatEvent, now: float) -> None:
    commands = [(c.text("usage"), c.text("text")) for c in event.items("commands")]
    commands.append(("//TEXT", "say a line that starts with /"))
    width = max(len(usage) for usage, _ in commands)
    out.info(now, "commands:")
    for usage, what in commands:
        out.add(now, ("   ", ()), (usage.ljust(width), (_BOLD,)), ("  " + what, ()))
    out.info(now, CLIENT_KEYS)


def _whois(out: _Lines, event: ChatEvent, now: float) -> None:
    member = event.item("member")
    if member is not None:
        name, rest = _member(member, False)
        out.info(now, f" is in #{member.text('room')}{rest[0]}", _name(name))


def _notice(out: _Lines, event: ChatEvent, now: float) -> None:
    sender = event.text("sender")
    if sender:
        out.info(now, ": " + event.text("text"), _name(sender))
    else:
        out.info(now, event.text("text"))


def _other(out: _Lines, event: ChatEvent, now: float) -> None:
    """A C{text} event, and any kind this client does not know: its text, or its fields."""
    text = event.optional_text("text")
    if text is None:
        text = json.dumps(dict(event.fields), ensure_ascii=False)
    out.add(now, (text, ()))


def render(event: ChatEvent, state: ChatState, now: float, colour: bool = True) -> Rendered:
    """
    C{event} as the lines to print: C{now} is the time for an event without
    its own (C{at}), C{state} tells who I am (my lines, mentions of me).
    The bell is for a live message or action from someone else that
    mentions me, and for a private message to me; history rings nothing.
    """
    out = _Lines(colour)
    bell = False
    kind = event.kind
    if kind in ("message", "action"):
        bell = _said(out, event, state, now)
    elif kind == "private":
        bell = _private(out, event, state, now)
    elif kind == "history":
        for entry in event.items("entries"):
            if entry.kind in ("message", "action"):
                _said(out, entry, state, now)
    elif kind == "presence":
        _presence(out, event, now)
    elif kind == "topic":
        _topic(out, event, now)
    elif kind == "you":
        _you(out, event, now)
    elif kind == "members":
        _members(out, event, now)
    elif kind == "rooms":
        _rooms(out, event, state, now)
    elif kind == "help":
        _help(out, event, now)
    elif kind == "whois":
        _whois(out, event, now)
    elif kind == "notice":
        _notice(out, event, now)
    elif kind == "error":
        out.add(now, ("error:", (_BOLD, _RED)), (" " + event.text("text"), ()))
    else:
        _other(out, event, now)
    return Rendered(tuple(out.lines), bell)


def prompt_text(state: ChatState | None, colour: bool = True) -> str:
    """
    The input line's prompt: C{[alice@lobby] } once the client knows who and
    where it is, C{> } before (and on any other server).
    """
    if state is None or state.name is None or state.room is None:
        return "> "
    return paint([("[", ()), _name(state.name), (f"@{state.room}] ", ())], colour)
