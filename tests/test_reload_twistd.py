"""
SIGHUP on a real C{twistd -n tcpchat} (issue 17): a reload with a changed
auth file, certificate and greeting while a TLS client stays connected;
broken files refused in one line each; and, under a pseudo-terminal, the
terminal going away stops the server (clients told) while C{kill -HUP}
with the terminal still there reloads.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, cast

import pexpect
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.certs import Certs, make_certs
from tests.helpers import DEADLINE, Process, installed_script, start_twistd, wait_for, welcome
from twisted_tcpchat.core.config import DEFAULT_GREETING

LOGIN_NEEDED = "* this server needs a login: /login NAME PASSWORD"


class Files:
    """The files a server is started with, which a test then changes."""

    def __init__(self, directory: Path) -> None:
        (directory / "old").mkdir()
        (directory / "new").mkdir()
        self.old = make_certs(directory / "old")
        self.new = make_certs(directory / "new")
        self.key = directory / "server.key"
        self.cert = directory / "server.pem"
        self.users = directory / "users.txt"
        self.config = directory / "tcpchat.toml"
        self.use_certs(self.old)
        self.users.write_text("alice:wonderland\n")
        self.config.write_text('greeting = "old greeting"\n')

    def use_certs(self, certs: Certs) -> None:
        shutil.copyfile(certs.key, self.key)
        shutil.copyfile(certs.cert, self.cert)

    def args(self) -> list[str]:
        listen = f"ssl:0:interface=127.0.0.1:privateKey={self.key}:certKey={self.cert}"
        return ["--listen", listen, "--auth", f"file:{self.users}", "--config", str(self.config)]


def der(certs: Certs) -> bytes:
    """The server certificate of C{certs}, as a TLS peer presents it."""
    return x509.load_pem_x509_certificate(certs.cert.read_bytes()).public_bytes(
        serialization.Encoding.DER
    )


class TLSClient:
    """
    A chat client over TLS that trusts the CA of C{certs} (the test CAs
    share a name, so one at a time): its lines, its peer's certificate.
    """

    def __init__(self, port: int, certs: Certs) -> None:
        context = ssl.create_default_context(cafile=str(certs.ca))
        raw = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
        self.sock = context.wrap_socket(raw, server_hostname="localhost")
        self.reader = self.sock.makefile("rb")

    def line(self) -> str:
        return self.reader.readline().decode("utf-8").removesuffix("\r\n")

    def send(self, text: str) -> None:
        self.sock.sendall(text.encode("utf-8") + b"\n")

    def certificate(self) -> bytes | None:
        return self.sock.getpeercert(binary_form=True)

    def log_in(self, name: str, password: str) -> None:
        assert self.line() == LOGIN_NEEDED
        self.send(f"/login {name} {password}")
        assert self.line() == welcome(name)

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


@pytest.fixture
def reloading(tmp_path: Path) -> Iterator[tuple[Process, int, Files]]:
    files = Files(tmp_path)
    process, port = start_twistd(tmp_path, *files.args())
    yield process, port, files
    process.stop()


def sighup_then(server: Process, pattern: str, count: int = 1) -> None:
    """Send SIGHUP to the server and wait until its output matches C{pattern} C{count} times."""
    server.popen.send_signal(signal.SIGHUP)
    wait_for(
        lambda: len(re.findall(pattern, server.output)) >= count,
        f"{pattern!r} {count} times in the output",
    )


def test_sighup_with_a_new_auth_file_certificate_and_greeting_keeps_a_tls_client(
    reloading: tuple[Process, int, Files],
) -> None:
    """
    SIGHUP: a TLS client logged in before stays and talks; a new one gets
    the new certificate and greeting and logs in as the user just added.
    """
    server, port, files = reloading
    alice = TLSClient(port, files.old)
    assert alice.line() == "old greeting"
    alice.log_in("alice", "wonderland")
    files.users.write_text("alice:wonderland\ncarol:secret\n")
    files.use_certs(files.new)
    files.config.write_text('greeting = "new greeting"\n')

    sighup_then(server, r"tcpchat: reloaded: TLS of ")
    assert "tcpchat: reloaded: greeting changed" in server.output
    assert f"tcpchat: reloaded: auth file {files.users}: 1 added (carol)" in server.output

    carol = TLSClient(port, files.new)
    assert carol.certificate() == der(files.new)
    assert carol.line() == "new greeting"
    carol.log_in("carol", "secret")
    assert alice.line() == "* carol joined"
    alice.send("still here")
    assert carol.line() == "<alice> still here"
    assert alice.certificate() == der(files.old)  # (its session was kept)
    for client in (alice, carol):
        client.close()
    assert "Traceback" not in server.output


def test_sighup_refuses_a_broken_config_and_a_mismatched_key_in_one_line_each(
    reloading: tuple[Process, int, Files],
) -> None:
    """Each broken file is one log line, no traceback; the old settings stay in force."""
    server, port, files = reloading
    alice = TLSClient(port, files.old)
    assert alice.line() == "old greeting"
    alice.log_in("alice", "wonderland")
    refused = r"tcpchat: reload refused, the old settings stay: "

    files.config.write_text('greeting = "new greeting"\nflood-rate = "fast"\n')
    sighup_then(server, refused, 1)
    files.config.write_text('greeting = "old greeting"\n')
    shutil.copyfile(files.new.key, files.key)  # (the old certificate stays: no match)
    sighup_then(server, refused, 2)

    lines = [line for line in server.lines if "reload refused" in line]
    assert len(lines) == 2, lines
    assert lines[0].endswith(
        f"{refused}--config {files.config}: flood-rate: 'fast' is not a number more than 0"
    ), lines
    assert "TLS of ssl:0:" in lines[1], lines
    assert lines[1].endswith("Certificate public and private keys do not match."), lines
    assert "Traceback" not in server.output
    assert "reloaded:" not in server.output

    bob = TLSClient(port, files.old)
    assert bob.certificate() == der(files.old)
    assert bob.line() == "old greeting"
    assert bob.line() == LOGIN_NEEDED
    alice.send("still here")
    server.wait_for_output(r"alice \(127\.0\.0\.1:\d+\) sent 10 bytes: still here")
    for client in (alice, bob):
        client.close()


class Terminal:
    """C{twistd -n tcpchat} on a pseudo-terminal of its own, logging to a file."""

    def __init__(self, tmp_path: Path) -> None:
        self.log = tmp_path / "tcpchat.log"
        args = ["-n", "--pidfile=", f"--logfile={self.log}", "tcpchat"]
        args += ["--port", "0", "--interface", "127.0.0.1"]
        self.child = pexpect.spawn(installed_script("twistd"), args, cwd=str(tmp_path))
        wait_for(lambda: self.listening_port() is not None, "the server listening")
        self.port = cast(int, self.listening_port())

    def text(self) -> str:
        """What the server has logged so far."""
        return self.log.read_text() if self.log.exists() else ""

    def listening_port(self) -> int | None:
        match = re.search(r"tcpchat listening on \S+:(\d+)", self.text())
        return int(match.group(1)) if match else None

    def hang_up(self) -> None:
        """Close the terminal (its master side), as a closed window or a lost ssh session does."""
        self.child.ptyproc.fileobj.close()

    def stop(self) -> None:
        """End the server if it is still there (by its pid), and close the terminal."""
        if self.child.isalive():
            os.kill(self.child.pid, signal.SIGTERM)
            try:
                wait_for(lambda: not self.child.isalive(), "the server to stop")
            except AssertionError:
                os.kill(self.child.pid, signal.SIGKILL)
        if not self.child.ptyproc.fileobj.closed:
            self.child.ptyproc.fileobj.close()


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Terminal]:
    started = Terminal(tmp_path)
    yield started
    started.stop()


def chat_client(port: int) -> tuple[socket.socket, BinaryIO]:
    """A plain TCP client past the greeting and the welcome."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
    reader = sock.makefile("rb")
    assert reader.readline() == DEFAULT_GREETING.encode() + b"\r\n"
    assert reader.readline() == welcome().encode() + b"\r\n"
    return sock, reader


def test_the_terminal_going_away_stops_the_server_clients_told(terminal: Terminal) -> None:
    """The pty closes: the client reads 'server shutting down'; twistd ends by SIGHUP."""
    sock, reader = chat_client(terminal.port)
    with sock:
        terminal.hang_up()
        assert reader.read() == b"server shutting down\r\n"
    wait_for(lambda: not terminal.child.isalive(), "the server to exit")
    assert terminal.child.signalstatus == signal.SIGHUP
    assert (
        "tcpchat: SIGHUP: shutting down, clients told (as on SIGTERM): the terminal went away"
        in terminal.text()
    )


def test_kill_hup_with_the_terminal_still_there_reloads(terminal: Terminal) -> None:
    """kill -HUP while the pty is open: a reload; the client stays and talks."""
    sock, _ = chat_client(terminal.port)
    with sock:
        os.kill(terminal.child.pid, signal.SIGHUP)
        wait_for(lambda: "tcpchat: reloaded: nothing changed" in terminal.text(), "the reload")
        sock.sendall(b"still here\n")
        wait_for(lambda: "sent 10 bytes: still here" in terminal.text(), "the line in the log")
        assert terminal.child.isalive()
    assert "shutting down" not in terminal.text()
