"""
The server's logic: what happens to each client, independent of the wire.

L{ChatServer} is the root object a listening factory feeds; it admits or
refuses each connection and opens one L{Session} per admitted one.  A
session greets, receives lines, decodes them (UTF-8, or the GBK of a Chinese
Windows console), logs them as data, paces a flooding client, takes part in
the room (L{twisted_tcpchat.room}), and ends on the exit word, C{/quit}, a
kick, an idle timeout, a full send queue or disconnect - or, in C{once} mode,
after the first message.
"""

from __future__ import annotations

import enum
import math
import resource
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import cast

from twisted.cred.checkers import ICredentialsChecker
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_tcpchat.auth import LoginError, Logins
from twisted_tcpchat.commands import chat_text, perform
from twisted_tcpchat.config import ChatConfig
from twisted_tcpchat.interfaces import IConnection, IParticipant, IRoom
from twisted_tcpchat.limits import (
    AccessList,
    Admission,
    TokenBucket,
    clients_for_open_files,
    parse_networks,
)
from twisted_tcpchat.logs import LazyText, TurnLog
from twisted_tcpchat.room import Room, name_problem
from twisted_tcpchat.wire import (
    Codec,
    Frame,
    Joined,
    Lines,
    Overlong,
    escape_controls,
    escape_lines,
    plain_ascii,
    plain_chat,
    render_template,
)

log = TurnLog(namespace="tcpchat")


class _Sent(LazyText):
    """
    The log's text for the chat lines of a read - who sent how many bytes
    of what, a line each - made only when the log is written: on a server,
    once the turn's lines have gone out.
    """

    __slots__ = ("sizes", "texts", "who")

    def __init__(self, who: str, sizes: Iterable[int] | None, texts: Sequence[str]) -> None:
        self.who = who
        self.sizes = sizes
        self.texts = texts

    def __str__(self) -> str:
        # "who sent N bytes: text" for each line: the pieces laid out in one
        # list by slice assignments, all in C, and joined once.
        head = f"{self.who} sent "
        texts = list(iter(self.texts))  # (not list(texts): that asks its len() first)
        sizes = map(len, texts) if self.sizes is None else self.sizes
        pieces = [f"\n{head}"] * (3 * len(texts))
        pieces[0] = head
        pieces[1::3] = map(_BYTE_COUNTS.__getitem__, sizes)
        pieces[2::3] = texts
        text = "".join(pieces)
        if isinstance(self.texts, Joined) and escape_controls(head) == head:
            return text  # (nothing to escape in it)
        return escape_lines([text])


class _ByteCounts(dict[int, str]):
    """C{"N bytes: "} for each line size N, made once (for sizes up to 4096)."""

    def __missing__(self, size: int) -> str:
        words = f"{size} bytes: "
        if size <= 4096:
            self[size] = words
        return words


_BYTE_COUNTS = _ByteCounts()


def _log_sent(who: str, sizes: Iterable[int] | None, texts: Sequence[str]) -> None:
    """
    One log event for the chat lines of a read: who sent how many bytes of
    what (C{sizes} None: as many as each text has characters).
    """
    log.info("{lines}", lines=_Sent(who, sizes, texts))


def login_words(text: str) -> list[str] | None:
    """The words of a /login line (any whitespace between them), or None."""
    words = text.split(None, 2)
    if words and words[0].lower() == "/login":
        return words
    return None


def redact(text: str) -> str:
    """A line as it may be logged: the password of a /login is never shown."""
    words = login_words(text)
    if words is None:
        return text
    return " ".join(["/login", *words[1:2], "********"])


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


#: The pending lines of every client that has never been paced: one shared,
#: always empty, deque instead of one each (a deque is some 600 bytes).
_NO_PENDING: deque[Frame] = deque(maxlen=0)


