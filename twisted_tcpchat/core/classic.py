"""
C{--classic}: the server the C socket tutorials' clients were written for.

Each client gets the greeting, then exactly one answer per message it sends:
what the operator types next at the console when one is attached (each
typed line answers the oldest message still waiting), else an
acknowledgement with the byte count.  There is no room, no name, no
presence: a client that sends one message and then reads one small chunk
stays in step for as long as it likes.  Every client is served at once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Protocol

from twisted_tcpchat.core.events import Event, Text

#: The most messages waiting for the operator at once; past it, messages are
#: acknowledged as if no console were attached.
MAX_WAITING = 1000


def acknowledgement(size: int) -> Text:
    """The answer to a message of C{size} bytes when no operator answers."""
    return Text(f"Received {size} bytes")


class Asker(Protocol):
    """A classic client's session, as the desk sees it."""

    @property
    def is_open(self) -> bool: ...

    def receive(self, event: Event) -> None: ...


class ClassicDesk:
    """
    The messages waiting for the operator's answer.

    @ivar console: shows a line to the operator; None when no console is
        attached (then every message is acknowledged at once).
    """

    def __init__(self) -> None:
        self.console: Callable[[str], None] | None = None
        self._waiting: deque[tuple[Asker, str, int]] = deque()

    def message(self, asker: Asker, who: str, text: str, size: int) -> None:
        """C{who} sent C{text} (C{size} bytes): answer it, or let the operator."""
        if self.console is None or len(self._waiting) >= MAX_WAITING:
            asker.receive(acknowledgement(size))
            return
        self._waiting.append((asker, who, size))
        self.console(f"<{who}> {text}")

    def reply(self, text: str) -> str | None:
        """The operator typed C{text}: answer the oldest waiting message; its sender, or None."""
        while self._waiting:
            asker, who, _size = self._waiting.popleft()
            if asker.is_open:
                asker.receive(Text(text))
                return who
        return None

    def gone(self, asker: Asker, who: str) -> None:
        """C{asker}'s connection is over: its messages wait no more (the console is told)."""
        waiting = deque(entry for entry in self._waiting if entry[0] is not asker)
        if len(waiting) != len(self._waiting):
            self._waiting = waiting
            if self.console is not None:
                self.console(f"* {who} left; its message waits no more")

    def detach(self) -> None:
        """The console has gone: acknowledge what waits, and every message from now on."""
        self.console = None
        waiting, self._waiting = self._waiting, deque()
        for asker, _who, size in waiting:
            if asker.is_open:
                asker.receive(acknowledgement(size))

    @property
    def waiting(self) -> int:
        """How many messages wait for an answer (some senders may have gone)."""
        return len(self._waiting)
