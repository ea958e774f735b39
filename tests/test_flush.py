"""
The end-of-turn writer (L{TurnFlusher}): on a socket transport, what a
connection is sent during one reactor turn goes out once, at the end of the
turn, with one C{send} on its socket; what the kernel does not take goes
to Twisted's buffer, and everything after it waits its turn behind it.

The transport here is a real L{FileDescriptor} (so C{write}, C{doWrite},
the producer calls and the buffer are Twisted's own) whose "socket" takes at
most C{room} bytes per call, and raises BlockingIOError when it is full.
"""

from __future__ import annotations

from typing import cast

from twisted.internet.abstract import FileDescriptor
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionAborted, ConnectionLost
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from twisted_tcpchat.core.config import ChatConfig
from twisted_tcpchat.core.events import Text
from twisted_tcpchat.frontends.tcp import ChatFactory, ChatProtocol

SERVER = IPv4Address("TCP", "127.0.0.1", 65432)


class FakeReactor(Clock):
    """A clock with just enough of a reactor for a FileDescriptor's calls."""

    def __init__(self) -> None:
        super().__init__()
        self.writers: set[object] = set()

    def addReader(self, reader: object) -> None:
        pass

    def removeReader(self, reader: object) -> None:
        pass

    def addWriter(self, writer: object) -> None:
        self.writers.add(writer)

    def removeWriter(self, writer: object) -> None:
        self.writers.discard(writer)


class SocketLike(FileDescriptor):
    """A connected socket transport whose kernel takes C{room} bytes a call."""

    def __init__(self, peer: IPv4Address, reactor: FakeReactor, room: int = 1 << 30) -> None:
        self.fake_reactor = reactor
        super().__init__(reactor=reactor)  # type: ignore[arg-type]
        self.connected = 1
        self.room = room
        self.calls: list[bytes] = []  # what each send took
        self.peer = peer
        self.aborted = False
        self.fail: Exception | None = None  # what send() raises, if anything
        self.protocol: ChatProtocol

    def send(self, data: bytes) -> int:
        """The socket's send: what fits, or BlockingIOError when nothing does."""
        if self.fail is not None:
            raise self.fail
        if not self.room:
            raise BlockingIOError
        taken = bytes(data[: self.room])
        self.calls.append(taken)
        return len(taken)

    def getHandle(self) -> SocketLike:
        return self  # the "socket": its send() is the one above

    def writeSomeData(self, data: bytes) -> int:
        """Twisted's own sends (once it holds bytes) go the same way."""
        try:
            return self.send(data)
        except BlockingIOError:
            return 0

    @property
    def received(self) -> bytes:
        return b"".join(self.calls)

    def drain(self) -> None:
        """What the reactor does while the socket is writable: doWrite until empty."""
        while self in self.fake_reactor.writers:
            self.doWrite()

    def abortConnection(self) -> None:
        self.aborted = True
        self.connected = 0
        self.protocol.connectionLost(Failure(ConnectionAborted()))

    def getPeer(self) -> IPv4Address:
        return self.peer

    def getHost(self) -> IPv4Address:
        return SERVER

    def fileno(self) -> int:
        return -1


def connect(
    factory: ChatFactory, port: int, room: int = 1 << 30, reactor: FakeReactor | None = None
) -> tuple[ChatProtocol, SocketLike]:
    """A socket-like connection, run by the factory's clock unless C{reactor} is given."""
    peer = IPv4Address("TCP", "127.0.0.1", port)
    protocol = factory.buildProtocol(peer)
    transport = SocketLike(peer, reactor or cast(FakeReactor, factory.clock), room)
    transport.protocol = protocol
    protocol.makeConnection(transport)
    return protocol, transport


class _FlushCase(SynchronousTestCase):
    """A factory whose clock is the fake reactor its socket-like transports run on."""

    def setUp(self) -> None:
        self.clock = FakeReactor()
        self.factory = self.make_factory()

    def make_factory(self, send_queue: int = ChatConfig.send_queue) -> ChatFactory:
        """A factory on this test's clock: no history, quiet, greeting "hi"."""
        config = ChatConfig(history=0, quiet_presence=True, greeting="hi", send_queue=send_queue)
        return ChatFactory(config, clock=self.clock)


