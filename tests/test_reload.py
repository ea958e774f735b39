"""
Reloading without dropping anyone (issue 17), in memory: the --config
file and its refusals, what a reload changes for new connections while
connected clients keep theirs, the --auth file: snapshot, TLS settings read
again, systemd's RELOADING=1/READY=1, and which SIGHUP stops and which
reloads.  (With a real twistd, TLS clients and a terminal:
tests/test_reload_twistd.py.)
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from OpenSSL import SSL
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.trial.unittest import SynchronousTestCase

from tests.certs import make_certs
from tests.helpers import Client, tcpchat_log, troubles_logged, welcome
from tests.test_tap import OptionsTests, parse
from twisted_tcpchat.authfile import AuthFile, read_users, users_change
from twisted_tcpchat.core.config import ChatConfig, config_changes
from twisted_tcpchat.core.limits import Admission, parse_networks
from twisted_tcpchat.core.server import ChatServer
from twisted_tcpchat.frontends.tcp import ChatFactory
from twisted_tcpchat.frontends.tls import ReloadableTLS, load_tls
from twisted_tcpchat.service import ChatService
from twisted_tcpchat.tap import Hangup, Options


def temp_dir(case: SynchronousTestCase) -> Path:
    """A directory of the test's own, removed after it."""
    path = Path(tempfile.mkdtemp(prefix="tcpchat-reload-"))
    case.addCleanup(shutil.rmtree, path, ignore_errors=True)
    return path


def peer(host: str, port: int = 4000) -> IPv4Address:
    return IPv4Address("TCP", host, port)


class SettingsFileTests(SynchronousTestCase):
    """--config PATH: the settings that can change live, checked as the command line's."""

    def setUp(self) -> None:
        self.path = temp_dir(self) / "tcpchat.toml"

    def write(self, text: str) -> str:
        self.path.write_text(text)
        return str(self.path)

    def assertRefused(self, argv: list[str], message: str) -> None:
        """The options are refused with one line that holds C{message}, about the file."""
        text = OptionsTests.assertRefused(self, argv, message)  # type: ignore[arg-type]
        self.assertTrue(text.startswith("tcpchat: --config "), text)

    def test_settings_from_the_file(self) -> None:
        """Its keys are the long options; lists of networks are TOML lists."""
        path = self.write(
            'greeting = "hi {peer}"\nexit-word = "bye"\nflood-rate = 5\nflood-burst = 3\n'
            'allow = ["10.0.0.0/8", "::1"]\nexempt = []\nmax-clients = 100\nidle-timeout = 1.5\n'
        )
        config = parse("--config", path)["config"]
        self.assertEqual(
            config,
            ChatConfig(
                probe_grace=0.25,
                greeting="hi {peer}",
                exit_word="bye",
                flood_rate=5.0,
                flood_burst=3,
                allow=("10.0.0.0/8", "::1"),
                exempt=(),
                max_clients=100,
                idle_timeout=1.5,
            ),
        )

    def test_unknown_key(self) -> None:
        self.assertRefused(
            ["--config", self.write("flod-rate = 5\n")],
            "'flod-rate' is not a setting that can change while the server runs (those are: "
            "greeting, exit-word,",
        )

    def test_a_key_that_needs_a_restart(self) -> None:
        """A real option that cannot change live is named, with where it belongs."""
        self.assertRefused(
            ["--config", self.write('default-room = "hall"\n')],
            "default-room cannot change while the server runs; give --default-room on the "
            "command line (a change needs a restart)",
        )

    def test_a_key_also_on_the_command_line(self) -> None:
        """One place for each setting, whatever spelling the command line used."""
        path = self.write("flood-rate = 5\n")
        for given in (["--flood-rate", "3"], ["--flood-r", "3"]):
            self.assertRefused(
                ["--config", path, *given],
                "flood-rate is given on the command line too (--flood-rate); set it in one place",
            )
        self.assertRefused(
            ["-g", "hello", "--config", self.write('greeting = "hi"\n')],
            "greeting is given on the command line too (--greeting)",
        )

    def test_bad_values(self) -> None:
        """Values go through the command line's checks, and are said to come from the file."""
        for text, message in (
            ("flood-rate = 0\n", ": flood-rate: '0' is not a number more than 0"),
            ('flood-burst = "many"\n', ": flood-burst: 'many' is not a whole number at least 1"),
            ("flood-rate = true\n", ": flood-rate: True is not a number"),
            ('allow = "10.0.0.0/8"\n', ": allow: '10.0.0.0/8' is not a list of networks, like [\""),
            ('deny = ["10.0.0.0/33"]\n', ": deny: '10.0.0.0/33' is not an IPv4 or IPv6 network"),
            ("greeting = 3\n", ": greeting: 3 is not text"),
            ('greeting = "{nope}"\n', ": greeting: "),
            ("flood rate = 5\n", ": not TOML: "),
        ):
            self.assertRefused(["--config", self.write(text)], message)

    def test_a_file_that_is_not_utf8_is_named(self) -> None:
        self.path.write_bytes(b'greeting = "caf\xe9"\n')
        self.assertRefused(["--config", str(self.path)], f"--config {self.path}: not UTF-8 text")

    def test_exempt_none_as_on_the_command_line(self) -> None:
        options = parse("--config", self.write('exempt = ["none"]\n'))
        self.assertEqual(options["config"].exempt, ())

    def test_an_unreadable_file(self) -> None:
        self.assertRefused(
            ["--config", str(self.path)], f"--config {self.path}: cannot read it: No such file"
        )

    def test_reread(self) -> None:
        """reread_config reads the file again; a broken file is one line (ValueError)."""
        path = self.write("flood-rate = 5\n")
        options = parse("--config", path, "--greeting", "hi")
        self.write("flood-rate = 7\n")
        self.assertEqual(options.reread_config(), replace(options["config"], flood_rate=7.0))
        self.write("per-address = 0\n")
        with self.assertRaises(ValueError) as e:
            options.reread_config()
        self.assertEqual(
            str(e.exception),
            f"--config {path}: per-address: '0' is not a whole number at least 1",
        )
        # A key removed from the file is the command line's (or the default) again.
        self.write("")
        self.assertEqual(options.reread_config(), replace(options["config"], flood_rate=2.0))

    def test_the_readme_example(self) -> None:
        """The README's --config example is a file the server takes."""
        readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
        example = readme.split("```toml\n", 1)[1].split("```", 1)[0]
        config = parse("--config", self.write(example))["config"]
        self.assertEqual((config.deny, config.per_address), (("203.0.113.0/24",), 4))

    def test_help_lists_it_under_operations(self) -> None:
        text = Options().getUsage(width=100)
        operations = text[text.index("Operations:") :]
        self.assertIn("--config=", operations)


