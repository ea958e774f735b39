"""
TLS for the server: C{--listen ssl:PORT:privateKey=KEY:certKey=CERT}.

Twisted's C{ssl:} endpoint already insists on TLS 1.2 or newer and a sane
cipher list; two things it leaves to us are refusing renegotiation (a CPU
cost an attacker can repeat at will on TLS 1.2) and a handshake timeout
(L{twisted_tcpchat.protocol.ChatProtocol} does that one).

A reload (SIGHUP) reads each listener's certificate and key again: every
new connection asks its listener's L{ReloadableTLS} for the TLS settings of
the moment, so connected clients keep their sessions and new ones get the
new certificate.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IOpenSSLContextFactory, IOpenSSLServerConnectionCreator
from twisted.internet.protocol import Factory
from zope.interface import implementer


class HardenedTLSReactor:
    """
    The reactor as C{serverFromString} sees it: the same in every way but
    C{listenSSL}, which first sets OpenSSL's C{OP_NO_RENEGOTIATION} on the
    context every connection of that port will share, and listens with a
    L{ReloadableTLS} around it (kept in C{tls}) so that a reload can
    replace it.

    A stand-in rather than a parser of our own: Twisted keeps loading keys,
    certificate chains and DH parameters exactly as its C{ssl:} strings
    document, and offers no public hook on the context it builds.
    """

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        #: The TLS settings of each port it listened on, for a reload.
        self.tls: list[ReloadableTLS] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reactor, name)

    def listenSSL(
        self, port: int, factory: Any, contextFactory: Any, backlog: int = 50, interface: str = ""
    ) -> Any:
        """IReactorSSL API."""
        _harden(contextFactory)
        tls = ReloadableTLS(contextFactory)
        listening = self._reactor.listenSSL(port, factory, tls, backlog, interface)
        self.tls.append(tls)
        return listening


def _harden(creator: Any) -> None:
    """Refuse renegotiation on the context every connection of a port shares."""
    from OpenSSL import SSL

    creator.getContext().set_options(SSL.OP_NO_RENEGOTIATION)


@implementer(IOpenSSLServerConnectionCreator, IOpenSSLContextFactory)
class ReloadableTLS:
    """
    The TLS settings of one listening port, which a reload may replace.

    Twisted's TLS layer asks the object given to C{listenSSL} for an OpenSSL
    connection at each new connection (C{serverConnectionForTLS}; see
    C{twisted/protocols/_tls_legacy.py}), so a connection made after
    L{replace} uses the new certificate while those before keep theirs.

    @ivar current: what Twisted's C{ssl:} endpoint made (a
        C{CertificateOptions}), or its replacement.
    """

    def __init__(self, current: Any) -> None:
        self.current = current

    def serverConnectionForTLS(self, tlsProtocol: Any) -> Any:
        """IOpenSSLServerConnectionCreator API."""
        current = self.current
        if IOpenSSLServerConnectionCreator.providedBy(current):
            return current.serverConnectionForTLS(tlsProtocol)
        from OpenSSL import SSL

        return SSL.Connection(current.getContext(), None)

    def getContext(self) -> Any:
        """IOpenSSLContextFactory API."""
        return self.current.getContext()

    def change(self, new: Any) -> str | None:
        """What replacing the current settings by C{new} changes, for the log (None: nothing)."""
        if _fingerprints(new) == _fingerprints(self.current):
            return None
        certificate = getattr(new, "certificate", None)
        if certificate is None:
            return "new TLS settings"
        from cryptography.x509.oid import NameOID

        leaf = certificate.to_cryptography()
        names = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        subject = str(names[0].value) if names else "no common name"
        until = leaf.not_valid_after_utc.strftime("%Y-%m-%d %H:%M UTC")
        digest = certificate.digest("sha256").decode("ascii")
        return f"new certificate for {subject}, valid until {until} (SHA-256 {digest[:23]}...)"

    def replace(self, new: Any) -> None:
        """Give the connections to come the settings C{new}."""
        self.current = new


def _fingerprints(creator: Any) -> tuple[bytes, ...] | None:
    """The certificate and its chain, as SHA-256 digests (None: not known)."""
    certificate = getattr(creator, "certificate", None)
    if certificate is None:
        return None
    chain = getattr(creator, "extraCertChain", None) or []
    return tuple(c.digest("sha256") for c in [certificate, *chain])


class _ListenRecorder:
    """
    A reactor that listens nowhere: it keeps what an C{ssl:} endpoint would
    listen with, so that the endpoint string is read by Twisted's own parser.
    """

    creator: Any = None

    def listenSSL(
        self, port: int, factory: Any, contextFactory: Any, backlog: int = 50, interface: str = ""
    ) -> None:
        """IReactorSSL API."""
        self.creator = contextFactory


def load_tls(description: str) -> Any:
    """
    The TLS settings of the C{ssl:} endpoint string C{description}, read
    again from its files: the key, the certificate (and chain, and DH
    parameters) loaded and checked against each other, renegotiation off.

    @raise ValueError: in one line, for a file that cannot be read, is not
        what it should be, or a key that does not match its certificate.
    """
    recorder = _ListenRecorder()
    try:
        serverFromString(recorder, description).listen(Factory())
        creator = recorder.creator
        if creator is None:
            raise ValueError("not a TLS endpoint")
        _harden(creator)  # (making the context checks the key against the certificate)
    except OSError as e:
        where = f" {e.filename!r}" if e.filename else ""
        raise ValueError(f"cannot read{where}: {e.strerror or e}") from None
    except Exception as e:  # OpenSSL.SSL.Error, OpenSSL.crypto.Error, ValueError...
        raise ValueError(_tls_problem(e)) from None
    return creator


def _tls_problem(error: Exception) -> str:
    """One line for what OpenSSL (or Twisted's parser) refused: its reasons, not its tuples."""
    from OpenSSL import SSL, crypto

    if (
        isinstance(error, (SSL.Error, crypto.Error))
        and error.args
        and isinstance(error.args[0], list)
    ):
        reasons = [
            ": ".join(str(part) for part in (item[0], item[-1]) if part)
            for item in error.args[0]
            if isinstance(item, tuple) and item
        ]
        if reasons:
            return "OpenSSL: " + "; ".join(reasons)
    if type(error).__name__ == "VerifyError":  # (Twisted's: the key is not the certificate's)
        return str(error)
    return f"{type(error).__name__}: {error}"
