"""
The client's line editor in the operator's console (issue 18, item 7):
C{twistd -n tcpchat --console} on a pseudo-terminal (pexpect), read from
the screen: the prompt with the console's name and room, lines from the
room and twistd's own log printed above a half-typed line without garbling
it, Tab completion, history, Ctrl-C clearing the line, then stopping the
server.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from tests.helpers import installed_script, start_twistd, welcome
from tests.test_client_terminal import UP, Terminal, VirtualScreen, nc_peer


class Console(Terminal):
    """twistd with --console on a pseudo-terminal, its screen replayed."""

    def __init__(self, cwd: Path) -> None:
        super().__init__(
            [
                *("-n", "--pidfile=", "tcpchat", "--console", "--room", "dev", "--history", "0"),
                *("--port", "0", "--interface", "127.0.0.1"),
            ],
            cwd,
            program=[installed_script("twistd")],
            columns=250,
        )

    def wait_for_input(self, text: str, prompt: str = "[server@lobby] ") -> None:
        super().wait_for_input(text, prompt)

    def wait_for_match(self, pattern: str, above: bool = True) -> re.Match[str]:
        """Wait for a line matching C{pattern}: above the input line, unless told."""
        found: list[re.Match[str]] = []

        def check(screen: VirtualScreen) -> bool:
            for line in screen.lines[:-1] if above else screen.lines:
                if match := re.fullmatch(pattern, line):
                    found.append(match)
                    return True
            return False

        self.wait(check, repr(pattern))
        return found[0]


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Console]:
    console = Console(tmp_path)
    yield console
    console.stop()


def test_console_line_editor(console: Console, tmp_path: Path) -> None:
    """
    The prompt is the console's name and room; a client's lines and twistd's
    log land above a half-typed line, which stays; Tab completes a name, a
    command and a room; Up recalls; Ctrl-C clears, and on an empty line
    stops the server.
    """
    match = console.wait_for_match(r".*tcpchat listening on 127\.0\.0\.1:(\d+) .*")
    port = int(match.group(1))
    console.wait_for_input("")
    console.type("half-typ")
    console.wait_for_input("half-typ")
    peer = nc_peer(port, tmp_path)
    try:
        peer.wait_for_output(re.escape(welcome("guest1")))
        peer.send("hello from a peer")
        console.wait_for_match(r"<guest1> hello from a peer")
        console.wait_for_match(r".*guest1 \(127\.0\.0\.1:\d+\) sent 17 bytes: hello from a peer")
        console.wait_for_input("half-typ")
        console.child.sendcontrol("c")
        console.wait_for_input("")
        console.type("gu\t")
        console.wait_for_input("guest1: ")
        console.type("hi\r")
        peer.wait_for_output(r"<server> guest1: hi")
        console.type("/jo\t")
        console.wait_for_input("/join ")
        console.type("d\t")
        console.wait_for_input("/join dev")
        console.type("\r")
        console.wait_for_input("", "[server@dev] ")
        peer.wait_for_output(r"\* server left for #dev")
        console.type(UP)
        console.wait_for_input("/join dev", "[server@dev] ")
        console.child.sendcontrol("c")
        console.wait_for_input("", "[server@dev] ")
        assert not any("half-typ" in line for line in console.screen.lines[:-1] if "] " not in line)
        console.child.sendcontrol("c")
        console.child.expect(pexpect.EOF)
        console.wait_for_match(r".*Server Shut Down\.", above=False)
        assert "Traceback" not in console.screen.received
        peer.wait_for_output(r"server shutting down")
    finally:
        peer.stop()


def test_console_on_a_pipe_stays_plain(tmp_path: Path) -> None:
    """With stdin a pipe the console reads lines as before: no prompt, no escape sequence."""
    twistd, _ = start_twistd(tmp_path, "--console", stdin=True)
    try:
        twistd.wait_for_output(r"\* you are server;")
        twistd.send("/who")
        twistd.wait_for_output(r"\*   server \(idle \d+s, operator\)")
        assert "\x1b" not in twistd.output
        assert "[server@lobby]" not in twistd.output
    finally:
        twistd.stop()
