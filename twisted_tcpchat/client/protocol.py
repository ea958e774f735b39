"""
The client's Twisted adapter: each callback of a connection becomes one call
on the L{ClientSession}; the session's writes and closes go to the transport.
Plus the factory that builds it, and the endpoint wrapper that gives every
connection attempt a deadline and tells the session why one failed.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import (
    IAddress,
    IConnector,
    IDelayedCall,
    IHalfCloseableDescriptor,
    IHandshakeListener,
    INegotiated,
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    IStreamClientEndpoint,
    ITCPTransport,
)
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_tcpchat.client.session import ClientSession, ILink, why_lost, why_not_connected

#: Seconds a closing connection may take to send what is left before it is
#: cut off (a server that does not read would otherwise hold us forever).
CLOSE_GRACE = 2.0


@implementer(ILink, IHandshakeListener)
class ChatClientProtocol(Protocol):
    """
    One connection to the server.  IProtocol and IHandshakeListener API
    towards Twisted, ILink API towards the L{ClientSession}.

    Over TLS the connection counts as made once the handshake has completed:
    a certificate that does not verify is a failure to connect, not a chat
    that ends at once.
    """

    def __init__(self, session: ClientSession, clock: IReactorTime) -> None:
        self._session = session
        self._clock = clock
        self._closing = False
        self._tls = False
        self._up = False
        self._abort: IDelayedCall | None = None

    # IProtocol

    def connectionMade(self) -> None:
        if ITCPTransport.providedBy(self.transport):
            # Each typed line is small and wanted now: no Nagle delay.
            self.transport.setTcpNoDelay(True)
        self._tls = INegotiated.providedBy(self.transport)
        if not self._tls:
            self._connected()

    def dataReceived(self, data: bytes) -> None:
        self._session.data_received(data)

    def connectionLost(self, reason: Failure = ConnectionDone) -> None:  # type: ignore[assignment]
        if self._abort is not None and self._abort.active():
            self._abort.cancel()
        self._closing = True
        why = why_lost(reason.value or Exception())
        if not self._up:
            self._session.connect_failed(why)
        else:
            self._session.connection_lost(reason.check(ConnectionDone) is not None, why)

    # IHandshakeListener

    def handshakeCompleted(self) -> None:
        self._connected()

    def _connected(self) -> None:
        self._up = True
        self._session.connection_made(self)

    # ILink

    def write(self, data: bytes) -> None:
        if not self._closing and self.transport is not None:
            self.transport.write(data)

    def half_close(self) -> bool:
        transport = self.transport
        if self._closing or self._tls:
            # TLS has no half-close (its close alert ends both ways), though
            # its transport claims the TCP interfaces below it.
            return False
        if not (
            ITCPTransport.providedBy(transport) or IHalfCloseableDescriptor.providedBy(transport)
        ):
            return False
        transport.loseWriteConnection()
        return True

    def close(self) -> None:
        if self._closing or self.transport is None:
            return
        self._closing = True
        self.transport.loseConnection()
        abort = getattr(self.transport, "abortConnection", None)
        if abort is not None:
            self._abort = self._clock.callLater(CLOSE_GRACE, abort)


class ChatClientFactory(ClientFactory):
    """
    Builds a L{ChatClientProtocol} for each connection of one session: one
    connection, or one after another with C{--reconnect}.

    With an endpoint (as C{tcpchat} uses it) the L{Dialer} reports failed
    attempts; with C{reactor.connectTCP} the C{ClientFactory} callbacks do.
    """

    noisy = False

    def __init__(self, session: ClientSession, clock: IReactorTime) -> None:
        self.session = session
        self.clock = clock

    def buildProtocol(self, addr: IAddress | None) -> ChatClientProtocol:
        protocol = ChatClientProtocol(self.session, self.clock)
        protocol.factory = self
        return protocol

    def clientConnectionFailed(self, connector: IConnector, reason: Failure) -> None:
        """IReactorTCP.connectTCP API: the attempt failed."""
        self.session.connect_failed(why_not_connected(reason.value or Exception()))


@implementer(IStreamClientEndpoint)
class Dialer:
    """
    An endpoint around another: each attempt gets C{timeout} seconds, and a
    failed attempt is reported to the session in a few words before the
    failure goes on to the caller (L{ClientService} retries; C{main} ends).
    """

    def __init__(
        self,
        endpoint: IStreamClientEndpoint,
        report: Callable[[str], None],
        clock: IReactorTime,
        timeout: float,
    ) -> None:
        self._endpoint = endpoint
        self._report = report
        self._clock = clock
        self._timeout = timeout

    def connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
        attempt = self._endpoint.connect(factory)
        timed_out = []

        def give_up() -> None:
            timed_out.append(True)
            attempt.cancel()

        deadline = self._clock.callLater(self._timeout, give_up)

        def succeeded(protocol: IProtocol) -> IProtocol:
            deadline.cancel()
            return protocol

        def failed(failure: Failure) -> Failure:
            if deadline.active():
                deadline.cancel()
            if timed_out:
                self._report(f"timed out after {self._timeout:g} s")
            else:
                self._report(why_not_connected(failure.value or Exception()))
            return failure

        return attempt.addCallbacks(succeeded, failed)
