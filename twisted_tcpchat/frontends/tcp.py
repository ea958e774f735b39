"""
The TCP front end (plain, TLS and UNIX sockets alike): bytes from a
transport are framed and decoded into lines for the client's L{Session};
events from the session are rendered into lines (L{render}) and written.
"""

from __future__ import annotations

import socket
import sys
import typing
import weakref
from typing import cast

from twisted.internet.abstract import FileDescriptor
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IHalfCloseableProtocol,
    IHandshakeListener,
    IPushProducer,
    IReactorCore,
    IReactorTime,
    ISSLTransport,
    IUNIXTransport,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_tcpchat import logs
from twisted_tcpchat.core.config import ChatConfig
from twisted_tcpchat.core.events import Event
from twisted_tcpchat.core.interfaces import Ending, IConnection
from twisted_tcpchat.core.login import redact
from twisted_tcpchat.core.server import ChatServer
from twisted_tcpchat.core.session import BadLine, Line, Peer, Session, too_long
from twisted_tcpchat.core.stats import Stats
from twisted_tcpchat.frontends.jsonevents import JSON_LINE_KEY, json_line
from twisted_tcpchat.frontends.render import wire_bytes
from twisted_tcpchat.logs import TurnLog
from twisted_tcpchat.text.encodings import Codec
from twisted_tcpchat.text.escaping import escape_controls
from twisted_tcpchat.text.framing import Frame, LineBuffer, Overlong, sniff

log = TurnLog(namespace="tcpchat")


def address_parts(address: IAddress) -> tuple[str, int]:
    """
    The host and port of a Twisted address, as people write them: an IPv4
    client of a dual-stack socket shows as C{1.2.3.4}, not C{::ffff:1.2.3.4};
    a UNIX socket peer as C{unix} and port 0.
    """
    host = getattr(address, "host", None)
    port = getattr(address, "port", 0)
    if not isinstance(host, str):
        return "unix", 0
    if host.startswith("::ffff:") and "." in host:
        host = host[len("::ffff:") :]
    return host, int(port)


def why_lost(reason: Failure) -> str:
    """How a connection ended, in a few words for the log."""
    if reason.check(ConnectionDone):
        return "closed by the client"
    return f"connection lost: {reason.getErrorMessage()}"


def tune_tcp(transport: object, keepalive: int) -> None:
    """
    On a TCP socket: no Nagle delay (many small lines would each wait for an
    ACK), and keepalive probes after C{keepalive} seconds of silence, then
    every 10 s, 6 times - a vanished peer is noticed in about C{keepalive} +
    60 s, not Linux's default of over two hours.  Other transports (UNIX
    sockets, in-memory fakes) are left alone.
    """
    sock = getattr(transport, "getHandle", lambda: None)()
    if not isinstance(sock, socket.socket):
        # Under TLS the protocol's transport wraps the TCP one.
        inner = getattr(transport, "transport", None)
        sock = getattr(inner, "getHandle", lambda: None)()
    if not isinstance(sock, socket.socket) or sock.family not in (
        socket.AF_INET,
        socket.AF_INET6,
    ):
        return
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if not keepalive:
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (("TCP_KEEPIDLE", keepalive), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 6)):
        if hasattr(socket, option):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


class StreamTransport(typing.Protocol):
    """What this protocol uses of its transport (TCP, UNIX, TLS, and test fakes)."""

    def write(self, data: bytes) -> None: ...
    def loseConnection(self) -> None: ...
    def abortConnection(self) -> None: ...
    def registerProducer(self, producer: IPushProducer, streaming: bool) -> None: ...
    def unregisterProducer(self) -> None: ...
    def pauseProducing(self) -> None: ...
    def resumeProducing(self) -> None: ...
    def getPeer(self) -> IAddress: ...
    def getHost(self) -> IAddress: ...


class _Socket(typing.Protocol):
    def send(self, data: bytes) -> int: ...


def direct_socket(transport: object, flusher: TurnFlusher | None) -> _Socket | None:
    """
    The socket that writes to C{transport} can go straight to at the end of
    a turn (see L{TurnFlusher}), or None where they cannot: they can on a
    socket transport (TCP or UNIX: a L{FileDescriptor} with a socket handle)
    run by the reactor that also runs the flusher - with any other clock,
    the flush might never come.
    """
    if (
        flusher is None
        or not isinstance(transport, FileDescriptor)
        or getattr(transport, "reactor", None) is not flusher.clock
        or not all(hasattr(transport, a) for a in ("dataBuffer", "offset", "_tempDataLen"))
    ):
        return None
    handle = getattr(transport, "getHandle", lambda: None)()
    if not callable(getattr(handle, "send", None)):
        return None
    return cast(_Socket, handle)


