"""
TLS for the server: C{--listen ssl:PORT:privateKey=KEY:certKey=CERT}.

Twisted's C{ssl:} endpoint already insists on TLS 1.2 or newer and a sane
cipher list; two things it leaves to us are refusing renegotiation (a CPU
cost an attacker can repeat at will on TLS 1.2) and a handshake timeout
(L{twisted_tcpchat.protocol.ChatProtocol} does that one).
"""

from __future__ import annotations

from typing import Any


class HardenedTLSReactor:
    """
    The reactor as C{serverFromString} sees it: the same in every way but
    C{listenSSL}, which first sets OpenSSL's C{OP_NO_RENEGOTIATION} on the
    context every connection of that port will share.

    A stand-in rather than a parser of our own: Twisted keeps loading keys,
    certificate chains and DH parameters exactly as its C{ssl:} strings
    document, and offers no public hook on the context it builds.
    """

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reactor, name)

    def listenSSL(
        self, port: int, factory: Any, contextFactory: Any, backlog: int = 50, interface: str = ""
    ) -> Any:
        """IReactorSSL API."""
        from OpenSSL import SSL

        contextFactory.getContext().set_options(SSL.OP_NO_RENEGOTIATION)
        return self._reactor.listenSSL(port, factory, contextFactory, backlog, interface)
