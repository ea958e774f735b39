"""
The client's logic: one run of C{tcpchat}, independent of the wire and of
the terminal.

A L{ClientSession} hears from the connection (through the thin adapter in
L{twisted_tcpchat.client.protocol}) and from the user (through one of the
screens in L{twisted_tcpchat.client.io}); it shows what the server
sends on an L{IScreen}, sends what the user types over an L{ILink}, and
decides when the run is over and with which exit status.
"""

from __future__ import annotations

import enum
import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from twisted.internet import defer, error
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from zope.interface import Interface

from twisted_tcpchat.client.wire import (
    UNFRAMED,
    IncomingLines,
    encode_message,
    for_screen,
)

#: Seconds of quiet after which an unfinished line from the server is shown
#: anyway: a tutorial server answers "Message received" with no line end.
HOLD = 0.25

#: Seconds the client waits for the server to speak before it sends anyway:
#: after connecting, for the greeting (a tutorial client reads the greeting
#: first too; a C server's reply to an early message could otherwise share a
#: read with its NUL-ended greeting and be taken for that greeting's
#: padding); and, when the line ending does not separate messages (C{none},
#: C{nul}), for the answer to each message, since a classic C server tells
#: messages apart only by the reads they arrive in.
ANSWER_WAIT = 0.5

#: The longest the client waits, once the user is done, for a server that
#: keeps talking but never closes (the quiet time, C{--wait}, ends it sooner).
DRAIN_LIMIT = 10.0

#: Lines that end the session when typed; they are sent first, so the
#: server says goodbye (ours answers both; a C server compares with "exit").
QUIT_WORDS = ("exit", "/quit")

#: Exit statuses.
OK, FAILED = 0, 1


class IScreen(Interface):
    """Where the user sees the conversation."""

    def show_line(text: str) -> None:  # noqa: N805 (zope.interface: no self)
        """Show one line the server sent (already made safe to show)."""

    def notice(text: str) -> None:  # noqa: N805 (zope.interface: no self)
        """Tell the user something about the connection itself."""


class ILink(Interface):
    """One connection to the server, as the session sees it."""

    def write(data: bytes) -> None:  # noqa: N805 (zope.interface: no self)
        """Send bytes."""

    def half_close() -> bool:
        """
        Send nothing more, but keep receiving (TCP shutdown of the sending
        side).  Return False where the transport cannot (TLS), and do nothing.
        """

    def close() -> None:
        """Close after what was written is sent; cut off a peer that does not read."""


@dataclass(frozen=True)
class ClientSettings:
    """
    How a run talks to its server.

    @ivar server: the server's address as the user gave it, for notices.
    @ivar encoding: the text encoding on the wire.
    @ivar line_ending: what ends each line sent (see L{twisted_tcpchat.client.wire.LINE_ENDINGS}).
    @ivar wait: seconds of quiet, once the user is done, after which the
        client stops waiting for the server to close.
    @ivar nick: a name to take right after each connect, or None.
    @ivar login: a name and password to C{/login} with right after each
        connect (before the nick), or None.
    @ivar reconnect: whether to keep going across lost connections.
    @ivar greet_connect: whether to say "connected to ..." on the first connect
        (a person at a terminal wants to know; a script does not).
    """

    server: str
    encoding: str = "utf-8"
    line_ending: bytes = b"\n"
    wait: float = 1.0
    nick: str | None = None
    login: tuple[str, str] | None = None
    reconnect: bool = False
    greet_connect: bool = False


class State(enum.Enum):
    """Where a run is.  The allowed moves are in L{_MOVES}, and nowhere else."""

    #: No connection yet: the first attempt, or waiting to reconnect.
    CONNECTING = "connecting"
    #: Connected: the user's lines go out, the server's lines are shown.
    OPEN = "open"
    #: The user is done: we have sent everything and half-closed, and show
    #: what the server still sends until it closes or goes quiet.
    ENDING = "ending"
    #: Over; C{done} has fired.
    CLOSED = "closed"


_MOVES: dict[State, frozenset[State]] = {
    State.CONNECTING: frozenset({State.OPEN, State.CLOSED}),
    State.OPEN: frozenset({State.ENDING, State.CONNECTING, State.CLOSED}),
    State.ENDING: frozenset({State.CLOSED}),
    State.CLOSED: frozenset(),
}


