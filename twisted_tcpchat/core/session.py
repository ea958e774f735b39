"""
One client's session: what happens between a front end's connection and the
directory, independent of the wire.

A front end hands the session decoded lines (L{received}) and events of its
connection (closing, overflowing, not reading); the session greets, logs
every line as data, paces a flooding client (L{pacing}), lets it log in
(L{login}), runs its commands (L{commands}), says its chat lines to its room
through the directory, and ends it on the exit word, C{/quit}, a kick, an
idle timeout, a full send queue or disconnect.  Its phases and the moves
between them are declared once, in L{_MOVES}, and what a line means in
each phase in L{Session._ON_LINES}.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from twisted.internet.interfaces import IDelayedCall
from zope.interface import implementer

from twisted_tcpchat.core.commands import Context
from twisted_tcpchat.core.events import Error, Event, History, Identity, Notice, Said, Text
from twisted_tcpchat.core.interfaces import Ending, IConnection, IParticipant
from twisted_tcpchat.core.limits import TokenBucket
from twisted_tcpchat.core.login import LoginGate, redact
from twisted_tcpchat.core.pacing import FloodPacer
from twisted_tcpchat.core.stats import CUT_OFF
from twisted_tcpchat.logs import LazyText, TurnLog
from twisted_tcpchat.text.escaping import escape_controls, escape_lines, needs_escape
from twisted_tcpchat.text.templates import render_template

if TYPE_CHECKING:
    from twisted_tcpchat.core.server import ChatServer

log = TurnLog(namespace="tcpchat")


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
class BadLine:
    """
    A line the front end could not read (too long, in no known encoding):
    never said; its sender gets C{error}, the log C{what} after its name.
    """

    size: int
    error: str
    what: str
    #: Which limit it broke, for the metrics (L{Stats.dropped}).
    kind: str = "not_text"


#: What a front end hands a session: a decoded line, or one it could not read.
Line = str | BadLine


def too_long(size: int, limit: int) -> BadLine:
    """A line of C{size} bytes, over the C{limit}: dropped, and its sender told."""
    return BadLine(
        size,
        f"line too long ({size} bytes; the limit is {limit}); not delivered",
        f"sent an over-long line ({size} bytes); dropped",
        "max_line",
    )


class SaidText(LazyText):
    """
    The text log's lines for chat lines said at once - who sent how many
    bytes of what, a line each - made when the log is written (after the
    turn's sends; see L{twisted_tcpchat.logs}).  C{text}: the lines, joined
    by LF.
    """

    __slots__ = ("lines", "sizes", "text", "who")

    def __init__(self, who: str, sizes: Sequence[int], lines: Sequence[str], text: str) -> None:
        self.who = who
        self.sizes = sizes
        self.lines = lines
        self.text = text

    def __str__(self) -> str:
        lines = self.lines
        if needs_escape(self.text):
            lines = escape_lines(lines).split("\n")
        head = f"{self.who} sent "
        return "\n".join(
            [f"{head}{size} bytes: {line}" for size, line in zip(self.sizes, lines, strict=True)]
        )


class Phase(enum.Enum):
    """Where a session is.  The allowed moves are in L{_MOVES}, and nowhere else."""

    #: Made, not yet greeted (or refused).
    NEW = "new"
    #: Greeted on a server with logins: only /login, /help and /quit count.
    LOGIN = "login"
    #: In the chat: lines go to its room.
    CHAT = "chat"
    #: The tutorials' server (C{--classic}, C{--once}): every message answered.
    CLASSIC = "classic"
    #: We ended it: what is owed is being sent, then the connection closes.
    CLOSING = "closing"
    #: The connection is gone.
    CLOSED = "closed"


_MOVES: dict[Phase, frozenset[Phase]] = {
    Phase.NEW: frozenset({Phase.LOGIN, Phase.CHAT, Phase.CLASSIC, Phase.CLOSING, Phase.CLOSED}),
    Phase.LOGIN: frozenset({Phase.CHAT, Phase.CLOSING, Phase.CLOSED}),
    Phase.CHAT: frozenset({Phase.CLOSING, Phase.CLOSED}),
    Phase.CLASSIC: frozenset({Phase.CLOSING, Phase.CLOSED}),
    Phase.CLOSING: frozenset({Phase.CLOSED}),
    Phase.CLOSED: frozenset(),
}

#: The phases in which a client's lines count.
_OPEN = frozenset({Phase.LOGIN, Phase.CHAT, Phase.CLASSIC})


@implementer(IParticipant)
class Session:
    """
    One client's conversation with the server.

    Each method below "events from the front end" is one event of the
    connection (see L{twisted_tcpchat.frontends.tcp.ChatProtocol});
    towards the directory it is an L{IParticipant}.
    """

    # One per connection, thousands at once: no __dict__.
    __slots__ = (
        "__provides__",  # zope.interface keeps what an instance provides here
        "_active_at",
        "_entering",
        "_idle_call",
        "_input_ended",
        "_login",
        "_operator",
        "_pacer",
        "address",
        "cause",
        "config",
        "connection",
        "ending",
        "name",
        "peer",
        "phase",
        "room",
        "server",
    )

    def __init__(self, server: ChatServer, connection: IConnection, peer: Peer) -> None:
        self.server = server
        #: The settings it started with: a reload (L{ChatServer.reconfigure})
        #: applies to the sessions that start after it.
        self.config = server.config
        self.connection = connection
        self.peer = peer
        self.phase = Phase.NEW
        self.name = ""
        self.room = ""
        self.address = peer.host
        self._operator = False
        self._input_ended = False
        self._idle_call: IDelayedCall | None = None
        # Until it is in the chat: the call that lets it in after the probe
        # grace, or None (in already, or never to be: see greet()).
        self._entering: IDelayedCall | None = None
        self._active_at = server.clock.seconds()
        self._login: LoginGate | None = None
        self._pacer: FloodPacer | None = None
        #: Why the server closed it, once it did.
        self.ending: Ending | None = None
        #: How it ended, in a word, for the metrics (L{Stats.ended}).
        self.cause: str | None = None
        if not server.admission.is_exempt(peer.host):
            config = self.config
            bucket = TokenBucket(config.flood_rate, config.flood_burst, self._active_at)
            self._pacer = FloodPacer(server.clock, bucket, self)

    def __str__(self) -> str:
        """Who this is, for the log: the address, with the name once it has one."""
        return f"{self.name} ({self.peer})" if self.name else str(self.peer)

    @property
    def is_open(self) -> bool:
        """Whether the client's lines still count."""
        return self.phase in _OPEN

    def _move(self, phase: Phase) -> None:
        if phase not in _MOVES[self.phase]:
            raise AssertionError(f"a session cannot go from {self.phase.name} to {phase.name}")
        if self.phase is Phase.CLASSIC:  # (its messages wait for no answer any more)
            self.server.classic.gone(self, str(self.peer))
        self.phase = phase

    # IParticipant

    def receive(self, event: Event) -> None:
        if self._login is not None:
            self._login.heard(event)
        self.connection.send(event)

    def disconnect(self, reason: str, ending: Ending = Ending.REMOVED) -> None:
        if self.is_open:
            self.cause = "redis_lost" if ending is Ending.LOST else "removed"
            self._close(f"disconnected ({reason})", ending)

    # events from the front end

    def refuse(self, error: str, later: bool = False) -> None:
        """
        The server will not take this client (C{later}: not now, as when
        it is full): one line, then close.
        """
        log.info(
            "{peer} refused: error: {error}",
            peer=str(self.peer),
            error=error,
            address=self.peer.host,
            port=self.peer.port,
            reason=error,
        )
        self.connection.send(Error(error))
        self._move(Phase.CLOSING)
        self.ending = Ending.BUSY if later else Ending.REFUSED
        self.connection.close(self.ending)

    def greet(self, probe: bool = True) -> None:
        """
        Send the greeting, then let the client in (or ask it to log in).
        With C{probe} (a TCP client, which may be a health check), it comes
        into a room only after the probe grace, or once it sends something.
        """
        server = self.server
        config = self.config
        fields = {
            "peer": self.peer.host,
            "port": self.peer.port,
            "server": self.peer.server,
            "clients": server.client_count,
        }
        for line in render_template(config.greeting, fields):
            self.connection.send(Text(line))
        if config.classic or config.once:
            self._move(Phase.CLASSIC)
        elif server.logins is not None:
            self._move(Phase.LOGIN)
            self._login = LoginGate(server, server.logins, self)
            self.connection.send(Notice("this server needs a login: /login NAME PASSWORD"))
        else:
            self._move(Phase.CHAT)
            if probe and config.probe_grace:
                self._entering = server.clock.callLater(config.probe_grace, self._enter)
            else:
                server.directory.enter(self)
        if config.idle_timeout:
            self._idle_call = server.clock.callLater(config.idle_timeout, self._check_idle)
        log.info("{who} connected", who=str(self), address=self.peer.host, port=self.peer.port)

    def received(self, lines: Sequence[Line], sizes: Sequence[int]) -> None:
        """
        The lines of one read, in order, and each one's size in bytes; paced
        by flood control unless the client's address is exempt.
        """
        if not lines or not self.is_open:
            return
        stats = self.server.stats
        stats.lines_in += len(lines)
        if self._entering is not None:
            lines, sizes = self._events_first(lines, sizes)
            if self._entering is not None and self.is_open:
                self._enter()  # (a word: not a probe)
            if not lines:
                return
        pacer = self._pacer
        if pacer is None:
            self._handle(lines, sizes)
            return
        pacer.add(lines, sizes)
        waiting = pacer.waiting
        if waiting:  # (the waiting lines of this read are the last ones)
            stats.delayed += min(waiting, len(lines))
        limit = self.config.flood_queue
        if waiting > limit and self.is_open:
            self.end(
                "excess flood",
                f"excess flood: more than {limit} lines waiting; disconnecting",
                f"flooded ({waiting} lines waiting); disconnected",
            )

    def _events_first(
        self, lines: Sequence[Line], sizes: Sequence[int]
    ) -> tuple[Sequence[Line], Sequence[int]]:
        """
        Before it is in a room: a program's first line, if it is
        C{/events json}, takes effect first, so that its welcome and the
        room's history come as JSON too.  The other lines are left.  (One
        line only: the rest, another C{/events} too, is paced as usual.)
        """
        first = lines[0]
        if not (isinstance(first, str) and first.split(None, 1)[:1] == ["/events"]):
            return lines, sizes
        self._log_line(first, sizes[0])
        self._guarded(self._command, first)
        return lines[1:], sizes[1:]

    def events_as(self, kind: str) -> bool:
        """
        C{/events}: this client's events as text lines or as JSON (see
        L{twisted_tcpchat.core.commands.EVENT_FORMATS}); False when its
        connection has only one way (a WebSocket: JSON).  Switched to JSON
        in a room, it is told again who and where it is.
        """
        switch = getattr(self.connection, "events_as", None)
        if switch is None:
            return False
        switch(kind)
        if kind == "json" and self.phase is Phase.CHAT and self._entering is None:
            self.connection.send(Identity(self.name, self.room, Identity.SAME, self._operator))
            replay = getattr(self.server.directory, "recent_history", None)
            if replay is not None:
                replay(self, self._replay)
        return True

    def _replay(self, room: str, said: tuple[Said, ...]) -> None:
        if said and self.is_open:
            self.connection.send(History(room, said))

    def overflowed(self, pending: int) -> None:
        """The client sent more than the limit without ending a line."""
        if self.is_open:
            limit = self.config.max_unterminated
            self.end(
                "line too long",
                f"{pending} bytes without a line end (the limit is {limit}); disconnecting",
                f"sent {pending} bytes without a line end; disconnected",
            )

    def not_chat(self, error: str) -> None:
        """The client speaks another protocol (HTTP, TLS): say so, close."""
        if self.is_open:
            self.end("not a chat client", error, f"is not a chat client ({error})")

    def send_queue_full(self, queued: int) -> None:
        """
        The client has stopped reading and its send queue passed the cap:
        cut it off, so that memory stays bounded and nobody else waits.
        """
        if self.is_open:
            self.cause = "not_reading"
            self._leave_chat("not reading")
            log.info(
                "{who} disconnected: not reading, {queued} bytes queued (the limit is {cap})",
                who=str(self),
                queued=queued,
                cap=self.config.send_queue,
            )
            self._move(Phase.CLOSING)
            self.connection.abort()

    def shut_down(self, notice: str) -> None:
        """The server is stopping: say so, and close."""
        if self.is_open:
            self.cause = "shutdown"
            self._leave_chat("server shutting down")
            self.connection.send(Text(notice))
            self._close("disconnected: server shutting down", Ending.SHUTDOWN)

    def input_ended(self) -> None:
        """
        The client will send nothing more: its waiting lines still count,
        then it gets what it is owed and a goodbye, and the connection closes.
        """
        self._input_ended = True
        if self.is_open and not (self._pacer is not None and self._pacer.waiting):
            self.cause = "closed"
            self._leave_chat("disconnected")
            self.connection.send(Text("Goodbye."))
            self._close("disconnected (closed by the client)", Ending.QUIT)

    def ended(self, why: str, clean: bool = False) -> None:
        """
        The connection is gone; C{why} says how, for the log (C{clean}: the
        client closed it properly, as with a TLS close or a WebSocket close
        frame, rather than being lost).
        """
        if self.cause is None:
            self.cause = "closed" if clean else "lost"
        if self.is_open:
            self._leave_chat("disconnected")
            log.info("{who} disconnected ({why})", who=str(self), why=why)
        if self.phase is not Phase.CLOSED:
            self._move(Phase.CLOSED)
        if self._entering is not None and self._entering.active():
            self._entering.cancel()
        if self._idle_call is not None and self._idle_call.active():
            self._idle_call.cancel()
        if self._pacer is not None:
            self._pacer.stop()
        self.server.session_ended(self)

    # lines

    def _handle(self, lines: Sequence[Line], sizes: Sequence[int]) -> None:
        """Lines whose turn has come: what they mean depends on the phase."""
        if self.is_open:
            self._active_at = self.server.clock.seconds()
            self._ON_LINES[self.phase](self, lines, sizes)

    def _lines_in_chat(self, lines: Sequence[Line], sizes: Sequence[int]) -> None:
        """
        In the chat, the chat lines of a read are said together, as one
        message; a command, the exit word or a bad line among them is
        handled in its place, so that everything happens in the order sent.
        """
        exit_word = self.config.exit_word
        text = _plain_chat_text(lines, exit_word)
        if text is not None:
            self._say(lines, sizes, text)  # type: ignore[arg-type]
            return
        start = 0
        for i, line in enumerate(lines):
            if isinstance(line, str) and _is_chat(line, exit_word):
                continue
            if start < i:
                self._say(lines[start:i], sizes[start:i])  # type: ignore[arg-type]
            start = i + 1
            if self.phase is Phase.CHAT:
                self._guarded(self._other_line_in_chat, line, sizes[i])
            if self.phase is not Phase.CHAT:
                return  # (gone: the exit word, /quit, or removed meanwhile)
        if start < len(lines):
            self._say(lines[start:], sizes[start:])  # type: ignore[arg-type]

    def _say(self, lines: Sequence[str], sizes: Sequence[int], text: str | None = None) -> None:
        """
        Chat lines said at once: one log event, one message to the room.
        (C{text}: the lines joined by LF, when that was made already.)
        """
        if text is None:
            text = "\n".join(lines)
        self.server.stats.messages += 1
        log.info(
            "{said}",
            said=SaidText(str(self), sizes, lines, text),
            room=self.room,
            name=self.name,
            address=self.peer.host,
            port=self.peer.port,
            size=sum(sizes),
            text=text,
        )
        self._guarded(self.server.directory.say, self, lines)

    def _other_line_in_chat(self, line: Line, size: int) -> None:
        """A line in the chat that is not plain chat: a command, or one to look at alone."""
        text = self._first_look(line)
        if text is None:
            return
        if text.startswith("//"):
            self._say([text[1:]], [size])
        elif text.startswith("/"):
            self._log_line(text, size)
            self._command(text)
        elif text.strip():
            self._say([text], [size])
        else:
            self._log_line(text, size)  # (a blank line: logged, said to no one)

    def _first_look(self, line: Line) -> str | None:
        """
        In any phase: a bad line is answered with its error, and the exit
        word ends the session; both give None.  Any other line is its text.
        """
        if isinstance(line, BadLine):
            self._bad_line(line)
            return None
        exit_word = self.config.exit_word
        if line.strip() == exit_word:
            self.quit(exit_word, f"ended the session ({exit_word})")
            return None
        return line

    def _command(self, text: str) -> None:
        server = self.server
        context = Context(
            self,
            server.directory,
            operator=self._operator,
            fixed_name=server.logins is not None,
            commands=server.commands,
        )
        server.commands.run(context, text)
        if context.quit_reason is not None:
            self.quit(context.quit_reason, f"quit ({context.quit_reason})")

    def _lines_before_login(self, lines: Sequence[Line], sizes: Sequence[int]) -> None:
        for i, (line, size) in enumerate(zip(lines, sizes, strict=True)):
            if self.phase is Phase.CHAT:  # (let in at once: the rest is chat)
                self._lines_in_chat(lines[i:], sizes[i:])
                return
            if self.phase is not Phase.LOGIN:
                return
            text = self._first_look(line)
            if text is not None and self._login is not None:
                self._log_line(text, size)
                self._guarded(self._login.line, text)

    def _lines_classic(self, lines: Sequence[Line], sizes: Sequence[int]) -> None:
        for line, size in zip(lines, sizes, strict=True):
            if self.phase is not Phase.CLASSIC:
                return
            text = self._first_look(line)
            if text is None:
                continue
            self._log_line(text, size)
            self.server.stats.messages += 1
            if self.config.once:
                self.connection.send(Text(f"Received {size} bytes. Goodbye."))
                self.cause = "quit"
                self._close("was served once", Ending.QUIT)
            else:
                self.server.classic.message(self, str(self.peer), text, size)

    _ON_LINES: dict[Phase, Callable[[Session, Sequence[Line], Sequence[int]], None]] = {
        Phase.LOGIN: _lines_before_login,
        Phase.CHAT: _lines_in_chat,
        Phase.CLASSIC: _lines_classic,
    }

    def _log_line(self, text: str, size: int) -> None:
        log.info(
            "{who} sent {size} bytes: {text}",
            who=str(self),
            size=size,
            text=escape_controls(redact(text)),
            room=self.room,
            name=self.name,
            address=self.peer.host,
            port=self.peer.port,
        )

    def _bad_line(self, line: BadLine) -> None:
        self.server.stats.dropped[line.kind] += 1
        log.info(
            "{who} {what}",
            who=str(self),
            what=line.what,
            size=line.size,
            address=self.peer.host,
            port=self.peer.port,
        )
        self.connection.send(Error(line.error))

    def _guarded(self, handle: Callable[..., None], *args: object) -> None:
        """Handle a line; an error in our code is this line's only, never the server's."""
        try:
            handle(*args)
        except Exception:
            log.failure("internal error handling a line from {who}", who=str(self))
            self.connection.send(Error("internal error; your line was not handled"))

    # Paced: what the flood pacer asks of the session

    def lines_due(self, lines: Sequence[Line], sizes: Sequence[int]) -> None:
        self._handle(lines, sizes)

    def pause_reading(self) -> None:
        self.connection.pause_reading()

    def resume_reading(self) -> None:
        if self.is_open:
            self.connection.resume_reading()

    def drained(self) -> None:
        if self._input_ended:
            self.input_ended()

    # logins (see LoginGate)

    def enter(self, name: str, operator: bool) -> None:
        """Logged in as C{name}: ask the directory to let us in under that name."""
        self._operator = operator
        self.server.directory.enter(self, name=name, operator=operator)

    def entered(self) -> None:
        """The directory let us in (after a login): from now on, chat."""
        self._login = None
        self._move(Phase.CHAT)
        op = " as an operator" if self._operator else ""
        log.info("{who} logged in{op}", who=str(self), op=op, name=self.name)

    # timers

    def _check_idle(self) -> None:
        self._idle_call = None
        if not self.is_open:
            return
        timeout = self.config.idle_timeout
        idle = self.server.clock.seconds() - self._active_at
        if idle < timeout:
            # Never a wait too small to move the clock (see TokenBucket.delay).
            self._idle_call = self.server.clock.callLater(
                max(timeout - idle, 1e-3), self._check_idle
            )
            return
        self.end(
            "timed out",
            f"idle for {timeout:g} s; disconnecting",
            f"timed out after {timeout:g} s idle; disconnected",
        )

    # ending

    def quit(self, reason: str, what: str) -> None:
        """The client asked to go: leave the chat, say goodbye, close."""
        if not self.is_open:
            return
        self.cause = "quit"
        self._leave_chat(reason)
        self.connection.send(Text("Goodbye."))
        self._close(what, Ending.QUIT)

    def end(self, reason: str, error: str, what: str) -> None:
        """The server ends the session: leave the chat, tell the client why, close."""
        if not self.is_open:
            return
        self.cause = CUT_OFF.get(reason, "other")
        self._leave_chat(reason)
        self.connection.send(Error(error))
        self._close(what, Ending.ENDED)

    def _enter(self) -> None:
        """The probe grace is over, or the client spoke: into the chat."""
        call, self._entering = self._entering, None
        if call is not None and call.active():
            call.cancel()
        if self.phase is Phase.CHAT:
            self.server.directory.enter(self)

    def _leave_chat(self, reason: str) -> None:
        if self._entering is not None:
            # Gone within the probe grace without a word: a probe, never in.
            self._entering.cancel()
            self._entering = None
            self.cause = "probe"
            return
        if self.phase is Phase.CHAT:
            self.server.directory.leave(self, reason)

    def _close(self, what: str, ending: Ending) -> None:
        # what may hold the client's own words (a /quit reason, a kick reason)
        if not self.is_open:
            return
        log.info("{who} {what}", who=str(self), what=escape_controls(what))
        self._move(Phase.CLOSING)
        self.ending = ending
        if self._pacer is not None:
            self._pacer.stop()
        self.connection.close(ending)


@functools.lru_cache(maxsize=8)
def _not_plain(exit_word: str) -> re.Pattern[str]:
    # After an LF: a line that starts with whitespace or a slash (it may be
    # blank, or the exit word with spaces around it), an empty last line,
    # or the exit word with nothing but whitespace after it.  (\s is what
    # str.isspace() and str.strip() take as whitespace.)
    word = re.escape(exit_word)
    return re.compile(rf"\n(?:[\s/]|\Z|{word}\s*(?:\n|\Z))")


def _plain_chat_text(lines: Sequence[Line], exit_word: str) -> str | None:
    """
    The lines joined by LF if every one is plain chat (see L{_is_chat}),
    else None: one regular expression over the whole read - 6 µs for 128
    lines, where asking L{_is_chat} line by line takes 15.
    """
    try:
        text = "\n".join(lines)  # type: ignore[arg-type]
    except TypeError:  # (a BadLine among them)
        return None
    return text if _not_plain(exit_word).search("\n" + text) is None else None


def _is_chat(line: str, exit_word: str) -> bool:
    """
    Whether a line is plain chat: not blank, not a command, not the exit
    word, and not starting with whitespace (such a line is looked at alone).
    """
    if line == "" or line[0] == "/" or line[0].isspace():
        return False
    return line != exit_word and not (line.startswith(exit_word) and line.rstrip() == exit_word)
