"""
The operator's console: the terminal that runs C{twistd -n tcpchat
--console}.

In the chat it is one more participant, an operator: it starts in the
default room, shows everything said there and every presence event, says
each typed line as C{<server>}, and runs the same commands as clients
(C{/join}, C{/msg}, C{/kick} ...).  In C{--classic} mode it is the
tutorials' operator instead: it shows each client's message and answers it
with the next line typed (L{ClassicConsole}).

L{attach_console} starts either on the process's stdin and stdout: on a
terminal with the client's line editor (L{LineEditor}: prompt, history, Tab
completion), otherwise (a pipe) as plain lines through Twisted's StandardIO.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import dataclasses
import os
import signal
import sys
import threading
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

from twisted.internet.interfaces import IReactorCore
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_tcpchat.core.commands import Context
from twisted_tcpchat.core.events import Error, Event
from twisted_tcpchat.core.interfaces import Ending, IParticipant
from twisted_tcpchat.core.server import ChatServer
from twisted_tcpchat.frontends.jsonevents import event_data
from twisted_tcpchat.frontends.render import text_of
from twisted_tcpchat.logs import TurnLog
from twisted_tcpchat.text.escaping import escape_controls
from twisted_tcpchat.text.framing import LineBuffer, Overlong

if TYPE_CHECKING:
    from prompt_toolkit import PromptSession

    from twisted_tcpchat.client.events import ChatState

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
        #: With a line editor: what it completes from (members, rooms,
        #: commands), kept from the events the console hears, and replaced
        #: whole at each change (the editor reads it from its own thread).
        self.chat: ChatState | None = None
        self.on_change: Callable[[], None] | None = None
        self._asked: Counter[str] = Counter()

    def learn(self) -> None:
        """Keep L{chat} from now on (a line editor completes from it)."""
        from twisted_tcpchat.client.events import ChatState  # (lazily: the package imports us)

        commands = self._server.commands.help(operator=True).commands
        self.chat = ChatState(commands=list(commands))

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

    def _learnt(self, event: Event) -> bool:
        """
        Keep what C{event} tells in L{chat}; True when it answers what the
        console asked by itself (not to be shown).  In a new room the console
        asks who is there and which rooms there are, as the client does.
        """
        if self.chat is None:
            return False
        from twisted_tcpchat.client.events import ChatEvent

        learnt = ChatEvent.of(event_data(event))
        chat = dataclasses.replace(
            self.chat, members=dict(self.chat.members), rooms=list(self.chat.rooms)
        )
        room = chat.room
        chat.apply(learnt)
        self.chat = chat
        if self.on_change is not None:
            self.on_change()
        if self._asked[learnt.kind] > 0:
            self._asked[learnt.kind] -= 1
            return True
        if chat.room is not None and chat.room != room:
            self._asked.update(("members", "rooms"))
            self._server.directory.who(self)
            self._server.directory.list_rooms(self)
        return False

    # IParticipant

    def receive(self, event: Event) -> None:
        if self._learnt(event):
            return
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


def attach_console(console: Console | ClassicConsole, reactor: IReactorCore) -> None:
    """
    Make this process's stdin and stdout the operator's console: with the
    line editor on a terminal, else as plain lines (Twisted's StandardIO).
    (File descriptors 0 and 1, not C{sys.stdin} and C{sys.stdout}: twistd
    has made the latter its log.)
    """
    if not (os.isatty(0) and os.isatty(1) and LineEditor(console, reactor).start()):
        from twisted.internet.stdio import StandardIO

        StandardIO(console, reactor=reactor)


#: Seconds the console's line editor has to come up before plain lines are read instead.
READY_WAIT = 10.0


class LineEditor:
    """
    The operator's input line on a terminal: the client's line editor
    (prompt_toolkit: editing, history, Tab completion), with the prompt
    C{[server@lobby] }.  Ctrl-C clears a typed line, and on an empty one
    stops the server (SIGINT, as Ctrl-C did before); Ctrl-D on an empty line
    closes the console, and the server goes on.

    twistd runs its own reactor (epoll), not asyncio's, so prompt_toolkit
    cannot share its loop: it runs in a thread of its own, with an asyncio
    loop of its own, and the two threads meet only where that is safe.
    Typed lines go to the reactor with C{reactor.callFromThread}; what the
    console shows is handed to the editor's loop (C{call_soon_threadsafe}),
    which prints it above the input line (prompt_toolkit's
    C{run_in_terminal}); the completion state is replaced whole by the
    reactor's thread (L{Console.chat}) and only read by the editor's.
    twistd logs to this terminal through a file it opened before the console
    started: so file descriptors 1 and 2 are made a pipe while the editor
    runs, copied above the input line by a third thread (control characters
    escaped), and given back to the terminal when it stops.

    Towards the console protocol it is the transport: C{write} and
    C{loseConnection} are all the protocol uses.
    """

    def __init__(self, console: Console | ClassicConsole, reactor: IReactorCore) -> None:
        self._console = console
        self._reactor = reactor
        self._terminal: TextIO | None = None
        self._pending: list[str] = []
        self._lock = threading.Lock()
        self._session: PromptSession[str] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._stopping = False
        self._saved: dict[int, int] = {}
        self._pipe: int | None = None
        self._threads: list[threading.Thread] = []
        self._editor_thread: threading.Thread | None = None

    def start(self) -> bool:
        """
        Take over the terminal, start both threads, connect the console.
        False: the input line would not come up (the console is then not
        connected, and the terminal not taken).
        """
        terminal = os.fdopen(os.dup(1), "w", encoding="utf-8", errors="replace")
        self._terminal = terminal
        _restore_terminal_at_exit()
        editor = threading.Thread(target=self._edit, args=(terminal,), daemon=True)
        editor.start()
        if not self._ready.wait(READY_WAIT) or not editor.is_alive():
            log.warn("the console's line editor did not start; reading plain lines")
            self._stopping = True
            self._in_editor(self._exit_prompt)
            return False
        read, write = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        for fd in (1, 2):
            self._saved[fd] = os.dup(fd)
            os.dup2(write, fd)
        os.close(write)
        self._pipe = read
        copier = threading.Thread(target=self._copy_output, daemon=True)
        copier.start()
        self._threads = [editor, copier]
        self._reactor.addSystemEventTrigger("before", "shutdown", self.stop)
        if isinstance(self._console, Console):
            self._console.learn()
            self._console.on_change = self._invalidate
        self._console.makeConnection(self)
        return True

    def stop(self) -> None:
        """Take the input line down and give the terminal back (in the reactor's thread)."""
        if self._stopping:
            return
        self._stopping = True
        self._in_editor(self._exit_prompt)
        editor, copier = self._threads
        editor.join(5)
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, saved in self._saved.items():
            os.dup2(saved, fd)  # (the pipe's last writer gone, the copier reads its end)
            os.close(saved)
        copier.join(5)
        self._print_pending(last=True)

    # the transport the console protocol writes to (and the copier)

    def write(self, data: bytes) -> None:
        """Show C{data} above the input line (from any thread)."""
        with self._lock:
            self._pending.append(data.decode("utf-8", "replace"))
        if not self._in_editor(self._print_pending):
            self._print_pending()

    def _print_pending(self, last: bool = False) -> None:
        """
        (In the editor's loop, or once it is over.)  Print the whole lines
        waiting (the rest of a line waits for its end, or for the last time).
        """
        with self._lock:
            text = "".join(self._pending)
            lines, end, rest = text.rpartition("\n")
            if last and rest:
                lines, rest = text, ""
            elif not end:
                return
            self._pending = [rest] if rest else []
        shown = "".join(escape_controls(line) + "\n" for line in lines.split("\n"))
        terminal = self._terminal
        if terminal is None:
            return

        def print_it() -> None:
            terminal.write(shown)
            terminal.flush()

        session = self._session
        if session is not None and session.app.is_running and self._in_editors_thread():
            from prompt_toolkit.application import run_in_terminal

            run_in_terminal(print_it, in_executor=False)
        else:
            print_it()

    def loseConnection(self) -> None:
        self.stop()

    # the editor's thread

    def _in_editor(self, call: Callable[[], None]) -> bool:
        """Run C{call} in the editor's loop; False when it no longer runs."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return False
        try:
            loop.call_soon_threadsafe(call)
        except RuntimeError:  # (closed just now)
            return False
        return True

    def _in_editors_thread(self) -> bool:
        return threading.current_thread() is self._editor_thread

    def _edit(self, terminal: TextIO) -> None:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.input import create_input
        from prompt_toolkit.output import create_output
        from prompt_toolkit.shortcuts import CompleteStyle

        from twisted_tcpchat.client.completion import ChatCompleter
        from twisted_tcpchat.client.io import clearing_ctrl_c

        # (In prompt_toolkit's default app session, which every thread
        # shares: its run_in_terminal finds the running input line there.)
        self._session = PromptSession(
            completer=ChatCompleter(self._state),
            complete_while_typing=False,
            complete_style=CompleteStyle.READLINE_LIKE,
            key_bindings=clearing_ctrl_c(),
            input=create_input(sys.__stdin__),
            output=create_output(stdout=terminal),
        )
        asyncio.run(self._read_lines(self._session))

    async def _read_lines(self, session: PromptSession[str]) -> None:
        self._editor_thread = threading.current_thread()
        self._loop = asyncio.get_running_loop()
        while not self._stopping:
            try:
                # (Ready once the input line is up: what is shown from then
                # on goes above it.)
                text = await session.prompt_async(
                    self._prompt,
                    handle_sigint=False,
                    set_exception_handler=False,
                    pre_run=self._ready.set,
                )
            except KeyboardInterrupt:  # Ctrl-C on an empty line: the server stops
                os.kill(os.getpid(), signal.SIGINT)
                continue
            except EOFError:
                break
            except OSError:  # (the terminal went away: SIGHUP stops the server)
                break
            except Exception:  # a bug: said (in the log), and the console closes
                failure = Failure()
                self._reactor.callFromThread(  # type: ignore[attr-defined]
                    log.failure, "the console's line editor failed", failure
                )
                break
            data = text.encode("utf-8", "surrogateescape") + b"\n"
            self._reactor.callFromThread(self._console.dataReceived, data)  # type: ignore[attr-defined]
        if not self._stopping:  # Ctrl-D: the console closes, the server goes on
            self._reactor.callFromThread(self._closed)  # type: ignore[attr-defined]

    def _exit_prompt(self) -> None:
        """(In the editor's loop.)  End the input line now, or as soon as it is up."""
        session, loop = self._session, self._loop
        if session is None or loop is None:
            return
        if session.app.is_running:
            if not session.app.is_done:
                session.app.exit(exception=EOFError())
        else:
            loop.call_later(0.05, self._exit_prompt)

    def _closed(self) -> None:
        self.stop()
        self._console.connectionLost(Failure(EOFError()))

    def _prompt(self) -> str:
        console = self._console
        if isinstance(console, Console) and console.name and console.room:
            return f"[{console.name}@{console.room}] "
        return "> "

    def _state(self) -> ChatState | None:
        return self._console.chat if isinstance(self._console, Console) else None

    def _invalidate(self) -> None:
        session = self._session
        if session is not None:
            self._in_editor(session.app.invalidate)

    # the copier's thread

    def _copy_output(self) -> None:
        """What the process writes to stdout and stderr (twistd's log), above the input line."""
        if self._pipe is None:
            return
        with os.fdopen(self._pipe, "rb", buffering=0) as pipe:
            while chunk := pipe.read(65536):
                self.write(chunk)


def _restore_terminal_at_exit() -> None:
    """Whatever happens to the editor's thread, the terminal is left as it was found."""
    try:
        import termios

        attributes = termios.tcgetattr(0)
    except (ImportError, OSError):
        return

    def restore() -> None:
        with contextlib.suppress(OSError):
            termios.tcsetattr(0, termios.TCSADRAIN, attributes)

    atexit.register(restore)