class TurnFlushTests(_FlushCase):
    def test_writes_of_one_turn_go_out_together_at_its_end(self) -> None:
        reader, socket = connect(self.factory, 1)
        sender, _ = connect(self.factory, 2)
        self.assertEqual(socket.calls, [])  # the greeting waits for the turn's end
        self.clock.advance(0)
        self.assertEqual(len(socket.calls), 1)
        self.assertTrue(socket.calls[0].startswith(b"hi\r\n"))
        del socket.calls[:]
        sender.dataReceived(b"one\n")
        sender.dataReceived(b"two\nthree\n")
        reader.send(Text("* a notice"))
        self.assertEqual(socket.calls, [])
        self.clock.advance(0)
        self.assertEqual(
            socket.calls,
            [b"<guest2> one\r\n<guest2> two\r\n<guest2> three\r\n* a notice\r\n"],
        )
        self.assertEqual(socket.fake_reactor.writers, set())  # epoll never asked

    def test_what_the_kernel_refuses_waits_in_twisteds_buffer_in_order(self) -> None:
        reader, socket = connect(self.factory, 1, room=10)
        self.clock.advance(0)
        socket.drain()
        greeting = socket.received
        del socket.calls[:]
        socket.room = 4
        reader.send(Text("first line"))
        self.clock.advance(0)
        self.assertEqual(socket.calls, [b"firs"])  # the rest is Twisted's now
        self.assertIn(socket, socket.fake_reactor.writers)
        reader.send(Text("second"))
        self.clock.advance(0)
        # Not sent past the older bytes: it joined them in Twisted's buffer.
        self.assertEqual(socket.calls, [b"firs"])
        socket.drain()
        self.assertEqual(socket.received, b"first line\r\nsecond\r\n")
        # Twisted's buffer is empty again (it said so): straight to the socket.
        del socket.calls[:]
        socket.room = 100
        reader.send(Text("third"))
        self.clock.advance(0)
        self.assertEqual(socket.calls, [b"third\r\n"])
        self.assertTrue(greeting.startswith(b"hi\r\n"))

    def test_client_that_stops_reading_is_cut_off_at_the_cap(self) -> None:
        factory = self.make_factory(send_queue=1000)
        _stuck, socket = connect(factory, 1, room=0)
        sender, sender_socket = connect(factory, 2)
        with capturedLogs() as events:
            for _ in range(30):
                sender.dataReceived(b"x" * 40 + b"\n")
                self.clock.advance(0)
        self.assertTrue(socket.aborted)
        text = [formatEvent(e) for e in events]
        self.assertTrue([t for t in text if "not reading" in t and "the limit is 1000" in t], text)
        self.assertEqual(factory.server.client_count, 1)
        self.assertFalse(sender_socket.aborted)

    def test_the_cap_is_on_what_the_kernel_has_not_taken(self) -> None:
        factory = self.make_factory(send_queue=200)
        reader, socket = connect(factory, 1, room=0)
        self.clock.advance(0)  # the greeting and the welcome: 76 bytes held
        reader.send(Text("y" * 60))
        self.clock.advance(0)  # 138
        self.assertFalse(socket.aborted)
        socket.room = 1 << 20
        socket.drain()  # Twisted sends them all: nothing waits any more
        socket.room = 0
        for _ in range(3):  # 62, 124, 186 bytes waiting
            reader.send(Text("z" * 60))
            self.clock.advance(0)
        self.assertFalse(socket.aborted)
        reader.send(Text("z" * 60))
        self.clock.advance(0)  # 248: over the cap
        self.assertTrue(socket.aborted)

    def test_one_big_turn_to_a_reader_with_room_is_not_cut_off(self) -> None:
        _, socket = connect(self.factory, 1)
        sender, _ = connect(self.factory, 2)
        self.clock.advance(0)
        for _ in range(5):  # 5 reads in one turn: 300,000 bytes for the reader
            sender.dataReceived(b"".join([b"y" * 49 + b"\n"] * 1000))
        self.clock.advance(0)
        self.assertFalse(socket.aborted)
        self.assertEqual(socket.received.count(b"y" * 49), 5000)

    def test_a_reader_that_keeps_up_a_little_behind_is_never_cut_off(self) -> None:
        factory = self.make_factory(send_queue=1000)
        _, socket = connect(factory, 1, room=10)
        sender, _ = connect(factory, 2)
        self.clock.advance(0)
        line = b"a line of chat, sixty bytes long, more or less, with padding"
        delivered = len(b"<guest2> " + line + b"\r\n")
        for _ in range(2000):  # 140,000 bytes: far past the cap, in all
            sender.dataReceived(line + b"\n")
            self.clock.advance(0)
            # The socket becomes writable and takes exactly one turn's worth.
            socket.room = delivered
            if socket in socket.fake_reactor.writers:
                socket.doWrite()
        self.assertFalse(socket.aborted)
        self.assertLess(len(socket.dataBuffer) - socket.offset + socket._tempDataLen, 1000)
        self.assertEqual(socket.received.count(line), 2000 - 1)  # one turn behind

    def test_a_factory_on_another_clock_writes_at_once(self) -> None:
        """Its flush might never come: so its writes go to Twisted at once."""
        elsewhere = FakeReactor()
        protocol, socket = connect(self.factory, 1, reactor=elsewhere)
        self.assertIn(socket, elsewhere.writers)  # the greeting, given to Twisted
        socket.drain()
        self.assertTrue(socket.received.startswith(b"hi\r\n"))
        protocol.send(Text("now"))
        socket.drain()
        self.assertTrue(socket.received.endswith(b"now\r\n"))

    def test_close_sends_what_is_owed_first(self) -> None:
        client, socket = connect(self.factory, 1)
        client.dataReceived(b"exit\n")
        # No turn has ended, yet the goodbye went out before the close began.
        self.assertTrue(socket.disconnecting)
        socket.drain()
        self.assertTrue(socket.received.startswith(b"hi\r\n"))
        self.assertTrue(socket.received.endswith(b"Goodbye.\r\n"), socket.received)

    def test_abort_drops_what_is_waiting(self) -> None:
        client, socket = connect(self.factory, 1)
        client.send(Text("never sent"))
        client.abort()
        self.clock.advance(0)
        self.assertEqual(socket.calls, [])
        self.assertTrue(socket.aborted)

    def test_lost_connection_drops_what_is_waiting(self) -> None:
        client, socket = connect(self.factory, 1)
        client.connectionLost(Failure(ConnectionLost()))
        self.clock.advance(0)
        self.assertEqual(socket.calls, [])

    def test_other_transports_are_written_at_once(self) -> None:
        from tests.helpers import connect as connect_string

        protocol, transport = connect_string(factory=self.factory)
        self.assertTrue(transport.value().startswith(b"hi\r\n"))
        protocol.send(Text("now"))
        self.assertTrue(transport.value().endswith(b"now\r\n"))


