"""
Security: TLS beside plain listeners (openssl s_client as the real peer),
logins through twisted.cred, operators' kicks and bans, --allow/--deny.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactor
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from tests.certs import make_certs, ssl_listen
from tests.helpers import (
    DEADLINE,
    Client,
    Process,
    installed_script,
    start_twistd,
    wait_for,
    welcome,
)
from twisted_tcpchat.core.config import DEFAULT_GREETING, ChatConfig
from twisted_tcpchat.core.limits import AccessList, parse_networks
from twisted_tcpchat.core.login import redact
from twisted_tcpchat.core.server import ChatServer
from twisted_tcpchat.frontends.console import Console
from twisted_tcpchat.frontends.tcp import ChatFactory
from twisted_tcpchat.tap import Options

# ------------------------------------------------------------------ TLS, real


def openssl() -> str:
    path = shutil.which("openssl")
    if path is None:
        pytest.fail("openssl is not installed (.ci/run installs it)")
    return path


def s_client(port: int, *args: str, data: bytes = b"", wait: float = 1.0) -> str:
    """Run openssl s_client against 127.0.0.1:PORT, feeding it DATA; return all it printed."""
    process = subprocess.Popen(
        [openssl(), "s_client", "-connect", f"127.0.0.1:{port}", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    out, _ = process.communicate(data, timeout=DEADLINE)
    return out.decode("utf-8", "replace")


@pytest.fixture
def tls_server(tmp_path: Path):  # type: ignore[no-untyped-def]
    certs = make_certs(tmp_path)
    argv = [
        "--listen",
        ssl_listen(certs),
        "--listen",
        "tcp:0:interface=127.0.0.1",
        "--tls-timeout",
        "1",
    ]
    process = Process([installed_script("twistd"), "-n", "--pidfile=", "tcpchat", *argv], tmp_path)
    process.wait_for_output(r"listening on 127\.0\.0\.1:\d+ \(tcp:")
    ports = re.findall(r"listening on 127\.0\.0\.1:(\d+) \((ssl|tcp):", process.output)
    by_kind = {kind: int(port) for port, kind in ports}
    yield process, certs, by_kind["ssl"], by_kind["tcp"]
    process.stop()


def test_tls_beside_plain(tls_server) -> None:  # type: ignore[no-untyped-def]
    """s_client verifies our certificate against the private CA and chats; nc uses plain TCP."""
    server, certs, tls_port, tcp_port = tls_server
    out = s_client(
        tls_port,
        "-CAfile",
        str(certs.ca),
        "-verify_return_error",
        "-verify_ip",
        "127.0.0.1",
        "-quiet",
        data=b"hello over TLS\n/quit\n",
    )
    assert DEFAULT_GREETING in out, out
    assert welcome("guest1") in out, out
    server.wait_for_output(r"guest1 \(127\.0\.0\.1:\d+\) sent 14 bytes: hello over TLS")
    plain = subprocess.run(
        ["nc", "-N", "127.0.0.1", str(tcp_port)],
        input=b"plain\n",
        capture_output=True,
        timeout=DEADLINE,
        check=True,
    )
    assert plain.stdout.startswith(DEFAULT_GREETING.encode())


def test_tls_1_1_refused(tls_server) -> None:  # type: ignore[no-untyped-def]
    _, _, tls_port, _ = tls_server
    out = s_client(tls_port, "-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0")
    assert "alert protocol version" in out, out
    assert DEFAULT_GREETING not in out


def test_renegotiation_refused(tls_server) -> None:  # type: ignore[no-untyped-def]
    """A TLS 1.2 client asking to renegotiate ('R' in s_client) is refused."""
    _, certs, tls_port, _ = tls_server
    out = s_client(tls_port, "-tls1_2", "-CAfile", str(certs.ca), data=b"R\n")
    assert "RENEGOTIATING" in out, out
    assert "no renegotiation" in out, out


def test_unfinished_handshake_dropped(tls_server) -> None:  # type: ignore[no-untyped-def]
    """A client that never finishes the handshake is dropped by the timeout, never greeted."""
    server, _, tls_port, tcp_port = tls_server
    watcher = socket.create_connection(("127.0.0.1", tcp_port), timeout=DEADLINE)
    watcher_file = watcher.makefile("rb")
    assert watcher_file.readline().startswith(DEFAULT_GREETING.encode())
    watcher_file.readline()
    silent = socket.create_connection(("127.0.0.1", tls_port), timeout=DEADLINE)
    with contextlib.suppress(ConnectionResetError):  # an abort may arrive as a reset
        assert silent.recv(100) == b""
    server.wait_for_output(r"did not finish the TLS handshake in 1 s; dropped")
    watcher.sendall(b"/who\n")
    assert watcher_file.readline() == b"* 1 in #lobby:\r\n", "the silent client never joined"
    silent.close()
    watcher.close()


class TLSOptionTests(SynchronousTestCase):
    def test_sslmethod_refused(self) -> None:
        with self.assertRaises(SystemExit) as e:
            Options(reactor=MemoryReactor()).parseOptions(
                ["--listen", "ssl:0:privateKey=k.pem:sslmethod=TLSv1_METHOD"]
            )
        self.assertIn("sslmethod= would bypass the TLS 1.2 minimum", str(e.exception.code))

    def test_missing_key_file_is_one_line(self) -> None:
        with self.assertRaises(SystemExit) as e:
            Options(reactor=MemoryReactor()).parseOptions(
                ["--listen", "ssl:0:privateKey=/nonexistent/key.pem"]
            )
        text = str(e.exception.code)
        self.assertIn("--listen: bad endpoint 'ssl:0:privateKey=/nonexistent/key.pem", text)
        self.assertIn("No such file or directory", text)
        self.assertNotIn("\n", text)


# ---------------------------------------------------------------- logins


def login_factory(clock: Clock, **config: object) -> ChatFactory:
    checker = InMemoryUsernamePasswordDatabaseDontUse(alice=b"wonderland", bob=b"builder")
    server = ChatServer(ChatConfig(**config), clock, checkers=[checker])  # type: ignore[arg-type]
    return ChatFactory(server=server, clock=clock)


def Line(factory: ChatFactory, host: str = "192.0.2.7", port: int = 4000) -> Client:
    """A client from HOST:PORT (the login tests care about addresses)."""
    return Client(factory, IPv4Address("TCP", host, port))


class LoginTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.factory = login_factory(self.clock, operators=("alice",))

    def test_a_login_may_not_take_the_consoles_name(self) -> None:
        """A user called like the console (or 'server') stays at the login: nobody speaks as it."""
        checker = InMemoryUsernamePasswordDatabaseDontUse(boss=b"pw", server=b"pw")
        server = ChatServer(ChatConfig(console_name="boss"), self.clock, checkers=[checker])
        factory = ChatFactory(server=server, clock=self.clock)
        for name in ("boss", "server"):
            client = Line(factory)
            client.new_lines()
            client.send(f"/login {name} pw")
            self.assertEqual(
                client.new_lines(),
                [f"error: your login cannot be a chat name ({name!r} is reserved)"],
            )

    def test_logins_and_classic_modes_do_not_go_together(self) -> None:
        """--classic and --once have no logins: asking for both is refused, not ignored."""
        checker = InMemoryUsernamePasswordDatabaseDontUse(alice=b"wonderland")
        for mode in ({"classic": True}, {"once": True}):
            with self.assertRaises(ValueError):
                ChatServer(ChatConfig(**mode), self.clock, checkers=[checker])  # type: ignore[arg-type]
        with self.assertRaises(SystemExit) as refused:
            Options().parseOptions(["--classic", "--auth", "memory:alice:wonderland"])
        self.assertIn("--auth: --classic and --once have no logins", str(refused.exception))

    def test_login_needed_before_talking(self) -> None:
        guest = Line(self.factory)
        self.assertEqual(
            guest.new_lines(),
            [DEFAULT_GREETING, "* this server needs a login: /login NAME PASSWORD"],
        )
        other = Line(self.factory, port=4001)
        other.send("/login bob builder")
        other.new_lines()
        guest.send("hello?")
        self.assertEqual(guest.new_lines(), ["error: log in first: /login NAME PASSWORD"])
        self.assertEqual(other.new_lines(), [], "nothing relayed before login")

    def test_right_password_joins_with_login_name(self) -> None:
        bob = Line(self.factory, port=4001)
        bob.send("/login bob builder")
        bob.new_lines()
        alice = Line(self.factory)
        alice.new_lines()
        alice.send("/login alice wonderland")
        self.assertEqual(alice.new_lines(), [welcome("alice")])
        self.assertEqual(bob.new_lines(), ["* alice joined"])
        alice.send("hi bob")
        self.assertEqual(bob.new_lines(), ["<alice> hi bob"])

    def test_wrong_password_one_line_then_throttled(self) -> None:
        """Each failure doubles the wait before the next try: 1 s, 2 s, 4 s ..."""
        mallory = Line(self.factory)
        mallory.new_lines()
        mallory.send("/login alice guess1")
        self.assertEqual(mallory.new_lines(), ["error: wrong name or password"])
        mallory.send("/login alice guess2")
        self.assertEqual(
            mallory.new_lines(),
            ["error: too many failed logins from your address; try again in 1 s"],
        )
        self.clock.advance(1)
        mallory.send("/login alice guess3")
        self.assertEqual(mallory.new_lines(), ["error: wrong name or password"])
        self.clock.advance(1.5)
        mallory.send("/login alice guess4")
        self.assertEqual(
            mallory.new_lines(),
            ["error: too many failed logins from your address; try again in 1 s"],
        )
        self.clock.advance(0.5)
        mallory.send("/login alice wonderland")
        self.assertEqual(mallory.new_lines(), [welcome("alice")])

    def test_throttle_is_per_address_across_connections(self) -> None:
        first = Line(self.factory, port=1)
        first.send("/login bob nope")
        second = Line(self.factory, port=2)
        second.new_lines()
        second.send("/login bob builder")
        self.assertEqual(
            second.new_lines(),
            ["error: too many failed logins from your address; try again in 1 s"],
        )
        elsewhere = Line(self.factory, host="192.0.2.8")
        elsewhere.new_lines()
        elsewhere.send("/login bob builder")
        self.assertEqual(elsewhere.new_lines(), [welcome("bob")])

    def test_passwords_never_logged(self) -> None:
        with capturedLogs() as events:
            one = Line(self.factory)
            one.send("/login alice s3cr3t-wrong")
            one.send("/login alice s3cr3t-again")
            two = Line(self.factory, host="192.0.2.9")
            two.send("/login alice wonderland")
        text = "\n".join(formatEvent(e) for e in events)
        self.assertNotIn("s3cr3t", text)
        self.assertNotIn("wonderland", text)
        self.assertIn("/login alice ********", text)
        self.assertIn("failed to log in as alice", text)
        self.assertIn("alice (192.0.2.9:4000) logged in as an operator", text)

    def test_redact(self) -> None:
        self.assertEqual(redact("/login a b c"), "/login a ********")
        self.assertEqual(redact("/LOGIN a b"), "/login a ********")
        self.assertEqual(redact("hello /login a b"), "hello /login a b")

    def test_same_login_twice(self) -> None:
        Line(self.factory).send("/login bob builder")
        again = Line(self.factory, host="192.0.2.8")
        again.new_lines()
        again.send("/login bob builder")
        self.assertEqual(again.new_lines(), ["error: the name 'bob' is taken"])
        again.send("talking?")
        self.assertEqual(again.new_lines(), ["error: log in first: /login NAME PASSWORD"])

    def test_usage_help_and_quit_before_login(self) -> None:
        guest = Line(self.factory)
        guest.new_lines()
        guest.send("/login alice")
        guest.send("/help")
        guest.send("/quit later")
        self.assertEqual(
            guest.new_lines(),
            [
                "error: usage: /login NAME PASSWORD",
                "* log in first: /login NAME PASSWORD; /quit leaves; /events json|text",
                "Goodbye.",
            ],
        )
        self.assertTrue(guest.transport.disconnecting)

    def test_logged_in_users_keep_their_login_names(self) -> None:
        """With logins, /nick is refused: nobody can take another user's name."""
        mallory = Line(self.factory)
        mallory.send("/login bob builder")
        mallory.new_lines()
        mallory.send("/nick alice")
        self.assertEqual(
            mallory.new_lines(), ["error: on this server your name is your login name"]
        )
        alice = Line(self.factory, host="192.0.2.9")
        alice.new_lines()
        alice.send("/login alice wonderland")
        self.assertEqual(alice.new_lines(), [welcome("alice")])

    def test_passwords_redacted_whatever_the_spacing_or_encoding(self) -> None:
        factory = login_factory(self.clock, encoding="utf-8")
        with capturedLogs() as events:
            Line(factory).send(b"\t/login alice tabbed-secret\n")
            Line(factory, host="192.0.2.8").send(b"/login\talice\tother-secret\n")
            Line(factory, host="192.0.2.9").send(b"/login alice caf\xe9-latin1-secret\n")
        text = "\n".join(formatEvent(e) for e in events)
        self.assertNotIn("secret", text)
        self.assertEqual(text.count("/login alice ********"), 3)

    def test_throttle_survives_many_failures(self) -> None:
        from twisted_tcpchat.core.login import Logins

        logins = Logins([InMemoryUsernamePasswordDatabaseDontUse(a=b"b")])
        logins._failures["192.0.2.1/32"] = (5000, 0.0)
        self.assertEqual(logins.wait("192.0.2.1", 1.0), Logins.MAX_WAIT - 1.0)


