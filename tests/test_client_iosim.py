"""
The client against our own server, in memory: client sessions and
twisted_tcpchat.frontends.tcp.ChatFactory joined by twisted.test.iosim, one clock.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase

from tests.helpers import welcome
from tests.test_client_session import RecordingScreen
from twisted_tcpchat.client.protocol import ChatClientFactory
from twisted_tcpchat.client.session import ClientSession, ClientSettings
from twisted_tcpchat.core.config import DEFAULT_GREETING
from twisted_tcpchat.frontends.tcp import ChatFactory

CLIENT = IPv4Address("TCP", "127.0.0.1", 40001)


class Member:
    """One tcpchat client session, joined to the server by an IOPump."""

    def __init__(self, server: ChatFactory, clock: Clock, **changes: object) -> None:
        self.screen = RecordingScreen()
        self.session = ClientSession(
            self.screen,
            clock,
            ClientSettings(server="127.0.0.1:65432", **changes),  # type: ignore[arg-type]
        )
        client = ChatClientFactory(self.session, clock).buildProtocol(CLIENT)
        host = server.buildProtocol(CLIENT)
        self.pump = iosim.connect(
            host,
            iosim.makeFakeServer(host),
            client,
            iosim.makeFakeClient(client),
            clock=clock,
        )
        self.status: list[int] = []
        self.session.done.addCallback(self.status.append)


class ConversationTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.server = ChatFactory(clock=self.clock)

    def flush(self, *members: Member) -> None:
        for _ in range(3):
            for member in members:
                member.pump.flush()

    def test_greeting_shown(self) -> None:
        """The client shows our server's greeting and its welcome, line by line."""
        alice = Member(self.server, self.clock)
        self.assertEqual(alice.screen.take(), [DEFAULT_GREETING, welcome("guest1")])

    def test_two_clients_talk(self) -> None:
        """--nick names each client; what one types the other sees, with the name."""
        alice = Member(self.server, self.clock, nick="alice")
        bob = Member(self.server, self.clock, nick="bob")
        self.flush(alice, bob)
        alice.screen.take()
        self.assertEqual(
            bob.screen.take(),
            [DEFAULT_GREETING, welcome("guest2"), "* you are now bob"],
        )
        bob.session.line_typed("hello alice, 你好")
        self.flush(alice, bob)
        self.assertEqual(alice.screen.take(), ["<bob> hello alice, 你好"])
        self.assertEqual(bob.screen.take(), [])

    def test_exit_ends_cleanly(self) -> None:
        """'exit': the server's goodbye shows, the others see the leave, status 0."""
        alice = Member(self.server, self.clock)
        bob = Member(self.server, self.clock)
        self.flush(alice, bob)
        alice.screen.take()
        bob.session.line_typed("exit")
        self.flush(alice, bob)
        self.assertEqual(bob.screen.take()[-1], "Goodbye.")
        self.assertEqual(bob.status, [0])
        self.assertEqual(alice.screen.take(), ["* guest2 left (exit)"])
        self.assertEqual(self.server.server.client_count, 1)

    def test_server_shutdown(self) -> None:
        """The server shutting down: its notice, then 'connection closed by server', status 0."""
        alice = Member(self.server, self.clock)
        alice.screen.take()
        self.server.server.shut_down()
        alice.pump.flush()
        self.assertEqual(
            alice.screen.take(),
            ["server shutting down", "tcpchat: connection closed by server"],
        )
        self.assertEqual(alice.status, [0])

    def test_escaped_text_stays_escaped(self) -> None:
        """A peer's escape sequence reaches the other client's screen as visible text."""
        alice = Member(self.server, self.clock)
        bob = Member(self.server, self.clock)
        self.flush(alice, bob)
        alice.screen.take()
        bob.session.line_typed("\x1b[2Jgotcha")
        self.flush(alice, bob)
        [shown] = alice.screen.take()
        self.assertNotIn("\x1b", shown)
        self.assertIn("[2Jgotcha", shown)
