"""
The Twisted adapter: bytes from a transport in, one call on the server's
L{Session} per callback; lines from the session out to the transport.
"""

from __future__ import annotations

from typing import cast

from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IHalfCloseableProtocol,
    IReactorTime,
    ITCPTransport,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_tcpchat.config import ChatConfig
from twisted_tcpchat.interfaces import IConnection
from twisted_tcpchat.server import ChatServer, Peer, Session
from twisted_tcpchat.wire import LineBuffer, encode_line


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


@implementer(IConnection, IHalfCloseableProtocol)
class ChatProtocol(Protocol):
    """
    One client connection.  IProtocol and IHalfCloseableProtocol API towards
    Twisted, IConnection API towards the L{Session}.

    Half-closeable, so that a client that shuts down its sending side (nc -N,
    a C client's shutdown(SHUT_WR)) still gets every line owed to it: without
    it Twisted drops the connection, and what is queued, at the client's FIN.
    """

    session: Session
    _transport: ITCPTransport

    def __init__(self, server: ChatServer, clock: IReactorTime) -> None:
        self._server = server
        self._clock = clock
        self._framer = LineBuffer(server.config.max_line)
        self._closing = False
        self._abort: IDelayedCall | None = None

    # IProtocol

    def connectionMade(self) -> None:
        # Every stream transport Twisted gives a protocol (TCP, UNIX, TLS,
        # and StringTransport in tests) has abortConnection.
        self._transport = transport = cast(ITCPTransport, self.transport)
        if ITCPTransport.providedBy(transport):
            # Many small lines: Nagle would hold each back for an ACK.
            transport.setTcpNoDelay(True)
        host, port = address_parts(transport.getPeer())
        local_host, local_port = address_parts(transport.getHost())
        server_address = str(Peer(local_host, local_port, ""))
        self.session = self._server.connected(self, Peer(host, port, server_address))

    def dataReceived(self, data: bytes) -> None:
        self.session.frames_received(self._framer.feed(data))
        pending = self._framer.pending
        if pending > self._server.config.max_unterminated:
            self.session.overflowed(pending)

    def readConnectionLost(self) -> None:
        self.session.frames_received(self._framer.flush())
        self.session.input_ended()

    def writeConnectionLost(self) -> None:
        """We never half-close our side; nothing to do."""

    def connectionLost(self, reason: Failure = ConnectionDone) -> None:  # type: ignore[assignment]
        if self._abort is not None and self._abort.active():
            self._abort.cancel()
        self._closing = True
        self.session.ended(why_lost(reason))

    # IConnection

    def send_line(self, text: str) -> None:
        if not self._closing:
            self._transport.write(encode_line(text))

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._transport.loseConnection()
        self._abort = self._clock.callLater(
            self._server.config.close_grace, self._transport.abortConnection
        )


class ChatFactory(Factory):
    """
    Builds a L{ChatProtocol} per connection, all serving one L{ChatServer}.

    @ivar server: the server logic; C{server.config} holds the settings.
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

    def buildProtocol(self, addr: IAddress | None) -> ChatProtocol:
        protocol = ChatProtocol(self.server, self.clock)
        protocol.factory = self
        return protocol
