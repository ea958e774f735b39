"""
The client's logic and its Twisted adapter on StringTransport with a
task.Clock: what is shown, what is sent, how a run ends and with which
status, connect failures and timeouts, and reconnecting with ClientService.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ConnectionLost, ConnectionRefusedError
from twisted.internet.interfaces import (
    IHalfCloseableDescriptor,
    INegotiated,
    IProtocol,
    IProtocolFactory,
    IStreamClientEndpoint,
)
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from twisted_tcpchat.client.io import PlainScreen, TerminalScreen
from twisted_tcpchat.client.main import connect, retry_policy
from twisted_tcpchat.client.protocol import (
    CLOSE_GRACE,
    ChatClientFactory,
    ChatClientProtocol,
    Dialer,
)
from twisted_tcpchat.client.session import (
    ANSWER_WAIT,
    DRAIN_LIMIT,
    HOLD,
    ClientSession,
    ClientSettings,
    ILink,
    IScreen,
    State,
)
from twisted_tcpchat.core.config import DEFAULT_GREETING

SERVER = IPv4Address("TCP", "127.0.0.1", 65432)


@implementer(IScreen)
class RecordingScreen:
    """An IScreen that records, in order, the lines and notices it is given."""

    def __init__(self) -> None:
        self.shown: list[str] = []

    def show_line(self, text: str) -> None:
        assert isinstance(text, str), text
        self.shown.append(text)

    def notice(self, text: str) -> None:
        assert isinstance(text, str), text
        self.shown.append(f"tcpchat: {text}")

    def take(self) -> list[str]:
        """What was shown since the last take."""
        shown, self.shown = self.shown, []
        return shown


@implementer(IHalfCloseableDescriptor)
class HalfCloseableTransport(StringTransport):
    """A StringTransport that, like TCP's, can shut down its sending side."""

    write_closed = False

    def loseWriteConnection(self) -> None:
        self.write_closed = True

    def write(self, data: bytes) -> None:
        assert not self.write_closed, f"write after half-close: {data!r}"
        super().write(data)


@implementer(INegotiated)
class TLSLikeTransport(HalfCloseableTransport):
    """
    What a TLS connection looks like to the protocol: INegotiated (a TCP
    transport, by inheritance), and (as Twisted's TLS transport does)
    claiming half-close too.
    """

    no_delay = False

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.no_delay = enabled


def settings(**changes: object) -> ClientSettings:
    return ClientSettings(server="127.0.0.1:65432", **changes)  # type: ignore[arg-type]


class Run:
    """A session, its screen and clock, connected to a StringTransport."""

    def __init__(self, connected: bool = True, **changes: object) -> None:
        self.clock = Clock()
        self.screen = RecordingScreen()
        self.session = ClientSession(self.screen, self.clock, settings(**changes))
        self.factory = ChatClientFactory(self.session, self.clock)
        self.status: list[int] = []
        self.session.done.addCallback(self.status.append)
        if connected:
            self.connect()

    def connect(self, greeted: bool = True) -> None:
        """Connect; unless told otherwise, let the greeting wait pass (a silent server)."""
        self.protocol = self.factory.buildProtocol(SERVER)
        self.transport = HalfCloseableTransport(peerAddress=SERVER)
        self.protocol.makeConnection(self.transport)
        if greeted:
            self.clock.advance(ANSWER_WAIT)

    def sent(self) -> bytes:
        data = self.transport.value()
        self.transport.clear()
        return data

    def server_closes(self, reason: Failure | None = None) -> None:
        self.protocol.connectionLost(reason or Failure(ConnectionDone()))