def unsent_bytes(transport: FileDescriptor) -> int:
    """
    The bytes Twisted holds for C{transport}, not yet taken by the kernel:
    what its own C{_isSendBufferFull} measures.  (Twisted has no public
    accessor for it; L{direct_socket} checks the attributes are there.)
    """
    return len(transport.dataBuffer) - transport.offset + transport._tempDataLen


def queued_on(transport: object, since_pause: int | None) -> int:
    """
    The bytes waiting for a client on C{transport}: in Twisted's buffer of
    its socket, under TLS too (TLS hands its records straight to the socket's
    transport); else (a test's fake) those written since it paused us.
    """
    for candidate in (transport, getattr(transport, "transport", None)):
        if isinstance(candidate, FileDescriptor) and hasattr(candidate, "dataBuffer"):
            return unsent_bytes(candidate)
    return since_pause or 0


class Gathering(typing.Protocol):
    """A connection whose writes of a turn a L{TurnFlusher} sends at its end."""

    def send_now(self) -> None: ...
    def who(self) -> str: ...
    def abort(self) -> None: ...


def send_gathered(
    out: list[bytes],
    socket: _Socket,
    transport: FileDescriptor,
    stats: Stats,
) -> int:
    """
    Send what a connection gathered this turn (see L{TurnFlusher}):
    straight to its socket if Twisted's buffer is empty, and what the kernel
    does not take (or all of it, if Twisted still holds older bytes) to
    Twisted's buffer.  Return the bytes waiting there.  (C{stats} counts
    the events of C{out} as sent.)
    """
    data = b"".join(out)
    stats.sent(data, len(out))
    if not unsent_bytes(transport):
        # What Twisted's writeSomeData does, without its wrappers: Python
        # retries EINTR, and a full socket buffer raises BlockingIOError.
        try:
            sent = socket.send(data)
        except OSError:
            # Full (BlockingIOError), or the connection is gone: then
            # Twisted's own write, below, finds out and ends it as usual.
            sent = 0
        if sent == len(data):
            return 0
        data = data[sent:]
    transport.write(data)
    return unsent_bytes(transport)


class TurnFlusher:
    """
    Sends what each connection was given during one reactor turn, once,
    when the turn is over.

    Twisted's own C{transport.write} buffers, asks epoll to say when the
    socket is writable, sends on the next turn, then tells epoll to stop
    watching: two C{epoll_ctl} calls, an event and a trip through the
    reactor's dispatch per write, for a socket that almost always had room.
    A chat server writes to many sockets per read, so that overhead was a
    quarter of its time.  Here a connection's writes of one turn are joined
    and sent with one C{send} on the transport's socket; only what the
    kernel does not take goes to Twisted's buffer, which then does its usual
    job.  Waiting for the end of the turn (C{callLater(0)} runs before the
    reactor polls again) keeps the coalescing: a client that is sent lines
    from 100 senders in one turn still gets one C{send}, not 100.

    With C{hold_log}, from the first read or write of a turn until its sends
    are done, the log is held (L{twisted_tcpchat.logs}): writing it is the
    costliest part of relaying a read, and it no longer stands between a
    line and its delivery.  Only on a real reactor, which always runs the
    flush (or stops, and then L{ChatFactory} flushes): a test's clock that
    is never advanced would hold every log event of the process.
    """

    __slots__ = ("__weakref__", "_call", "_dirty", "_hold_log", "clock")

    def __init__(self, clock: IReactorTime, hold_log: bool = False) -> None:
        self.clock = clock
        self._hold_log = hold_log
        self._dirty: list[Gathering] = []
        self._call: IDelayedCall | None = None

    def begin(self) -> None:
        """A connection is busy this turn: flush (and hold the log) until its end."""
        if self._call is None:
            self._call = self.clock.callLater(0, self.flush)
            if self._hold_log:
                logs.hold()

    def add(self, protocol: Gathering) -> None:
        """C{protocol} has something to send at the end of this turn."""
        self._dirty.append(protocol)
        if self._call is None:  # (begin(), without a call for every member)
            self.begin()

    def flush(self) -> None:
        """
        Send what every connection was given this turn, then write the log.
        (Called early, at shutdown, it does the same at once.)
        """
        call = self._call
        if call is None:
            return
        if call.active():
            call.cancel()
        self._call = None
        dirty, self._dirty = self._dirty, []
        try:
            for protocol in dirty:
                try:
                    protocol.send_now()
                except Exception:
                    # Not expected; but one connection's failure must not
                    # keep the others' lines from going out.
                    self._failed(protocol)
        finally:
            if self._hold_log:
                logs.release()

    @staticmethod
    def _failed(protocol: Gathering) -> None:
        """Sending to C{protocol} raised: log it and drop that connection."""
        try:
            peer = protocol.who()
        except Exception:
            peer = "a client"
        log.failure("internal error sending to {peer}", peer=peer)
        try:
            protocol.abort()
        except Exception:
            log.failure("internal error dropping {peer}", peer=peer)


