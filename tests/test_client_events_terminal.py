"""
The client on a pseudo-terminal against a real C{twistd -n tcpchat}, with
typed events (issue 18), read from the screen: colours from the escape
sequences, Tab completion, the bell on a mention, the prompt after /nick
and /join, Ctrl-C; and, where it must not change, the same client as
before: on another server, on a pipe, with -m, with NO_COLOR.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import DEADLINE, Process, start_twistd, wait_for, welcome
from tests.test_client_cli import CLIENT, RawPeer, lines, need
from tests.test_client_terminal import PROMPT, YOU_ARE_GUEST1, Terminal, nc_peer, untimed
from twisted_tcpchat.client.display import name_colour
from twisted_tcpchat.core.config import DEFAULT_GREETING

#: An SGR sequence, as the client writes colours.
SGR = r"\x1b\[[0-9;]*m"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[Process, int]]:
    process, port = start_twistd(tmp_path, "--history", "0", "--room", "dev")
    yield process, port
    process.stop()


def client(port: int, tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Terminal:
    """The client on a terminal, in the lobby with its typed events (its prompt is up)."""
    terminal = Terminal([*args, "127.0.0.1", str(port)], tmp_path, env)
    terminal.wait_for_untimed(YOU_ARE_GUEST1)
    terminal.wait_for_input("", PROMPT)
    return terminal


def alice(port: int, tmp_path: Path) -> Process:
    """An nc peer called alice, in the lobby."""
    peer = nc_peer(port, tmp_path)
    peer.wait_for_output(re.escape(welcome("guest2")))
    peer.send("/nick alice")
    peer.wait_for_output(r"\* you are now alice")
    return peer


def test_colours_and_times(server: tuple[Process, int], tmp_path: Path) -> None:
    """
    A line from alice: its time dim, then <alice> with the name in alice's
    colour; her arrival dimmed; my own line, shown as sent, with my name bold.
    """
    _, port = server
    terminal = client(port, tmp_path)
    peer = alice(port, tmp_path)
    try:
        peer.send("hello")
        terminal.wait_for_untimed("HH:MM <alice> hello")
        colour = name_colour("alice")
        received = terminal.screen.received
        assert re.search(
            rf"\x1b\[2m\d\d:\d\d \x1b\[0m<\x1b\[38;5;{colour}malice\x1b\[0m> hello", received
        )
        assert re.search(
            rf"\x1b\[38;5;{name_colour('guest2')};2mguest2\x1b\[0m\x1b\[2m is now known as alice",
            received,
        )
        terminal.type("hi there\r")
        terminal.wait_for_untimed("HH:MM <guest1> hi there")
        assert (
            f"<\x1b[38;5;{name_colour('guest1')};1mguest1\x1b[0m> hi there"
            in terminal.screen.received
        )
        peer.wait_for_output(r"<guest1> hi there")
        terminal.child.sendcontrol("d")
        assert terminal.exit_status() == 0
    finally:
        peer.stop()
        terminal.stop()


@pytest.mark.parametrize("how", ["NO_COLOR", "--no-color"])
def test_no_colour_on_a_terminal(server: tuple[Process, int], tmp_path: Path, how: str) -> None:
    """NO_COLOR (any non-empty value) or --no-color: the same lines, times and prompt, no colour."""
    _, port = server
    args, env = (["--no-color"], None) if how == "--no-color" else ([], {"NO_COLOR": "1"})
    terminal = client(port, tmp_path, *args, env=env)
    peer = alice(port, tmp_path)
    try:
        peer.send("hello")
        terminal.wait_for_untimed("HH:MM <alice> hello")
        received = terminal.screen.received
        assert "38;5;" not in received
        assert "\x1b[2m" not in received
        assert "\x1b[1;31m" not in received
    finally:
        peer.stop()
        terminal.stop()


def test_tab_completion(server: tuple[Process, int], tmp_path: Path) -> None:
    """
    Tab: a name at the start of a line becomes 'alice: ', a command '/join ',
    a room after /join '#dev'; what was completed goes out as shown.
    """
    twistd, port = server
    terminal = client(port, tmp_path)
    peer = alice(port, tmp_path)
    try:
        terminal.wait_for_untimed("HH:MM -- guest2 is now known as alice")
        terminal.type("al\t")
        terminal.wait_for_input("alice: ", PROMPT)
        terminal.type("hi\r")
        peer.wait_for_output(r"<guest1> alice: hi")
        terminal.type("/jo\t")
        terminal.wait_for_input("/join ", PROMPT)
        terminal.type("#d\t")
        terminal.wait_for_input("/join #dev", PROMPT)
        terminal.type("\r")
        terminal.wait_for_input("", "[guest1@dev] ")
        twistd.wait_for_output(r"guest1 \(127\.0\.0\.1:\d+\) sent \d+ bytes: /join #dev")
    finally:
        peer.stop()
        terminal.stop()


@pytest.mark.parametrize("bell", [True, False])
def test_bell_on_a_mention(server: tuple[Process, int], tmp_path: Path, bell: bool) -> None:
    """
    A line naming me: highlighted (the sender reversed, the text bold) and
    the bell rung, unless --no-bell; a line that does not name me rings nothing.
    """
    _, port = server
    terminal = client(port, tmp_path, *([] if bell else ["--no-bell"]))
    peer = alice(port, tmp_path)
    try:
        peer.send("hello all")
        terminal.wait_for_untimed("HH:MM <alice> hello all")
        peer.send("hey GUEST1, look")
        terminal.wait_for_untimed("HH:MM <alice> hey GUEST1, look")
        received = terminal.screen.received
        highlighted = (
            f"<\x1b[38;5;{name_colour('alice')};1;7malice\x1b[0m> \x1b[1mhey GUEST1, look\x1b[0m"
        )
        assert highlighted in received
        after = received.split("hey GUEST1, look", 1)[1]
        before = received.split("hey GUEST1, look", 1)[0]
        assert "\a" not in before
        if bell:
            assert after.startswith("\x1b[0m\a")
        else:
            assert "\a" not in received
    finally:
        peer.stop()
        terminal.stop()


def test_prompt_follows_nick_and_join(server: tuple[Process, int], tmp_path: Path) -> None:
    """The prompt says who and where I am: after /nick, /join and /part."""
    _, port = server
    terminal = client(port, tmp_path)
    try:
        terminal.type("/nick zed\r")
        terminal.wait_for_untimed("HH:MM -- you are now zed")
        terminal.wait_for_input("", "[zed@lobby] ")
        terminal.type("/join dev\r")
        terminal.wait_for_untimed("HH:MM -- you are now in #dev")
        terminal.wait_for_input("", "[zed@dev] ")
        terminal.type("/part\r")
        terminal.wait_for_untimed("HH:MM -- you are now in #lobby")
        terminal.wait_for_input("", "[zed@lobby] ")
    finally:
        terminal.stop()


def test_ctrl_c_clears_the_line_then_leaves(server: tuple[Process, int], tmp_path: Path) -> None:
    """Ctrl-C with a half-typed line clears it (nothing sent); on the empty line it leaves: 130."""
    twistd, port = server
    terminal = client(port, tmp_path)
    try:
        terminal.type("half-typed")
        terminal.wait_for_input("half-typed", PROMPT)
        terminal.child.sendcontrol("c")
        terminal.wait_for_input("", PROMPT)
        terminal.child.sendcontrol("c")
        assert terminal.exit_status() == 130
        twistd.wait_for_output(r"guest1 \(127\.0\.0\.1:\d+\) disconnected")
        assert "half-typed" not in twistd.output
    finally:
        terminal.stop()


def test_help_shows_the_commands_and_the_keys(server: tuple[Process, int], tmp_path: Path) -> None:
    """
    /help: the commands the server lists for me (no operator's), then the
    client's own keys; the client's own quiet /help at the start showed nothing.
    """
    _, port = server
    terminal = client(port, tmp_path, "--no-color")
    try:
        assert not any("commands:" in line for line in terminal.screen.lines)
        terminal.type("/help\r")
        terminal.wait(lambda s: any("-- keys: Tab completes" in line for line in s.lines), "keys")
        shown = untimed(terminal.screen.lines)
        assert "HH:MM -- commands:" in shown
        assert any(
            re.fullmatch(r"HH:MM    /join ROOM +go to another room.*", line) for line in shown
        )
        assert not any("/kick" in line for line in shown)
        assert shown.count("HH:MM -- commands:") == 1
    finally:
        terminal.stop()


def test_own_line_once_with_echo(tmp_path: Path) -> None:
    """A server with --echo sends my line back: it is still shown once."""
    twistd, port = start_twistd(tmp_path, "--history", "0", "--echo")
    terminal = client(port, tmp_path, "--no-color")
    peer = alice(port, tmp_path)
    try:
        terminal.type("only once\r")
        peer.wait_for_output(r"<guest1> only once")
        peer.send("after it")
        terminal.wait_for_untimed("HH:MM <alice> after it")
        assert untimed(terminal.screen.lines).count("HH:MM <guest1> only once") == 1
    finally:
        peer.stop()
        terminal.stop()
        twistd.stop()


def test_login_on_a_terminal(tmp_path: Path) -> None:
    """--user with a server that needs logins: events come before the login; the prompt shows it."""
    twistd, port = start_twistd(tmp_path, "--auth", "memory:dave:s3cret", "--op", "dave")
    env = {"TCPCHAT_PASSWORD": "s3cret", "NO_COLOR": "1"}
    terminal = Terminal(["--user", "dave", "127.0.0.1", str(port)], tmp_path, env)
    try:
        terminal.wait_for_untimed(
            "HH:MM -- you are dave in #lobby, an operator; /help lists the commands"
        )
        terminal.wait_for_input("", "[dave@lobby] ")
        terminal.type("/help\r")
        terminal.wait(lambda s: any("/kick NAME" in line for line in s.lines), "/kick in /help")
    finally:
        terminal.stop()
        twistd.stop()


def test_another_server_stays_plain(tmp_path: Path) -> None:
    """
    On a terminal with a server that is not tcpchat (ncat): no /events
    request ever goes, lines show as they come (no time), the prompt stays '> '.
    """
    sock = tmp_path / "chat.sock"
    peer = RawPeer([need("ncat"), "-l", "-U", str(sock)])
    terminal: Terminal | None = None
    try:
        wait_for(sock.exists, "ncat's socket")
        terminal = Terminal([f"unix:{sock}"], tmp_path)
        peer.send(b"Connect succeed. Please send a message to me\n* you are\n")
        terminal.wait_for_line("* you are")
        terminal.type("hi\r")
        wait_for(lambda: peer.received == b"hi\n", "the typed line at ncat")
        peer.send(b"Message received\n")
        terminal.wait_for_line("Message received")
        terminal.wait_for_input("")
        assert peer.received == b"hi\n"
        assert terminal.screen.lines[-3:] == ["> hi", "Message received", ">"]
    finally:
        if terminal is not None:
            terminal.stop()
        peer.stop()


# ---------------------------------------------------------------- not a terminal


def run_plain(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """The client with stdin a pipe (or /dev/null) and NO_COLOR set, as a script runs it."""
    return subprocess.run(
        [*CLIENT, *args],
        input=stdin,
        stdin=subprocess.DEVNULL if stdin is None else None,
        capture_output=True,
        env={**os.environ, "NO_COLOR": "1"},
        timeout=DEADLINE,
        check=False,
    )


def test_pipe_and_no_color_exactly_as_before(tmp_path: Path) -> None:
    """
    A pipe (and -m), NO_COLOR or not: the server's text lines, byte for
    byte, with no time, no escape, and no /events request sent.
    """
    twistd, port = start_twistd(tmp_path, "--history", "5")
    try:
        first = run_plain("-m", "said before", "-m", "exit", "127.0.0.1", str(port))
        assert first.returncode == 0, first
        assert first.stdout == (f"{DEFAULT_GREETING}\n{welcome('guest1')}\nGoodbye.\n".encode())
        piped = run_plain("127.0.0.1", str(port), stdin=b"/nick piper\n/who\n")
        assert piped.returncode == 0, piped
        assert lines(piped.stdout) == [
            DEFAULT_GREETING,
            welcome("guest2"),
            "[history] <guest1> said before",
            "* you are now piper",
            "* 1 in #lobby:",
            "*   piper (idle 0s)",
            "Goodbye.",
        ]
        assert piped.stderr == b""
        assert b"\x1b" not in piped.stdout
        twistd.wait_for_output(r"piper \(127\.0\.0\.1:\d+\) disconnected")
        assert "/events" not in twistd.output
    finally:
        twistd.stop()
