"""
The client on a pseudo-terminal (pexpect), with a real server and a real nc
peer: incoming lines never garble a half-typed one, the input line edits and
remembers, the address is asked for, and every end leaves status 0.

What the client writes to the terminal is replayed on L{VirtualScreen}, just
enough of a VT100 to show what a person would see (and kept as it came, for
tests that read the colours).  With our server the client switches to typed
events: lines then carry their time (L{untimed} reads them without it), and
the prompt says who and where one is.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pexpect
import pytest

from tests.helpers import DEADLINE, Process, start_twistd, welcome
from tests.test_client_cli import CLIENT, need

_CSI = re.compile(r"\x1b\[([?>=]?)([0-9;]*)([@A-Za-z])")
_OTHER_ESCAPE = re.compile(r"\x1b(\][^\x07\x1b]*(\x07|\x1b\\)|[()#][0-9A-Za-z]|[=>78])")

UP, LEFT = "\x1b[A", "\x1b[D"

_TIME = re.compile(r"^\d\d:\d\d ")


def untimed(lines: list[str]) -> list[str]:
    """Screen lines with a leading HH:MM written as 'HH:MM' (the minute a test runs in varies)."""
    return [_TIME.sub("HH:MM ", line) for line in lines]


class VirtualScreen:
    """
    A terminal of endless height that understands what prompt_toolkit draws
    a prompt with: printable text, CR, LF, BS, cursor moves (CSI A B C D G),
    erase below (CSI J) and to the end of the line (CSI K).  Modes and colours
    are ignored.  pexpect writes everything it reads here (logfile_read).
    """

    def __init__(self) -> None:
        self.rows: list[list[str]] = [[]]
        self.row = 0
        self.column = 0
        self.received = ""
        self._pending = ""

    # the file API pexpect logs to

    def write(self, text: str) -> None:
        self.received += text
        self._pending += text
        self._interpret()

    def flush(self) -> None:
        pass

    # what a person sees

    @property
    def lines(self) -> list[str]:
        """The screen's lines, trailing blanks dropped."""
        lines = ["".join(row).rstrip() for row in self.rows]
        while lines and not lines[-1]:
            lines.pop()
        return lines

    @property
    def cursor_line(self) -> str:
        return "".join(self.rows[self.row]).rstrip()

    # inside

    def _interpret(self) -> None:
        text, i = self._pending, 0
        while i < len(text):
            char = text[i]
            if char == "\x1b":
                match = _CSI.match(text, i) or _OTHER_ESCAPE.match(text, i)
                if match is None:
                    if len(text) - i < 16:
                        break  # the rest of this escape has not arrived yet
                    raise AssertionError(f"unknown escape {text[i : i + 16]!r}")
                if match.re is _CSI:
                    self._csi(match.group(1), match.group(2), match.group(3))
                i = match.end()
                continue
            if char == "\r":
                self.column = 0
            elif char == "\n":
                self._move_to(self.row + 1)
            elif char == "\b":
                self.column = max(0, self.column - 1)
            elif char >= " ":
                row = self.rows[self.row]
                row.extend(" " * (self.column + 1 - len(row)))
                row[self.column] = char
                self.column += 1
            i += 1
        self._pending = text[i:]

    def _move_to(self, row: int) -> None:
        self.row = max(0, row)
        while len(self.rows) <= self.row:
            self.rows.append([])

    def _csi(self, private: str, params: str, final: str) -> None:
        if private:
            return  # modes: autowrap, cursor visibility, bracketed paste
        count = int(params) if params.isdigit() else 1
        if final == "A":
            self._move_to(self.row - count)
        elif final == "B":
            self._move_to(self.row + count)
        elif final == "C":
            self.column += count
        elif final == "D":
            self.column = max(0, self.column - count)
        elif final == "G":
            self.column = count - 1
        elif final == "J" and params in ("", "0"):
            del self.rows[self.row][self.column :]
            del self.rows[self.row + 1 :]
        elif final == "K" and params in ("", "0"):
            del self.rows[self.row][self.column :]
        elif final not in "mhlJK":
            raise AssertionError(f"unexpected CSI {params}{final}")