class ShowingTests(SynchronousTestCase):
    def test_lines_shown_as_they_arrive(self) -> None:
        """The greeting and each line the server sends show as soon as they arrive."""
        run = Run()
        run.protocol.dataReceived(DEFAULT_GREETING.encode() + b"\r\n* you are ")
        self.assertEqual(run.screen.take(), [DEFAULT_GREETING])
        run.protocol.dataReceived(b"guest1\r\n")
        self.assertEqual(run.screen.take(), ["* you are guest1"])

    def test_c_greeting_without_its_nul(self) -> None:
        """A C server's greeting sent with sizeof (its NUL and padding) shows clean."""
        run = Run()
        run.protocol.dataReceived(DEFAULT_GREETING.encode() + b"\0")
        self.assertEqual(run.screen.take(), [DEFAULT_GREETING])
        run.protocol.dataReceived(b"Message received\0\0\0STALE GARBAGE\0\0\0")
        self.assertEqual(run.screen.take(), ["Message received"])
        run.clock.advance(HOLD)
        self.assertEqual(run.screen.take(), [])

    def test_unfinished_line_shown_after_a_pause(self) -> None:
        """Text with no line end (a tutorial server's reply) shows once the server pauses."""
        run = Run()
        run.protocol.dataReceived(b"Message ")
        run.clock.advance(HOLD / 2)
        run.protocol.dataReceived(b"received")
        run.clock.advance(HOLD / 2)
        self.assertEqual(run.screen.take(), [])
        run.clock.advance(HOLD / 2)
        self.assertEqual(run.screen.take(), ["Message received"])

    def test_control_characters_escaped(self) -> None:
        """What the server sends cannot drive the terminal: controls show as escapes."""
        run = Run()
        run.protocol.dataReceived(b"\x1b[2J\x1b]0;owned\x07hi\r\n")
        self.assertEqual(run.screen.take(), ["\\x1b[2J\\x1b]0;owned\\x07hi"])

    def test_gbk(self) -> None:
        """--encoding gbk: GBK in and out."""
        run = Run(encoding="gbk")
        run.protocol.dataReceived("你好\r\n".encode("gbk"))
        run.session.line_typed("再见")
        self.assertEqual(run.screen.take(), ["你好"])
        self.assertEqual(run.sent(), "再见\n".encode("gbk"))


class SendingTests(SynchronousTestCase):
    def test_line_endings(self) -> None:
        """Each --line-ending puts exactly its bytes after each line."""
        for ending in (b"\n", b"\r\n"):
            run = Run(line_ending=ending)
            run.session.line_typed("one")
            run.session.line_typed("two")
            self.assertEqual(run.sent(), b"one" + ending + b"two" + ending)

    def test_unframed_messages_take_turns(self) -> None:
        """
        With no line end (or NUL) between messages, each goes out in its own
        write once the server has answered the one before (or ANSWER_WAIT has
        passed), so a C server reads them one by one, as a tutorial client
        sends them.
        """
        for ending in (b"", b"\0"):
            run = Run(line_ending=ending)
            for text in ("hello", "again", "exit"):
                run.session.line_typed(text)
            self.assertEqual(run.sent(), b"hello" + ending)
            run.protocol.dataReceived(b"Message received\0")
            self.assertEqual(run.sent(), b"again" + ending)
            run.clock.advance(ANSWER_WAIT - 0.01)
            self.assertEqual(run.sent(), b"")
            run.clock.advance(0.01)
            self.assertEqual(run.sent(), b"exit" + ending)
            self.assertFalse(run.transport.write_closed)
            run.clock.advance(ANSWER_WAIT)
            self.assertTrue(run.transport.write_closed)

    def test_greeting_first(self) -> None:
        """
        Nothing goes out before the server's first bytes (as a tutorial client
        reads the greeting first), so a C server's reply never shares a read
        with its NUL-ended greeting; with a server that never greets, the
        client speaks after ANSWER_WAIT.
        """
        run = Run(connected=False)
        run.session.line_typed("hello")
        run.connect(greeted=False)
        self.assertEqual(run.sent(), b"")
        run.protocol.dataReceived(b"Connect succeed\0")
        self.assertEqual(run.sent(), b"hello\n")
        silent = Run(connected=False)
        silent.session.line_typed("hello")
        silent.connect(greeted=False)
        silent.clock.advance(ANSWER_WAIT - 0.01)
        self.assertEqual(silent.sent(), b"")
        silent.clock.advance(0.01)
        self.assertEqual(silent.sent(), b"hello\n")

    def test_lines_typed_before_connecting_wait(self) -> None:
        """Lines typed (or piped) before the connection is up go out once it is."""
        run = Run(connected=False)
        run.session.line_typed("early")
        run.connect()
        self.assertEqual(run.sent(), b"early\n")

    def test_nick_first(self) -> None:
        """--nick: /nick NAME goes out first, before anything typed."""
        run = Run(connected=False, nick="alice")
        run.session.line_typed("hello")
        run.connect()
        self.assertEqual(run.sent(), b"/nick alice\nhello\n")

    def test_interfaces(self) -> None:
        """The adapter is a real ILink, and the screens are real IScreens."""
        clock = Clock()
        session = ClientSession(RecordingScreen(), clock, settings())
        self.assertTrue(verifyObject(ILink, ChatClientProtocol(session, clock)))
        self.assertTrue(verifyObject(IScreen, PlainScreen()))
        self.assertTrue(verifyObject(IScreen, TerminalScreen()))