class ChangesTests(SynchronousTestCase):
    def test_each_change_in_a_phrase(self) -> None:
        old = ChatConfig(allow=("10.0.0.0/8", "192.0.2.0/24"))
        new = replace(
            old,
            greeting="hello",
            flood_rate=5.0,
            allow=("10.0.0.1/8", "198.51.100.0/24"),
            exit_word="bye",
            max_clients=10,
        )
        self.assertEqual(
            config_changes(old, new),
            [
                "greeting changed",
                "exit-word 'exit' → 'bye'",
                "allow: +198.51.100.0/24 -192.0.2.0/24",
                "max-clients (the open-file limit) → 10",
                "flood-rate 2 → 5",
            ],
        )
        self.assertEqual(config_changes(old, old), [])


def chat(config: ChatConfig, clock: Clock, **kwargs: Any) -> tuple[ChatService, ChatFactory]:
    """A chat service that listens nowhere, and its factory for StringTransport clients."""
    server = ChatServer(config, clock, **kwargs)
    factory = ChatFactory(server=server, clock=clock)
    return ChatService(factory, [], MemoryReactor()), factory


class ReconfigureTests(SynchronousTestCase):
    """A reload's new settings are for new connections; nobody connected is dropped."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.service, self.factory = chat(
            ChatConfig(greeting="old greeting", per_address=2, idle_timeout=10), self.clock
        )
        self.server = self.factory.server

    def test_new_connections_get_the_new_settings_old_ones_keep_theirs(self) -> None:
        before = Client(self.factory, peer("192.0.2.7"))
        self.assertEqual(before.new_lines(), ["old greeting", welcome("guest1")])
        new = replace(self.server.config, greeting="new greeting", exit_word="bye", idle_timeout=0)
        self.assertTrue(self.service.reload(new))
        after = Client(self.factory, peer("192.0.2.8"))
        self.assertEqual(after.new_lines()[0], "new greeting")
        # The connected client keeps its exit word and its idle timeout.
        self.clock.advance(11)
        self.assertEqual(before.new_lines()[-1], "error: idle for 10 s; disconnecting")
        after.send("bye")
        self.assertEqual(after.new_lines()[-1], "Goodbye.")

    def test_limits_apply_to_the_next_connection(self) -> None:
        """A lower per-address limit refuses the next one; the two connected stay."""
        first = Client(self.factory, peer("192.0.2.7", 1))
        second = Client(self.factory, peer("192.0.2.7", 2))
        self.service.reload(replace(self.server.config, per_address=1))
        third = Client(self.factory, peer("192.0.2.7", 3))
        self.assertIn(
            "too many connections from your address (the limit is 1)", third.raw().decode()
        )
        self.assertTrue(third.transport.disconnecting)
        first.new_lines()
        second.send("still here")
        self.assertEqual(first.new_lines(), ["<guest2> still here"])

    def test_a_newly_denied_address_stays_and_the_log_says_so(self) -> None:
        logged = tcpchat_log(self)
        inside = Client(self.factory, peer("203.0.113.5"))
        self.service.reload(replace(self.server.config, deny=("203.0.113.0/24",)))
        self.assertIn(
            "tcpchat: reloaded: deny: +203.0.113.0/24; 1 client connected from addresses no "
            "longer allowed in stay (/kick or /ban removes them)",
            logged,
        )
        self.assertFalse(inside.transport.disconnecting)
        refused = Client(self.factory, peer("203.0.113.6"))
        self.assertIn("your address is not allowed", refused.raw().decode())

    def test_settings_that_need_a_restart_are_refused_whole(self) -> None:
        """One bad part refuses all: the greeting does not change either."""
        logged = tcpchat_log(self)
        new = replace(self.server.config, greeting="new", default_room="hall")
        self.assertFalse(self.service.reload(new))
        self.assertEqual(self.server.config.greeting, "old greeting")
        self.assertEqual(
            logged,
            [
                "tcpchat: reload refused, the old settings stay: default-room: cannot change "
                "while the server runs (a restart can)"
            ],
        )

    def test_nothing_changed_is_one_line(self) -> None:
        logged = tcpchat_log(self)
        self.assertTrue(self.service.reload(self.server.config))
        self.assertTrue(self.service.reload())
        self.assertEqual(logged, ["tcpchat: reloaded: nothing changed"] * 2)

    def test_max_clients_back_to_the_open_file_limit(self) -> None:
        sized = self.server.max_clients
        self.service.reload(replace(self.server.config, max_clients=1))
        self.assertEqual(self.server.max_clients, 1)
        self.service.reload(replace(self.server.config, max_clients=None))
        self.assertEqual(self.server.max_clients, sized)

    def test_a_new_message_size_for_new_websockets(self) -> None:
        from twisted_tcpchat.frontends.web import WebFactory

        web = WebFactory(self.server, self.clock)
        self.service.reload(replace(self.server.config, max_unterminated=20000))
        web.buildProtocol(peer("192.0.2.7"))
        self.assertEqual(web.maxMessagePayloadSize, 20000)
        self.assertEqual(web.maxFramePayloadSize, 20000)


class AdmissionTests(SynchronousTestCase):
    def test_new_exempt_networks_recount_who_is_connected(self) -> None:
        """After a change of exempt networks, each open connection's release still matches."""
        admission = Admission(1, 100, 60.0, parse_networks(["192.0.2.0/24"]))
        self.assertIsNone(admission.admit("192.0.2.7", 0.0))  # exempt: not counted
        admission.reconfigure(1, 100, (), ["192.0.2.7"])
        self.assertIsNotNone(admission.admit("192.0.2.7", 1.0))  # now counted: full
        admission.release("192.0.2.7")
        self.assertIsNone(admission.admit("192.0.2.7", 2.0))
        admission.reconfigure(1, 100, parse_networks(["192.0.2.0/24"]), ["192.0.2.7"])
        admission.release("192.0.2.7")
        admission.reconfigure(1, 100, (), [])
        self.assertIsNone(admission.admit("192.0.2.7", 3.0))


