"""
Shared test helpers: a fake connection, protocols on StringTransport, and
real processes (twistd, peers) with deadlines instead of sleeps.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from twisted_tcpchat.core.config import ChatConfig
from twisted_tcpchat.frontends.tcp import ChatFactory, ChatProtocol

#: Seconds a test waits for something on a real socket or process.  Generous:
#: the machine is shared and noisy; a passing test never waits this long.
DEADLINE = 30.0


def tcpchat_log(case: SynchronousTestCase) -> list[str]:
    """The lines tcpchat logs from now until the end of C{case}."""
    logged: list[str] = []

    def observe(event: dict[str, Any]) -> None:
        if event.get("log_namespace") == "tcpchat":
            logged.append(formatEvent(event))

    globalLogPublisher.addObserver(observe)
    case.addCleanup(globalLogPublisher.removeObserver, observe)
    return logged


def troubles_logged(case: SynchronousTestCase) -> list[str]:
    """Tracebacks, errors and warnings anyone logs (a library too) until the end of C{case}."""
    logged: list[str] = []

    def observe(event: dict[str, Any]) -> None:
        level = event.get("log_level")
        if "log_failure" in event or level in (LogLevel.warn, LogLevel.error, LogLevel.critical):
            logged.append(f"{event.get('log_namespace')}: {formatEvent(event)}")

    globalLogPublisher.addObserver(observe)
    case.addCleanup(globalLogPublisher.removeObserver, observe)
    return logged


def welcome(name: str = "guest1") -> str:
    """The room's line to a newcomer, right after the greeting."""
    return f"* you are {name}; /nick NAME changes it, /help lists the commands"


CLIENT = IPv4Address("TCP", "192.0.2.7", 40001)
SERVER = IPv4Address("TCP", "192.0.2.1", 65432)


def connect(
    config: ChatConfig | None = None,
    *,
    factory: ChatFactory | None = None,
    peer: IPv4Address | IPv6Address = CLIENT,
    clock: Clock | None = None,
) -> tuple[ChatProtocol, StringTransport]:
    """A server protocol connected to a StringTransport, greeting sent."""
    if factory is None:
        factory = ChatFactory(config, clock=clock or Clock())
    protocol = factory.buildProtocol(peer)
    transport = StringTransport(hostAddress=SERVER, peerAddress=peer)
    protocol.makeConnection(transport)
    return protocol, transport


class Client:
    """
    A client of a factory on a StringTransport, for conversations in tests:
    what it sends, and the lines it has received since the last look.
    """

    def __init__(self, factory: ChatFactory, peer: IPv4Address | IPv6Address = CLIENT) -> None:
        self.protocol, self.transport = connect(factory=factory, peer=peer)
        self._seen = 0

    def send(self, data: bytes | str) -> None:
        """Send raw bytes, or one line of text (a line end is added)."""
        if isinstance(data, str):
            data = data.encode() + b"\n"
        self.protocol.dataReceived(data)

    def raw(self) -> bytes:
        return self.transport.value()

    def new_lines(self, encoding: str = "utf-8") -> list[str]:
        lines = self.transport.value().decode(encoding).split("\r\n")[:-1]
        fresh, self._seen = lines[self._seen :], len(lines)
        return fresh

    def lost(self) -> None:
        """The client goes away (FIN)."""
        self.protocol.connectionLost(Failure(ConnectionDone()))


def lines_of(transport: StringTransport) -> list[str]:
    """The lines written to a transport so far (CRLF-terminated, UTF-8)."""
    data = transport.value()
    assert data == b"" or data.endswith(b"\r\n"), data
    return data.decode("utf-8").split("\r\n")[:-1]


def messages(events: Sequence[dict[str, object]]) -> list[str]:
    """
    The lines of captured tcpchat log events (the chat lines of one read are
    one event, a line each).
    """
    from twisted.logger import formatEvent

    return [
        line
        for event in events
        if event.get("log_namespace") == "tcpchat"
        for line in formatEvent(event).split("\n")
    ]