def why_not_connected(reason: BaseException) -> str:
    """A few words on why a connection attempt failed, for one line of output."""
    if isinstance(reason, error.DNSLookupError):
        return "host name not found"
    if isinstance(reason, (defer.TimeoutError, error.TimeoutError)):
        return "timed out"
    if isinstance(reason, error.ConnectError) and isinstance(reason.osError, int):
        return os.strerror(reason.osError).lower()
    if isinstance(reason, error.ConnectionRefusedError):
        return "connection refused"
    text = str(reason).strip().rstrip(".")
    return text.splitlines()[0] if text else type(reason).__name__


def why_lost(reason: BaseException) -> str:
    """A few words on how a connection broke, for one line of output."""
    if isinstance(reason, error.ConnectionLost) and not reason.args:
        return "connection reset"
    if isinstance(reason, error.ConnectionLost):
        return " ".join(str(a) for a in reason.args)
    if type(reason).__module__.startswith("OpenSSL") and reason.args:
        # pyOpenSSL: [('SSL routines', '', 'certificate verify failed'), ...]
        details = [d[-1] for d in reason.args[0] if isinstance(d, tuple) and d]
        if details:
            return "TLS: " + ", ".join(str(d) for d in details)
    text = str(reason).strip().rstrip(".")
    return text.splitlines()[0] if text else type(reason).__name__


