"""
What participants hear: typed events, never rendered text.

A directory or room answers every request with events; each front end
renders them its own way (the TCP front end into today's lines, a WebSocket
into JSON).  An event is a value: it may go to many participants, so a
front end's rendering of it is kept on it (L{Event.rendered}), made once per
kind of rendering (an encoding, say) rather than once per member.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Event:
    """Something a participant hears.  C{kind} names the type on any wire."""

    kind: ClassVar[str] = "event"

    _renderings: dict[str, object] | None = field(
        default=None, init=False, repr=False, compare=False, kw_only=True
    )

    def rendered(self, key: str, render: Callable[[Event, str], T]) -> T:
        """
        C{render(self, key)}, made once for each C{key} and kept: the same
        event goes to every member of a room.  C{key} names the rendering
        whole (the TCP front end's are encodings; another front end must
        use keys of its own, such as C{"json"}).
        """
        renderings = self._renderings
        if renderings is None:
            renderings = {}
            object.__setattr__(self, "_renderings", renderings)
        try:
            return renderings[key]  # type: ignore[return-value]
        except KeyError:
            made = renderings[key] = render(self, key)
            return made


@dataclass(frozen=True, slots=True)
class Message(Event):
    """
    What one participant said to its room at once: the chat lines of one
    read (one line, usually), numbered in the room's order.

    @ivar seq: the room's sequence number: every member sees a room's
        messages and actions in this order.
    @ivar at: when it was said (seconds since the epoch).
    """

    kind: ClassVar[str] = "message"

    room: str
    sender: str
    lines: tuple[str, ...]
    seq: int
    at: float


@dataclass(frozen=True, slots=True)
class Action(Event):
    """An action (C{/me waves}) said to a room; numbered like a message."""

    kind: ClassVar[str] = "action"

    room: str
    sender: str
    text: str
    seq: int
    at: float


#: Entries of a room's history.
Said = Message | Action


@dataclass(frozen=True, slots=True)
class Private(Event):
    """
    A private message.  The recipient hears it; the sender hears its own
    copy with C{echo} set.
    """

    kind: ClassVar[str] = "private"

    sender: str
    recipient: str
    text: str
    at: float
    echo: bool = False


@dataclass(frozen=True, slots=True)
class Presence(Event):
    """
    Someone came into or went out of a room, or was renamed there.

    @ivar change: one of L{JOINED}, L{LEFT}, L{MOVED_OUT} (to the room
        C{other}), L{MOVED_IN} (from the room C{other}), L{RENAMED} (to the
        name C{other}).
    @ivar reason: why someone left: a quit message, C{disconnected},
        C{kicked by NAME: why}.
    """

    kind: ClassVar[str] = "presence"

    JOINED: ClassVar[str] = "joined"
    LEFT: ClassVar[str] = "left"
    MOVED_OUT: ClassVar[str] = "moved-out"
    MOVED_IN: ClassVar[str] = "moved-in"
    RENAMED: ClassVar[str] = "renamed"

    room: str
    name: str
    change: str
    reason: str = ""
    other: str = ""


@dataclass(frozen=True, slots=True)
class Topic(Event):
    """
    A room's topic: shown to a newcomer and on C{/topic} (C{by} None), or
    just set by C{by}.  An empty text: no topic.
    """

    kind: ClassVar[str] = "topic"

    room: str
    text: str
    by: str | None = None


@dataclass(frozen=True, slots=True)
class Identity(Event):
    """
    Who and where the hearer is now: told on entering (C{change}
    L{WELCOME}), on a rename (L{RENAMED}), when it asked for the name it
    already has (L{SAME}), and on moving to another room (L{MOVED}).
    """

    kind: ClassVar[str] = "you"

    WELCOME: ClassVar[str] = "welcome"
    RENAMED: ClassVar[str] = "renamed"
    SAME: ClassVar[str] = "same"
    MOVED: ClassVar[str] = "moved"

    name: str
    room: str
    change: str
    operator: bool = False


@dataclass(frozen=True, slots=True)
class History(Event):
    """A room's recent messages and actions, oldest first, for a newcomer."""

    kind: ClassVar[str] = "history"

    room: str
    entries: tuple[Said, ...]


@dataclass(frozen=True, slots=True)
class MemberInfo:
    """
    One member, as C{/who} and C{/whois} show it.

    @ivar idle: seconds since it last said something.
    """

    name: str
    room: str
    idle: float
    operator: bool = False


@dataclass(frozen=True, slots=True)
class Members(Event):
    """The members of a room (C{/who}), or of every room (C{room} None: C{/who *})."""

    kind: ClassVar[str] = "members"

    room: str | None
    members: tuple[MemberInfo, ...]


@dataclass(frozen=True, slots=True)
class Whois(Event):
    """Where one member is (C{/whois NAME})."""

    kind: ClassVar[str] = "whois"

    member: MemberInfo


@dataclass(frozen=True, slots=True)
class RoomInfo:
    """
    One room, as C{/rooms} lists it.

    @ivar seq: the number of the last message or action said there (0:
        none yet): a client that remembers the last it saw knows how many
        it has not read.
    """

    name: str
    members: int
    topic: str = ""
    seq: int = 0


@dataclass(frozen=True, slots=True)
class Rooms(Event):
    """Every room (C{/rooms})."""

    kind: ClassVar[str] = "rooms"

    rooms: tuple[RoomInfo, ...]


@dataclass(frozen=True, slots=True)
class Help(Event):
    """The commands the hearer may use: (usage, what it does) pairs."""

    kind: ClassVar[str] = "help"

    commands: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Notice(Event):
    """
    A line from the server or a bot that is not chat: the answer to a
    command, a kick, a bot's announcement to a room (C{room}) by C{sender}.
    """

    kind: ClassVar[str] = "notice"

    text: str
    room: str | None = None
    sender: str | None = None


@dataclass(frozen=True, slots=True)
class Error(Event):
    """A request was refused, or a line could not be handled: why."""

    kind: ClassVar[str] = "error"

    text: str


@dataclass(frozen=True, slots=True)
class Text(Event):
    """
    A line the server sends as it is, outside the chat: the operator's
    greeting, C{Goodbye.}, the answers of the tutorials' classic server.
    """

    kind: ClassVar[str] = "text"

    text: str
