"""
The client's logic: one run of C{tcpchat}, independent of the wire and of
the terminal.

A L{ClientSession} hears from the connection (through the thin adapter in
L{twisted_tcpchat.client.protocol}) and from the user (through one of the
screens in L{twisted_tcpchat.client.io}); it shows what the server
sends on an L{IScreen}, sends what the user types over an L{ILink}, and
decides when the run is over and with which exit status.

On a terminal (C{events} in its settings) it also tells a tcpchat server
from any other by the first lines only tcpchat sends, and then asks it for
typed events (C{/events json}): the screen then shows events, not lines,
and the session keeps what they tell (L{ChatState}).  Any other server
never gets that request and is shown its lines as they come.
"""

from __future__ import annotations

import enum
import os
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass

from twisted.internet import defer, error
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from zope.interface import Interface

from twisted_tcpchat.client.events import (
    EVENTS_REQUEST,
    ChatEvent,
    ChatState,
    is_events_answer,
    is_events_refusal,
    parse_event,
    recognise,
    said_as_text,
    typed_as_said,
)
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

#: tcpchat says who you are (or that it needs a login) within the first
#: lines of a connection, right after its greeting; a line looking like that
#: later on is not taken as tcpchat's (another server's users may say it).
RECOGNISE_WITHIN = 3

#: Seconds to wait for the answer to C{/events json} (the user's lines wait
#: with it) before going on with lines, as a server that did not switch.
SWITCH_WAIT = 5.0

#: The longest line (bytes) once events come: one event is one line, and a
#: room's history or a busy server's C{/who *} is larger than a chat line.
EVENTS_MAX_LINE = 8 << 20

#: What the client asks tcpchat by itself, and the event that answers each:
#: the answers go into its state and are not shown.
QUIET_REQUESTS = {"/who": "members", "/rooms": "rooms", "/help": "help"}


def _everyone(event: ChatEvent) -> bool:
    """An answer to C{/who *} (every room): never one the client asked for quietly."""
    return event.kind == "members" and event.optional_text("room") is None


class IScreen(Interface):
    """Where the user sees the conversation."""

    def show_line(text: str) -> None:  # noqa: N805 (zope.interface: no self)
        """Show one line the server sent (already made safe to show)."""

    def notice(text: str) -> None:  # noqa: N805 (zope.interface: no self)
        """Tell the user something about the connection itself."""