class EndingTests(SynchronousTestCase):
    def test_exit_says_goodbye_and_ends(self) -> None:
        """
        'exit' goes to the server, the client half-closes, shows the goodbye,
        and ends with status 0 when the server closes, without a notice.
        """
        run = Run()
        run.session.line_typed("exit")
        self.assertEqual(run.sent(), b"exit\n")
        self.assertTrue(run.transport.write_closed)
        self.assertEqual(run.session.state, State.ENDING)
        run.protocol.dataReceived(b"Goodbye.\r\n")
        run.server_closes()
        self.assertEqual(run.screen.take(), ["Goodbye."])
        self.assertEqual(run.status, [0])

    def test_quit_words(self) -> None:
        """/quit and /quit REASON end the session too; other lines do not."""
        for line, ends in (("/quit", True), ("/quit gotta go", True), ("/quitter", False)):
            run = Run()
            run.session.line_typed(line)
            self.assertEqual(run.transport.write_closed, ends, line)

    def test_end_of_input_waits_for_the_rest(self) -> None:
        """
        EOF: what is left goes out, then half-close; what the server still
        sends is shown, each arrival restarting the quiet time.
        """
        run = Run(wait=1.0)
        run.session.line_typed("last words")
        run.session.input_ended()
        self.assertEqual(run.sent(), b"last words\n")
        self.assertTrue(run.transport.write_closed)
        run.clock.advance(0.9)
        run.protocol.dataReceived(b"an answer\r\n")
        run.clock.advance(0.9)
        self.assertFalse(run.transport.disconnecting)
        self.assertEqual(run.screen.take(), ["an answer"])
        run.clock.advance(0.1)
        self.assertTrue(run.transport.disconnecting)
        self.assertEqual(run.status, [])
        run.server_closes()
        self.assertEqual(run.status, [0])

    def test_a_server_that_never_stops_talking(self) -> None:
        """Once the user is done, a chatty server that never closes is cut off at DRAIN_LIMIT."""
        run = Run(wait=1.0)
        run.session.input_ended()
        for _ in range(int(DRAIN_LIMIT * 2) - 1):
            run.protocol.dataReceived(b"chatter\r\n")
            run.clock.advance(0.5)
        self.assertFalse(run.transport.disconnecting)
        run.clock.advance(0.5)
        self.assertTrue(run.transport.disconnecting)

    def test_a_peer_that_does_not_read_is_cut_off(self) -> None:
        """Closing waits at most CLOSE_GRACE for our last bytes to leave, then aborts."""
        run = Run(wait=0)
        run.session.input_ended()
        run.clock.advance(0)
        self.assertTrue(run.transport.disconnecting)
        self.assertFalse(run.transport.disconnected)
        run.clock.advance(CLOSE_GRACE)
        self.assertTrue(run.transport.disconnected)

    def test_server_closes(self) -> None:
        """A server that closes: 'connection closed by server', status 0."""
        run = Run()
        run.protocol.dataReceived(b"server shutting down\r\n")
        run.server_closes()
        self.assertEqual(
            run.screen.take(), ["server shutting down", "tcpchat: connection closed by server"]
        )
        self.assertEqual(run.status, [0])
        self.assertEqual(run.session.state, State.CLOSED)

    def test_last_unfinished_line_shown_on_close(self) -> None:
        """Text without a line end just before the close is still shown."""
        run = Run()
        run.protocol.dataReceived(b"bye")
        run.server_closes()
        self.assertEqual(run.screen.take(), ["bye", "tcpchat: connection closed by server"])

    def test_connection_broken(self) -> None:
        """A connection lost mid-chat (a reset): said so, status 1."""
        run = Run()
        run.server_closes(Failure(ConnectionLost("Connection reset by peer")))
        self.assertEqual(run.screen.take(), ["tcpchat: connection lost: Connection reset by peer"])
        self.assertEqual(run.status, [1])

    def test_server_closes_before_all_is_sent(self) -> None:
        """A server that closes before the last lines went out: said so, status 0."""
        run = Run(connected=False, reconnect=True)
        for text in ("one", "two"):
            run.session.line_typed(text)
        run.session.input_ended()
        run.connect(greeted=False)
        run.server_closes()
        self.assertEqual(
            run.screen.take(), ["tcpchat: connection closed by server (2 lines not sent)"]
        )
        self.assertEqual(run.status, [0])

    def test_typing_after_the_end_is_ignored(self) -> None:
        run = Run()
        run.server_closes()
        run.session.line_typed("too late")
        self.assertEqual(run.sent(), b"")
        self.assertFalse(run.session.wants_input)

    def test_no_half_close_without_support(self) -> None:
        """Where the transport cannot half-close (TLS), the quiet time still ends the run."""
        clock = Clock()
        session = ClientSession(RecordingScreen(), clock, settings(wait=1.0))
        protocol = ChatClientFactory(session, clock).buildProtocol(SERVER)
        transport = StringTransport()
        protocol.makeConnection(transport)
        session.input_ended()
        clock.advance(ANSWER_WAIT)
        self.assertFalse(protocol.half_close())
        clock.advance(1.0)
        self.assertTrue(transport.disconnecting)


