"""
Running under systemd (issue 17): the readiness datagram (C{sd_notify})
to a socket of the test's own, socket activation with Debian's
C{systemd-socket-activate}, and what a bad C{systemd:} endpoint says; and
C{twistd tcpchat --version}.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
from pathlib import Path

import twisted_tcpchat
from tests.helpers import (
    DEADLINE,
    Process,
    installed_script,
    need,
    refused_in_one_line,
    start_twistd,
)
from tests.redis_server import free_port
from twisted_tcpchat.systemd import notify


def _listening_datagrams(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(DEADLINE)
    return sock


def test_notify_sends_one_datagram(tmp_path: Path) -> None:
    with _listening_datagrams(tmp_path / "notify") as sock:
        assert notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "notify")})
        assert sock.recv(4096) == b"READY=1"


def test_notify_without_systemd_does_nothing() -> None:
    assert not notify("READY=1", {})


def test_notify_to_a_missing_socket_is_not_an_error(tmp_path: Path) -> None:
    assert not notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "gone")})


def test_twistd_says_ready_once_listening_and_stopping_on_sigterm(tmp_path: Path) -> None:
    """READY=1 (with where it listens and its pid) once listening; STOPPING=1 on SIGTERM."""
    path = tmp_path / "notify"
    with _listening_datagrams(path) as sock:
        process, port = start_twistd(tmp_path, env={"NOTIFY_SOCKET": str(path)})
        try:
            ready = sock.recv(4096).decode()
            assert ready.split("\n")[0] == "READY=1", ready
            assert f"STATUS=listening on 127.0.0.1:{port}" in ready.split("\n")
            assert f"MAINPID={process.popen.pid}" in ready.split("\n")
            # (It listens before it says so: a client connects at once.)
            with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as client:
                assert client.recv(100)
        finally:
            process.stop()
        assert sock.recv(4096) == b"STOPPING=1"


def test_socket_activation(tmp_path: Path) -> None:
    """systemd-socket-activate listens, and starts tcpchat on the socket it passes."""
    activate = need("systemd-socket-activate")
    port = free_port()
    process = Process(
        [
            activate,
            "--listen",
            f"127.0.0.1:{port}",
            # (systemd names every socket it passes; Twisted wants the names.)
            "--fdname=chat",
            installed_script("twistd"),
            "-n",
            "--pidfile=",
            "tcpchat",
            "--listen",
            "systemd:domain=INET:name=chat",
        ],
        tmp_path,
    )
    try:
        process.wait_for_output(r"Listening on 127\.0\.0\.1:\d+")
        with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as client:
            client.settimeout(DEADLINE)
            received = b""
            while b"/help lists the commands" not in received:
                chunk = client.recv(4096)
                assert chunk, received
                received += chunk
        assert received.startswith(b"Connect succeed. Please send a message to me\r\n")
        process.wait_for_output(r"tcpchat listening on 127\.0\.0\.1:\d+ \(systemd:")
    finally:
        process.stop()


def test_a_systemd_endpoint_without_systemd_is_one_line(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("LISTEN_")}
    line = refused_in_one_line(
        ["-n", "tcpchat", "--listen", "systemd:domain=INET:index=0"], tmp_path, env
    )
    assert "no socket passed by systemd" in line
    assert "IndexError" not in line


def test_version(tmp_path: Path) -> None:
    result = subprocess.run(
        [installed_script("twistd"), "tcpchat", "--version"],
        capture_output=True,
        cwd=tmp_path,
        timeout=DEADLINE,
        check=True,
    )
    line = result.stdout.decode().strip()
    assert re.fullmatch(
        rf"tcpchat {re.escape(twisted_tcpchat.__version__)} \(Twisted \S+, Python \S+\)", line
    ), line