class ClientSession:
    """
    One run of the client, across one connection (or several, with
    C{reconnect}).

    Events from the connection: L{connection_made}, L{data_received},
    L{connection_lost}, L{connect_failed}, L{reconnect_scheduled}.
    Events from the user: L{line_typed}, L{input_ended}.
    The outcome: L{done} fires with the exit status; L{error} then holds the
    line to print on stderr, if any.
    """

    def __init__(self, screen: IScreen, clock: IReactorTime, settings: ClientSettings) -> None:
        self.settings = settings
        self.state = State.CONNECTING
        self.done: Deferred[int] = Deferred()
        self.error: str | None = None
        self._screen = screen
        self._clock = clock
        self._link: ILink | None = None
        self._incoming = IncomingLines()
        self._outbox: deque[str] = deque()
        self._input_ended = False
        self._ever_connected = False
        self._hold: IDelayedCall | None = None
        self._turn: IDelayedCall | None = None
        self._quiet: IDelayedCall | None = None
        self._limit: IDelayedCall | None = None

    @property
    def wants_input(self) -> bool:
        """Whether the user's lines are still wanted (not ended, not over)."""
        return not self._input_ended and self.state is not State.CLOSED

    def notice(self, text: str) -> None:
        """Tell the user something (the input side has a problem to report)."""
        self._screen.notice(text)

    def _move(self, state: State) -> None:
        if state not in _MOVES[self.state]:
            raise RuntimeError(f"client session: no move from {self.state.name} to {state.name}")
        self.state = state

    # events from the connection

    def connection_made(self, link: ILink) -> None:
        """A connection is up: say so, take the name, send what waits."""
        if self.state is not State.CONNECTING:
            # Over already (the user left while we were connecting): go.
            link.close()
            return
        self._move(State.OPEN)
        self._link = link
        self._incoming = IncomingLines()
        if self._ever_connected:
            self._screen.notice(f"reconnected to {self.settings.server}")
        elif self.settings.greet_connect:
            self._screen.notice(f"connected to {self.settings.server}")
        self._ever_connected = True
        if self.settings.nick is not None:
            self._outbox.appendleft(f"/nick {self.settings.nick}")
        if self.settings.login is not None:
            name, password = self.settings.login
            self._outbox.appendleft(f"/login {name} {password}")
        self._wait_for_server()

    def data_received(self, data: bytes) -> None:
        """Bytes from the server: show each line they complete."""
        for raw in self._incoming.feed(data):
            self._screen.show_line(for_screen(raw, self.settings.encoding))
        if self._turn is not None:
            # The greeting, or the answer we waited for, is in: our turn.
            self._our_turn()
        if self._incoming.pending:
            self._hold = self._restart(self._hold, HOLD, self._show_unfinished)
        else:
            self._hold = self._cancel(self._hold)
        if self.state is State.ENDING:
            self._quiet = self._restart(self._quiet, self.settings.wait, self._stop_waiting)

    def connection_lost(self, clean: bool, why: str) -> None:
        """
        The connection is gone.  C{clean}: the server closed it (a FIN); else
        C{why} says what happened.
        """
        self._show_unfinished()
        self._link = None
        self._turn = self._cancel(self._turn)
        if self.state is State.ENDING or (self.state is State.OPEN and self._input_ended):
            # The user is done (the server may have closed on our "exit"
            # before we half-closed): the expected end, even with --reconnect.
            if self._outbox:
                unsent = len(self._outbox)
                lines = "line" if unsent == 1 else "lines"
                self._screen.notice(f"connection closed by server ({unsent} {lines} not sent)")
            self._finish(OK)
        elif self.state is State.OPEN:
            self._screen.notice(
                "connection closed by server" if clean else f"connection lost: {why}"
            )
            if self.settings.reconnect:
                self._move(State.CONNECTING)
            else:
                self._finish(OK if clean else FAILED)

    def connect_failed(self, why: str) -> None:
        """An attempt to connect failed, for the reason C{why}."""
        if self.state is not State.CONNECTING:
            return
        line = f"cannot connect to {self.settings.server}: {why}"
        if self.settings.reconnect:
            self._screen.notice(line)
        else:
            self.error = line
            self._finish(FAILED)

    def reconnect_scheduled(self, delay: float) -> None:
        """The next attempt to connect is in C{delay} seconds."""
        if self.state is State.CONNECTING:
            self._screen.notice(f"reconnecting to {self.settings.server} in {delay:.1f} s")

    # events from the user

    def line_typed(self, text: str) -> None:
        """A line to send; C{exit} and C{/quit} go out, then end the session."""
        if self._input_ended or self.state is State.CLOSED:
            return
        self._outbox.append(text)
        if self.state is State.CONNECTING and self._ever_connected:
            self._screen.notice("not connected: the line goes out once reconnected")
        if text.strip() in QUIT_WORDS or text.startswith("/quit "):
            self.input_ended()
        else:
            self._pump()

    def input_ended(self) -> None:
        """
        The user is done (EOF, C{exit}, C{/quit}): send what is left,
        half-close, show what the server still sends, then end.
        """
        if self._input_ended:
            return
        self._input_ended = True
        retrying = self._ever_connected or self.settings.reconnect
        if self.state is State.CONNECTING and retrying and not self._outbox:
            # Waiting to (re)connect, with nothing left to say: just go.  (A
            # single first attempt is still waited for: `tcpchat < /dev/null`
            # shows the greeting.)
            self._finish(OK)
        else:
            self._pump()

    def interrupted(self, status: int) -> None:
        """The user stopped the program (Ctrl-C in a pipe, a signal): end now, quietly."""
        if self.state is not State.CLOSED:
            self._finish(status)

    # inside

    def _pump(self) -> None:
        """
        Send what waits, once the server has greeted; one message per turn
        when no line end separates them.
        """
        if self.state is not State.OPEN or self._turn is not None or self._link is None:
            return
        ending = self.settings.line_ending
        while self._outbox:
            text = self._outbox.popleft()
            self._link.write(encode_message(text, ending, self.settings.encoding))
            if ending in UNFRAMED:
                self._wait_for_server()
                return
        if self._input_ended:
            self._begin_ending()

    def _wait_for_server(self) -> None:
        """Send nothing until the server speaks, or ANSWER_WAIT has passed."""
        self._turn = self._restart(self._turn, ANSWER_WAIT, self._our_turn)

    def _our_turn(self) -> None:
        self._turn = self._cancel(self._turn)
        self._pump()

    def _begin_ending(self) -> None:
        self._move(State.ENDING)
        if self._link is not None:
            self._link.half_close()
        self._quiet = self._restart(self._quiet, self.settings.wait, self._stop_waiting)
        self._limit = self._clock.callLater(
            max(DRAIN_LIMIT, self.settings.wait), self._stop_waiting
        )

    def _stop_waiting(self) -> None:
        """The server has gone quiet, or talked too long: close; the loss ends the run."""
        self._quiet = self._cancel(self._quiet)
        self._limit = self._cancel(self._limit)
        if self._link is not None:
            self._link.close()

    def _show_unfinished(self) -> None:
        self._hold = self._cancel(self._hold)
        for raw in self._incoming.flush():
            self._screen.show_line(for_screen(raw, self.settings.encoding))

    def _finish(self, status: int) -> None:
        self._move(State.CLOSED)
        for call in (self._hold, self._turn, self._quiet, self._limit):
            self._cancel(call)
        self._hold = self._turn = self._quiet = self._limit = None
        if self._link is not None:
            self._link.close()
            self._link = None
        self.done.callback(status)

    def _restart(
        self, call: IDelayedCall | None, delay: float, action: Callable[[], None]
    ) -> IDelayedCall:
        self._cancel(call)
        return self._clock.callLater(delay, action)

    @staticmethod
    def _cancel(call: IDelayedCall | None) -> None:
        if call is not None and call.active():
            call.cancel()