class FlushFailureTests(_FlushCase):
    def test_a_reset_connection_is_left_to_twisted_and_the_rest_still_get_theirs(self) -> None:
        first, broken = connect(self.factory, 1)
        second, fine = connect(self.factory, 2)
        broken.fail = ConnectionResetError()
        first.send(Text("lost"))
        second.send(Text("kept"))
        self.clock.advance(0)
        # Handed to Twisted's buffer, whose next write will find the reset.
        self.assertIn(broken, broken.fake_reactor.writers)
        self.assertTrue(fine.received.endswith(b"kept\r\n"))

    def test_an_internal_error_ends_that_connection_only(self) -> None:
        first, odd = connect(self.factory, 1)
        second, fine = connect(self.factory, 2)
        odd.fail = RuntimeError("bug")
        with capturedLogs() as events:
            first.send(Text("x"))
            second.send(Text("kept"))
            self.clock.advance(0)
        self.assertTrue(odd.aborted)
        self.assertTrue(fine.received.endswith(b"kept\r\n"))
        failures = [e for e in events if e.get("log_failure") is not None]
        self.assertEqual(len(failures), 1)
        self.assertIn("127.0.0.1:1", formatEvent(failures[0]))
        self.flushLoggedErrors(RuntimeError)
        # Later turns still flush.
        second.send(Text("later"))
        self.clock.advance(0)
        self.assertTrue(fine.received.endswith(b"later\r\n"))
