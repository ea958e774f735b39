"""
The user's side of the client: where typed lines come from, and where the
conversation is shown.

- On a terminal: prompt_toolkit's L{PromptSession} reads the input line (with
  editing, history and Tab completion), and, under its C{patch_stdout}, whatever
  the server sends is printed above that line, which is then redrawn as it
  was: an incoming line never garbles a half-typed one.  It runs on Twisted's
  asyncio reactor, so prompt_toolkit and Twisted share one event loop.  With
  tcpchat's typed events, lines are dressed by L{twisted_tcpchat.client.display}
  and the prompt says who and where you are.
- Otherwise (stdin or stdout is a pipe or a file): Twisted's L{StandardIO}
  reads stdin line by line (with C{-m} stdin is not read at all), and
  lines are written straight to stdout and notices to stderr, in order.

Why prompt_toolkit rather than Twisted's own C{twisted.conch.insults}
line editor (C{HistoricRecvLine}): it measures wide characters (a Chinese
line would otherwise put the cursor in the wrong place), restores the
terminal on every way out, and prints above the input line for us; conch
would need raw mode, redraws and CJK widths done by hand.
"""

from __future__ import annotations

import asyncio
import os
import select
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IHalfCloseableProtocol, ITransport
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_tcpchat.client.display import prompt_text, render
from twisted_tcpchat.client.events import ChatEvent, ChatState
from twisted_tcpchat.client.session import ClientSession, IEventScreen, IScreen
from twisted_tcpchat.text.escaping import escape_controls
from twisted_tcpchat.text.framing import LineBuffer, Overlong

if TYPE_CHECKING:
    from prompt_toolkit.formatted_text import AnyFormattedText
    from prompt_toolkit.key_binding import KeyBindings

_T = TypeVar("_T")

#: The longest line read from stdin; a longer one is reported, not sent.
MAX_INPUT_LINE = 1 << 20


def write_all(fd: int, data: bytes) -> None:
    """
    Write all of C{data} to C{fd}, waiting while it is full (Twisted's
    L{StandardIO} makes stdout non-blocking, and stderr shares it when both
    go to one pipe).  A reader that went away loses the rest, silently.
    """
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            select.select([], [fd], [])
            continue
        except (BrokenPipeError, ConnectionResetError):
            return
        view = view[written:]


@implementer(IScreen)
class PlainScreen:
    """
    Lines from the server on stdout, notices on stderr, written at once, so
    that the two keep their order when they go to the same place.
    """

    def __init__(self, out: int = 1, err: int = 2, encoding: str | None = None) -> None:
        self._out = out
        self._err = err
        self._encoding = encoding or sys.stdout.encoding or "utf-8"

    def show_line(self, text: str) -> None:
        write_all(self._out, (text + "\n").encode(self._encoding, "replace"))

    def notice(self, text: str) -> None:
        write_all(self._err, f"tcpchat: {text}\n".encode(self._encoding, "replace"))


@implementer(IHalfCloseableProtocol)
class StdinLines(Protocol):
    """
    IProtocol and IHalfCloseableProtocol API towards Twisted's
    L{StandardIO}: each line read goes to the session as typed; the end of
    stdin ends the user's input.  (Nothing is written through this
    transport: L{PlainScreen} writes.)

    @ivar closed: fires once StandardIO has let go of stdin and stdout.
    """

    def __init__(self, session: ClientSession) -> None:
        self._session = session
        self._framer = LineBuffer(MAX_INPUT_LINE)
        self._stdout_gone = False
        self.closed: Deferred[None] = Deferred()

    def let_go(self, stdio: ITransport) -> Deferred[None]:
        """Close stdin and stdout; fires when StandardIO is done with them."""
        if self._stdout_gone:
            # StandardIO reports the end only once both sides have closed
            # through it, and stdout closed on its own: nothing to wait for.
            stdio.loseConnection()
            return succeed(None)
        stdio.loseConnection()
        return self.closed

    # IProtocol

    def dataReceived(self, data: bytes) -> None:
        self._lines(self._framer.feed(data))

    def connectionLost(self, reason: Failure | None = None) -> None:
        self._session.input_ended()
        self.closed.callback(None)

    # IHalfCloseableProtocol

    def readConnectionLost(self) -> None:
        self._lines(self._framer.flush())
        self._session.input_ended()

    def writeConnectionLost(self) -> None:
        """Stdout went away (its reader quit); PlainScreen copes, and the session goes on."""
        self._stdout_gone = True

    def _lines(self, frames: Sequence[bytes | Overlong]) -> None:
        for frame in frames:
            if isinstance(frame, Overlong):
                self._session.notice(f"input line too long ({frame.size} bytes); not sent")
            else:
                self._session.line_typed(frame.decode("utf-8", "surrogateescape"))


def in_loop(coroutine: Coroutine[Any, Any, _T]) -> Deferred[_T]:
    """Run an asyncio coroutine (prompt_toolkit's) as a Twisted Deferred."""
    return Deferred.fromFuture(asyncio.ensure_future(coroutine))