class State(enum.Enum):
    """A session's life: open, then closing (we ended it), then closed."""

    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class ChatServer:
    """
    The server: its settings, its room, its admission rules, and the
    sessions it is serving.

    @ivar config: the settings.
    @ivar room: where sessions talk; None in C{once} mode, which has no room.
    @ivar max_clients: how many sessions at once; more are told the server
        is full.
    @ivar access: the --allow/--deny lists.
    """

    def __init__(
        self,
        config: ChatConfig | None = None,
        clock: IReactorTime | None = None,
        room: IRoom | None = None,
        checkers: Sequence[ICredentialsChecker] = (),
    ) -> None:
        self.config = config = config if config is not None else ChatConfig()
        if clock is None:
            from twisted.internet import reactor

            clock = cast(IReactorTime, reactor)
        self.clock = clock
        if room is None and not config.once:
            room = Room(
                clock,
                history=config.history,
                echo=config.echo,
                quiet_presence=config.quiet_presence,
                reserved={"server", config.console_name},
            )
        self.room = room
        # Until a service sizes it from the open-file limit (--max-clients
        # unset), the limit of the process as it is.
        self.max_clients = config.max_clients or clients_for_open_files(
            resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        )
        self.admission = Admission(
            config.per_address, config.connect_rate, 60.0, parse_networks(config.exempt)
        )
        self.access = AccessList(parse_networks(config.allow), parse_networks(config.deny))
        #: Logins, when the server requires them (checkers were given).
        self.logins = Logins(checkers) if checkers else None
        self._sessions: set[Session] = set()
        self._empty_waiters: list[Deferred[None]] = []

    def connected(self, connection: IConnection, peer: Peer) -> Session:
        """
        A client connected: refuse it with one line (server full, too many
        from its address), or open its session, greet it, seat it.
        """
        session = Session(self, connection, peer)
        refusal = self._refusal(peer)
        if refusal is None:
            refusal = self.admission.admit(peer.host, self.clock.seconds())
        if refusal is not None:
            session.refuse(refusal)
            return session
        self._sessions.add(session)
        session.greet()
        return session

    def unwelcome(self, host: str) -> str | None:
        """
        Why an address may not connect at all (--allow/--deny, bans), or None:
        cheap, so a TLS listener asks it before spending a handshake.
        """
        if not self.access.permits(host):
            return "error: your address is not allowed on this server"
        if self.room is not None:
            return self.room.banned(host)
        return None

    def _refusal(self, peer: Peer) -> str | None:
        """Why a client may not come in (before it is counted), or None."""
        unwelcome = self.unwelcome(peer.host)
        if unwelcome is not None:
            return unwelcome
        if len(self._sessions) >= self.max_clients:
            return f"error: server full ({self.max_clients} clients); try again later"
        return None

    def session_ended(self, session: Session) -> None:
        """An admitted session is over; forget it."""
        self._sessions.discard(session)
        self.admission.release(session.peer.host)
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
    ends, C{not_chat} for traffic that is not chat, C{send_queue_full} when
    the client stops reading, C{input_ended} on half-close, C{ended} when the
    connection is gone.  Towards the room it is an L{IParticipant}.

    Flood control: unless the client's address is exempt, lines pass a token
    bucket; the excess waits in C{_pending} (and the connection stops
    reading, so TCP pushes back); too many waiting ends the session.
    """

    # One per connection, thousands at once: no __dict__.
    __slots__ = (
        "__provides__",  # zope.interface keeps what an instance provides here
        "_active_at",
        "_admitted",
        "_bucket",
        "_clock",
        "_config",
        "_drain_call",
        "_idle_call",
        "_input_ended",
        "_log_batch",
        "_logged_in",
        "_login_pending",
        "_pending",
        "_room",
        "_say_batch",
        "address",
        "codec",
        "connection",
        "name",
        "peer",
        "server",
        "state",
    )

    def __init__(self, server: ChatServer, connection: IConnection, peer: Peer) -> None:
        config = server.config
        self.server = server
        self.connection = connection
        self.peer = peer
        self.state = State.OPEN
        self.name = ""
        self.address = peer.host
        self.codec = Codec(config.encoding)
        self._config = config
        self._clock = server.clock
        self._room = server.room
        self._admitted = False
        now = self._clock.seconds()
        self._bucket = (
            None
            if server.admission.is_exempt(peer.host)
            else TokenBucket(config.flood_rate, config.flood_burst, now)
        )
        self._pending: deque[Frame] = _NO_PENDING
        self._drain_call: IDelayedCall | None = None
        self._input_ended = False
        self._active_at = now
        self._idle_call: IDelayedCall | None = None
        # None: no login needed; False: not yet; True: logged in.
        self._logged_in: bool | None = None if server.logins is None else False
        self._login_pending = False
        # Chat lines of the current read, not yet logged and relayed.
        # (None when empty: thousands of idle clients need no lists)
        self._log_batch: list[tuple[int, str]] | None = None
        self._say_batch: list[str] | None = None

    def __str__(self) -> str:
        """Who this is, for the log: the address, with the name once it has one."""
        return f"{self.name} ({self.peer})" if self.name else str(self.peer)

    # IParticipant

    def send_line(self, text: str) -> None:
        self.connection.send_line(text, self.codec.output)

    def send_lines(self, lines: Sequence[str]) -> None:
        self.connection.send_lines(lines, self.codec.output)

    def disconnect(self, reason: str) -> None:
        if self.state is State.OPEN:
            self._close(f"disconnected ({reason})")

    # events from the wire

    def refuse(self, line: str) -> None:
        """The server will not take this client: one line, then close."""
        log.info("{peer} refused: {line}", peer=str(self.peer), line=line)
        self.send_line(line)
        self.state = State.CLOSING
        self.connection.close()

    def greet(self) -> None:
        """Send the greeting, then join the room."""
        self._admitted = True
        fields = {
            "peer": self.peer.host,
            "port": self.peer.port,
            "server": self.peer.server,
            "clients": self.server.client_count,
        }
        for line in render_template(self._config.greeting, fields):
            self.send_line(line)
        if self._logged_in is False:
            self.send_line("* this server needs a login: /login NAME PASSWORD")
        elif self._room is not None:
            self._room.join(self)
        if self._config.idle_timeout:
            self._idle_call = self._clock.callLater(self._config.idle_timeout, self._check_idle)
        log.info("{who} connected", who=str(self))

    def frames_received(self, frames: Sequence[Frame]) -> None:
        """Handle the lines of one read, in order, paced by flood control."""
        if self.state is not State.OPEN or not frames:
            return
        if self._bucket is None:
            if self._say_plain(frames):
                return
            for frame in frames:
                if self.state is not State.OPEN:
                    break
                self._handle(frame)
            self._flush()
            return
        if self._pending is _NO_PENDING:
            self._pending = deque()
        self._pending.extend(frames)
        self._drain(self._bucket)
        waiting = len(self._pending)
        if waiting > self._config.flood_queue and self.state is State.OPEN:
            self._end(
                "excess flood",
                f"error: excess flood: more than {self._config.flood_queue} lines waiting; "
                "disconnecting",
                f"flooded ({waiting} lines waiting); disconnected",
            )

    def overflowed(self, pending: int) -> None:
        """The client sent more than the limit without ending a line."""
        if self.state is State.OPEN:
            self._end(
                "line too long",
                f"error: {pending} bytes without a line end (the limit is "
                f"{self._config.max_unterminated}); disconnecting",
                f"sent {pending} bytes without a line end; disconnected",
            )

    def not_chat(self, line: str) -> None:
        """The client speaks another protocol (HTTP, TLS): say so, close."""
        if self.state is State.OPEN:
            self._end("not a chat client", line, f"is not a chat client ({line})")

    def send_queue_full(self, queued: int) -> None:
        """
        The client has stopped reading and its send queue passed the cap:
        cut it off, so that memory stays bounded and nobody else waits.
        """
        if self.state is State.OPEN:
            self._leave_room("not reading")
            log.info(
                "{who} disconnected: not reading, {queued} bytes queued (the limit is {cap})",
                who=str(self),
                queued=queued,
                cap=self._config.send_queue,
            )
            self.state = State.CLOSING
            self.connection.abort()

    def shut_down(self, notice: str) -> None:
        """The server is stopping: say so, and close."""
        if self.state is State.OPEN:
            self._leave_room("server shutting down")
            self.send_line(notice)
            self._close("disconnected: server shutting down")

    def input_ended(self) -> None:
        """
        The client will send nothing more: its waiting lines still go to the
        room, then it gets what it is owed, then the connection closes.
        """
        self._input_ended = True
        if self.state is State.OPEN and not self._pending:
            self._leave_room("disconnected")
            self._close("disconnected (closed by the client)")

    def ended(self, why: str) -> None:
        """The connection is gone; C{why} says how, for the log."""
        if self.state is State.OPEN:
            self._leave_room("disconnected")
            log.info("{who} disconnected ({why})", who=str(self), why=why)
        self.state = State.CLOSED
        for call in (self._drain_call, self._idle_call):
            if call is not None and call.active():
                call.cancel()
        self._pending.clear()
        if self._admitted:
            self.server.session_ended(self)

    # lines

    def _drain(self, bucket: TokenBucket) -> None:
        """Handle waiting lines as the bucket allows; wait and stop reading when it does not."""
        if self._drain_call is not None and self._drain_call.active():
            return  # already waiting for the next token
        self._drain_call = None
        while self._pending and self.state is State.OPEN:
            wait = bucket.delay(self._clock.seconds())
            if wait > 0:
                self._flush()
                self._drain_call = self._clock.callLater(wait, self._drain, bucket)
                self.connection.pause_reading()
                return
            self._handle(self._pending.popleft())
        self._flush()
        if self.state is State.OPEN:
            self.connection.resume_reading()
            if self._input_ended:
                self.input_ended()

    def _say_plain(self, frames: Sequence[Frame]) -> bool:
        """
        A read of nothing but plain chat lines - the usual read - as one
        piece: decoded, checked, logged and said to the room with a few
        passes in C over all its lines instead of a trip through Python per
        line.  What it does is what the per-line path does with such lines
        (L{Codec.decode_joined}, L{plain_chat} say when that holds); for any
        other read it does nothing and returns False.
        """
        room = self._room
        if room is None or self._logged_in is False:
            return False
        if isinstance(frames, Lines):  # (the usual read: still unsplit)
            raw = frames.raw
        else:
            try:
                raw = b"\n".join(frames)  # type: ignore[arg-type]  # (no cast: a call)
            except TypeError:  # an Overlong among them
                return False
        lines: Sequence[str] | None
        sizes: Iterable[int] | None
        if raw.isascii() and self.codec.joinable:
            # ASCII: checked and sent as bytes, decoded only for the log,
            # after the sends.  (A line's size in bytes is its length.)
            if not plain_ascii(raw, self._config.exit_word):
                return False
            lines = Joined.of_ascii(raw)
            if lines is None:
                lines = raw.decode("ascii").split("\n")
            sizes = None
        else:
            text = self.codec.decode_joined(raw)
            if text is None or not plain_chat(text, self._config.exit_word):
                return False
            # Usually there is nothing to escape: then the lines stay one
            # text (L{Joined}) all the way to the wire.
            lines = Joined.of(text)
            if lines is None:
                lines = text.split("\n")
            sizes = map(len, frames)  # type: ignore[arg-type]
        self._active_at = self._clock.seconds()
        # (Who, now: under TLS a later record of the same turn may rename it.)
        _log_sent(str(self), sizes, lines)
        room.say_lines(self, lines)
        return True

    def _handle(self, frame: Frame) -> None:
        self._active_at = self._clock.seconds()
        try:
            self._frame_received(frame)
        except Exception:
            log.failure("internal error handling a line from {who}", who=str(self))
            self.send_line("error: internal error; your line was not handled")

    def _frame_received(self, frame: Frame) -> None:
        if isinstance(frame, Overlong):
            self._flush()  # what came before goes first
            log.info(
                "{who} sent an over-long line ({size} bytes); dropped",
                who=str(self),
                size=frame.size,
            )
            self.send_line(
                f"error: line too long ({frame.size} bytes; the limit is "
                f"{self._config.max_line}); not delivered"
            )
            return
        text = self.codec.decode(frame)
        if text is None:
            self._flush()
            log.info(
                "{who} sent {size} bytes in no known encoding: {text}",
                who=str(self),
                size=len(frame),
                text=escape_controls(redact(frame.decode("utf-8", "backslashreplace"))),
            )
            expected = self._config.encoding or "UTF-8 or GBK"
            self.send_line(f"error: that line is not {expected} text; not delivered")
            return
        self.line_received(text, len(frame))

    def line_received(self, text: str, size: int) -> None:
        """
        A decoded line of C{size} bytes arrived: show it, then act on it.

        Chat lines are batched (see L{_flush}); anything else first flushes
        the batch, so that everything happens in the order it was sent.
        """
        if text.strip() == self._config.exit_word:
            self._flush()
            self._leave(self._config.exit_word, f"ended the session ({self._config.exit_word})")
            return
        if self._room is not None and self._logged_in is not False:
            said = chat_text(text)
            if said is not None:
                if self._log_batch is None:
                    self._log_batch = []
                self._log_batch.append((size, text))
                if said.strip():
                    if self._say_batch is None:
                        self._say_batch = []
                    self._say_batch.append(said)
                return
        self._flush()
        log.info(
            "{who} sent {size} bytes: {text}",
            who=str(self),
            size=size,
            text=escape_controls(redact(text)),
        )
        if self._logged_in is False:
            self._before_login(text)
            return
        if self._room is None:
            self.send_line(f"Received {size} bytes. Goodbye.")
            self._close("was served once")
            return
        if self._logged_in and text.split(None, 1)[0].lower() == "/nick":
            self.send_line("error: on this server your name is your login name")
            return
        quit = perform(self._room, self, text)
        if quit is not None:
            self._leave(quit.reason, f"quit ({quit.reason})")

    def _flush(self) -> None:
        """
        The chat lines gathered from one read go out together: one log event
        for all of them, one batch to the room (one write per member).
        """
        if self._log_batch:
            sent, self._log_batch = self._log_batch, None
            _log_sent(str(self), [size for size, _ in sent], [text for _, text in sent])
        if self._say_batch:
            batch, self._say_batch = self._say_batch, None
            if self._room is not None and self.state is State.OPEN:
                self._room.say_lines(self, batch)

    # logins

    def _before_login(self, text: str) -> None:
        """A line from a client that has not logged in: only /login, /help, /quit."""
        command, _, rest = text.partition(" ")
        command = command.lower()
        words = login_words(text)
        if words is not None:
            name, password = [*words, "", ""][1:3]
            if not name or not password:
                self.send_line("error: usage: /login NAME PASSWORD")
            elif self.server.logins is not None:
                self._login(self.server.logins, name, password)
        elif command == "/quit":
            self._leave(rest.strip() or "quit", "quit before logging in")
        elif command == "/help":
            self.send_line("* log in first: /login NAME PASSWORD; /quit leaves")
        else:
            self.send_line("error: log in first: /login NAME PASSWORD")

    def _login(self, logins: Logins, name: str, password: str) -> None:
        if self._login_pending:
            self.send_line("error: wait for the answer to your last /login")
            return
        now = self._clock.seconds()
        wait = logins.wait(self.peer.host, now)
        if wait > 0:
            self.send_line(
                f"error: too many failed logins from your address; try again in {math.ceil(wait)} s"
            )
            return
        self._login_pending = True
        logins.attempt(self.peer.host, name, password, now).addCallbacks(
            self._logged_in_as, self._login_failed, errbackArgs=(name,)
        ).addErrback(self._login_broke)

    def _logged_in_as(self, name: str) -> None:
        self._login_pending = False
        if self.state is not State.OPEN:
            return
        problem = name_problem(name)
        if problem is not None:
            self.send_line(f"error: your login cannot be a chat name ({problem})")
            return
        banned = self._room.banned(self.address) if self._room is not None else None
        if banned is not None:  # banned while this connection waited at the login
            self._end("banned", banned, f"logged in as {name} while banned; disconnected")
            return
        if self._room is None:
            self._logged_in = True
            return
        operator = name.lower() in {op.lower() for op in self._config.operators}
        self._room.join(self, name=name, operator=operator)
        if not self.name:
            return  # the room said why (the name is in use)
        self._logged_in = True
        log.info("{who} logged in{op}", who=str(self), op=" as an operator" if operator else "")

    def _login_failed(self, failure: Failure, name: str) -> None:
        failure.trap(LoginError)
        self._login_pending = False
        log.info(
            "{peer} failed to log in as {name}", peer=str(self.peer), name=escape_controls(name)
        )
        if self.state is State.OPEN:
            self.send_line("error: wrong name or password")

    def _login_broke(self, failure: Failure) -> None:
        self._login_pending = False
        log.failure("login check failed for {peer}", failure, peer=str(self.peer))
        if self.state is State.OPEN:
            self.send_line("error: internal error checking the login; try again")

    # timers

    def _check_idle(self) -> None:
        self._idle_call = None
        if self.state is not State.OPEN:
            return
        timeout = self._config.idle_timeout
        idle = self._clock.seconds() - self._active_at
        if idle < timeout:
            # Never a wait too small to move the clock (see TokenBucket.delay).
            self._idle_call = self._clock.callLater(max(timeout - idle, 1e-3), self._check_idle)
            return
        self._end(
            "timed out",
            f"error: idle for {timeout:g} s; disconnecting",
            f"timed out after {timeout:g} s idle; disconnected",
        )

    # ending

    def _leave(self, reason: str, what: str) -> None:
        """The client asked to go: leave the room, say goodbye, close."""
        self._leave_room(reason)
        self.send_line("Goodbye.")
        self._close(what)

    def _end(self, reason: str, line: str, what: str) -> None:
        """The server ends the session: leave the room, tell the client why, close."""
        self._leave_room(reason)
        self.send_line(line)
        self._close(what)

    def _leave_room(self, reason: str) -> None:
        if self._room is not None:
            self._room.leave(self, reason)

    def _close(self, what: str) -> None:
        # what may hold the client's own words (a /quit reason, a kick reason)
        log.info("{who} {what}", who=str(self), what=escape_controls(what))
        self.state = State.CLOSING
        self._pending.clear()
        self.connection.close()
