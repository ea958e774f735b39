"""
The installed plugin as a subprocess, driven by real peers nobody here wrote
(nc, socat): what a user sees.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from tests.helpers import (
    DEADLINE,
    Process,
    installed_script,
    refused_in_one_line,
    start_twistd,
    wait_for,
    welcome,
)
from twisted_tcpchat.core.config import DEFAULT_GREETING

ROOT = Path(__file__).resolve().parent.parent


def need(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        pytest.fail(f"{program} is not installed (.ci/run installs it)")
    return path


def run_peer(argv: list[str], data: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv, input=data, capture_output=True, timeout=DEADLINE, check=False)


@pytest.fixture
def twistd(tmp_path: Path):  # type: ignore[no-untyped-def]
    started: list[Process] = []

    def start(*args: str) -> int:
        process, port = start_twistd(tmp_path, *args)
        started.append(process)
        return port

    start.processes = started  # type: ignore[attr-defined]
    yield start
    for process in started:
        process.stop()


def test_nc_greeting_message_exit(twistd) -> None:  # type: ignore[no-untyped-def]
    """nc gets the greeting; its line is in the server's output; 'exit' ends the session."""
    port = twistd()
    result = run_peer([need("nc"), "-N", "127.0.0.1", str(port)], b"hello from nc\nexit\n")
    assert result.returncode == 0, result
    assert result.stdout == f"{DEFAULT_GREETING}\r\n{welcome()}\r\nGoodbye.\r\n".encode()
    server = twistd.processes[0]
    server.wait_for_output(r"guest1 \(127\.0\.0\.1:\d+\) sent 13 bytes: hello from nc")
    server.wait_for_output(r"guest1 \(127\.0\.0\.1:\d+\) ended the session \(exit\)")
    assert "Traceback" not in server.output


def test_socat_crlf_and_chinese(twistd) -> None:  # type: ignore[no-untyped-def]
    """socat with CRLF lines and UTF-8 Chinese text; a custom greeting with {peer}."""
    port = twistd("--port", "0", "--interface", "127.0.0.1", "--greeting", "welcome {peer}")
    result = run_peer(
        [need("socat"), "-", f"TCP:127.0.0.1:{port}"], "你好，世界\r\nexit\r\n".encode()
    )
    assert result.returncode == 0, result
    assert result.stdout == f"welcome 127.0.0.1\r\n{welcome()}\r\nGoodbye.\r\n".encode()
    twistd.processes[0].wait_for_output(r"sent 15 bytes: 你好，世界")


def test_nc_disconnect_logged_once(twistd) -> None:  # type: ignore[no-untyped-def]
    """A client that just leaves (EOF) is logged once, with no traceback."""
    port = twistd()
    result = run_peer([need("nc"), "-N", "127.0.0.1", str(port)], b"bye without exit\n")
    assert result.returncode == 0, result
    server = twistd.processes[0]
    server.wait_for_output(r"disconnected \(closed by the client\)")
    assert server.output.count("disconnected") == 1
    assert "Traceback" not in server.output


def test_once_mode_with_nc(twistd) -> None:  # type: ignore[no-untyped-def]
    port = twistd("--port", "0", "--interface", "127.0.0.1", "--once")
    result = run_peer([need("nc"), "-N", "127.0.0.1", str(port)], b"hello,this is client")
    assert result.stdout == f"{DEFAULT_GREETING}\r\nReceived 20 bytes. Goodbye.\r\n".encode()


