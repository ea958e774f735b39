"""
The tcpchat client as a subprocess (python -m twisted_tcpchat), against real
peers: an installed `twistd -n tcpchat`, a classic C server compiled here
with gcc, and `ncat -l`; and every way a connection can fail, with the exit
statuses a script relies on.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from twisted.internet.endpoints import quoteStringArgument

from tests.helpers import DEADLINE, Process, start_twistd, wait_for, welcome
from twisted_tcpchat import __version__
from twisted_tcpchat.core.config import DEFAULT_GREETING

CLIENT = [sys.executable, "-m", "twisted_tcpchat"]


def need(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        pytest.fail(f"{program} is not installed (.ci/run installs it)")
    return path


def tcpchat(
    *args: str, stdin: bytes | None = None, prefix: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[bytes]:
    """Run the client to its end; stdin is a pipe holding C{stdin}, or /dev/null."""
    return subprocess.run(
        [*prefix, *CLIENT, *args],
        input=stdin,
        stdin=subprocess.DEVNULL if stdin is None else None,
        capture_output=True,
        timeout=DEADLINE,
        check=False,
    )


def lines(data: bytes) -> list[str]:
    return data.decode().splitlines()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[Process, int]]:
    process, port = start_twistd(tmp_path, "--history", "0")
    yield process, port
    process.stop()


# ---------------------------------------------------------------- our server


def test_messages_then_exit(server: tuple[Process, int]) -> None:
    """-m twice: both sent, the answers shown until the server closes, status 0."""
    twistd, port = server
    result = tcpchat("-m", "hello from tcpchat", "-m", "exit", "127.0.0.1", str(port))
    assert result.returncode == 0, result
    assert lines(result.stdout) == [DEFAULT_GREETING, welcome("guest1"), "Goodbye."]
    assert result.stderr == b""
    twistd.wait_for_output(r"guest1 \(127\.0\.0\.1:\d+\) sent 18 bytes: hello from tcpchat")


def test_piped_stdin(server: tuple[Process, int]) -> None:
    """Lines piped in are sent; at EOF the client half-closes, shows the rest, exits 0."""
    twistd, port = server
    result = tcpchat("127.0.0.1", str(port), stdin=b"/nick piper\r\n/who\n")
    assert result.returncode == 0, result
    assert lines(result.stdout) == [
        DEFAULT_GREETING,
        welcome("guest1"),
        "* you are now piper",
        "* 1 in #lobby:",
        "*   piper (idle 0s)",
        "Goodbye.",
    ]
    assert result.stderr == b""
    twistd.wait_for_output(r"piper \(127\.0\.0\.1:\d+\) disconnected")


def test_empty_stdin_still_shows_the_greeting(server: tuple[Process, int]) -> None:
    """
    With nothing to send (stdin is /dev/null), the client connects, shows,
    leaves: as a health check does, so the server never lets it into the
    room (--probe-grace), and it shows the greeting and the goodbye.
    """
    _, port = server
    result = tcpchat("127.0.0.1", str(port), stdin=b"")
    assert result.returncode == 0, result
    assert lines(result.stdout) == [DEFAULT_GREETING, "Goodbye."]


def test_nick_and_endpoint_string(server: tuple[Process, int]) -> None:
    """A Twisted endpoint string works as the address; --nick takes the name first."""
    _, port = server
    result = tcpchat("--nick", "alice", f"tcp:host=127.0.0.1:port={port}", "-m", "/who")
    assert result.returncode == 0, result
    assert lines(result.stdout)[2:] == [
        "* you are now alice",
        "* 1 in #lobby:",
        "*   alice (idle 0s)",
        "Goodbye.",
    ]


def test_server_closes(server: tuple[Process, int], tmp_path: Path) -> None:
    """The server stopping: its notice, then 'connection closed by server', status 0."""
    twistd, port = server
    client = Process([*CLIENT, "127.0.0.1", str(port)], tmp_path, stdin=True)
    try:
        client.wait_for_output(re.escape(welcome("guest1")))
        twistd.stop()
        assert client.wait() == 0
        assert client.lines[-2:] == ["server shutting down", "tcpchat: connection closed by server"]
        assert "Traceback" not in client.output
    finally:
        client.stop()


@pytest.mark.parametrize(("stop", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_stopped_by_a_signal(
    server: tuple[Process, int], tmp_path: Path, stop: signal.Signals, status: int
) -> None:
    """Ctrl-C in a pipe (SIGINT) or SIGTERM: a quiet end, status 128 + the signal."""
    twistd, port = server
    client = Process([*CLIENT, "127.0.0.1", str(port)], tmp_path, stdin=True)
    try:
        client.wait_for_output(re.escape(welcome("guest1")))
        client.popen.send_signal(stop)
        assert client.wait() == status
        assert client.lines == [DEFAULT_GREETING, welcome("guest1")]
        twistd.wait_for_output(r"guest1 \(127\.0\.0\.1:\d+\) disconnected")
    finally:
        client.stop()


def test_reconnect(tmp_path: Path) -> None:
    """
    --reconnect across a server restart: says it is reconnecting, says when
    it is back, takes its name again, and the chat goes on.
    """
    twistd, port = start_twistd(tmp_path, "--history", "0")
    client = Process(
        [*CLIENT, "--reconnect", "--nick", "phoenix", "127.0.0.1", str(port)], tmp_path, stdin=True
    )
    try:
        client.wait_for_output(r"\* you are now phoenix")
        twistd.stop()
        client.wait_for_output(r"tcpchat: connection closed by server")
        client.wait_for_output(rf"tcpchat: reconnecting to 127\.0\.0\.1:{port} in \d+\.\d s")
        twistd, _ = start_twistd(
            tmp_path, "--history", "0", "--port", str(port), "--interface", "127.0.0.1"
        )
        client.wait_for_output(rf"tcpchat: reconnected to 127\.0\.0\.1:{port}")
        wait_for(lambda: client.lines.count("* you are now phoenix") == 2, "the name again")
        client.send("/who")
        client.wait_for_output(r"\*   phoenix \(idle")
        client.close_stdin()
        assert client.wait() == 0
        assert "Traceback" not in client.output
    finally:
        client.stop()
        twistd.stop()


def self_signed(directory: Path) -> tuple[Path, Path, Path]:
    """A key and a self-signed certificate for 127.0.0.1, and a trust-roots folder for it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tcpchat test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_file, cert_file, roots = directory / "key.pem", directory / "cert.pem", directory / "roots"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    roots.mkdir()
    (roots / "ca.pem").write_bytes(cert_file.read_bytes())
    return key_file, cert_file, roots


