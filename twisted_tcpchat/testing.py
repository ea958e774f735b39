"""
Test doubles for code that embeds tcpchat, and for tcpchat's own tests:
a participant and a connection that record what they are given, and
refuse what the real ones would refuse.

    directory = Directory(Clock())
    alice = RecordingParticipant()
    directory.enter(alice, "alice")
    assert alice.lines() == ["* you are alice; /nick NAME changes it, ..."]
"""

from __future__ import annotations

from zope.interface import implementer

from twisted_tcpchat.core.events import Event
from twisted_tcpchat.core.interfaces import Ending, IConnection, IParticipant
from twisted_tcpchat.frontends.render import text_of


def _rendered(events: list[Event]) -> list[str]:
    return [line for event in events for line in text_of(event).split("\n")]


@implementer(IParticipant)
class RecordingParticipant:
    """
    An L{IParticipant} that keeps the events it hears, and the reason it
    was told to go.

    @ivar events: every event heard and not yet taken.
    @ivar gone: the reason given to L{disconnect}, or None.
    """

    def __init__(self, label: str = "", address: str = "192.0.2.50") -> None:
        self.name = ""
        self.room = ""
        self.address = address
        self.label = label
        self.events: list[Event] = []
        self.gone: str | None = None

    def receive(self, event: Event) -> None:
        if not isinstance(event, Event):
            raise TypeError(f"a participant hears events, not {event!r}")
        self.events.append(event)

    def disconnect(self, reason: str, ending: Ending = Ending.REMOVED) -> None:
        if self.gone is not None:
            raise AssertionError(f"told to go twice ({self.gone!r}, then {reason!r})")
        self.gone = reason

    def take(self) -> list[Event]:
        """The events heard since the last take."""
        events, self.events = self.events, []
        return events

    def lines(self) -> list[str]:
        """The lines a terminal would show for the events since the last take (then taken)."""
        return _rendered(self.take())

    def __repr__(self) -> str:
        return f"<RecordingParticipant {self.label or self.name}>"


@implementer(IConnection)
class RecordingConnection:
    """
    An L{IConnection} that keeps the events sent to it and how it was
    closed; whether reading is paused.
    """

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.closed: str | None = None
        #: Why it was closed (see L{Ending}), when the session said.
        self.ending: Ending | None = None
        self.paused = False

    def send(self, event: Event) -> None:
        if not isinstance(event, Event):
            raise TypeError(f"a connection sends events, not {event!r}")
        if self.closed is None:
            self.events.append(event)

    def close(self, ending: Ending | None = None) -> None:
        if self.closed is None:
            self.closed = "closed"
            self.ending = ending

    def abort(self) -> None:
        self.closed = "aborted"

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def lines(self) -> list[str]:
        """The lines a terminal would show for the events sent since the last look (then taken)."""
        events, self.events = self.events, []
        return _rendered(events)
