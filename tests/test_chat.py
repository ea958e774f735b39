"""
The room through the server protocol: several clients on StringTransport
sharing one factory, and a client and server talking in memory (iosim).
"""

from __future__ import annotations

from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs
from twisted.python.failure import Failure
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase

from tests.helpers import Client, connect, lines_of, messages, welcome
from twisted_tcpchat.core.config import DEFAULT_GREETING, ChatConfig
from twisted_tcpchat.frontends.console import Console
from twisted_tcpchat.frontends.tcp import ChatFactory


class RoomOverProtocolTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.factory = ChatFactory(ChatConfig(), clock=self.clock)

    def clients(self, n: int) -> list[Client]:
        clients = [Client(self.factory) for _ in range(n)]
        for client in clients:
            client.new_lines()
        return clients

    def test_newcomer_sequence(self) -> None:
        """Greeting, then the name, then history, then live traffic."""
        (a,) = self.clients(1)
        a.send(b"first\n")
        b = Client(self.factory)
        self.assertEqual(
            b.new_lines(), [DEFAULT_GREETING, welcome("guest2"), "[history] <guest1> first"]
        )
        self.assertEqual(a.new_lines(), ["* guest2 joined"])

    def test_relay_in_order_not_to_sender(self) -> None:
        """Lines joined in one read are relayed in the order received, not back to the sender."""
        a, b, c = self.clients(3)
        a.send(b"one\r\ntwo\nthree\n")
        self.assertEqual(b.new_lines(), ["<guest1> one", "<guest1> two", "<guest1> three"])
        self.assertEqual(c.new_lines(), ["<guest1> one", "<guest1> two", "<guest1> three"])
        self.assertEqual(a.new_lines(), [])

    def test_relayed_text_is_escaped(self) -> None:
        """Control characters in a relayed line reach the others escaped, never raw."""
        a, b = self.clients(2)
        a.send(b"\x1b[2Jgone\x07\n")
        self.assertEqual(b.new_lines(), ["<guest1> \\x1b[2Jgone\\x07"])

    def test_quit_with_reason(self) -> None:
        a, b = self.clients(2)
        a.send(b"/quit bye\n")
        self.assertEqual(a.new_lines(), ["Goodbye."])
        self.assertTrue(a.transport.disconnecting)
        self.assertEqual(b.new_lines(), ["* guest1 left (bye)"])

    def test_exit_word_leaves_the_room(self) -> None:
        a, b = self.clients(2)
        a.send(b"exit\n")
        self.assertEqual(b.new_lines(), ["* guest1 left (exit)"])

    def test_disconnect_announced(self) -> None:
        a, b = self.clients(2)
        a.protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(b.new_lines(), ["* guest1 left (disconnected)"])

    def test_reset_announced_and_name_freed(self) -> None:
        a, b = self.clients(2)
        a.send(b"/nick alice\n")
        b.new_lines()
        a.protocol.connectionLost(Failure(ConnectionLost()))
        self.assertEqual(b.new_lines(), ["* alice left (disconnected)"])
        b.send(b"/nick alice\n")
        self.assertEqual(b.new_lines(), ["* you are now alice"])

    def test_half_close_announced(self) -> None:
        a, b = self.clients(2)
        a.send(b"last words")
        a.protocol.readConnectionLost()
        self.assertEqual(b.new_lines(), ["<guest1> last words", "* guest1 left (disconnected)"])

    def test_kick_from_console_closes_the_connection(self) -> None:
        """The console's /kick: the client is told, its connection closes, the others see why."""
        console = Console(self.factory.server)
        console_out = StringTransport()
        console.makeConnection(console_out)
        a, b = self.clients(2)
        console.dataReceived(b"/kick guest1 flooding\n")
        self.assertEqual(a.new_lines(), ["* you were kicked by server: flooding"])
        self.assertTrue(a.transport.disconnecting)
        self.assertEqual(b.new_lines(), ["* guest1 left (kicked by server: flooding)"])
        with capturedLogs() as events:
            a.protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(messages(events), [])

    def test_private_message_over_protocol(self) -> None:
        a, b, c = self.clients(3)
        a.send(b"/msg guest3 just you\n")
        self.assertEqual(c.new_lines(), ["[private from guest1] just you"])
        self.assertEqual(b.new_lines(), [])
        self.assertEqual(a.new_lines(), ["[private to guest3] just you"])

    def test_rename_race_exactly_one_wins(self) -> None:
        """Two clients' /nick for one name in flight together: exactly one wins."""
        a, b = self.clients(2)
        a.send(b"/nick bob\n")
        b.send(b"/nick bob\n")
        a_lines, b_lines = a.new_lines(), b.new_lines()
        self.assertEqual(a_lines, ["* you are now bob"])
        self.assertEqual(
            b_lines, ["* guest1 is now known as bob", "error: the name 'bob' is taken"]
        )

    def test_log_names_the_sender(self) -> None:
        (a,) = self.clients(1)
        a.send(b"/nick alice\n")
        with capturedLogs() as events:
            a.send(b"hi\n")
        self.assertEqual(messages(events), ["alice (192.0.2.7:40001) sent 2 bytes: hi"])

    def test_once_mode_has_no_room(self) -> None:
        factory = ChatFactory(ChatConfig(once=True), clock=self.clock)
        a, b = Client(factory), Client(factory)
        self.assertEqual(a.new_lines(), [DEFAULT_GREETING])
        a.send(b"hi\n")
        self.assertEqual(b.new_lines(), [DEFAULT_GREETING])


class ConsoleTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.factory = ChatFactory(ChatConfig(), clock=Clock())
        self.console = Console(self.factory.server, "op")
        self.screen = StringTransport()
        self.console.makeConnection(self.screen)

    def shown(self) -> list[str]:
        text = self.screen.value().decode()
        self.screen.clear()
        return text.splitlines()

    def test_console_sees_everything_said_and_presence(self) -> None:
        a, _ = connect(factory=self.factory)
        a.dataReceived(b"hello\n/me waves\n/nick alice\n\x1b[31mred\n")
        a.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(
            self.shown(),
            [
                welcome("op"),
                "* guest1 joined",
                "<guest1> hello",
                "* guest1 waves",
                "* guest1 is now known as alice",
                "<alice> \\x1b[31mred",
                "* alice left (disconnected)",
            ],
        )

    def test_typed_line_goes_to_room_as_console_name(self) -> None:
        _a, transport = connect(factory=self.factory)
        self.console.dataReceived("hello 世界\n".encode())
        self.assertEqual(lines_of(transport)[-1], "<op> hello 世界")

    def test_console_msg_and_who(self) -> None:
        _a, transport = connect(factory=self.factory)
        self.shown()
        self.console.dataReceived(b"/msg guest1 psst\n/who\n")
        self.assertEqual(lines_of(transport)[-1], "[private from op] psst")
        self.assertEqual(
            self.shown(),
            [
                "[private to guest1] psst",
                "* 2 in #lobby:",
                "*   guest1 (idle 0s)",
                "*   op (idle 0s, operator)",
            ],
        )

    def test_console_starts_in_the_default_room_and_can_join(self) -> None:
        a, transport = connect(factory=self.factory)
        a.dataReceived(b"/join dev\n")
        self.shown()
        self.console.dataReceived(b"/join #dev\nhello dev\n/part\n")
        self.assertEqual(
            lines_of(transport)[-3:],
            ["* op came from #lobby", "<op> hello dev", "* op left for #lobby"],
        )
        self.assertEqual(self.shown()[0], "* you are now in #dev")

    def test_console_quit_refused(self) -> None:
        self.shown()
        self.console.dataReceived(b"/quit\n")
        self.assertEqual(self.shown(), ["error: the console stays; stop the server with Ctrl-C"])

    def test_console_name_held_by_the_console(self) -> None:
        a, transport = connect(factory=self.factory)
        a.dataReceived(b"/nick OP\n")
        self.assertEqual(lines_of(transport)[-1], "error: the name 'OP' is taken")

    def test_configured_console_name_reserved_even_without_console(self) -> None:
        """No client may pose as the console, attached or not."""
        factory = ChatFactory(ChatConfig(console_name="boss"), clock=Clock())
        a, transport = connect(factory=factory)
        a.dataReceived(b"/nick Boss\n/nick server\n")
        self.assertEqual(
            lines_of(transport)[-2:],
            ["error: the name 'Boss' is reserved", "error: the name 'server' is reserved"],
        )

    def test_console_eof_leaves_room_server_goes_on(self) -> None:
        a, transport = connect(factory=self.factory)
        self.console.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(lines_of(transport)[-1], "* op left (console closed)")
        a.dataReceived(b"still chatting\n")
        self.assertFalse(transport.disconnecting)


class LineClient(Protocol):
    def __init__(self) -> None:
        self.data = b""

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    @property
    def lines(self) -> list[str]:
        return self.data.decode().split("\r\n")[:-1]


class InMemoryTests(SynchronousTestCase):
    def test_two_clients_talk_in_memory(self) -> None:
        """Client and server over iosim: the greeting, a relayed line, a private one, /quit."""
        factory = ChatFactory(ChatConfig(), clock=Clock())
        pumps = []
        clients = []
        for _ in range(2):
            server = factory.buildProtocol(None)
            client = LineClient()
            pump = iosim.connect(
                server, iosim.makeFakeServer(server), client, iosim.makeFakeClient(client)
            )
            pumps.append(pump)
            clients.append(client)
        for pump in pumps:
            pump.flush()
        alice, bob = clients
        assert alice.transport is not None
        assert bob.transport is not None
        alice.transport.write(b"/nick alice\nhi bob\n")
        bob.transport.write(b"/msg alice hi alice\n/quit later\n")
        for _ in range(3):
            for pump in pumps:
                pump.flush()
        self.assertEqual(
            bob.lines,
            [
                DEFAULT_GREETING,
                welcome("guest2"),
                "* guest1 is now known as alice",
                "<alice> hi bob",
                "[private to alice] hi alice",
                "Goodbye.",
            ],
        )
        self.assertEqual(
            alice.lines,
            [
                DEFAULT_GREETING,
                welcome("guest1"),
                "* guest2 joined",
                "* you are now alice",
                "[private from guest2] hi alice",
                "* guest2 left (later)",
            ],
        )