class IEventScreen(IScreen):
    """A screen that shows tcpchat's typed events (the terminal)."""

    def show_event(event: ChatEvent, state: ChatState, now: float) -> None:  # noqa: N805
        """Show an event, said at C{now} unless it carries its own time; C{state} is mine."""

    def state_changed() -> None:
        """What the client knows (my name, room, role, ...) has changed: redraw the prompt."""


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
    @ivar events: whether to ask a tcpchat server for typed events (on a
        terminal, whose screen is an L{IEventScreen}); never with a line
        ending that does not end lines.
    """

    server: str
    encoding: str = "utf-8"
    line_ending: bytes = b"\n"
    wait: float = 1.0
    nick: str | None = None
    login: tuple[str, str] | None = None
    reconnect: bool = False
    greet_connect: bool = False
    events: bool = False


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


class Mode(enum.Enum):
    """
    What the server's lines are to the client on one connection.  The
    allowed moves are in L{_MODE_MOVES}; every new connection starts again
    at L{WATCHING} (or stays L{PLAIN} without C{events}).
    """

    #: Lines shown as they come: not a terminal, or not tcpchat.
    PLAIN = "plain"
    #: Shown as they come, while looking among the first lines for tcpchat's.
    WATCHING = "watching"
    #: C{/events json} sent: what comes is held (and the user's lines wait)
    #: until the server's answer, so that nothing shows twice.
    SWITCHING = "switching"
    #: Each line is a typed event.
    EVENTS = "events"


_MODE_MOVES: dict[Mode, frozenset[Mode]] = {
    Mode.PLAIN: frozenset({Mode.WATCHING}),
    Mode.WATCHING: frozenset({Mode.WATCHING, Mode.SWITCHING, Mode.PLAIN}),
    Mode.SWITCHING: frozenset({Mode.WATCHING, Mode.EVENTS, Mode.PLAIN}),
    Mode.EVENTS: frozenset({Mode.WATCHING}),
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
    Events from the user: L{line_typed}, L{input_ended}, L{interrupted}.
    The outcome: L{done} fires with the exit status; L{error} then holds the
    line to print on stderr, if any.  With typed events, L{chat} is what
    the client knows, and L{mode} says whether events come.
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
        self.chat = ChatState()
        self.mode = Mode.WATCHING if self._events_wanted else Mode.PLAIN
        self._lines_seen = 0
        self._held: list[bytes] = []
        self._switch_wait: IDelayedCall | None = None
        # Past SWITCH_WAIT without the answer: text shows, events still wait.
        self._switch_late = False
        # The last line number shown, by room (see _unseen).
        self._last_seq: dict[str, float] = {}
        self._asked: Counter[str] = Counter()

    @property
    def _events_wanted(self) -> bool:
        return self.settings.events and self.settings.line_ending in (b"\n", b"\r\n")

    @property
    def events_on(self) -> bool:
        """Whether typed events come (the prompt, completion and colours are then on)."""
        return self.mode is Mode.EVENTS

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

    def _move_mode(self, mode: Mode) -> None:
        if mode not in _MODE_MOVES[self.mode]:
            raise RuntimeError(f"client session: no move from {self.mode.name} to {mode.name}")
        self.mode = mode

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
        if self._events_wanted:
            self._watch_again()
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
            self._line_received(raw)
        if self._turn is not None:
            # The greeting, or the answer we waited for, is in: our turn.
            self._our_turn()
        if self._incoming.pending and self.mode in (Mode.PLAIN, Mode.WATCHING):
            # (An event is always a whole line: a slow one is waited for.)
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
        if self.mode is Mode.SWITCHING:
            self._not_switched()
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

    # the server's lines, and typed events

    def _line_received(self, raw: bytes) -> None:
        """One line from the server: shown, watched, held, or taken as an event."""
        if self.mode is Mode.PLAIN:
            self._screen.show_line(for_screen(raw, self.settings.encoding))
        elif self.mode is Mode.WATCHING:
            self._watch(raw)
        elif self.mode is Mode.SWITCHING:
            event = parse_event(raw)
            if event is None and self._switch_late:
                text = for_screen(raw, self.settings.encoding)
                if is_events_refusal(text):
                    self._not_switched()
                else:
                    self._screen.show_line(text)  # (past the wait: text shows at once)
                return
            self._held.append(raw)
            if event is not None and is_events_answer(event):
                self._switched()
            elif event is None and is_events_refusal(for_screen(raw, self.settings.encoding)):
                self._not_switched()
        else:
            event = parse_event(raw)
            if event is None:  # (after the user's own /events text, say)
                event = ChatEvent.text_line(for_screen(raw, self.settings.encoding))
            self._event(event)

    def _watch_again(self) -> None:
        """A new connection, maybe to another server: forget the last one's state."""
        self._move_mode(Mode.WATCHING)
        self._lines_seen = 0
        self._held = []
        self._asked.clear()
        self._switch_wait = self._cancel(self._switch_wait)
        self._switch_late = False
        self._last_seq.clear()
        self.chat = ChatState()
        self._state_changed()

    def _watch(self, raw: bytes) -> None:
        """
        A line among the first of a connection: tcpchat's welcome (or its
        login request) makes the client ask for events, and hold what comes
        until they do; any other line is shown.
        """
        text = for_screen(raw, self.settings.encoding)
        self._lines_seen += 1
        if recognise(text) is None:
            self._screen.show_line(text)
            if self._lines_seen >= RECOGNISE_WITHIN:
                self._move_mode(Mode.PLAIN)
            return
        self._move_mode(Mode.SWITCHING)
        self._held = [raw]
        self._incoming.max_line = EVENTS_MAX_LINE
        self._send_now(EVENTS_REQUEST)
        self._switch_wait = self._clock.callLater(SWITCH_WAIT, self._switch_slow)

    def _switch_slow(self) -> None:
        """
        No answer yet (a slow or busy server, flood pacing): show the text
        held so far, and let the user's lines go; typed events are still
        held until the answer comes, or the connection ends.
        """
        self._switch_wait = None
        self._switch_late = True
        held, self._held = self._held, []
        for raw in held:
            if parse_event(raw) is None:
                self._screen.show_line(for_screen(raw, self.settings.encoding))
            else:
                self._held.append(raw)
        self._pump()

    def _switched(self) -> None:
        """
        Events come now.  Of the lines held since the request, the text ones
        that the typed ones repeat are dropped: the welcome and the answer
        to a C{/nick} (the C{you} event tells who I am, as a welcome), the
        history (the C{history} event has it, with times).  The rest is
        shown, in order, and the user's lines go.
        """
        self._switch_wait = self._cancel(self._switch_wait)
        self._switch_late = False
        held, self._held = self._held, []
        self._move_mode(Mode.EVENTS)
        events = [parse_event(raw) for raw in held]
        typed = [e for e in events if e is not None and not is_events_answer(e)]
        you = next((e for e in typed if e.kind == "you"), None)
        history = next((e for e in typed if e.kind == "history"), None)
        repeated: set[str] = set()
        if history is not None:
            repeated = {line for e in history.items("entries") for line in said_as_text(e)}
        if you is not None:
            typed.remove(you)
            self._event(you.with_fields(change="welcome"))
        for raw, event in zip(held, events, strict=True):
            if event is not None:
                continue
            text = for_screen(raw, self.settings.encoding)
            if you is not None and (recognise(text) is not None or text.startswith("* you are ")):
                continue
            if history is not None and (text.startswith("[history] ") or text in repeated):
                continue
            self._event(ChatEvent.text_line(text))
        for event in typed:
            self._event(event)
        self._pump()

    def _not_switched(self) -> None:
        """
        No events after all (a refusal: a tcpchat from before them, or the
        connection ended): show what was held, as lines, but the refusal
        of a request the user did not make.
        """
        self._switch_wait = self._cancel(self._switch_wait)
        self._switch_late = False
        held, self._held = self._held, []
        self._move_mode(Mode.PLAIN)
        for raw in held:
            text = for_screen(raw, self.settings.encoding)
            if not is_events_refusal(text):
                self._screen.show_line(text)
        self._pump()

    def _event(self, event: ChatEvent) -> None:
        """
        A typed event: learnt from, then shown, unless it answers what the
        client asked by itself, or it is the server's echo of my own line
        (shown already, when sent).
        """
        if is_events_answer(event):
            return
        unseen = self._unseen(event)
        if unseen is None:
            return
        event = unseen
        before = (self.chat.name, self.chat.room, self.chat.operator)
        self.chat.apply(event)
        after = (self.chat.name, self.chat.room, self.chat.operator)
        if self._asked[event.kind] > 0 and not _everyone(event):
            self._asked[event.kind] -= 1
        elif event.kind in ("message", "action") and self.chat.is_me(event.text("sender")):
            pass  # the server's --echo: shown when it was sent
        else:
            self._show_event(event)
        if event.kind in ("members", "rooms", "help", "presence") or before != after:
            self._state_changed()
        if before != after:
            self._learnt(before[1], before[2])

    def _unseen(self, event: ChatEvent) -> ChatEvent | None:
        """
        C{event} without what was shown already on this connection: a
        room's lines are numbered (C{seq}), and a history may come twice
        (with C{--redis}, the one sent on entering can arrive after the
        switch to events, which replays it too).  None: nothing new.
        """
        if event.kind in ("message", "action"):
            seq = event.number("seq")
            if seq is not None:
                room = event.text("room")
                self._last_seq[room] = max(self._last_seq.get(room, 0), seq)
            return event
        if event.kind != "history":
            return event
        room = event.text("room")
        last = self._last_seq.get(room, 0)
        entries = event.items("entries")
        fresh = [e for e in entries if (e.number("seq") or 0) > last or e.number("seq") is None]
        if entries and not fresh:
            return None
        for entry in fresh:
            seq = entry.number("seq")
            if seq is not None:
                self._last_seq[room] = max(self._last_seq.get(room, 0), seq)
        if len(fresh) == len(entries):
            return event
        return event.with_fields(entries=[dict(e.fields) for e in fresh])

    def _learnt(self, room: str | None, operator: bool) -> None:
        """Who or where I am has changed (from C{room}, C{operator}): learn the rest."""
        if self.chat.room is None:
            return
        if room is None:
            self._ask_quietly("/who", "/rooms", "/help")
        elif room != self.chat.room:
            self._ask_quietly("/who", "/rooms")
        elif operator != self.chat.operator:
            self._ask_quietly("/help")

    def _ask_quietly(self, *requests: str) -> None:
        for request in requests:
            self._asked[QUIET_REQUESTS[request]] += 1
            self._send_now(request)

    def _show_own(self, text: str) -> None:
        """A line the user sent: shown as the room hears it (the server does not echo)."""
        if text.strip() in QUIT_WORDS:
            return
        said = typed_as_said(text, self.chat, self._clock.seconds())
        if said is not None:
            self._show_event(said)

    def _show_event(self, event: ChatEvent) -> None:
        IEventScreen(self._screen).show_event(event, self.chat, self._clock.seconds())

    def _send_now(self, text: str) -> None:
        """A line of the client's own, ahead of what the user's wait."""
        if self._link is not None:
            self._link.write(
                encode_message(text, self.settings.line_ending, self.settings.encoding)
            )

    def _state_changed(self) -> None:
        IEventScreen(self._screen).state_changed()

    # inside

    def _pump(self) -> None:
        """
        Send what waits, once the server has greeted; one message per turn
        when no line end separates them.
        """
        if self.state is not State.OPEN or self._turn is not None or self._link is None:
            return
        if self.mode is Mode.SWITCHING and not self._switch_late:
            return  # the user's lines go once events come (or do not, or slowly)
        ending = self.settings.line_ending
        while self._outbox:
            text = self._outbox.popleft()
            self._link.write(encode_message(text, ending, self.settings.encoding))
            if self.mode is Mode.EVENTS:
                self._show_own(text)
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
            self._line_received(raw)

    def _finish(self, status: int) -> None:
        self._move(State.CLOSED)
        for call in (self._hold, self._turn, self._quiet, self._limit, self._switch_wait):
            self._cancel(call)
        self._hold = self._turn = self._quiet = self._limit = self._switch_wait = None
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