class Terminal:
    """The client (or C{program}) running on a pseudo-terminal, its screen replayed."""

    def __init__(
        self,
        args: list[str],
        cwd: Path,
        env: dict[str, str] | None = None,
        program: Sequence[str] = CLIENT,
        columns: int = 100,
    ) -> None:
        self.screen = VirtualScreen()
        env = {**os.environ, "TERM": "xterm", "PROMPT_TOOLKIT_NO_CPR": "1", **(env or {})}
        self.child = pexpect.spawn(
            program[0],
            [*program[1:], *args],
            cwd=str(cwd),
            env=env,
            timeout=DEADLINE,
            encoding="utf-8",
            dimensions=(24, columns),
        )
        self.child.logfile_read = self.screen

    def wait(self, check: Callable[[VirtualScreen], bool], what: str) -> None:
        """Read until C{check(screen)} holds; fail with the screen after DEADLINE."""
        deadline = time.monotonic() + DEADLINE
        while not check(self.screen):
            if time.monotonic() > deadline:
                shown = "\n".join(self.screen.lines)
                raise AssertionError(f"timed out waiting for {what}; the screen:\n{shown}")
            try:
                self.child.read_nonblocking(4096, timeout=0.05)
            except pexpect.TIMEOUT:
                pass
            except pexpect.EOF:
                if not check(self.screen):
                    raise AssertionError(
                        f"the client exited before {what}; the screen:\n"
                        + "\n".join(self.screen.lines)
                    ) from None

    def wait_for_line(self, line: str) -> None:
        self.wait(lambda s: line in s.lines, repr(line))

    def wait_for_untimed(self, line: str) -> None:
        """Wait for a line that starts with its time (written 'HH:MM ' in C{line})."""
        self.wait(lambda s: line in untimed(s.lines), repr(line))

    def wait_for_input(self, text: str, prompt: str = "> ") -> None:
        """Wait until the input line shows the prompt and C{text}, cursor at its end."""
        self.wait(
            lambda s: (
                s.cursor_line == f"{prompt}{text}".rstrip() and s.column == len(prompt) + len(text)
            ),
            f"the input line to show {prompt + text!r}",
        )

    def type(self, keys: str) -> None:
        self.child.send(keys)

    def exit_status(self) -> int:
        self.child.expect(pexpect.EOF)
        self.child.close()
        status = self.child.exitstatus
        assert isinstance(status, int), (status, self.child.signalstatus)
        return status

    def stop(self) -> None:
        if self.child.isalive():
            self.child.terminate(force=True)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[Process, int]]:
    process, port = start_twistd(tmp_path, "--history", "0")
    yield process, port
    process.stop()


@pytest.fixture
def terminal(server: tuple[Process, int], tmp_path: Path) -> Iterator[Terminal]:
    _, port = server
    terminal = Terminal(["127.0.0.1", str(port)], tmp_path)
    yield terminal
    terminal.stop()


#: The prompt and the welcome as the client shows them, with typed events, to guest1.
PROMPT = "[guest1@lobby] "
YOU_ARE_GUEST1 = "HH:MM -- you are guest1 in #lobby; /help lists the commands"


def nc_peer(port: int, cwd: Path) -> Process:
    return Process([need("nc"), "127.0.0.1", str(port)], cwd, stdin=True)