class AuthFileTests(SynchronousTestCase):
    """--auth file: is read at the start and at a reload, never at a login."""

    def setUp(self) -> None:
        self.path = temp_dir(self) / "users.txt"
        self.path.write_text("# users\n\nalice:wonderland\nbob:builder\n")
        self.checker = AuthFile(str(self.path))
        self.clock = Clock()
        self.service, self.factory = chat(ChatConfig(), self.clock, checkers=[self.checker])

    def login(self, name: str, password: str, port: int = 4000) -> list[str]:
        client = Client(self.factory, peer("192.0.2.7", port))
        client.new_lines()
        client.send(f"/login {name} {password}")
        return client.new_lines()

    def test_lines_as_twisted_reads_them(self) -> None:
        self.path.write_text("alice:pw:extra \r\nalice:second\n  \n#x:y\nbob:b\n")
        self.assertEqual(read_users(str(self.path)), {b"alice": b"pw", b"bob": b"b"})

    def test_a_bad_line_is_named(self) -> None:
        for text, number in (("alice:pw\nbob\n", 2), (":pw\n", 1), ("alice:\n", 1)):
            self.path.write_text(text)
            with self.assertRaises(ValueError) as e:
                read_users(str(self.path))
            self.assertEqual(str(e.exception), f"line {number} is not name:password")

    def test_the_file_is_not_read_at_each_login(self) -> None:
        self.path.write_text("alice:changed\n")
        self.assertEqual(self.login("alice", "wonderland"), [welcome("alice")])

    def test_the_change_in_counts_and_names(self) -> None:
        self.assertEqual(
            users_change(
                {b"alice": b"a", b"bob": b"b"}, {b"alice": b"A", b"carol": b"c", b"dave": b"d"}
            ),
            "2 added (carol, dave), 1 removed (bob), 1 password changed (alice)",
        )
        self.assertIsNone(users_change({b"alice": b"a"}, {b"alice": b"a"}))

    def test_reload_takes_on_the_new_users_and_never_logs_passwords(self) -> None:
        logged = tcpchat_log(self)
        self.path.write_text("alice:looking-glass\ncarol:secret\n")
        self.assertTrue(self.service.reload())
        self.assertEqual(
            logged,
            [
                f"tcpchat: reloaded: auth file {self.path}: 1 added (carol), 1 removed (bob), "
                "1 password changed (alice)"
            ],
        )
        self.assertEqual(self.login("carol", "secret", 4001), [welcome("carol")])
        self.assertEqual(self.login("bob", "builder", 4002), ["error: wrong name or password"])
        for secret in ("looking-glass", "secret", "wonderland", "builder"):
            self.assertNotIn(secret, "\n".join(logged))

    def test_a_broken_file_is_refused_and_the_old_users_stay(self) -> None:
        logged = tcpchat_log(self)
        troubles = troubles_logged(self)
        self.path.write_text("alice:new\ncarol secret\n")
        self.assertFalse(self.service.reload())
        self.assertEqual(
            logged,
            [
                f"tcpchat: reload refused, the old settings stay: auth file {self.path}: "
                "line 2 is not name:password"
            ],
        )
        self.assertEqual(len(troubles), 1)  # (a warning: no traceback)
        self.assertEqual(self.login("alice", "wonderland"), [welcome("alice")])
        self.path.unlink()
        self.assertFalse(self.service.reload())
        self.assertIn("cannot read it: No such file or directory", logged[-1])

    def test_the_tap_uses_it_for_auth_file(self) -> None:
        """--auth file: is this snapshot; a missing file or a bad line is one line at the start."""
        options = parse("--auth", f"file:{self.path}")
        self.assertIsInstance(options["credCheckers"][0], AuthFile)
        self.path.write_text("alice\n")
        with self.assertRaises(SystemExit) as e:
            parse("--auth", f"file:{self.path}")
        self.assertEqual(
            e.exception.code,
            f"tcpchat: --auth file:{self.path}: line 1 is not name:password "
            "(see: twistd tcpchat --help)",
        )