# ---------------------------------------------------------------- operators


class OperatorTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.factory = login_factory(self.clock, operators=("alice",))
        self.alice = Line(self.factory, host="192.0.2.1")
        self.alice.send("/login alice wonderland")
        self.bob = Line(self.factory, host="192.0.2.2")
        self.bob.send("/login bob builder")
        self.alice.new_lines()
        self.bob.new_lines()

    def test_operator_kicks(self) -> None:
        self.alice.send("/kick bob calm down")
        self.assertEqual(self.bob.new_lines(), ["* you were kicked by alice: calm down"])
        self.assertTrue(self.bob.transport.disconnecting)
        self.assertEqual(self.alice.new_lines(), ["* bob left (kicked by alice: calm down)"])

    def test_non_operator_cannot_kick_or_ban(self) -> None:
        self.bob.send("/kick alice")
        self.bob.send("/ban alice")
        self.bob.send("/bans")
        self.assertEqual(self.bob.new_lines(), ["error: only operators may do that"] * 3)
        self.assertFalse(self.alice.transport.disconnecting)

    def test_ban_by_name_for_a_while(self) -> None:
        self.alice.send("/ban bob 10m")
        self.assertEqual(
            self.alice.new_lines(),
            ["* banned 192.0.2.2/32 for 10m", "* bob left (banned by alice)"],
        )
        self.assertEqual(self.bob.new_lines(), ["* you were banned by alice for 10m"])
        self.assertTrue(self.bob.transport.disconnecting)
        back = Line(self.factory, host="192.0.2.2", port=5000)
        self.assertEqual(back.new_lines(), ["error: your address is banned for another 10m"])
        self.assertTrue(back.transport.disconnecting)
        self.clock.advance(601)
        later = Line(self.factory, host="192.0.2.2", port=5001)
        self.assertFalse(later.transport.disconnecting)

    def test_ban_network_until_restart_and_unban(self) -> None:
        self.alice.send("/ban 192.0.2.0/30")
        self.assertIn("* banned 192.0.2.0/30 until the server restarts", self.alice.new_lines())
        self.assertTrue(self.bob.transport.disconnecting)
        self.assertFalse(self.alice.transport.disconnecting, "an operator does not ban herself")
        self.alice.send("/bans")
        self.assertEqual(self.alice.new_lines(), ["* 1 ban", "*   192.0.2.0/30 (until restart)"])
        self.assertIn(
            "banned until the server restarts", Line(self.factory, host="192.0.2.3").new_lines()[0]
        )
        self.alice.send("/unban 192.0.2.0/30")
        self.assertEqual(self.alice.new_lines(), ["* lifted the ban on 192.0.2.0/30"])
        self.assertFalse(Line(self.factory, host="192.0.2.3").transport.disconnecting)

    def test_ban_errors(self) -> None:
        self.alice.send("/ban nobody")
        self.alice.send("/ban bob soon")
        self.alice.send("/unban 10.0.0.1")
        self.assertEqual(
            self.alice.new_lines(),
            [
                "error: no one here is named 'nobody'",
                "error: 'soon' is not a duration (like 90s, 15m, 2h, 7d); usage: "
                "/ban NAME|ADDRESS [DURATION]",
                "error: '10.0.0.1' is not banned (/bans lists the bans)",
            ],
        )

    def test_ban_holds_for_a_connection_waiting_at_the_login(self) -> None:
        """A banned user cannot get back in through a second connection left at the login."""
        spare = Line(self.factory, host="192.0.2.2", port=4001)
        spare.new_lines()
        self.alice.send("/ban bob")
        spare.send("/login bob builder")
        self.assertEqual(
            spare.new_lines(), ["error: your address is banned until the server restarts"]
        )
        self.assertTrue(spare.transport.disconnecting)

    def test_console_bans(self) -> None:
        console = Console(self.factory.server)
        from twisted.internet.testing import StringTransport

        console.makeConnection(StringTransport())
        self.bob.new_lines()
        console.dataReceived(b"/ban bob 1h\n")
        self.assertEqual(self.bob.new_lines(), ["* you were banned by server for 1h"])

    def test_op_option_needs_auth(self) -> None:
        with self.assertRaises(SystemExit) as e:
            Options(reactor=MemoryReactor()).parseOptions(["--op", "alice"])
        self.assertIn("--op needs --auth", str(e.exception.code))

    def test_auth_options(self) -> None:
        options = Options(reactor=MemoryReactor())
        options.parseOptions(["--auth", "memory:alice:pw", "--op", "alice"])
        self.assertEqual(len(options["credCheckers"]), 1)
        self.assertEqual(options["config"].operators, ("alice",))
        service = options.getService()
        self.assertIsNotNone(service.factory.server.logins)

    def test_bad_auth_option(self) -> None:
        with self.assertRaises(SystemExit) as e:
            Options(reactor=MemoryReactor()).parseOptions(["--auth", "bogus:x"])
        self.assertIn("Auth plugin not recognized: bogus", str(e.exception.code))


