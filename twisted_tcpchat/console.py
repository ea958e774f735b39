"""
The operator's console: the terminal that runs C{twistd -n tcpchat --console}
as one more participant in the room, with operator rights.

It shows everything said in the room and every presence event; each line
typed goes to the room as C{<server>}; C{/msg}, C{/kick}, C{/who} and the
other commands work as they do for clients.
"""

from __future__ import annotations

from collections.abc import Sequence

from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_tcpchat.commands import perform
from twisted_tcpchat.interfaces import IParticipant, IRoom
from twisted_tcpchat.logs import TurnLog
from twisted_tcpchat.wire import LineBuffer, Overlong, escape_controls

log = TurnLog(namespace="tcpchat")


@implementer(IParticipant)
class Console(Protocol):
    """
    IProtocol API towards Twisted's L{StandardIO}; IParticipant API towards
    the room.
    """

    def __init__(self, room: IRoom, name: str = "server", max_line: int = 4096) -> None:
        self.name = ""
        self.address = ""
        self._room = room
        self._wanted_name = name
        self._framer = LineBuffer(max_line)

    # IProtocol

    def connectionMade(self) -> None:
        self._room.join(self, name=self._wanted_name, operator=True)
        log.info("console attached as {name}", name=self.name)

    def dataReceived(self, data: bytes) -> None:
        for frame in self._framer.feed(data):
            if isinstance(frame, Overlong):
                self.send_line(f"error: line too long ({frame.size} bytes); not sent")
            else:
                self.line_received(frame.decode("utf-8", "replace"))

    def connectionLost(self, reason: Failure | None = None) -> None:
        self._room.leave(self, "console closed")
        log.info("console closed; the server goes on")

    # the operator's lines

    def line_received(self, text: str) -> None:
        """A line the operator typed: say it, or run it as a command."""
        if perform(self._room, self, text) is not None:
            self.send_line("error: the console stays; stop the server with Ctrl-C")

    # IParticipant

    def send_line(self, text: str) -> None:
        if self.transport is not None:
            self.transport.write(escape_controls(text).encode("utf-8", "replace") + b"\n")

    def send_lines(self, lines: Sequence[str]) -> None:
        for line in lines:
            self.send_line(line)

    def disconnect(self, reason: str) -> None:
        self.send_line(f"* the console was removed from the room ({reason})")