class TLSTests(SynchronousTestCase):
    """An ssl: listener's certificate and key, read again by a reload."""

    def setUp(self) -> None:
        self.first = make_certs(temp_dir(self), "first")
        self.second = make_certs(temp_dir(self), "second")

    def test_new_connections_get_the_new_certificate(self) -> None:
        live = temp_dir(self)
        key, cert = live / "server.key", live / "server.pem"
        key.write_bytes(self.first.key.read_bytes())
        cert.write_bytes(self.first.cert.read_bytes())
        description = f"ssl:0:privateKey={key}:certKey={cert}"
        tls = ReloadableTLS(load_tls(description))
        self.assertIsNone(tls.change(load_tls(description)), "the same files: no change")
        key.write_bytes(self.second.key.read_bytes())
        cert.write_bytes(self.second.cert.read_bytes())
        new = load_tls(description)
        # (set_options adds nothing here, and answers the options in force.)
        self.assertTrue(new.getContext().set_options(0) & SSL.OP_NO_RENEGOTIATION)
        self.assertIn("new certificate for second, valid until ", tls.change(new) or "")
        tls.replace(new)
        # What Twisted's TLS layer makes for the next connection of the port:
        tls_factory = TLSMemoryBIOFactory(tls, False, Factory.forProtocol(Protocol))
        connection = tls_factory.buildProtocol(peer("192.0.2.7"))
        connection.makeConnection(StringTransport())
        context = connection.getHandle().get_context()
        self.assertIs(context, new.getContext())

    def test_a_key_that_does_not_match_or_a_missing_file(self) -> None:
        for description, message in (
            (
                f"ssl:0:privateKey={self.second.key}:certKey={self.first.cert}",
                "Certificate public and private keys do not match",
            ),
            (f"ssl:0:privateKey={self.first.key}.gone", "cannot read "),
        ):
            with self.assertRaises(ValueError) as e:
                load_tls(description)
            self.assertIn(message, str(e.exception))
            self.assertNotIn("\n", str(e.exception))