# ---------------------------------------------------------------- access


class AccessListTests(SynchronousTestCase):
    def test_deny(self) -> None:
        rules = AccessList(deny=parse_networks(["10.0.0.0/8"]))
        self.assertFalse(rules.permits("10.1.2.3"))
        self.assertTrue(rules.permits("192.0.2.1"))

    def test_allow_only(self) -> None:
        rules = AccessList(allow=parse_networks(["192.0.2.0/24", "2001:db8::/32"]))
        self.assertTrue(rules.permits("192.0.2.9"))
        self.assertTrue(rules.permits("2001:db8::1"))
        self.assertFalse(rules.permits("198.51.100.1"))
        self.assertTrue(rules.permits("unix"))

    def test_allow_wins_over_deny(self) -> None:
        rules = AccessList(
            allow=parse_networks(["127.0.0.1"]), deny=parse_networks(["127.0.0.0/8"])
        )
        self.assertTrue(rules.permits("127.0.0.1"))
        self.assertFalse(rules.permits("127.0.0.2"))


def connect_from(source: str, port: int) -> list[bytes]:
    """Connect from a loopback source address; return the first two lines (or fewer)."""
    sock = socket.create_connection(
        ("127.0.0.1", port), timeout=DEADLINE, source_address=(source, 0)
    )
    with sock, sock.makefile("rb") as reader:
        lines = [reader.readline(), reader.readline()]
    return [line for line in lines if line]


