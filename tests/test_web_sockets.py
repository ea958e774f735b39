"""
The web front end on real loopback sockets: C{twistd -n tcpchat --web} as a
subprocess, reached over HTTP, plain WebSocket and WebSocket over TLS, beside
a TCP client of the same chat.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests import wsframes
from tests.certs import make_certs
from tests.helpers import DEADLINE, Process, installed_script, start_twistd

pytest.importorskip("autobahn")


class WebSocket:
    """A blocking WebSocket client on a real socket (plain or TLS)."""

    def __init__(self, sock: socket.socket, host: str, origin: str | None = None) -> None:
        self.sock = sock
        self.sock.settimeout(DEADLINE)
        self.reader = wsframes.Reader()
        self.frames: list[wsframes.Frame] = []
        self.sock.sendall(wsframes.handshake(host, origin=origin))

    def read(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError
        self.frames += self.reader.feed(data)

    def read_to_end(self) -> None:
        """Read until the server closes (EOFError)."""
        while True:
            self.read()

    def event(self, kind: str) -> dict[str, Any]:
        """Wait for the next event of C{kind}; return it."""
        while True:
            for i, frame in enumerate(self.frames):
                if frame.opcode == wsframes.TEXT:
                    event = json.loads(frame.payload)
                    if event["type"] == kind:
                        del self.frames[: i + 1]
                        return dict(event)
            self.read()

    def say(self, text: str) -> None:
        self.sock.sendall(wsframes.line(text))


def _closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closes C{sock} (within the deadline) without a byte."""
    try:
        return sock.recv(100) == b""
    except ConnectionResetError:
        return True


def _serve(tmp_path: Path, web: str, *options: str) -> tuple[Process, int, int]:
    args = ["--web", web, *options]
    process, chat = start_twistd(tmp_path, *args)
    match = process.wait_for_output(r"web page and WebSocket on https?://127\.0\.0\.1:(\d+)/")
    return process, chat, int(match.group(1))


def test_page_websocket_and_tcp_over_loopback(tmp_path: Path) -> None:
    process, chat, web = _serve(tmp_path, "tcp:0:interface=127.0.0.1")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{web}/", timeout=DEADLINE) as answer:
            page = answer.read()
            assert answer.headers["content-type"] == "text/html; charset=utf-8"
        assert b"<title>tcpchat</title>" in page
        host = f"127.0.0.1:{web}"
        browser = WebSocket(socket.create_connection(("127.0.0.1", web)), host, f"http://{host}")
        assert browser.event("you")["name"] == "guest1"
        assert browser.reader.status == 101
        with socket.create_connection(("127.0.0.1", chat), timeout=DEADLINE) as nc:
            nc.sendall(b"hello from tcp\n")
            message = browser.event("message")
            assert (message["sender"], message["lines"]) == ("guest2", ["hello from tcp"])
            browser.say("hello from the web")
            received = b""
            while b"<guest1> hello from the web\r\n" not in received:
                chunk = nc.recv(4096)
                assert chunk, received
                received += chunk
        browser.sock.close()
        process.wait_for_output(r"guest1 \(127\.0\.0\.1:\d+\) disconnected")
    finally:
        process.stop()


def test_websocket_over_tls(tmp_path: Path) -> None:
    """--web ssl:... serves wss://, with the certificate the operator gave."""
    certs = make_certs(tmp_path)
    endpoint = f"ssl:0:interface=127.0.0.1:privateKey={certs.key}:certKey={certs.cert}"
    process, _, web = _serve(tmp_path, endpoint)
    assert f"https://127.0.0.1:{web}/" in process.output
    try:
        context = ssl.create_default_context(cafile=str(certs.ca))
        raw = socket.create_connection(("127.0.0.1", web), timeout=DEADLINE)
        secure = context.wrap_socket(raw, server_hostname="localhost")
        browser = WebSocket(secure, f"localhost:{web}", f"https://localhost:{web}")
        assert browser.event("you")["change"] == "welcome"
        secure.close()
    finally:
        process.stop()


def test_other_origin_refused_and_logged(tmp_path: Path) -> None:
    process, _, web = _serve(tmp_path, "tcp:0:interface=127.0.0.1")
    try:
        sock = socket.create_connection(("127.0.0.1", web), timeout=DEADLINE)
        evil = WebSocket(sock, f"127.0.0.1:{web}", "http://evil.example")
        with pytest.raises(EOFError):
            evil.read_to_end()
        assert evil.reader.status == 403
        process.wait_for_output(r"refused: a WebSocket from the page at http://evil\.example")
        sock.close()
    finally:
        process.stop()
    assert not re.search(r"Traceback|Unhandled", process.output), process.output


def test_web_port_taken_is_one_line(tmp_path: Path) -> None:
    """A --web port in use: one line and exit status 1, like --port."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = Process(
            [
                installed_script("twistd"),
                "-n",
                "--pidfile=",
                "tcpchat",
                "--port",
                "0",
                "--web",
                f"tcp:{port}:interface=127.0.0.1",
            ],
            tmp_path,
        )
        assert process.wait() == 1
    errors = [line for line in process.lines if "cannot listen" in line]
    assert errors, process.output
    assert f"cannot listen on port {port}: Address already in use" in errors[0]
    assert "Traceback" not in process.output


def test_no_data_frame_after_the_close_on_a_real_socket(tmp_path: Path) -> None:
    """
    Answers of the turn in which the client closes go before the server's
    close frame, none after (RFC 6455, 5.5.1): on a real socket, where a
    turn's frames are sent together at its end.
    """
    process, _, web = _serve(tmp_path, "tcp:0:interface=127.0.0.1")
    try:
        host = f"127.0.0.1:{web}"
        browser = WebSocket(socket.create_connection(("127.0.0.1", web)), host, f"http://{host}")
        browser.event("you")
        browser.sock.sendall(
            wsframes.line("/nick alice")
            + wsframes.line("/who")
            + wsframes.frame(b"\x03\xe8", opcode=wsframes.CLOSE)
        )
        with pytest.raises((EOFError, ConnectionResetError)):
            browser.read_to_end()
        opcodes = [frame.opcode for frame in browser.frames]
        assert wsframes.CLOSE in opcodes, opcodes
        assert opcodes[-1] == wsframes.CLOSE, opcodes
    finally:
        process.stop()


def test_refused_over_tls_is_closed_at_once(tmp_path: Path) -> None:
    """Past --max-clients an ssl: web port closes the connection, before any handshake."""
    certs = make_certs(tmp_path)
    endpoint = f"ssl:0:interface=127.0.0.1:privateKey={certs.key}:certKey={certs.cert}"
    process, _, web = _serve(tmp_path, endpoint, "--max-clients", "1")
    try:
        holder = socket.create_connection(("127.0.0.1", web), timeout=DEADLINE)
        refused = socket.create_connection(("127.0.0.1", web), timeout=DEADLINE)
        assert _closed_by_server(refused)
        process.wait_for_output(r"refused at the web port: server full")
        holder.close()
        refused.close()
    finally:
        process.stop()
    assert "Unhandled" not in process.output, process.output
