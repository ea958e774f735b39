"""
The server's logic: what happens to each client, independent of the wire.

L{ChatServer} is the root object a listening factory feeds; it opens one
L{Session} per connection.  A session greets, receives decoded lines, logs
them as data, takes part in the room (L{twisted_tcpchat.room}), and ends on
the exit word, C{/quit}, a kick or disconnect - or, in C{once} mode, after
the first message.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from twisted_tcpchat.commands import perform
from twisted_tcpchat.config import ChatConfig
from twisted_tcpchat.interfaces import IConnection, IParticipant, IRoom
from twisted_tcpchat.room import Room
from twisted_tcpchat.wire import Frame, Overlong, decode, escape_controls, render_template

log = Logger(namespace="tcpchat")


@dataclass(frozen=True)
class Peer:
    """
    Where a client is.

    @ivar host: its IP address (or C{unix}).
    @ivar port: its port (0 where there is none).
    @ivar server: the address it connected to, C{host:port}.
    """

    host: str
    port: int
    server: str

    def __str__(self) -> str:
        if not self.port:
            return self.host
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


class State(enum.Enum):
    """A session's life: open, then closing (we ended it), then closed."""

    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class ChatServer:
    """
    The server: its settings, its room, and the sessions it is serving.

    @ivar config: the settings.
    @ivar room: where sessions talk; None in C{once} mode, which has no room.
    """

    def __init__(
        self,
        config: ChatConfig | None = None,
        clock: IReactorTime | None = None,
        room: IRoom | None = None,
    ) -> None:
        self.config = config = config if config is not None else ChatConfig()
        if room is None and not config.once:
            if clock is None:
                raise TypeError("a clock is needed for the default room")
            room = Room(
                clock,
                history=config.history,
                echo=config.echo,
                quiet_presence=config.quiet_presence,
                reserved={"server", config.console_name},
            )
        self.room = room
        self._sessions: set[Session] = set()
        self._empty_waiters: list[Deferred[None]] = []

    def connected(self, connection: IConnection, peer: Peer) -> Session:
        """A client connected: open its session, greet it, seat it in the room."""
        session = Session(self, connection, peer)
        self._sessions.add(session)
        session.greet()
        return session

    def session_ended(self, session: Session) -> None:
        """A session is over; forget it."""
        self._sessions.discard(session)
        if not self._sessions:
            waiters, self._empty_waiters = self._empty_waiters, []
            for waiter in waiters:
                if not waiter.called:  # a waiter may have been cancelled
                    waiter.callback(None)

    def when_empty(self) -> Deferred[None]:
        """A Deferred that fires once no client is connected."""
        if not self._sessions:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._empty_waiters.append(waiter)
        return waiter

    @property
    def client_count(self) -> int:
        """How many clients are connected."""
        return len(self._sessions)

    def shut_down(self, notice: str = "server shutting down") -> None:
        """Tell every client the server is going away, and close them all."""
        for session in list(self._sessions):
            session.shut_down(notice)