def test_deny_a_second_loopback_address(tmp_path: Path) -> None:
    """--deny 127.0.0.2: a client from 127.0.0.2 gets one line and is closed; 127.0.0.1 chats."""
    server, port = start_twistd(tmp_path, "--deny", "127.0.0.2")
    try:
        assert connect_from("127.0.0.2", port) == [
            b"error: your address is not allowed on this server\r\n"
        ]
        assert connect_from("127.0.0.1", port)[0] == DEFAULT_GREETING.encode() + b"\r\n"
        server.wait_for_output(r"127\.0\.0\.2:\d+ refused: error: your address is not allowed")
    finally:
        server.stop()


def test_allow_wins_over_deny_for_real(tmp_path: Path) -> None:
    server, port = start_twistd(
        tmp_path,
        "--allow",
        "127.0.0.2",
        "--deny",
        "127.0.0.0/8",
    )
    try:
        assert connect_from("127.0.0.2", port)[0] == DEFAULT_GREETING.encode() + b"\r\n"
        assert connect_from("127.0.0.1", port) == [
            b"error: your address is not allowed on this server\r\n"
        ]
    finally:
        server.stop()


def test_login_with_nc_against_twistd(tmp_path: Path) -> None:
    """--auth memory:... with a real nc client: log in, talk, be named by the login."""
    server, port = start_twistd(tmp_path, "--auth", "memory:carol:pw123")
    try:
        result = subprocess.run(
            ["nc", "-N", "127.0.0.1", str(port)],
            input=b"/login carol pw123\nhello as carol\n/quit\n",
            capture_output=True,
            timeout=DEADLINE,
            check=True,
        )
        assert welcome("carol").encode() in result.stdout
        server.wait_for_output(r"carol \(127\.0\.0\.1:\d+\) sent 14 bytes: hello as carol")
        assert "pw123" not in server.output
    finally:
        server.stop()


def test_wait_for_is_used() -> None:
    """(helpers) wait_for fails with a message naming what it waited for."""
    with pytest.raises(AssertionError, match="waiting for nothing"):
        wait_for(lambda: False, "nothing", timeout=0.05)


def test_denied_address_gets_no_tls_handshake(tmp_path: Path) -> None:
    """--deny applies before TLS: a denied client is cut off at once, with no handshake."""
    certs = make_certs(tmp_path)
    server, port = start_twistd(tmp_path, "--listen", ssl_listen(certs), "--deny", "127.0.0.2")
    try:
        sock = socket.create_connection(
            ("127.0.0.1", port), timeout=DEADLINE, source_address=("127.0.0.2", 0)
        )
        with sock, contextlib.suppress(ConnectionResetError):
            sock.sendall(b"\x16\x03\x01\x00\x05hello")
            assert sock.recv(100) == b""
        server.wait_for_output(r"127\.0\.0\.2:\d+ refused before TLS: error: your address is not")
    finally:
        server.stop()
