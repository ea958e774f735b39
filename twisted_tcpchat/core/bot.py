"""
Bots: participants that are programs.  A L{Bot} enters the chat under a
name like anyone else, hears the events of its room, and says lines,
actions, private messages and notices - an embedding application's way to
take part (a greeter, a game master, a bridge).
"""

from __future__ import annotations

from collections.abc import Callable

from zope.interface import implementer

from twisted_tcpchat.core.events import Event, Identity
from twisted_tcpchat.core.interfaces import Ending, IDirectory, IParticipant
from twisted_tcpchat.logs import TurnLog

log = TurnLog(namespace="tcpchat")


@implementer(IParticipant)
class Bot:
    """
    A participant driven by code.

    @param directory: the chat to enter (C{service.directory}).
    @param name: its name (a reserved one such as the console's is allowed).
    @param heard: called with every event it hears (its room's messages,
        presence, private messages to it, errors); None to ignore them.
    @param operator: whether it may kick, ban and set locked topics.
    """

    def __init__(
        self,
        directory: IDirectory,
        name: str,
        heard: Callable[[Event], None] | None = None,
        *,
        operator: bool = False,
    ) -> None:
        self.name = ""
        self.room = ""
        self.address = ""
        self._directory = directory
        self._wanted = name
        self._heard = heard
        self._operator = operator
        #: Why the directory removed it (a kick), once it has.
        self.removed: str | None = None
        self._room_wanted: str | None = None

    def start(self, room: str | None = None) -> None:
        """Enter the chat (in the default room, then C{room} if given, once let in)."""
        self._room_wanted = room
        self._directory.enter(self, name=self._wanted, operator=self._operator)

    def stop(self, reason: str = "bot stopped") -> None:
        """Leave the chat."""
        self._directory.leave(self, reason)

    def say(self, text: str) -> None:
        """Say C{text} to its room (several lines if it holds line ends)."""
        self._directory.say(self, text.splitlines() or [""])

    def act(self, text: str) -> None:
        """An action: C{* name text}."""
        self._directory.act(self, text)

    def whisper(self, target: str, text: str) -> None:
        """A private message to C{target}."""
        self._directory.whisper(self, target, text)

    def notice(self, text: str) -> None:
        """Tell its room something, as a notice signed with its name."""
        self._directory.notice(self.room, text, sender=self.name)

    def join(self, room: str) -> None:
        """Move to C{room}."""
        self._directory.join(self, room)

    # IParticipant

    def receive(self, event: Event) -> None:
        if isinstance(event, Identity) and event.change == Identity.WELCOME:
            room, self._room_wanted = self._room_wanted, None
            if room is not None:
                self._directory.join(self, room)
        if self._heard is not None:
            try:
                self._heard(event)
            except Exception:
                # (The application's code: its failure must not cost the
                # room's other members their copy of the event.)
                log.failure("bot {name} failed on {event!r}", name=self.name, event=event)

    def disconnect(self, reason: str, ending: Ending = Ending.REMOVED) -> None:
        self.removed = reason