@implementer(IParticipant)
class Session:
    """
    One client's conversation with the server, and its seat in the room.

    Each method is one event from the wire (see L{ChatProtocol}): C{greet}
    on connect, C{frames_received} per read, C{overflowed} when a line never
    ends, C{input_ended} on half-close, C{ended} when the connection is gone.
    Towards the room it is an L{IParticipant}.
    """

    def __init__(self, server: ChatServer, connection: IConnection, peer: Peer) -> None:
        self.server = server
        self.connection = connection
        self.peer = peer
        self.state = State.OPEN
        self.name = ""
        self._config = server.config
        self._room = server.room

    def __str__(self) -> str:
        """Who this is, for the log: the address, with the name once it has one."""
        return f"{self.name} ({self.peer})" if self.name else str(self.peer)

    # IParticipant

    def send_line(self, text: str) -> None:
        self.connection.send_line(text)

    def disconnect(self, reason: str) -> None:
        if self.state is State.OPEN:
            self._close(f"disconnected ({reason})")

    # events from the wire

    def greet(self) -> None:
        """Send the greeting, then join the room."""
        fields = {
            "peer": self.peer.host,
            "port": self.peer.port,
            "server": self.peer.server,
            "clients": self.server.client_count,
        }
        for line in render_template(self._config.greeting, fields):
            self.connection.send_line(line)
        if self._room is not None:
            self._room.join(self)
        log.info("{who} connected", who=str(self))

    def frames_received(self, frames: Iterable[Frame]) -> None:
        """Handle the lines of one read, in order, until the session closes."""
        for frame in frames:
            if self.state is not State.OPEN:
                return
            try:
                self._frame_received(frame)
            except Exception:
                log.failure("internal error handling a line from {who}", who=str(self))
                self.connection.send_line("error: internal error; your line was not handled")

    def _frame_received(self, frame: Frame) -> None:
        if isinstance(frame, Overlong):
            log.info(
                "{who} sent an over-long line ({size} bytes); dropped",
                who=str(self),
                size=frame.size,
            )
            self.connection.send_line(
                f"error: line too long ({frame.size} bytes; the limit is "
                f"{self._config.max_line}); not delivered"
            )
            return
        text = decode(frame)
        if text is None:
            log.info(
                "{who} sent {size} bytes that are not UTF-8: {text}",
                who=str(self),
                size=len(frame),
                text=escape_controls(frame.decode("utf-8", "backslashreplace")),
            )
            self.connection.send_line("error: that line is not valid UTF-8; not delivered")
            return
        self.line_received(text, len(frame))

    def line_received(self, text: str, size: int) -> None:
        """
        A decoded line of C{size} bytes arrived: show it, then act on it.
        """
        if text.strip() == self._config.exit_word:
            self._leave(self._config.exit_word, f"ended the session ({self._config.exit_word})")
            return
        log.info(
            "{who} sent {size} bytes: {text}",
            who=str(self),
            size=size,
            text=escape_controls(text),
        )
        if self._room is None:
            self.connection.send_line(f"Received {size} bytes. Goodbye.")
            self._close("was served once")
            return
        quit = perform(self._room, self, text)
        if quit is not None:
            self._leave(quit.reason, f"quit ({quit.reason})")

    def overflowed(self, pending: int) -> None:
        """The client sent more than the limit without ending a line."""
        if self.state is not State.OPEN:
            return
        self.connection.send_line(
            f"error: {pending} bytes without a line end (the limit is "
            f"{self._config.max_unterminated}); disconnecting"
        )
        self._leave_room("line too long")
        self._close(f"sent {pending} bytes without a line end; disconnected")

    def shut_down(self, notice: str) -> None:
        """The server is stopping: say so, and close."""
        if self.state is State.OPEN:
            self.connection.send_line(notice)
            self._close("disconnected: server shutting down")

    def input_ended(self) -> None:
        """The client will send nothing more: flush what it is owed, close."""
        if self.state is State.OPEN:
            self._leave_room("disconnected")
            self._close("disconnected (closed by the client)")

    def ended(self, why: str) -> None:
        """The connection is gone; C{why} says how, for the log."""
        if self.state is State.OPEN:
            self._leave_room("disconnected")
            log.info("{who} disconnected ({why})", who=str(self), why=why)
        self.state = State.CLOSED
        self.server.session_ended(self)

    # inside

    def _leave(self, reason: str, what: str) -> None:
        """The client asked to go: leave the room, say goodbye, close."""
        self._leave_room(reason)
        self.connection.send_line("Goodbye.")
        self._close(what)

    def _leave_room(self, reason: str) -> None:
        if self._room is not None:
            self._room.leave(self, reason)

    def _close(self, what: str) -> None:
        log.info("{who} {what}", who=str(self), what=what)
        self.state = State.CLOSING
        self.connection.close()