@implementer(IConnection, IHalfCloseableProtocol, IPushProducer, IHandshakeListener)
class ChatProtocol(Protocol):
    """
    One client connection.  IProtocol, IHalfCloseableProtocol,
    IPushProducer and IHandshakeListener API towards Twisted, IConnection
    API towards the L{Session}.

    Under TLS the session starts only once the handshake is done, so a
    client that never finishes it is dropped by a timeout without ever
    having been greeted, counted or announced.

    Half-closeable, so that a client that shuts down its sending side (nc -N,
    a C client's shutdown(SHUT_WR)) still gets every line owed to it: without
    it Twisted drops the connection, and what is queued, at the client's FIN.

    On a socket (TCP or UNIX) of the reactor the factory runs on, what the
    session sends during a reactor turn is sent at the end of the turn by a
    L{TurnFlusher}, with one C{send}; what the kernel does not take waits
    in Twisted's buffer, and past the send-queue cap (checked after each
    flush) the session is cut off.  On other transports (TLS, test fakes)
    it writes at once and, as a streaming producer on its transport, hears
    when the client stops reading (Twisted pauses it at 64 KiB unsent) and
    counts what is sent while paused against the same cap.  Either way
    nothing else waits for a slow reader.
    """

    session: Session
    _transport: StreamTransport
    #: The front end, for the metrics: tcp, tls or unix (set once connected).
    frontend = "tcp"

    def __init__(
        self, server: ChatServer, clock: IReactorTime, flusher: TurnFlusher | None = None
    ) -> None:
        self._server = server
        self._stats = server.stats
        self._config = server.config
        self._flusher = flusher
        self._clock = clock
        self._codec = Codec(server.config.encoding)
        self._framer = LineBuffer(server.config.max_line)
        # On a socket: its send(), and what this turn's writes gathered.
        self._socket: _Socket | None = None
        self._out: list[bytes] | None = None
        self._closing = False
        self._json = False  # (/events json)
        self._first = True
        self._abort: IDelayedCall | None = None
        self._quiet: IDelayedCall | None = None
        self._handshake: IDelayedCall | None = None
        # Whether the session exists (under TLS: after the handshake).
        self._started = False
        # Bytes written since the transport asked us to pause (None: not paused).
        self._queued: int | None = None
        self._overflow_call: IDelayedCall | None = None

    # IProtocol

    def connectionMade(self) -> None:
        # Every stream transport Twisted gives a protocol (TCP, UNIX, TLS,
        # and StringTransport in tests) has abortConnection.
        self._transport = transport = cast(StreamTransport, self.transport)
        tune_tcp(transport, self._config.keepalive)
        self._socket = direct_socket(transport, self._flusher)
        transport.registerProducer(self, True)
        if IUNIXTransport.providedBy(transport):
            self.frontend = "unix"
        if ISSLTransport.providedBy(transport):
            self.frontend = "tls"
            unwelcome = self._server.unwelcome(self.peer().host)
            if unwelcome is not None:
                # No handshake for an address that may not come in.
                peer = self.peer()
                log.info(
                    "{peer} refused before TLS: error: {why}",
                    peer=str(peer),
                    why=unwelcome,
                    address=peer.host,
                    port=peer.port,
                    reason=unwelcome,
                )
                self._closing = True
                transport.abortConnection()
                return
            self._handshake = self._clock.callLater(
                self._config.tls_timeout, self._handshake_timed_out
            )
        else:
            self._start()

    def handshakeCompleted(self) -> None:
        """IHandshakeListener API: TLS is up; now the chat begins."""
        self._cancel(self._handshake)
        self._start()

    def _handshake_timed_out(self) -> None:
        log.info(
            "{peer} did not finish the TLS handshake in {timeout:g} s; dropped",
            peer=str(self.peer()),
            timeout=self._config.tls_timeout,
        )
        self._closing = True
        self._transport.abortConnection()

    def peer(self) -> Peer:
        host, port = address_parts(self._transport.getPeer())
        return Peer(host, port, "")

    def who(self) -> str:
        """Who this is, for the log."""
        return str(self.peer())

    def _start(self) -> None:
        self._started = True
        transport = self._transport
        host, port = address_parts(transport.getPeer())
        local_host, local_port = address_parts(transport.getHost())
        # One string for all the clients of a listener, not one each.
        server_address = sys.intern(str(Peer(local_host, local_port, "")))
        self.session = self._server.connected(self, Peer(host, port, server_address))

    def dataReceived(self, data: bytes) -> None:
        self._stats.bytes_in += len(data)
        if self._socket is not None:
            self._flusher.begin()  # type: ignore[union-attr]
        if self._first:
            self._first = False
            problem = sniff(data)
            if problem is not None:
                self.session.not_chat(problem)
                return
        framer = self._framer
        frames = framer.feed(data)
        if frames:
            self._lines_received(frames)
        pending = framer.pending
        if pending > self._config.max_unterminated:
            self.session.overflowed(pending)
        elif (framer.holding or (pending and not framer.terminated)) and not self._closing:
            # Lines after a NUL wait to be told from a buffer's padding, and
            # a classic client that never ends its lines has sent a message
            # once it is quiet.
            if self._quiet is not None and self._quiet.active():
                self._quiet.reset(self._config.quiet_time)
            else:
                self._quiet = self._clock.callLater(self._config.quiet_time, self._quiet_flush)

    def _lines_received(self, frames: list[Frame]) -> None:
        """Frames decoded into lines (or bad lines), handed to the session with their sizes."""
        lines: list[Line] | None = self._codec.decode_lines(frames)  # type: ignore[assignment]
        if lines is None:
            lines = [self._line(frame) for frame in frames]
        self.session.received(lines, list(map(len, frames)))

    def _line(self, frame: Frame) -> Line:
        """One frame's text, or why it has none."""
        if isinstance(frame, Overlong):
            return too_long(frame.size, self._config.max_line)
        return self._decoded(frame)

    def _decoded(self, raw: bytes) -> Line:
        """One line's text, or why it has none."""
        text = self._codec.decode(raw)
        if text is not None:
            return text
        expected = self._config.encoding or "UTF-8 or GBK"
        shown = escape_controls(redact(raw.decode("utf-8", "backslashreplace")))
        return BadLine(
            len(raw),
            f"that line is not {expected} text; not delivered",
            f"sent {len(raw)} bytes in no known encoding: {shown}",
        )

    def _quiet_flush(self) -> None:
        self._quiet = None
        frames = self._framer.quiet()
        if frames:
            self._lines_received(frames)

    def readConnectionLost(self) -> None:
        self._cancel(self._quiet)
        if not self._started:
            self.abort()
            return
        frames = self._framer.flush()
        if frames:
            self._lines_received(frames)
        self.session.input_ended()

    def writeConnectionLost(self) -> None:
        """We never half-close our side; nothing to do."""

    def connectionLost(self, reason: Failure = ConnectionDone) -> None:  # type: ignore[assignment]
        self._cancel(self._abort)
        self._cancel(self._quiet)
        self._cancel(self._overflow_call)
        self._closing = True
        self._out = None
        self._stats.backlogged.discard(self)
        if self._started:
            self.session.ended(why_lost(reason), clean=reason.check(ConnectionDone) is not None)
        elif self._handshake is not None and self._handshake.active():
            self._handshake.cancel()
            log.info(
                "{peer} left during the TLS handshake ({why})",
                peer=str(self.peer()),
                why=why_lost(reason),
            )

    def _overflowed(self) -> None:
        self._overflow_call = None
        if self._queued is not None and self._queued > self._config.send_queue:
            self.session.send_queue_full(self._queued)

    # IPushProducer: the transport tells us how the client is reading.

    def pauseProducing(self) -> None:
        if self._queued is None:
            self._queued = 0
            self._stats.backlogged.add(self)

    def resumeProducing(self) -> None:
        self._queued = None

    def stopProducing(self) -> None:
        self._queued = None

    # IConnection

    def events_as(self, kind: str) -> None:
        """C{/events json}: events as JSON lines from now on (C{text}: as text again)."""
        self._json = kind == "json"

    def send(self, event: Event) -> None:
        if self._closing:
            return
        if self._json:
            data = event.rendered(JSON_LINE_KEY, json_line)
        else:
            data = event.rendered(self._codec.output, wire_bytes)
        if self._socket is not None:
            if self._out is None:
                self._out = [data]
                self._flusher.add(self)  # type: ignore[union-attr]
            else:
                self._out.append(data)
            return
        self._transport.write(data)
        self._stats.sent(data, 1)
        if self._queued is not None:
            self._queued += len(data)
            if self._queued > self._config.send_queue and self._overflow_call is None:
                # At the end of the turn, not now: this write may be one of a
                # room's relay, and the room must finish it before anyone goes.
                self._overflow_call = self._clock.callLater(0, self._overflowed)

    def send_now(self) -> None:
        """
        Send what this turn gathered: straight to the socket if Twisted's
        buffer is empty, and what the kernel does not take (or all of it, if
        Twisted still holds older bytes) to Twisted's buffer.  Then the
        send-queue cap applies to what waits there.
        """
        out, socket = self._out, self._socket
        if out is None or socket is None:
            return
        self._out = None
        queued = send_gathered(out, socket, self._transport, self._stats)  # type: ignore[arg-type]
        if queued:
            self._stats.backlogged.add(self)
            if queued > self._config.send_queue and not self._closing:
                self.session.send_queue_full(queued)

    def queued_bytes(self) -> int:
        """Backlogged API: the bytes waiting for the client."""
        if self._closing:
            return 0
        return queued_on(self._transport, self._queued)

    def close(self, ending: Ending | None = None) -> None:
        if self._closing:
            return
        self.send_now()  # what is owed goes before the close
        self._closing = True
        # Twisted does not close while a producer is registered.
        self._transport.unregisterProducer()
        self._transport.loseConnection()
        self._abort = self._clock.callLater(
            self._config.close_grace, self._transport.abortConnection
        )

    def abort(self) -> None:
        self._closing = True
        self._out = None
        self._transport.unregisterProducer()
        self._transport.abortConnection()

    def pause_reading(self) -> None:
        self._transport.pauseProducing()

    def resume_reading(self) -> None:
        if not self._closing:
            self._transport.resumeProducing()

    @staticmethod
    def _cancel(call: IDelayedCall | None) -> None:
        if call is not None and call.active():
            call.cancel()