class SystemdTests(SynchronousTestCase):
    def test_reloading_then_ready(self) -> None:
        """systemd hears RELOADING=1 with the monotonic time, then READY=1, refused or not."""
        path = temp_dir(self) / "notify"
        receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        receiver.bind(str(path))
        self.addCleanup(receiver.close)
        receiver.settimeout(5)
        os.environ["NOTIFY_SOCKET"] = str(path)
        self.addCleanup(os.environ.pop, "NOTIFY_SOCKET")
        service, _ = chat(ChatConfig(), Clock())
        for config in (ChatConfig(flood_rate=3), ChatConfig(history=1)):
            service.reload(config)
            reloading = receiver.recv(4096).decode().split("\n")
            self.assertEqual(reloading[0], "RELOADING=1")
            self.assertTrue(reloading[1].startswith("MONOTONIC_USEC="), reloading)
            self.assertTrue(reloading[1].removeprefix("MONOTONIC_USEC=").isdigit(), reloading)
            self.assertEqual(receiver.recv(4096), b"READY=1")


class FakeSignalReactor:
    """What L{Hangup} uses of the reactor: C{callFromThread} (queued here) and C{sigTerm}."""

    def __init__(self) -> None:
        self.queued: list[tuple[Any, tuple[Any, ...]]] = []
        self.terminated: list[int] = []

    def callFromThread(self, f: Any, *args: Any) -> None:
        self.queued.append((f, args))

    def sigTerm(self, number: int, frame: object = None) -> None:
        self.terminated.append(number)

    def run_queued(self) -> None:
        queued, self.queued = self.queued, []
        for f, args in queued:
            f(*args)


class HangupTests(SynchronousTestCase):
    """Which SIGHUP stops the server and which reloads it."""

    def setUp(self) -> None:
        self.reactor = FakeSignalReactor()
        self.reloads: list[None] = []
        self.terminal = [True]
        self.looked = 0

    def terminal_there(self) -> bool:
        self.looked += 1
        return self.terminal[0]

    def hangup(self) -> Hangup:
        hangup = Hangup(
            self.reactor,  # type: ignore[arg-type]
            lambda: self.reloads.append(None),
            self.terminal_there,
        )
        hangup.startService()
        self.addCleanup(hangup.stopService)
        return hangup

    def test_the_handler_only_hands_the_signal_to_the_reactor(self) -> None:
        """A real SIGHUP: nothing is looked at nor read inside the handler."""
        self.hangup()
        looked = self.looked
        os.kill(os.getpid(), signal.SIGHUP)
        self.assertEqual(len(self.reactor.queued), 1)
        self.assertEqual((self.looked, self.reloads), (looked, []))
        self.reactor.run_queued()
        self.assertEqual(self.reloads, [None])

    def test_the_terminal_went_away_stops_as_on_sigterm(self) -> None:
        logged = tcpchat_log(self)
        hangup = self.hangup()
        self.terminal[0] = False
        hangup.hung_up(signal.SIGHUP)
        hangup.hung_up(signal.SIGHUP)  # (a second SIGHUP while stopping: nothing more)
        self.assertEqual(self.reactor.terminated, [signal.SIGHUP])
        self.assertEqual(self.reloads, [])
        self.assertEqual(
            logged,
            [
                "tcpchat: SIGHUP: shutting down, clients told (as on SIGTERM): "
                "the terminal went away"
            ],
        )

    def test_kill_hup_with_the_terminal_still_there_reloads(self) -> None:
        self.hangup().hung_up(signal.SIGHUP)
        self.assertEqual((self.reloads, self.reactor.terminated), ([None], []))

    def test_without_a_terminal_at_the_start_sighup_reloads(self) -> None:
        """A daemon, systemd's service: every SIGHUP is a reload."""
        self.terminal[0] = False
        self.hangup().hung_up(signal.SIGHUP)
        self.assertEqual((self.reloads, self.reactor.terminated), ([None], []))

    def test_left_alone_under_nohup(self) -> None:
        previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
        self.addCleanup(signal.signal, signal.SIGHUP, previous)
        self.hangup()
        self.assertIs(signal.getsignal(signal.SIGHUP), signal.SIG_IGN)
