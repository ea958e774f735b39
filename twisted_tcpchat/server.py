"""
The server's logic: what happens to each client, independent of the wire.

L{ChatServer} is the root object a listening factory feeds; it opens one
L{Session} per connection.  A session greets, receives decoded lines, logs
them as data, and ends on the exit word, on disconnect, or - in C{once} mode -
after the first message.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from twisted_tcpchat.config import ChatConfig
from twisted_tcpchat.interfaces import IConnection
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
    The server: its settings and the sessions it is serving.

    @ivar config: the settings.
    """

    def __init__(self, config: ChatConfig | None = None) -> None:
        self.config = config if config is not None else ChatConfig()
        self._sessions: set[Session] = set()
        self._empty_waiters: list[Deferred[None]] = []

    def connected(self, connection: IConnection, peer: Peer) -> Session:
        """A client connected: open its session and greet it."""
        session = Session(self, connection, peer)
        self._sessions.add(session)
        log.info("{peer} connected", peer=str(peer))
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


class Session:
    """
    One client's conversation with the server.

    Each method is one event from the wire (see L{ChatProtocol}): C{greet}
    on connect, C{frames_received} per read, C{overflowed} when a line never
    ends, C{ended} when the connection is gone.
    """

    def __init__(self, server: ChatServer, connection: IConnection, peer: Peer) -> None:
        self.server = server
        self.connection = connection
        self.peer = peer
        self.state = State.OPEN
        self._config = server.config

    def greet(self) -> None:
        """Send the greeting."""
        fields = {
            "peer": self.peer.host,
            "port": self.peer.port,
            "server": self.peer.server,
            "clients": self.server.client_count,
        }
        for line in render_template(self._config.greeting, fields):
            self.connection.send_line(line)

    def frames_received(self, frames: Iterable[Frame]) -> None:
        """Handle the lines of one read, in order, until the session closes."""
        for frame in frames:
            if self.state is not State.OPEN:
                return
            try:
                self._frame_received(frame)
            except Exception:
                log.failure("internal error handling a line from {peer}", peer=str(self.peer))
                self.connection.send_line("error: internal error; your line was not handled")

    def _frame_received(self, frame: Frame) -> None:
        if isinstance(frame, Overlong):
            log.info(
                "{peer} sent an over-long line ({size} bytes); dropped",
                peer=str(self.peer),
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
                "{peer} sent {size} bytes that are not UTF-8: {text}",
                peer=str(self.peer),
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
            self.connection.send_line("Goodbye.")
            self._close(f"ended the session ({self._config.exit_word})")
            return
        log.info(
            "{peer} sent {size} bytes: {text}",
            peer=str(self.peer),
            size=size,
            text=escape_controls(text),
        )
        if self._config.once:
            self.connection.send_line(f"Received {size} bytes. Goodbye.")
            self._close("was served once")

    def overflowed(self, pending: int) -> None:
        """The client sent more than the limit without ending a line."""
        if self.state is not State.OPEN:
            return
        self.connection.send_line(
            f"error: {pending} bytes without a line end (the limit is "
            f"{self._config.max_unterminated}); disconnecting"
        )
        self._close(f"sent {pending} bytes without a line end; disconnected")

    def shut_down(self, notice: str) -> None:
        """The server is stopping: say so, and close."""
        if self.state is State.OPEN:
            self.connection.send_line(notice)
            self._close("disconnected: server shutting down")

    def input_ended(self) -> None:
        """The client will send nothing more: flush what it is owed, close."""
        if self.state is State.OPEN:
            self._close("disconnected (closed by the client)")

    def ended(self, why: str) -> None:
        """The connection is gone; C{why} says how, for the log."""
        if self.state is State.OPEN:
            log.info("{peer} disconnected ({why})", peer=str(self.peer), why=why)
        self.state = State.CLOSED
        self.server.session_ended(self)

    def _close(self, what: str) -> None:
        log.info("{peer} {what}", peer=str(self.peer), what=what)
        self.state = State.CLOSING
        self.connection.close()