def test_tls(tmp_path: Path) -> None:
    """
    tls:HOST:PORT with the server's certificate trusted: the chat works (and
    ends by the quiet time: TLS has no half-close).  Untrusted: a failure to
    connect, status 1.
    """
    key, cert, roots = (quoteStringArgument(str(path)) for path in self_signed(tmp_path))
    listen = f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"
    twistd, port = start_twistd(tmp_path, "--listen", listen, "--history", "0")
    try:
        trusted = tcpchat("-m", "/who", f"tls:127.0.0.1:{port}:trustRoots={roots}")
        assert trusted.returncode == 0, trusted
        assert lines(trusted.stdout)[-2:] == ["* 1 in #lobby:", "*   guest1 (idle 0s)"]
        untrusted = tcpchat("-m", "/who", f"tls:127.0.0.1:{port}")
        assert untrusted.returncode == 1
        assert untrusted.stdout == b""
        assert untrusted.stderr.decode() == (
            f"tcpchat: cannot connect to 127.0.0.1:{port}: TLS: certificate verify failed\n"
        )
    finally:
        twistd.stop()


# ---------------------------------------------------------------- failures


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port bound but not listening: connecting to it is refused."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    yield holder.getsockname()[1]
    holder.close()


def test_refused(closed_port: int) -> None:
    """Refused: one line on stderr, status 1, nothing on stdout, no traceback."""
    result = tcpchat("127.0.0.1", str(closed_port))
    assert result.returncode == 1
    assert result.stdout == b""
    assert result.stderr.decode() == (
        f"tcpchat: cannot connect to 127.0.0.1:{closed_port}: connection refused\n"
    )


def test_refused_endpoint_string(closed_port: int) -> None:
    """A refused endpoint string is named by its host and port in the message."""
    result = tcpchat(f"tcp:127.0.0.1:{closed_port}")
    assert result.returncode == 1
    assert result.stderr.decode().endswith(f"127.0.0.1:{closed_port}: connection refused\n")


