"""
Connections to Redis that come back after they are lost.

txredisapi speaks the Redis protocol; Twisted's L{ClientService} owns the
reconnecting (with backoff).  This module is the only one that imports
txredisapi: the Redis directory sees a L{RedisLink}, an object of ours.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet import ssl
from twisted.internet.defer import Deferred, fail, gatherResults, succeed
from twisted.internet.endpoints import HostnameEndpoint, UNIXClientEndpoint, wrapClientTLS
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import ILogObserver, Logger
from zope.interface import implementer

INSTALL_HINT = "--redis needs the Redis client: pip install 'twisted-tcpchat[redis]'"

log = Logger(namespace="tcpchat")


def redis_available() -> bool:
    """Whether the Redis client library is installed."""
    try:
        import txredisapi  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class RedisAddress:
    """
    Where Redis is, from a URL: C{redis://[USER:PASSWORD@]HOST[:PORT][/DB]},
    C{rediss://...} (TLS, the certificate verified against the system's
    roots or C{?ca=PATH}), or C{unix:///PATH[?db=DB]}.
    """

    scheme: str
    host: str
    port: int
    path: str
    db: int
    username: str | None
    password: str | None
    ca: str | None

    @classmethod
    def parse(cls, url: str) -> RedisAddress:
        """The address C{url} names; ValueError saying why when it names none."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("redis", "rediss", "unix"):
            raise ValueError(
                f"redis: {url!r} is not a redis://HOST:PORT/DB, rediss:// or unix:///PATH URL"
            )
        query = parse_qs(parts.query)
        try:
            port = parts.port or 6379
        except ValueError:
            raise ValueError(f"redis: {url!r} has a bad port") from None
        if scheme == "unix":
            if not parts.path:
                raise ValueError(f"redis: {url!r} names no socket path")
            db_text = query.get("db", ["0"])[0]
        else:
            if not parts.hostname:
                raise ValueError(f"redis: {url!r} names no host")
            db_text = parts.path.strip("/") or query.get("db", ["0"])[0]
        try:
            db = int(db_text)
        except ValueError:
            raise ValueError(f"redis: {url!r}: the database must be a number") from None
        return cls(
            scheme=scheme,
            host=parts.hostname or "",
            port=port,
            path=unquote(parts.path) if scheme == "unix" else "",
            db=db,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            ca=query.get("ca", [None])[0],
        )

    def __str__(self) -> str:
        """The address without its password, for the log."""
        if self.scheme == "unix":
            return f"unix://{self.path}?db={self.db}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}/{self.db}"

    def endpoint(self, reactor: Any) -> IStreamClientEndpoint:
        """A client endpoint to this Redis."""
        if self.scheme == "unix":
            return UNIXClientEndpoint(reactor, self.path, timeout=5)
        plain = HostnameEndpoint(reactor, self.host, self.port, timeout=5)
        if self.scheme == "redis":
            return plain
        if self.ca is None:
            trust = ssl.platformTrust()
        else:
            with open(self.ca, "rb") as f:
                trust = ssl.Certificate.loadPEM(f.read())
        options = ssl.optionsForClientTLS(self.host, trustRoot=trust)
        return wrapClientTLS(options, plain)


class _ProtocolFactory(Factory):
    """Builds txredisapi protocols that give back text as it was stored."""

    def __init__(self, reply_timeout: float | None) -> None:
        self.reply_timeout = reply_timeout

    def buildProtocol(self, addr: Any) -> Any:
        """IProtocolFactory API"""
        import txredisapi

        class Protocol(txredisapi.RedisProtocol):  # type: ignore[misc]
            lost_reason: Any = None

            def connectionLost(self, why: Any) -> None:
                self.lost_reason = why  # (txredisapi keeps no reason: a TLS refusal's)
                super().connectionLost(why)

        # convertNumbers=False: a chat line "3.10" must come back as "3.10".
        protocol = Protocol(charset="utf-8", replyTimeout=self.reply_timeout, convertNumbers=False)
        protocol.factory = self
        return protocol

    noisy = False

    # txredisapi's protocol tells its factory of a failed AUTH this way.
    def stopTrying(self) -> None:
        pass

    def connectionError(self, message: str) -> None:
        log.error("redis: {message}", message=message)

    isLazy = False


class _QuietClientService(ClientService):
    """ClientService, without a log line per retry: the directory says when Redis goes and comes."""

    _log = Logger(observer=cast(ILogObserver, lambda event: None))


@implementer(IStreamClientEndpoint)
class _Reporting:
    """An endpoint that logs the first failure of a run of failed connections."""

    def __init__(self, endpoint: IStreamClientEndpoint, link: RedisLink) -> None:
        self.endpoint = endpoint
        self.link = link

    def connect(self, factory: Any) -> Deferred[Any]:
        def failed(failure: Any) -> Any:
            # Once connected, the directory says when Redis goes and comes back.
            if not self.link._failing and not self.link.ever_ready:
                self.link._failing = True
                log.warn(
                    "redis: cannot connect to {address} ({link}): {error}; trying again",
                    address=str(self.link.address),
                    link=self.link.name,
                    error=failure.getErrorMessage(),
                )
            return failure

        connecting: Deferred[Any] = self.endpoint.connect(factory)
        return connecting.addErrback(failed)


class RedisLink:
    """
    One connection to Redis, made again (with backoff) whenever it is lost.

    @param ready: called with each new connection once it is usable (after
        AUTH and SELECT); may return a Deferred the link waits for.
    @param lost: called when a usable connection is lost.
    @param reply_timeout: seconds after which an unanswered command closes
        the connection (None for a link that waits in blocking reads).
    @param report: whether to log that Redis cannot be reached before the
        first connection (one link of a node says it).
    """

    def __init__(
        self,
        reactor: Any,
        address: RedisAddress,
        name: str,
        ready: Callable[[Any], Deferred[None] | None],
        lost: Callable[[], None],
        reply_timeout: float | None = 5.0,
        report: bool = True,
    ) -> None:
        self.address = address
        self.name = name
        self.protocol: Any = None
        self._ready = ready
        self._lost = lost
        self._failing = False
        # (a link that does not report counts as having been ready: it is silent)
        self.ever_ready = not report
        self._service = _QuietClientService(
            _Reporting(address.endpoint(reactor), self),
            _ProtocolFactory(reply_timeout),
            retryPolicy=backoffPolicy(initialDelay=0.1, maxDelay=2.0, factor=2.0),
            clock=reactor,
            prepareConnection=self._prepare,
        )

    @property
    def connected(self) -> bool:
        return self.protocol is not None

    def start(self) -> None:
        self._service.startService()

    def stop(self) -> Deferred[None]:
        self.protocol = None
        return self._service.stopService()

    def execute(self, *args: Any, **kwargs: Any) -> Deferred[Any]:
        """Send one command; its Deferred fails with ConnectionError when not connected."""
        protocol = self.protocol
        if protocol is None:
            import txredisapi

            return fail(txredisapi.ConnectionError("not connected"))
        return protocol.execute_command(*args, **kwargs)  # type: ignore[no-any-return]

    def abort(self) -> None:
        """Drop the connection at once (it will be made again)."""
        if self.protocol is not None and self.protocol.transport is not None:
            self.protocol.transport.abortConnection()

    def _prepare(self, protocol: Any) -> Deferred[None]:
        address = self.address
        steps: list[tuple[Any, ...]] = []
        if address.password is not None:
            if address.username is not None:
                steps.append(("AUTH", address.username, address.password))
            else:
                steps.append(("AUTH", address.password))
        if address.db:
            steps.append(("SELECT", address.db))
        steps.append(("CLIENT", "SETNAME", self.name))

        def go(ready_protocol: Any) -> Deferred[None]:
            waits = [ready_protocol.execute_command(*step) for step in steps]
            done = gatherResults(waits, consumeErrors=True)
            return done.addCallback(lambda _: self._now_ready(ready_protocol))

        ready: Deferred[None] = protocol.whenConnected().addCallback(go)
        # Never a failure for ClientService: it cannot take one while the
        # connection is being lost (a TLS handshake refused), so the
        # connection is dropped instead, and made again after a while.
        return ready.addErrback(self._not_prepared, protocol)

    def _not_prepared(self, failure: Any, protocol: Any) -> None:
        import txredisapi

        error = getattr(failure.value, "subFailure", failure)
        if error.check(txredisapi.ConnectionError) and protocol.lost_reason is not None:
            error = protocol.lost_reason
        if not self._failing and not self.ever_ready:
            self._failing = True
            log.error(
                "redis: cannot connect to {address} ({link}): {error}; trying again",
                address=str(self.address),
                link=self.name,
                error=error.getErrorMessage(),
            )
        if protocol.transport is not None:
            protocol.transport.abortConnection()

    def _now_ready(self, protocol: Any) -> Deferred[None]:
        self._failing = False
        self.ever_ready = True
        self.protocol = protocol
        protocol.whenDisconnected().addCallback(lambda _: self._gone(protocol))
        outcome = self._ready(protocol)
        return outcome if outcome is not None else succeed(None)

    def _gone(self, protocol: Any) -> None:
        if self.protocol is protocol:
            self.protocol = None
            self._lost()