def test_port_in_use_fails_cleanly(twistd, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A second server on a busy port: one clear line naming it, exit status 1, no traceback."""
    port = twistd()
    second = Process(
        [
            installed_script("twistd"),
            "-n",
            "--pidfile=",
            "tcpchat",
            "--port",
            str(port),
            "--interface",
            "127.0.0.1",
        ],
        tmp_path,
    )
    assert second.wait() == 1
    assert "Traceback" not in second.output
    expected = f"tcpchat: cannot listen on port {port}: Address already in use"
    assert second.output.count(expected) == 2, second.output  # the log line, the exit line


def test_bad_option_fails_with_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [installed_script("twistd"), "-n", "--pidfile=", "tcpchat", "--port", "http"],
        capture_output=True,
        cwd=tmp_path,
        timeout=DEADLINE,
        check=False,
    )
    assert result.returncode == 1
    assert result.stdout == b""
    assert result.stderr.decode().splitlines() == [
        "tcpchat: --port: 'http' is not a whole number 0 to 65535 (see: twistd tcpchat --help)"
    ]


def test_help_lists_plugin(tmp_path: Path) -> None:
    """twistd --help lists tcpchat with its one-line description."""
    result = subprocess.run(
        [installed_script("twistd"), "--help"],
        capture_output=True,
        cwd=tmp_path,
        timeout=DEADLINE,
        check=True,
    )
    assert re.search(rb"(?m)^ +tcpchat +A TCP chat server", result.stdout), result.stdout


def test_sigterm_tells_clients(twistd) -> None:  # type: ignore[no-untyped-def]
    """SIGTERM: a connected client reads 'server shutting down'; twistd ends by the signal."""
    port = twistd()
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as sock:
        reader = sock.makefile("rb")
        assert reader.readline() == DEFAULT_GREETING.encode() + b"\r\n"
        assert reader.readline() == welcome().encode() + b"\r\n"
        server = twistd.processes[0]
        server.popen.send_signal(signal.SIGTERM)
        assert reader.readline() == b"server shutting down\r\n"
        assert reader.readline() == b""
        assert server.wait() == -signal.SIGTERM  # twistd re-raises the signal it stopped on


def test_daemon_mode_pidfile_and_logfile(tmp_path: Path) -> None:
    """Plain twistd daemonizes: --pidfile and --logfile work; the pidfile goes at stop."""
    pidfile, logfile = tmp_path / "tcpchat.pid", tmp_path / "tcpchat.log"
    subprocess.run(
        [
            installed_script("twistd"),
            f"--pidfile={pidfile}",
            f"--logfile={logfile}",
            "tcpchat",
            "--port",
            "0",
            "--interface",
            "127.0.0.1",
        ],
        cwd=tmp_path,
        timeout=DEADLINE,
        check=True,
    )
    pid = int(pidfile.read_text())
    try:
        wait_for(lambda: "tcpchat listening on" in logfile.read_text(), "the daemon's log")
        port = int(logfile.read_text().split("tcpchat listening on 127.0.0.1:")[1].split()[0])
        result = run_peer([need("nc"), "-N", "127.0.0.1", str(port)], b"to the daemon\nexit\n")
        assert result.stdout.endswith(b"Goodbye.\r\n")
        wait_for(
            lambda: "sent 13 bytes: to the daemon" in logfile.read_text(), "the message logged"
        )
    finally:
        os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not pidfile.exists(), "the pidfile to be removed")


def test_daemon_port_in_use_reports_to_the_terminal(twistd, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    port = twistd()
    result = subprocess.run(
        [
            installed_script("twistd"),
            f"--pidfile={tmp_path / 'd.pid'}",
            f"--logfile={tmp_path / 'd.log'}",
            "tcpchat",
            "--port",
            str(port),
            "--interface",
            "127.0.0.1",
        ],
        capture_output=True,
        cwd=tmp_path,
        timeout=DEADLINE,
        check=False,
    )
    assert result.returncode == 1
    assert f"cannot listen on port {port}: Address already in use" in result.stderr.decode()
    assert not (tmp_path / "d.pid").exists()


def test_twist_runs_the_plugin(tmp_path: Path) -> None:
    """The same plugin runs under `twist tcpchat`."""
    process = Process(
        [
            installed_script("twist"),
            "--log-format=text",
            "tcpchat",
            "--port",
            "0",
            "--interface",
            "127.0.0.1",
        ],
        tmp_path,
    )
    try:
        port = int(process.wait_for_output(r"tcpchat listening on \S+:(\d+)").group(1))
        result = run_peer([need("nc"), "-N", "127.0.0.1", str(port)], b"via twist\nexit\n")
        assert result.stdout == f"{DEFAULT_GREETING}\r\n{welcome()}\r\nGoodbye.\r\n".encode()
    finally:
        assert process.stop() in (0, -signal.SIGTERM)


def test_readme_tac_runs_with_twistd_ny(tmp_path: Path) -> None:
    """The README's .tac example is examples/tcpchat.tac, and twistd -ny runs it."""
    tac = (ROOT / "examples" / "tcpchat.tac").read_text()
    assert tac in (ROOT / "README.md").read_text(), "README must show examples/tcpchat.tac verbatim"
    assert tac.count('"tcp:65432"') == 1
    (tmp_path / "tcpchat.tac").write_text(tac.replace('"tcp:65432"', '"tcp:0:interface=127.0.0.1"'))
    process = Process([installed_script("twistd"), "-ny", "tcpchat.tac", "--pidfile="], tmp_path)
    try:
        port = int(process.wait_for_output(r"tcpchat listening on \S+:(\d+)").group(1))
        result = run_peer([need("nc"), "-N", "127.0.0.1", str(port)], b"exit\n")
        assert (
            result.stdout
            == f"welcome 127.0.0.1 to the chat\r\n{welcome()}\r\nGoodbye.\r\n".encode()
        )
    finally:
        assert process.stop() in (0, -signal.SIGTERM)


@pytest.mark.skipif(os.geteuid() != 0, reason="-u/-g need root to switch users")
def test_uid_gid_drop_privileges_after_listening(tmp_path: Path) -> None:
    """-u/-g: twistd listens first, then runs as that user, and still serves."""
    tmp_path.chmod(0o755)
    process, port = start_twistd(
        tmp_path,
        twistd_args=("-u", "65534", "-g", "65534"),
    )
    try:
        process.wait_for_output(r"set uid/gid 65534/65534")
        status = Path(f"/proc/{process.popen.pid}/status").read_text()
        assert re.search(r"^Uid:\s+65534\s", status, re.M), status
        result = run_peer([need("nc"), "-N", "127.0.0.1", str(port)], b"as nobody\nexit\n")
        assert result.stdout.endswith(b"Goodbye.\r\n")
    finally:
        process.stop()


def test_a_logfile_that_cannot_be_opened_is_one_line(tmp_path: Path) -> None:
    """twistd --logfile in a missing or unwritable place: one line and exit 1, no traceback."""
    for logfile in (tmp_path / "missing" / "tcpchat.log", tmp_path):
        line = refused_in_one_line(
            ["-n", f"--logfile={logfile}", "tcpchat", "--port", "0"], tmp_path
        )
        assert line.startswith(f"tcpchat: --logfile: cannot open '{logfile}': "), line


def test_sighup_reloads_and_the_client_stays(twistd) -> None:  # type: ignore[no-untyped-def]
    """
    SIGHUP with no terminal gone (kill -HUP, systemctl reload): a reload, and
    the client stays and talks.  (A closed terminal: tests/test_reload_twistd.py.)
    """
    port = twistd()
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as sock:
        reader = sock.makefile("rb")
        assert reader.readline() == DEFAULT_GREETING.encode() + b"\r\n"
        assert reader.readline() == welcome().encode() + b"\r\n"
        server = twistd.processes[0]
        server.popen.send_signal(signal.SIGHUP)
        server.wait_for_output(r"tcpchat: reloaded: nothing changed")
        sock.sendall(b"still here\n")
        server.wait_for_output(r"guest1 \(127\.0\.0\.1:\d+\) sent 10 bytes: still here")
        assert server.popen.poll() is None
    assert "shutting down" not in server.output