@pytest.fixture
def unanswered_port() -> Iterator[int]:
    """
    A loopback listener whose accept queue is full: the kernel drops new
    connection requests, so a connect hangs until the client gives up.
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    yield port
    for filler in fillers:
        filler.close()
    listener.close()


def test_connect_timeout(unanswered_port: int) -> None:
    """--timeout: an unanswered connect gives up after that long, status 1."""
    started = time.monotonic()
    result = tcpchat("--timeout", "1", "127.0.0.1", str(unanswered_port))
    assert result.returncode == 1
    assert result.stderr.decode() == (
        f"tcpchat: cannot connect to 127.0.0.1:{unanswered_port}: timed out after 1 s\n"
    )
    assert time.monotonic() - started < DEADLINE / 2


def isolated() -> tuple[str, ...]:
    """Run in a network namespace of our own: no route anywhere, no DNS."""
    return (need("unshare"), "--user", "--map-root-user", "--net")


def test_network_unreachable() -> None:
    """No route to the server (loopback is down in a fresh namespace): status 1."""
    result = tcpchat("127.0.0.1", "5000", prefix=isolated())
    assert result.returncode == 1, result
    assert result.stderr.decode() == (
        "tcpchat: cannot connect to 127.0.0.1:5000: network is unreachable\n"
    )


def test_no_host_without_a_terminal_means_localhost() -> None:
    """Without a terminal and without HOST, the client goes to 127.0.0.1:65432."""
    result = tcpchat("-m", "hi", prefix=isolated())
    assert result.returncode == 1, result
    assert result.stderr.decode() == (
        "tcpchat: cannot connect to 127.0.0.1:65432: network is unreachable\n"
    )


def test_unresolvable_host() -> None:
    """A host name that does not resolve: status 1."""
    result = tcpchat("no-such-host.invalid", prefix=isolated())
    assert result.returncode == 1, result
    assert result.stderr.decode() == (
        "tcpchat: cannot connect to no-such-host.invalid:65432: host name not found\n"
    )


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["--line-ending", "cr", "h"], "invalid choice: 'cr'"),
        (["--timeout", "0", "h"], "--timeout: '0' is not a number of seconds"),
        (["h", "port"], "port 'port' is not a number from 1 to 65535"),
        (["h", "1", "2"], "unrecognized arguments: 2"),
        (["--encoding", "utf-16", "h"], "does not write ASCII as ASCII"),
        (["nosuchtype:x:y"], "bad endpoint 'nosuchtype:x:y'"),
    ],
)
def test_bad_arguments(argv: list[str], problem: str) -> None:
    """Bad arguments: the usage and the problem on stderr, status 2, no traceback."""
    result = tcpchat(*argv)
    assert result.returncode == 2
    assert result.stdout == b""
    error = result.stderr.decode()
    assert error.startswith("usage: tcpchat ")
    assert problem in error
    assert "Traceback" not in error


def test_help_and_version() -> None:
    """--help describes every option and exits 0; --version names the program."""
    result = tcpchat("--help")
    assert result.returncode == 0
    for option in ("--message", "--timeout", "--wait", "--line-ending", "--encoding"):
        assert option in result.stdout.decode()
    for option in ("--reconnect", "--nick", "HOST", "PORT"):
        assert option in result.stdout.decode()
    version = tcpchat("--version")
    assert (version.returncode, version.stdout) == (0, f"tcpchat {__version__}\n".encode())


# ---------------------------------------------------------------- a C server

C_SERVER = r"""
/* A classic tutorial server: one client; the greeting sent with sizeof, so
   its NUL goes out too; each reply padded to a fixed buffer with stale
   bytes after the NUL; a recv loop that prints each read and compares the
   raw buffer with "exit". */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(void) {
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    if (bind(listener, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(listener, 1) < 0) {
        perror("listen");
        return 1;
    }
    socklen_t size = sizeof(addr);
    getsockname(listener, (struct sockaddr *)&addr, &size);
    printf("listening on %d\n", ntohs(addr.sin_port));
    fflush(stdout);
    int client = accept(listener, NULL, NULL);
    char msg[] = "Connect succeed. Please send a message to me";
    send(client, msg, sizeof(msg), 0);
    char buf[1024];
    for (;;) {
        ssize_t n = recv(client, buf, sizeof(buf) - 1, 0);
        if (n <= 0) {
            printf("client gone\n");
            break;
        }
        buf[n] = '\0';
        printf("received %zd bytes: [%s]\n", n, buf);
        fflush(stdout);
        if (strcmp(buf, "exit") == 0) {
            printf("exit matched\n");
            break;
        }
        char reply[64] = "Message received";
        memcpy(reply + 20, "STALE GARBAGE", 13);
        send(client, reply, sizeof(reply), 0);
    }
    fflush(stdout);
    close(client);
    close(listener);
    return 0;
}
"""


@pytest.fixture
def c_server(tmp_path: Path) -> Iterator[tuple[Process, int]]:
    source = tmp_path / "server.c"
    source.write_text(C_SERVER)
    binary = tmp_path / "server"
    subprocess.run(
        [need("gcc"), "-Wall", "-Werror", "-o", str(binary), str(source)],
        check=True,
        timeout=DEADLINE,
    )
    process = Process([str(binary)], tmp_path)
    port = int(process.wait_for_output(r"listening on (\d+)").group(1))
    yield process, port
    process.stop()


def test_classic_c_server(c_server: tuple[Process, int]) -> None:
    """
    The greeting's NUL and a reply's padding never show; with --line-ending
    none each message arrives as its own read, so the server's raw compare
    with "exit" matches and it closes; status 0.
    """
    server, port = c_server
    result = tcpchat("--line-ending", "none", "-m", "hello", "-m", "exit", "127.0.0.1", str(port))
    assert result.returncode == 0, result
    assert result.stdout == f"{DEFAULT_GREETING}\nMessage received\n".encode()
    assert result.stderr == b""
    assert server.wait() == 0
    assert server.lines == [
        f"listening on {port}",
        "received 5 bytes: [hello]",
        "received 4 bytes: [exit]",
        "exit matched",
    ]


def test_c_server_sees_the_line_ending(c_server: tuple[Process, int]) -> None:
    """
    With the default LF the C server's raw compare fails ("exit\\n" is not
    "exit"), so the client ends the session itself: half-close, and the
    server's recv returns 0; status 0 all the same.
    """
    server, port = c_server
    result = tcpchat("-m", "exit", "--wait", "5", "127.0.0.1", str(port))
    assert result.returncode == 0, result
    assert result.stdout == f"{DEFAULT_GREETING}\nMessage received\n".encode()
    assert server.wait() == 0
    assert server.lines[1:] == ["received 5 bytes: [exit", "]", "client gone"]


# ---------------------------------------------------------------- ncat


class RawPeer:
    """A peer program whose stdin and stdout are kept as bytes, read by a thread."""

    def __init__(self, argv: list[str]) -> None:
        self.popen = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._data = b""
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        while chunk := self.popen.stdout.read1(4096):
            with self._lock:
                self._data += chunk

    @property
    def received(self) -> bytes:
        with self._lock:
            return self._data

    def send(self, data: bytes) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(data)
        self.popen.stdin.flush()

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(DEADLINE)


def test_ncat_peer(tmp_path: Path) -> None:
    """
    ncat -l on a UNIX socket, a Chinese Windows peer's way: GBK both ways
    with --encoding gbk, CRLF with --line-ending crlf, a NUL-ended line shown
    clean; ncat ending its side is 'connection closed by server', status 0.
    """
    sock = tmp_path / "chat.sock"
    peer = RawPeer([need("ncat"), "-l", "-U", str(sock)])
    client: Process | None = None
    try:
        wait_for(sock.exists, "ncat's socket")
        client = Process(
            [*CLIENT, "--encoding", "gbk", "--line-ending", "crlf", f"unix:{sock}"],
            tmp_path,
            stdin=True,
        )
        peer.send("你好，这里是 ncat\n".encode("gbk") + "第二行".encode("gbk") + b"\0")
        client.wait_for_output("第二行")
        client.send("再见")
        wait_for(lambda: peer.received == "再见\r\n".encode("gbk"), "the client's line at ncat")
        assert peer.popen.stdin is not None
        peer.popen.stdin.close()
        assert client.wait() == 0
        assert client.lines == [
            "你好，这里是 ncat",
            "第二行",
            "tcpchat: connection closed by server",
        ]
        assert peer.popen.wait(DEADLINE) == 0
    finally:
        if client is not None:
            client.stop()
        peer.stop()