@implementer(IEventScreen)
class TerminalScreen:
    """
    Lines, notices and events printed through C{sys.stdout}, which
    prompt_toolkit's C{patch_stdout(raw=True)} has made print above the
    input line, escape sequences and all: every text from the server has its
    control characters escaped before it comes here, so the only escapes are
    the colours of L{twisted_tcpchat.client.display}.

    @ivar colour: whether events are coloured (C{--no-color}, C{NO_COLOR}).
    @ivar bell: whether a mention rings the terminal's bell (C{--no-bell}).
    @ivar on_change: called when what the prompt shows may have changed.
    """

    def __init__(self, colour: bool = False, bell: bool = False) -> None:
        self.colour = colour
        self.bell = bell
        self.on_change: Callable[[], None] | None = None

    def show_line(self, text: str) -> None:
        print(text, file=sys.stdout, flush=True)

    def notice(self, text: str) -> None:
        print(f"tcpchat: {escape_controls(text)}", file=sys.stdout, flush=True)

    def show_event(self, event: ChatEvent, state: ChatState, now: float) -> None:
        shown = render(event, state, now, self.colour)
        if not shown.lines:
            return
        ring = "\a" if shown.bell and self.bell else ""
        print("\n".join(shown.lines) + ring, file=sys.stdout, flush=True)

    def state_changed(self) -> None:
        if self.on_change is not None:
            self.on_change()


#: Exit status when the user leaves with Ctrl-C, as a shell reports SIGINT.
INTERRUPTED = 128 + signal.SIGINT


class _Interrupted:
    """What the input line gives when the user left with Ctrl-C."""


def clearing_ctrl_c() -> KeyBindings:
    """
    Ctrl-C as shells have it: with something typed, it clears the line;
    on an empty line, it leaves (C{KeyboardInterrupt}).
    """
    from prompt_toolkit.key_binding import KeyBindings
    from prompt_toolkit.key_binding.key_processor import KeyPressEvent

    keys = KeyBindings()

    @keys.add("c-c")
    def _ctrl_c(event: KeyPressEvent) -> None:
        buffer = event.app.current_buffer
        if buffer.text:
            buffer.reset()
        else:
            event.app.exit(exception=KeyboardInterrupt, style="class:aborting")

    return keys


class TerminalInput:
    """
    The input line on a terminal: prompt_toolkit's L{PromptSession}, with
    emacs-style editing, the history of this run (up and down arrows,
    Ctrl-R), and Tab completion (L{twisted_tcpchat.client.completion}) once
    tcpchat's events tell the client the names, rooms and commands.  The
    prompt is C{> }, or C{[name@room] } with events.  Ctrl-D (on an empty
    line) ends the input; Ctrl-C clears a typed line, and on an empty one
    ends the run with status 130.
    """

    def __init__(self, session: ClientSession, colour: bool = False) -> None:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.shortcuts import CompleteStyle

        from twisted_tcpchat.client.completion import ChatCompleter

        self._session = session
        self._colour = colour
        self._prompt: PromptSession[str] = PromptSession(
            completer=ChatCompleter(self._state),
            complete_while_typing=False,
            complete_style=CompleteStyle.READLINE_LIKE,
            key_bindings=clearing_ctrl_c(),
        )
        self._stopped = False

    def _state(self) -> ChatState | None:
        return self._session.chat if self._session.events_on else None

    def prompt(self) -> AnyFormattedText:
        """The prompt as it is now (prompt_toolkit asks at each redraw)."""
        from prompt_toolkit.formatted_text import ANSI

        return ANSI(prompt_text(self._state(), self._colour))

    def invalidate(self) -> None:
        """What the prompt shows has changed: redraw it."""
        app = self._prompt.app
        app.erase_when_done = self._session.events_on  # (see _ask: also for the line up now)
        if app.is_running:
            app.invalidate()

    async def run(self) -> None:
        """Read lines until the user ends the input or the session ends."""
        while self._session.wants_input and not self._stopped:
            text = await in_loop(self._ask())
            if isinstance(text, _Interrupted):
                self._session.interrupted(INTERRUPTED)
                return
            if text is None:
                self._session.input_ended()
                return
            self._session.line_typed(text)

    async def _ask(self) -> str | _Interrupted | None:
        if self._stopped:  # stopped between two lines
            return None
        # With events, a sent line is shown as the room hears it (<me> text),
        # so the typed one is taken away; without, it stays as typed.
        self._prompt.app.erase_when_done = self._session.events_on
        try:
            return await self._prompt.prompt_async(self.prompt)
        except EOFError:
            return None
        except KeyboardInterrupt:
            return _Interrupted()

    def stop(self) -> None:
        """Take the input line down (the session is over)."""
        self._stopped = True
        app = self._prompt.app
        if app.is_running and app.future is not None and not app.future.done():
            app.exit(exception=EOFError())


async def ask_address(default: str) -> str | None:
    """
    Ask for the server's address on the terminal, showing the default; an
    empty answer is the default.  None: the user declined (Ctrl-D); Ctrl-C
    on an empty line ends the program (status 130).
    """
    from prompt_toolkit import PromptSession

    prompt: PromptSession[str] = PromptSession(key_bindings=clearing_ctrl_c())
    try:
        answer = await prompt.prompt_async(f"server address [{default}]: ")
    except EOFError:
        return None
    except KeyboardInterrupt:
        raise SystemExit(INTERRUPTED) from None
    return answer.strip() or default
