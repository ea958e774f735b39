"""
The room with real peers nobody here wrote: nc and socat clients of an
installed `twistd -n tcpchat`, and the operator console over a pipe and a
pseudo-terminal.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from tests.helpers import DEADLINE, Process, installed_script, start_twistd, welcome
from twisted_tcpchat.core.config import DEFAULT_GREETING


def peer_argv(kind: str, port: int) -> list[str]:
    path = shutil.which(kind)
    if path is None:
        pytest.fail(f"{kind} is not installed (.ci/run installs it)")
    if kind == "nc":
        return [path, "127.0.0.1", str(port)]
    return [path, "-", f"TCP:127.0.0.1:{port}"]


class Peer:
    """A real nc or socat client, typed into through its stdin."""

    def __init__(self, kind: str, port: int, cwd: Path) -> None:
        self.process = Process(peer_argv(kind, port), cwd, stdin=True)

    def expect(self, line: str) -> None:
        """Wait until this exact line has arrived."""
        self.process.wait_for_output(rf"(?m)^{re.escape(line)}\r?$")

    def say(self, text: str) -> None:
        self.process.send(text)

    @property
    def lines(self) -> list[str]:
        return self.process.lines


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[Process, int]]:
    process, port = start_twistd(tmp_path, "--history", "5")
    yield process, port
    process.stop()


def test_three_real_clients(server: tuple[Process, int], tmp_path: Path) -> None:
    """nc, socat and a late nc: relay, private message, rename race, history, leave reason."""
    _, port = server
    peers: list[Peer] = []
    try:
        alice = Peer("nc", port, tmp_path)
        peers.append(alice)
        alice.expect(welcome("guest1"))
        alice.say("/nick alice")
        alice.expect("* you are now alice")

        bob = Peer("socat", port, tmp_path)
        peers.append(bob)
        bob.expect(welcome("guest2"))
        alice.expect("* guest2 joined")
        bob.say("/nick bob")
        alice.expect("* guest2 is now known as bob")

        alice.say("hello everyone")
        bob.expect("<alice> hello everyone")
        alice.say("/msg bob just between us")
        bob.expect("[private from alice] just between us")
        alice.expect("[private to bob] just between us")

        # The rename race: both ask for one name at once; exactly one wins.
        alice.say("/nick chief")
        bob.say("/nick chief")
        for peer in (alice, bob):
            peer.process.wait_for_output(r"\* you are now chief|error: the name 'chief' is taken")
        winners = [p for p in (alice, bob) if "* you are now chief" in p.lines]
        losers = [p for p in (alice, bob) if "error: the name 'chief' is taken" in p.lines]
        assert len(winners) == 1, (alice.lines, bob.lines)
        assert len(losers) == 1, (alice.lines, bob.lines)
        winner, loser = winners[0], losers[0]
        winner_old = "alice" if winner is alice else "bob"
        loser.expect(f"* {winner_old} is now known as chief")
        names = {id(winner): "chief", id(loser): "bob" if loser is bob else "alice"}

        carol = Peer("nc", port, tmp_path)
        peers.append(carol)
        carol.expect("[history] <alice> hello everyone")
        for peer in (alice, bob):
            peer.expect("* guest3 joined")

        bob.say("/quit gotta go")
        bob.expect("Goodbye.")
        for peer in (alice, carol):
            peer.expect(f"* {names[id(bob)]} left (gotta go)")
        carol.say("exit")
        carol.expect("Goodbye.")
        alice.expect("* guest3 left (exit)")

        assert carol.lines == [
            DEFAULT_GREETING,
            welcome("guest3"),
            "[history] <alice> hello everyone",
            f"* {names[id(bob)]} left (gotta go)",
            "Goodbye.",
        ]
        assert not any("just between us" in line for line in carol.lines)
        expected_bob = [
            DEFAULT_GREETING,
            welcome("guest2"),
            "* you are now bob",
            "<alice> hello everyone",
            "[private from alice] just between us",
        ]
        assert bob.lines[: len(expected_bob)] == expected_bob
        assert bob.lines[-2:] == ["* guest3 joined", "Goodbye."]
        assert alice.lines[-1] == "* guest3 left (exit)"
    finally:
        for peer in peers:
            peer.process.stop()


def test_two_rooms(server: tuple[Process, int], tmp_path: Path) -> None:
    """nc and socat clients in two rooms: each sees exactly its own room, with no prefix."""
    _, port = server
    peers: list[Peer] = []
    try:
        alice = Peer("nc", port, tmp_path)
        peers.append(alice)
        alice.expect(welcome("guest1"))
        alice.say("/nick alice")
        alice.expect("* you are now alice")
        bob = Peer("socat", port, tmp_path)
        peers.append(bob)
        bob.expect(welcome("guest2"))
        bob.say("/nick bob")
        alice.expect("* guest2 is now known as bob")
        alice.say("/join #Dev")
        alice.expect("* you are now in #Dev")
        bob.expect("* alice left for #Dev")
        alice.say("/topic code review at 3")
        alice.expect("* alice set the topic of #Dev: code review at 3")
        carol = Peer("nc", port, tmp_path)
        peers.append(carol)
        carol.expect(welcome("guest3"))
        bob.expect("* guest3 joined")
        carol.say("/join dev")
        carol.expect("* the topic of #Dev: code review at 3")
        alice.expect("* guest3 came from #lobby")
        bob.expect("* guest3 left for #Dev")
        bob.say("anyone in the lobby?")
        carol.say("hi alice")
        alice.expect("<guest3> hi alice")
        alice.say("/msg bob come to #dev")
        bob.expect("[private from alice] come to #dev")
        bob.say("/rooms")
        bob.expect("*   #Dev (2): code review at 3")
        bob.say("/who *")
        bob.expect("*   guest3 in #Dev (idle 0s)")
        carol.say("/part")
        alice.expect("* guest3 left for #lobby")
        carol.expect("[history] <bob> anyone in the lobby?")
        for peer in peers:
            peer.say("exit")
            peer.expect("Goodbye.")
        assert alice.lines == [
            DEFAULT_GREETING,
            welcome("guest1"),
            "* you are now alice",
            "* guest2 joined",
            "* guest2 is now known as bob",
            "* you are now in #Dev",
            "* alice set the topic of #Dev: code review at 3",
            "* guest3 came from #lobby",
            "<guest3> hi alice",
            "[private to bob] come to #dev",
            "* guest3 left for #lobby",
            "Goodbye.",
        ]
        assert carol.lines == [
            DEFAULT_GREETING,
            welcome("guest3"),
            "* you are now in #Dev",
            "* the topic of #Dev: code review at 3",
            "* you are now in #lobby",
            "[history] <bob> anyone in the lobby?",
            "* bob left (exit)",
            "Goodbye.",
        ]
        assert "<bob> anyone in the lobby?" not in alice.lines
        assert not any("hi alice" in line for line in bob.lines)
    finally:
        for peer in peers:
            peer.process.stop()


def console_server(tmp_path: Path) -> tuple[Process, int]:
    return start_twistd(tmp_path, "--console", stdin=True)


def test_console_through_a_pipe(tmp_path: Path) -> None:
    """The console shows what clients say and speaks as <server>; /who and /kick work."""
    twistd, port = console_server(tmp_path)
    try:
        twistd.wait_for_output(r"(?m)^\* you are server;")
        client = Peer("nc", port, tmp_path)
        client.expect(welcome("guest1"))
        twistd.wait_for_output(r"(?m)^\* guest1 joined$")
        client.say("hello operator")
        twistd.wait_for_output(r"(?m)^<guest1> hello operator$")
        twistd.send("hello client")
        client.expect("<server> hello client")
        twistd.send("/msg guest1 a word in private")
        client.expect("[private from server] a word in private")
        twistd.send("/who")
        twistd.wait_for_output(r"(?m)^\* 2 in #lobby:$")
        twistd.send("/kick guest1 closing time")
        client.expect("* you were kicked by server: closing time")
        client.process.close_stdin()  # nc quits once both directions are done
        assert client.process.wait() == 0
        twistd.wait_for_output(r"guest1 \(127\.0\.0\.1:\d+\) disconnected \(kicked by server")
        twistd.close_stdin()
        twistd.wait_for_output(r"console closed; the server goes on")
        # The server still serves after the console has gone.
        late = Peer("nc", port, tmp_path)
        late.expect(welcome("guest2"))
        late.process.stop()
    finally:
        twistd.stop()


def test_console_on_a_terminal(tmp_path: Path) -> None:
    """The console on a pseudo-terminal: a client's line shows; a typed line reaches the client."""
    argv = [
        installed_script("twistd"),
        "-n",
        "--pidfile=",
        "tcpchat",
        "--port",
        "0",
        "--interface",
        "127.0.0.1",
        "--console",
    ]
    child = pexpect.spawn(argv[0], argv[1:], cwd=str(tmp_path), timeout=DEADLINE, encoding="utf-8")
    try:
        child.expect(r"tcpchat listening on 127\.0\.0\.1:(\d+)")
        port = int(child.match.group(1))
        child.expect(r"\* you are server;")
        client = Peer("socat", port, tmp_path)
        client.expect(welcome("guest1"))
        client.say("你好 from a terminal peer")
        child.expect("<guest1> 你好 from a terminal peer")
        child.sendline("/who")
        child.expect(r"\* 2 in #lobby:")
        child.sendline("typed on the tty")
        client.expect("<server> typed on the tty")
        client.process.stop()
    finally:
        child.kill(15)
        child.close()


def test_console_refused_for_a_daemon(tmp_path: Path) -> None:
    """--console without -n (a daemon has no terminal): one line, exit status 1."""
    result = subprocess.run(
        [
            installed_script("twistd"),
            f"--pidfile={tmp_path / 'x.pid'}",
            f"--logfile={tmp_path / 'x.log'}",
            "tcpchat",
            "--console",
        ],
        capture_output=True,
        cwd=tmp_path,
        timeout=DEADLINE,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.decode().splitlines() == [
        "tcpchat: --console needs a terminal, and a daemon has none: run twistd -n tcpchat "
        "--console (see: twistd tcpchat --help)"
    ]
    assert not (tmp_path / "x.pid").exists()
