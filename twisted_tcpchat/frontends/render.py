"""
Events as the lines a person reads on a terminal: what the TCP front end
sends (C{<alice> hello}, C{* bob joined}) and the console shows.

L{text_of} gives an event's lines, LF-separated and not yet made safe to
show; L{wire_bytes} makes them safe, ends each with CRLF and encodes them.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted_tcpchat.core.events import (
    Action,
    Error,
    Event,
    Help,
    History,
    Identity,
    MemberInfo,
    Members,
    Message,
    Notice,
    Presence,
    Private,
    Rooms,
    Text,
    Topic,
    Whois,
)
from twisted_tcpchat.core.names import format_idle
from twisted_tcpchat.text.encodings import encode_lines
from twisted_tcpchat.text.escaping import escape_lines


def _message(event: Message) -> str:
    prefix = f"<{event.sender}> "
    return prefix + ("\n" + prefix).join(event.lines)


def _action(event: Action) -> str:
    return f"* {event.sender} {event.text}"


def _private(event: Private) -> str:
    if event.echo:
        return f"[private to {event.recipient}] {event.text}"
    return f"[private from {event.sender}] {event.text}"


def _presence(event: Presence) -> str:
    name = event.name
    if event.change == Presence.JOINED:
        return f"* {name} joined"
    if event.change == Presence.MOVED_OUT:
        return f"* {name} left for #{event.other}"
    if event.change == Presence.MOVED_IN:
        return f"* {name} came from #{event.other}"
    if event.change == Presence.RENAMED:
        return f"* {name} is now known as {event.other}"
    return f"* {name} left ({event.reason})"


def _topic(event: Topic) -> str:
    if event.by is None:
        if event.text:
            return f"* the topic of #{event.room}: {event.text}"
        return f"* #{event.room} has no topic; /topic TEXT sets one"
    if event.text:
        return f"* {event.by} set the topic of #{event.room}: {event.text}"
    return f"* {event.by} cleared the topic of #{event.room}"


def _identity(event: Identity) -> str:
    if event.change == Identity.WELCOME:
        return f"* you are {event.name}; /nick NAME changes it, /help lists the commands"
    if event.change == Identity.RENAMED:
        return f"* you are now {event.name}"
    if event.change == Identity.SAME:
        return f"* you are already {event.name}"
    return f"* you are now in #{event.room}"


def _history(event: History) -> str:
    return "\n".join(
        "[history] " + line for entry in event.entries for line in text_of(entry).split("\n")
    )


def _member(member: MemberInfo, room: bool) -> str:
    where = f" in #{member.room}" if room else ""
    flags = ", operator" if member.operator else ""
    return f"*   {member.name}{where} (idle {format_idle(member.idle)}{flags})"


def _members(event: Members) -> str:
    count = len(event.members)
    head = f"* {count} online:" if event.room is None else f"* {count} in #{event.room}:"
    return "\n".join([head, *(_member(m, event.room is None) for m in event.members)])


def _whois(event: Whois) -> str:
    member = event.member
    flags = ", operator" if member.operator else ""
    return f"* {member.name} is in #{member.room} (idle {format_idle(member.idle)}{flags})"


def _rooms(event: Rooms) -> str:
    count = len(event.rooms)
    lines = [f"* {count} {'room' if count == 1 else 'rooms'}:"]
    for room in event.rooms:
        topic = f": {room.topic}" if room.topic else ""
        lines.append(f"*   #{room.name} ({room.members}){topic}")
    return "\n".join(lines)


def _help(event: Help) -> str:
    width = max((len(usage) for usage, _ in event.commands), default=0)
    lines = ["* commands:"]
    lines += [f"*   {usage.ljust(width)}  {what}".rstrip() for usage, what in event.commands]
    lines.append(f"*   {'//TEXT'.ljust(width)}  say a line that starts with /")
    return "\n".join(lines)


def _notice(event: Notice) -> str:
    if event.sender:
        return f"* {event.sender}: {event.text}"
    return f"* {event.text}"


def _error(event: Error) -> str:
    return f"error: {event.text}"


def _text(event: Text) -> str:
    return event.text


_RENDER: dict[type[Event], Callable[[Event], str]] = {
    Message: _message,  # type: ignore[dict-item]
    Action: _action,  # type: ignore[dict-item]
    Private: _private,  # type: ignore[dict-item]
    Presence: _presence,  # type: ignore[dict-item]
    Topic: _topic,  # type: ignore[dict-item]
    Identity: _identity,  # type: ignore[dict-item]
    History: _history,  # type: ignore[dict-item]
    Members: _members,  # type: ignore[dict-item]
    Whois: _whois,  # type: ignore[dict-item]
    Rooms: _rooms,  # type: ignore[dict-item]
    Help: _help,  # type: ignore[dict-item]
    Notice: _notice,  # type: ignore[dict-item]
    Error: _error,  # type: ignore[dict-item]
    Text: _text,  # type: ignore[dict-item]
}


def text_of(event: Event) -> str:
    """An event's lines as a person reads them, LF-separated, not yet made safe."""
    return _RENDER[event.__class__](event)


def wire_bytes(event: Event, encoding: str) -> bytes:
    """
    An event as the TCP front end sends it: every control character
    escaped, each line ending in CRLF, encoded (what the encoding cannot
    write becomes C{?}).
    """
    return encode_lines(escape_lines([text_of(event)]), encoding)
