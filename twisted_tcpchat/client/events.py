"""
What the client learns from a tcpchat server, as pure functions and plain
objects: recognising tcpchat by the lines only it sends, the typed events it
sends after C{/events json} (the WebSocket's schema, one JSON object a line:
C{docs/websocket.md}), and the state kept from them (my name, room and role,
the members of my room, the rooms, the commands).

Nothing here touches a transport, a terminal, a reactor or a clock.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from twisted_tcpchat.text.escaping import escape_controls

#: What the client sends to get typed events, and the notice that answers it.
EVENTS_REQUEST = "/events json"
EVENTS_ANSWER = "events as json"

#: The line tcpchat sends a newcomer in its text mode (and only tcpchat does).
_WELCOME = re.compile(
    r"\* you are (?P<name>[A-Za-z0-9_-]{1,30}); /nick NAME changes it, /help lists the commands"
)

#: The line tcpchat sends first on a server that needs a login.
LOGIN_NEEDED = "* this server needs a login: /login NAME PASSWORD"

#: What may surround a name mentioned in a line: anything a name cannot hold.
_NAME_CHARACTER = "A-Za-z0-9_-"


@dataclass(frozen=True)
class Recognised:
    """
    A line only tcpchat sends: its welcome (C{name} the name it gave), or its
    request for a login (C{name} None).
    """

    name: str | None


def recognise(text: str) -> Recognised | None:
    """
    Whether C{text} (a line as shown, control characters escaped) is one only
    tcpchat sends to a newcomer: then it is safe to send C{/events json},
    which any other server would show to people.
    """
    if text == LOGIN_NEEDED:
        return Recognised(None)
    match = _WELCOME.fullmatch(text)
    return Recognised(match["name"]) if match is not None else None


def _safe(value: Any) -> Any:
    """
    JSON data with every string made safe to show: control characters and
    bidi overrides escaped (as for text lines), lone surrogates written as
    escapes.  Done once, where events come in, so no display can forget it.
    """
    if isinstance(value, str):
        text = escape_controls(value)
        if not text.isascii():
            text = text.encode("utf-8", "backslashreplace").decode("utf-8")
        return text
    if isinstance(value, list):
        return [_safe(item) for item in value]
    if isinstance(value, dict):
        return {_safe(key): _safe(item) for key, item in value.items()}
    return value


@dataclass(frozen=True)
class ChatEvent:
    """
    One event from the server: its C{type} (C{kind}) and its fields, read
    with typed accessors that never fail on a field that is missing or of
    the wrong type (a server is not trusted to be well-formed).  Every
    string is already safe to show (see L{parse_event}).
    """

    kind: str
    fields: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> ChatEvent:
        kind = data.get("type")
        return cls(kind if isinstance(kind, str) else "", data)

    @classmethod
    def text_line(cls, text: str) -> ChatEvent:
        """A line that is not an event (already safe to show), as a C{text} event."""
        return cls("text", {"type": "text", "text": text})

    def text(self, key: str) -> str:
        value = self.fields.get(key)
        return value if isinstance(value, str) else ""

    def optional_text(self, key: str) -> str | None:
        value = self.fields.get(key)
        return value if isinstance(value, str) else None

    def number(self, key: str) -> float | None:
        value = self.fields.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        return float(value) if math.isfinite(value) else None

    def flag(self, key: str) -> bool:
        return self.fields.get(key) is True

    def texts(self, key: str) -> list[str]:
        value = self.fields.get(key)
        return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []

    def items(self, key: str) -> list[ChatEvent]:
        """A field holding a list of objects (history entries, members, rooms)."""
        value = self.fields.get(key)
        if not isinstance(value, list):
            return []
        return [ChatEvent.of(v) for v in value if isinstance(v, dict)]

    def item(self, key: str) -> ChatEvent | None:
        """A field holding one object (a whois's member)."""
        value = self.fields.get(key)
        return ChatEvent.of(value) if isinstance(value, dict) else None

    def with_fields(self, **changes: Any) -> ChatEvent:
        """This event with some fields changed."""
        return ChatEvent(self.kind, {**self.fields, **changes})


def parse_event(raw: bytes) -> ChatEvent | None:
    """
    One line from the server as an event: a JSON object (UTF-8) with a
    string C{"type"}; None for anything else (a text line).
    """
    if not raw.startswith(b"{"):
        return None
    try:
        data = json.loads(raw.decode("utf-8"))
        if not isinstance(data, dict) or not isinstance(data.get("type"), str):
            return None
        return ChatEvent.of(_safe(data))
    except (ValueError, RecursionError):  # (UnicodeDecodeError is a ValueError)
        return None  # (nested too deep to make safe, too: not an event of ours)


def is_events_answer(event: ChatEvent) -> bool:
    """Whether C{event} is the server's answer to L{EVENTS_REQUEST}."""
    return event.kind == "notice" and event.text("text") == EVENTS_ANSWER


def is_events_refusal(text: str) -> bool:
    """Whether a text line refuses L{EVENTS_REQUEST} (a tcpchat from before it)."""
    return text.startswith("error:") and "/events" in text


def said_as_text(entry: ChatEvent) -> list[str]:
    """
    The text lines a message or an action is shown as in tcpchat's text
    mode (C{<alice> hello}, C{* alice waves}): to recognise, once the typed
    history has come, the text lines that showed the same.
    """
    sender = entry.text("sender")
    if entry.kind == "message":
        return [f"<{sender}> {line}" for line in entry.texts("lines")]
    if entry.kind == "action":
        return [f"* {sender} {entry.text('text')}"]
    return []


def mentions(text: str, name: str | None) -> bool:
    """
    Whether C{text} mentions C{name}: as a whole word (not inside a longer
    name: a name holds letters, digits, C{_} and C{-}), ignoring case.
    """
    if not name:
        return False
    pattern = rf"(?<![{_NAME_CHARACTER}]){re.escape(name)}(?![{_NAME_CHARACTER}])"
    return re.search(pattern, text, re.IGNORECASE) is not None


def _key(name: str) -> str:
    """Names are unique ignoring case."""
    return name.casefold()


@dataclass
class ChatState:
    """
    What the client knows of where it is, kept from the server's events
    (never from English lines): for the prompt, completion, mentions, and
    telling its own echoed lines apart.

    @ivar members: the members of my room, by their names ignoring case.
    @ivar rooms: the rooms' names, as the last C{rooms} event listed them.
    @ivar commands: (usage, what it does), as the last C{help} event listed them.
    """

    name: str | None = None
    room: str | None = None
    operator: bool = False
    members: dict[str, str] = field(default_factory=dict)
    rooms: list[str] = field(default_factory=list)
    commands: list[tuple[str, str]] = field(default_factory=list)

    def is_me(self, name: str) -> bool:
        return self.name is not None and _key(name) == _key(self.name)

    def others(self) -> list[str]:
        """The members of my room but me, sorted ignoring case."""
        return sorted((n for n in self.members.values() if not self.is_me(n)), key=_key)

    def apply(self, event: ChatEvent) -> None:
        """Learn what C{event} tells."""
        learn = _LEARN.get(event.kind)
        if learn is not None:
            learn(self, event)

    def _you(self, event: ChatEvent) -> None:
        name, room = event.text("name"), event.text("room")
        if not name or not room:
            return
        if room != self.room:
            self.members = {}
        if self.name is not None:
            self.members.pop(_key(self.name), None)
        self.name, self.room, self.operator = name, room, event.flag("operator")
        self.members[_key(name)] = name
        if room not in self.rooms:
            self.rooms = sorted([*self.rooms, room], key=_key)

    def _members(self, event: ChatEvent) -> None:
        room = event.optional_text("room")
        listed = event.items("members")
        if room is None:  # /who *: everyone, each with a room
            listed = [m for m in listed if m.text("room") == self.room]
        elif room != self.room:
            return
        self.members = {_key(m.text("name")): m.text("name") for m in listed if m.text("name")}
        if self.name is not None:
            self.members[_key(self.name)] = self.name

    def _presence(self, event: ChatEvent) -> None:
        if event.text("room") != self.room:
            return
        name, change = event.text("name"), event.text("change")
        if not name:
            return
        if change in ("joined", "moved-in"):
            self.members[_key(name)] = name
        elif change in ("left", "moved-out"):
            self.members.pop(_key(name), None)
        elif change == "renamed" and event.text("other"):
            self.members.pop(_key(name), None)
            self.members[_key(event.text("other"))] = event.text("other")

    def _rooms(self, event: ChatEvent) -> None:
        names = [r.text("name") for r in event.items("rooms") if r.text("name")]
        self.rooms = sorted(names, key=_key)

    def _help(self, event: ChatEvent) -> None:
        commands = [(c.text("usage"), c.text("text")) for c in event.items("commands")]
        self.commands = [(usage, what) for usage, what in commands if usage.startswith("/")]


_LEARN = {
    "you": ChatState._you,
    "members": ChatState._members,
    "presence": ChatState._presence,
    "rooms": ChatState._rooms,
    "help": ChatState._help,
}


def command_words(commands: Iterable[tuple[str, str]]) -> list[str]:
    """The commands' words (C{/join}) from their usages (C{/join ROOM})."""
    words = {usage.split()[0] for usage, _ in commands if usage.split()}
    return sorted(words)


def typed_as_said(text: str, state: ChatState, at: float) -> ChatEvent | None:
    """
    The message or action a line the user typed says, as the room will hear
    it (so that it can be shown at once: the server does not echo), or None
    for a command, a blank line, or before the user is in a room.
    """
    if state.name is None or state.room is None or not text.strip():
        return None
    said = {"room": state.room, "sender": state.name, "at": at}
    if text.startswith("/me ") and text[4:].strip():
        return ChatEvent.of(_safe({"type": "action", "text": text[4:], **said}))
    if text.startswith("//"):
        text = text[1:]
    elif text.startswith("/"):
        return None
    # (A pasted block goes out as its lines, which the room hears as one message.)
    lines = text.replace("\r\n", "\n").split("\n")
    return ChatEvent.of(_safe({"type": "message", "lines": lines, **said}))