class TLSTests(SynchronousTestCase):
    def test_tls_counts_once_the_handshake_is_done(self) -> None:
        """
        Over TLS nothing is sent before the handshake completes; then the
        chat runs as usual, except that ending does not half-close (TLS cannot).
        """
        clock = Clock()
        screen = RecordingScreen()
        session = ClientSession(screen, clock, settings(wait=1.0))
        protocol = ChatClientFactory(session, clock).buildProtocol(SERVER)
        transport = TLSLikeTransport()
        session.line_typed("hello")
        protocol.makeConnection(transport)
        clock.advance(ANSWER_WAIT)
        self.assertEqual((session.state, transport.value()), (State.CONNECTING, b""))
        protocol.handshakeCompleted()
        clock.advance(ANSWER_WAIT)
        self.assertEqual(transport.value(), b"hello\n")
        self.assertTrue(transport.no_delay)
        session.input_ended()
        self.assertFalse(transport.write_closed)
        clock.advance(1.0)
        self.assertTrue(transport.disconnecting)

    def test_tls_handshake_failure_is_a_connect_failure(self) -> None:
        """A certificate that does not verify: 'cannot connect ...: TLS: ...', status 1."""
        from OpenSSL.SSL import Error

        clock = Clock()
        session = ClientSession(RecordingScreen(), clock, settings())
        protocol = ChatClientFactory(session, clock).buildProtocol(SERVER)
        protocol.makeConnection(TLSLikeTransport())
        protocol.connectionLost(Failure(Error([("SSL routines", "", "certificate verify failed")])))
        self.assertEqual(session.done.result, 1)
        self.assertEqual(
            session.error,
            "cannot connect to 127.0.0.1:65432: TLS: certificate verify failed",
        )


class StateTests(SynchronousTestCase):
    def test_only_declared_moves(self) -> None:
        """The state table refuses a move it does not list."""
        run = Run()
        run.server_closes()
        with self.assertRaises(RuntimeError):
            run.session._move(State.OPEN)


@implementer(IStreamClientEndpoint)
class ScriptedEndpoint:
    """An endpoint whose attempts the test answers, one by one."""

    def __init__(self) -> None:
        self.attempts: list[tuple[IProtocolFactory, Deferred[IProtocol]]] = []

    def connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
        attempt: Deferred[IProtocol] = Deferred()
        self.attempts.append((factory, attempt))
        return attempt

    def answer(self) -> tuple[IProtocol, HalfCloseableTransport]:
        """Connect the oldest attempt; return its protocol and transport."""
        factory, attempt = self.attempts.pop(0)
        protocol = factory.buildProtocol(SERVER)
        assert protocol is not None
        transport = HalfCloseableTransport(peerAddress=SERVER)
        protocol.makeConnection(transport)
        attempt.callback(protocol)
        return protocol, transport

    def refuse(self) -> None:
        _, attempt = self.attempts.pop(0)
        attempt.errback(ConnectionRefusedError(111, "Connection refused"))


class ConnectingTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.screen = RecordingScreen()
        self.endpoint = ScriptedEndpoint()

    def start(self, **changes: object) -> ClientSession:
        session = ClientSession(self.screen, self.clock, settings(**changes))
        self.stop = connect(self.clock, session, self.endpoint, 10.0, retry_policy(lambda: 0.0))
        return session

    def test_refused(self) -> None:
        """A refused connection: one line for stderr, status 1."""
        session = self.start()
        statuses: list[int] = []
        session.done.addCallback(statuses.append)
        self.endpoint.refuse()
        self.assertEqual(statuses, [1])
        self.assertEqual(session.error, "cannot connect to 127.0.0.1:65432: connection refused")
        self.assertEqual(self.screen.take(), [])

    def test_timeout(self) -> None:
        """An attempt that hangs is given up after --timeout: 'timed out after 10 s'."""
        session = self.start()
        self.clock.advance(9.9)
        self.assertFalse(session.done.called)
        self.clock.advance(0.1)
        self.assertEqual(session.error, "cannot connect to 127.0.0.1:65432: timed out after 10 s")
        [(_, attempt)] = self.endpoint.attempts
        self.assertTrue(attempt.called, "the attempt was not cancelled")

    def test_dialer_passes_success_through(self) -> None:
        """A connection within the deadline is the caller's, and no deadline fires later."""
        reports: list[str] = []
        dialer = Dialer(self.endpoint, reports.append, self.clock, 5.0)
        connected: list[object] = []
        dialer.connect(ChatClientFactory(self.start(), self.clock)).addCallback(connected.append)
        self.endpoint.attempts.pop(0)  # the start() attempt is not this test's
        self.endpoint.answer()
        self.clock.advance(10)
        self.assertEqual((len(connected), reports), (1, []))

    def test_connect_tcp_failure_reported_by_the_factory(self) -> None:
        """Used with reactor.connectTCP, the ClientFactory reports the failure itself."""
        reactor = MemoryReactorClock()
        session = ClientSession(self.screen, reactor, settings())
        factory = ChatClientFactory(session, reactor)
        connector = reactor.connectTCP("127.0.0.1", 1, factory)
        factory.clientConnectionFailed(
            connector, Failure(ConnectionRefusedError(111, "Connection refused"))
        )
        self.assertEqual(session.error, "cannot connect to 127.0.0.1:65432: connection refused")

    def test_reconnect(self) -> None:
        """
        --reconnect: a lost connection is announced, the next attempt's delay
        is told, failures are retried with growing delays, and being back is
        announced; the name is taken again.
        """
        session = self.start(reconnect=True, nick="alice")
        protocol, transport = self.endpoint.answer()
        protocol.dataReceived(b"hi\r\n")
        self.assertEqual(self.screen.take(), ["hi"])
        self.assertEqual(transport.value(), b"/nick alice\n")
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(
            self.screen.take(),
            [
                "tcpchat: connection closed by server",
                "tcpchat: reconnecting to 127.0.0.1:65432 in 1.0 s",
            ],
        )
        self.clock.advance(1.0)
        self.endpoint.refuse()
        self.assertEqual(
            self.screen.take(),
            [
                "tcpchat: cannot connect to 127.0.0.1:65432: connection refused",
                "tcpchat: reconnecting to 127.0.0.1:65432 in 1.5 s",
            ],
        )
        session.line_typed("while away")
        self.assertEqual(
            self.screen.take(), ["tcpchat: not connected: the line goes out once reconnected"]
        )
        self.clock.advance(1.5)
        protocol, transport = self.endpoint.answer()
        self.clock.advance(ANSWER_WAIT)
        self.assertEqual(self.screen.take(), ["tcpchat: reconnected to 127.0.0.1:65432"])
        self.assertEqual(transport.value(), b"/nick alice\nwhile away\n")
        self.assertFalse(session.done.called)

    def test_reconnect_ends_on_exit(self) -> None:
        """With --reconnect, exit still ends the run: no attempt after the close."""
        session = self.start(reconnect=True)
        protocol, transport = self.endpoint.answer()
        self.clock.advance(ANSWER_WAIT)
        session.line_typed("exit")
        self.assertEqual(transport.value(), b"exit\n")
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(session.done.result, 0)
        stopped: list[object] = []
        self.stop().addCallback(stopped.append)
        self.clock.advance(100)
        self.assertEqual((stopped, self.endpoint.attempts), ([None], []))

    def test_end_of_input_while_away(self) -> None:
        """EOF while waiting to reconnect, with nothing left to send: the run ends now."""
        session = self.start(reconnect=True)
        self.endpoint.refuse()
        session.input_ended()
        self.assertEqual(session.done.result, 0)