def wait_for(predicate: Callable[[], object], what: str, timeout: float = DEADLINE) -> None:
    """Poll until C{predicate()} is true; fail naming C{what} after the deadline."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def installed_script(name: str) -> str:
    """The path of a console script installed beside this Python."""
    path = Path(sys.executable).parent / name
    assert path.exists(), f"{name} is not installed beside {sys.executable}"
    return str(path)


class Process:
    """
    A subprocess whose output (stdout and stderr together) is collected by a
    thread, so a test can wait for a line with a deadline.
    """

    def __init__(
        self,
        argv: Sequence[str],
        cwd: Path,
        env: dict[str, str] | None = None,
        stdin: bool = False,
    ):
        self.argv = list(argv)
        self.popen = subprocess.Popen(
            self.argv,
            cwd=cwd,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for raw in self.popen.stdout:
            with self._lock:
                self._lines.append(raw.decode("utf-8", "backslashreplace"))

    def send(self, text: str) -> None:
        """Write a line to the process's stdin (started with stdin=True)."""
        assert self.popen.stdin is not None
        self.popen.stdin.write(text.encode() + b"\n")
        self.popen.stdin.flush()

    def close_stdin(self) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.close()

    @property
    def lines(self) -> list[str]:
        """Complete output lines so far, without line ends (CR LF or LF)."""
        text = self.output
        return [line.rstrip("\r") for line in text.split("\n")[:-1]]

    @property
    def output(self) -> str:
        with self._lock:
            return "".join(self._lines)

    def wait_for_output(self, pattern: str, timeout: float = DEADLINE) -> re.Match[str]:
        """Wait until the output matches C{pattern}; return the match."""
        found: list[re.Match[str]] = []

        def matched() -> bool:
            match = re.search(pattern, self.output)
            if match:
                found.append(match)
                return True
            if self.popen.poll() is not None:
                self._reader.join(5)
                match = re.search(pattern, self.output)
                if match:
                    found.append(match)
                    return True
                raise AssertionError(
                    f"{self.argv} exited ({self.popen.returncode}) before printing "
                    f"{pattern!r}; output:\n{self.output}"
                )
            return False

        wait_for(matched, f"{pattern!r} in the output of {self.argv}", timeout)
        return found[0]

    def wait(self, timeout: float = DEADLINE) -> int:
        code = self.popen.wait(timeout)
        self._reader.join(5)
        return code

    def stop(self) -> int:
        """SIGTERM, then wait; SIGKILL if it will not go."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                return self.wait()
            except subprocess.TimeoutExpired:
                self.popen.kill()
        return self.wait()


def start_twistd(
    tmp_path: Path,
    *args: str,
    env: dict[str, str] | None = None,
    twistd_args: Sequence[str] = (),
    stdin: bool = False,
) -> tuple[Process, int]:
    """
    Run C{twistd -n tcpchat ARGS} on a free loopback port; return the process
    and the port it listens on (read from its log).
    """
    argv = [installed_script("twistd"), "-n", "--pidfile=", *twistd_args, "tcpchat", *args]
    if not any(a.startswith("--listen") or a.startswith("--port") for a in args):
        argv += ["--port", "0", "--interface", "127.0.0.1"]
    process = Process(argv, tmp_path, env, stdin=stdin)
    match = process.wait_for_output(r"tcpchat listening on \S+:(\d+)")
    return process, int(match.group(1))


def refused_in_one_line(args: Sequence[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run C{twistd ARGS}, which must end with status 1 and one line on stderr: that line."""
    result = subprocess.run(
        [installed_script("twistd"), *args],
        capture_output=True,
        cwd=cwd,
        timeout=DEADLINE,
        env=env,
        check=False,
    )
    assert result.returncode == 1, result
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def need(program: str) -> str:
    """The path of a program the tests use; a clear failure when it is missing."""
    import shutil

    path = shutil.which(program)
    if path is None:
        raise AssertionError(f"{program} is not installed (.ci/run installs it)")
    return path


def compile_c(source: str, directory: Path, name: str) -> Path:
    """Compile a C program (warnings are errors) into C{directory}; return the binary."""
    (directory / f"{name}.c").write_text(source)
    binary = directory / name
    subprocess.run(
        [need("gcc"), "-O1", "-Wall", "-Werror", "-o", str(binary), str(directory / f"{name}.c")],
        check=True,
        timeout=DEADLINE,
    )
    return binary
