"""
The operator's console: the terminal that runs C{twistd -n tcpchat
--console}.

In the chat it is one more participant, an operator: it starts in the
default room, shows everything said there and every presence event, says
each typed line as C{<server>}, and runs the same commands as clients
(C{/join}, C{/msg}, C{/kick} ...).  In C{--classic} mode it is the
tutorials' operator instead: it shows each client's message and answers it
with the next line typed (L{ClassicConsole}).
"""

from __future__ import annotations

from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_tcpchat.core.commands import Context
from twisted_tcpchat.core.events import Error, Event
from twisted_tcpchat.core.interfaces import Ending, IParticipant
from twisted_tcpchat.core.server import ChatServer
from twisted_tcpchat.frontends.render import text_of
from twisted_tcpchat.logs import TurnLog
from twisted_tcpchat.text.escaping import escape_controls
from twisted_tcpchat.text.framing import LineBuffer, Overlong

log = TurnLog(namespace="tcpchat")


class _TypedLines(Protocol):
    """IProtocol API towards Twisted's L{StandardIO}: the operator's typed lines."""

    def __init__(self, max_line: int) -> None:
        self._framer = LineBuffer(max_line)

    def dataReceived(self, data: bytes) -> None:
        for frame in self._framer.feed(data):
            if isinstance(frame, Overlong):
                self.show(f"error: line too long ({frame.size} bytes); not sent")
            else:
                self.line_received(frame.decode("utf-8", "replace"))

    def line_received(self, text: str) -> None:
        raise NotImplementedError

    def show(self, text: str) -> None:
        """Show the operator a line (made safe to show)."""
        if self.transport is not None:
            self.transport.write(escape_controls(text).encode("utf-8", "replace") + b"\n")


@implementer(IParticipant)
class Console(_TypedLines):
    """The console as a participant in the chat; IParticipant API towards the directory."""

    def __init__(self, server: ChatServer, name: str = "server") -> None:
        super().__init__(server.config.max_line)
        self.name = ""
        self.room = ""
        self.address = ""
        self._server = server
        self._wanted_name = name

    def connectionMade(self) -> None:
        self._server.directory.enter(self, name=self._wanted_name, operator=True)
        log.info("console attached as {name}", name=self.name)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self._server.directory.leave(self, "console closed")
        log.info("console closed; the server goes on")

    def line_received(self, text: str) -> None:
        """A line the operator typed: say it, or run it as a command."""
        try:
            self._typed(text)
        except Exception:
            log.failure("internal error handling the console's line")
            self.show("error: internal error; your line was not handled")

    def _typed(self, text: str) -> None:
        directory = self._server.directory
        if text.startswith("//"):
            directory.say(self, [text[1:]])
        elif text.startswith("/"):
            context = Context(self, directory, operator=True, commands=self._server.commands)
            self._server.commands.run(context, text)
            if context.quit_reason is not None:
                self.receive(Error("the console stays; stop the server with Ctrl-C"))
        elif text.strip():
            directory.say(self, [text])

    # IParticipant

    def receive(self, event: Event) -> None:
        for line in text_of(event).split("\n"):
            self.show(line)

    def disconnect(self, reason: str, ending: Ending = Ending.REMOVED) -> None:
        self.show(f"* the console was removed from the chat ({reason})")


class ClassicConsole(_TypedLines):
    """The console of C{--classic}: each typed line answers the oldest waiting message."""

    def __init__(self, server: ChatServer) -> None:
        super().__init__(server.config.max_line)
        self._desk = server.classic

    def connectionMade(self) -> None:
        self._desk.console = self.show
        self.show("* each line you type answers the oldest message waiting for an answer")
        log.info("console attached to answer clients")

    def connectionLost(self, reason: Failure | None = None) -> None:
        self._desk.detach()
        log.info("console closed; clients are acknowledged from now on")

    def line_received(self, text: str) -> None:
        answered = self._desk.reply(text)
        if answered is None:
            self.show("error: no message is waiting for an answer")
        else:
            more = f"; {self._desk.waiting} more waiting" if self._desk.waiting else ""
            self.show(f"* answered {answered}{more}")