def _flush_if_alive(flusher: weakref.ref[TurnFlusher]) -> None:
    alive = flusher()
    if alive is not None:
        alive.flush()


def turn_flusher(clock: IReactorTime) -> TurnFlusher:
    """
    A front end's L{TurnFlusher} on C{clock}: holding the log on a real
    reactor, and flushed when the reactor stops (it does not run the flush
    it was due then).
    """
    reactor = IReactorCore.providedBy(clock)
    flusher = TurnFlusher(clock, hold_log=reactor)
    if reactor:
        # (By weak reference: the trigger stays, the factory may go.)
        cast(IReactorCore, clock).addSystemEventTrigger(
            "after", "shutdown", _flush_if_alive, weakref.ref(flusher)
        )
    return flusher


class ChatFactory(Factory):
    """
    Builds a L{ChatProtocol} per connection, all serving one L{ChatServer}.

    @ivar server: the server; C{server.config} holds the settings.
    """

    noisy = False

    def __init__(
        self,
        config: ChatConfig | None = None,
        *,
        server: ChatServer | None = None,
        clock: IReactorTime | None = None,
    ) -> None:
        if clock is None:
            from twisted.internet import reactor as default_reactor

            clock = cast(IReactorTime, default_reactor)
        if server is None:
            server = ChatServer(config, clock)
        elif config is not None:
            raise TypeError("pass either config or server, not both")
        self.server = server
        self.clock = clock
        self.flusher = turn_flusher(clock)

    def buildProtocol(self, addr: IAddress | None) -> ChatProtocol:
        protocol = ChatProtocol(self.server, self.clock, self.flusher)
        protocol.factory = self
        return protocol