def test_incoming_line_does_not_garble_typing(
    server: tuple[Process, int], terminal: Terminal, tmp_path: Path
) -> None:
    """
    While a line is half typed, lines from the room appear above it, each
    whole on its own row; the input line is redrawn as it was, and finishing
    it sends exactly what was typed.
    """
    _, port = server
    terminal.wait_for_untimed(YOU_ARE_GUEST1)
    terminal.wait_for_input("", PROMPT)
    terminal.type("half-typ")
    terminal.wait_for_input("half-typ", PROMPT)
    peer = nc_peer(port, tmp_path)
    try:
        peer.wait_for_output(re.escape(welcome("guest2")))
        peer.send("hello from a peer")
        terminal.wait_for_untimed("HH:MM <guest2> hello from a peer")
        terminal.wait_for_input("half-typ", PROMPT)
        assert untimed(terminal.screen.lines) == [
            "tcpchat: connected to 127.0.0.1:" + str(port),
            "Connect succeed. Please send a message to me",
            YOU_ARE_GUEST1,
            "HH:MM -- guest2 joined",
            "HH:MM <guest2> hello from a peer",
            PROMPT + "half-typ",
        ]
        terminal.type("ed line\r")
        peer.wait_for_output(r"(?m)^<guest1> half-typed line\r?$")
        terminal.wait_for_untimed("HH:MM <guest1> half-typed line")
        terminal.wait_for_input("", PROMPT)
        # (the typed line gives way to the line as the room heard it)
        assert untimed(terminal.screen.lines[-3:]) == [
            "HH:MM <guest2> hello from a peer",
            "HH:MM <guest1> half-typed line",
            PROMPT.rstrip(),
        ]
        terminal.type("exit\r")
        terminal.wait_for_untimed("HH:MM Goodbye.")
        assert terminal.exit_status() == 0
        peer.wait_for_output(r"\* guest1 left \(exit\)")
    finally:
        peer.stop()


def test_editing_and_history(
    server: tuple[Process, int], terminal: Terminal, tmp_path: Path
) -> None:
    """The input line edits (a letter put back in the middle) and Up brings a line back."""
    _, port = server
    terminal.wait_for_untimed(YOU_ARE_GUEST1)
    peer = nc_peer(port, tmp_path)
    try:
        peer.wait_for_output(re.escape(welcome("guest2")))
        terminal.wait_for_untimed("HH:MM -- guest2 joined")
        terminal.type("helo" + LEFT + "l")
        terminal.wait(lambda s: s.cursor_line == PROMPT + "hello", "the edited line")
        terminal.type("\r")
        peer.wait_for_output(r"(?m)^<guest1> hello\r?$")
        terminal.type(UP)
        terminal.wait_for_input("hello", PROMPT)
        terminal.type(" again\r")
        peer.wait_for_output(r"(?m)^<guest1> hello again\r?$")
        terminal.wait_for_input("", PROMPT)
        terminal.child.sendcontrol("d")
        assert terminal.exit_status() == 0
    finally:
        peer.stop()


def test_asks_for_the_address(server: tuple[Process, int], tmp_path: Path) -> None:
    """
    No HOST on a terminal: asked, showing the default; a bad answer is
    explained and asked again; HOST PORT answers; Ctrl-D leaves.
    """
    _, port = server
    terminal = Terminal([], tmp_path)
    prompt = "server address [127.0.0.1]:"
    try:
        terminal.wait(lambda s: s.cursor_line == prompt, "the address prompt")
        terminal.type("127.0.0.1:99999\r")
        terminal.wait_for_line("tcpchat: port '99999' is not a number from 1 to 65535")
        terminal.wait(lambda s: s.cursor_line == prompt, "the address prompt again")
        terminal.type(f"127.0.0.1 {port}\r")
        terminal.wait_for_untimed(YOU_ARE_GUEST1)
        terminal.wait_for_input("", PROMPT)
        terminal.child.sendcontrol("d")
        assert terminal.exit_status() == 0
    finally:
        terminal.stop()


def test_server_closes_under_the_prompt(server: tuple[Process, int], terminal: Terminal) -> None:
    """The server going away: its notice, then 'connection closed by server', status 0."""
    twistd, _ = server
    terminal.wait_for_untimed(YOU_ARE_GUEST1)
    terminal.type("never sent")
    terminal.wait_for_input("never sent", PROMPT)
    twistd.stop()
    terminal.wait_for_line("tcpchat: connection closed by server")
    assert terminal.exit_status() == 0
    assert "HH:MM server shutting down" in untimed(terminal.screen.lines)


def test_virtual_screen_understands_redraws() -> None:
    """The test's own terminal model: text, CR, cursor moves and erases land where a VT100's do."""
    screen = VirtualScreen()
    screen.write("> half\x1b[6D\x1b[Jnews\r\n> half")
    screen.write("\x1b[2D\x1b[Kxx\x1b[1A\r\x1b[2C\x1b")
    screen.write("[0mNEWS")
    assert screen.lines == ["neNEWS", "> haxx"]
    assert (screen.row, screen.column) == (0, 6)
