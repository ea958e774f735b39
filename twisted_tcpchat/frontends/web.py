"""
The web front end (C{--web}): a page at C{/} and a WebSocket at C{/ws}, on
C{twisted.web}, with autobahn's Twisted WebSocket (the C{[web]} extra).

A WebSocket client is a participant like any other: its connection is an
L{IConnection} for a L{Session}, which applies the same limits, bans,
logins and commands as on TCP.  It sends each event as one text frame of
JSON (L{jsonevents}; the schema is in C{docs/websocket.md}) and takes lines
in text frames: C{{"type": "line", "text": "..."}}, or plain text.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from importlib.resources import files
from operator import attrgetter
from typing import Any, cast
from urllib.parse import urlsplit

import txaio
from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.protocol import PreparedMessage
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet.interfaces import IAddress, IDelayedCall, IPushProducer, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.web.pages import notFound
from twisted.web.resource import Resource
from twisted.web.server import Request, Site
from zope.interface import implementer

from twisted_tcpchat.core.config import ChatConfig
from twisted_tcpchat.core.events import Event
from twisted_tcpchat.core.interfaces import Ending, IConnection
from twisted_tcpchat.core.server import ChatServer
from twisted_tcpchat.core.session import BadLine, Line, Peer, Session, too_long
from twisted_tcpchat.frontends.health import HealthPage
from twisted_tcpchat.frontends.jsonevents import json_text
from twisted_tcpchat.frontends.tcp import (
    StreamTransport,
    address_parts,
    direct_socket,
    queued_on,
    send_gathered,
    tune_tcp,
    turn_flusher,
)
from twisted_tcpchat.logs import TurnLog

log = TurnLog(namespace="tcpchat")

#: The key of the prepared WebSocket frame kept on an event (L{Event.rendered}).
FRAME_KEY = "websocket"

#: Close codes (RFC 6455, section 7.4.1; 4000-4999 are the application's)
#: this front end closes with, by why the session ended: a client knows
#: from the code whether to come back by itself (docs/websocket.md).
NORMAL = 1000
GOING_AWAY = 1001
UNSUPPORTED = 1003
POLICY = 1008
RESTART = 1012
TRY_LATER = 1013
REMOVED = 4001
REFUSED = 4003
CLOSE_CODES = {
    Ending.QUIT: (NORMAL, "goodbye"),
    Ending.SHUTDOWN: (GOING_AWAY, "server shutting down"),
    Ending.BUSY: (TRY_LATER, "try again later"),
    Ending.REFUSED: (REFUSED, "refused"),
    Ending.REMOVED: (REMOVED, "removed by an operator"),
    Ending.ENDED: (POLICY, "ended by the server's rules"),
    Ending.LOST: (RESTART, "the server lost your place; reconnect"),
}
#: (Never sent: what autobahn reports when the connection went without a close.)
ABNORMAL = 1006

#: The page's files, served from the package.
PAGE = files("twisted_tcpchat.frontends") / "page"

#: Seconds an HTTP connection may stay open without a request (a WebSocket
#: is no longer one: it has its pings).
HTTP_IDLE = 60

#: Seconds an HTTP connection may last at most, unless it becomes a WebSocket.
HTTP_LIFETIME = 30

#: Seconds between pings to a quiet WebSocket (proxies drop idle ones),
#: and how long an answer may take before the connection is dropped.
PING_INTERVAL = 30.0
PING_TIMEOUT = 30.0


def frame_of(event: Event, key: str = FRAME_KEY) -> PreparedMessage:
    """C{event} as a WebSocket text frame, made once for every member."""
    payload = json_text(event).encode("utf-8", "replace")
    return PreparedMessage(payload, isBinary=False, applyMask=False, doNotCompress=True)


def lines_of(payload: str, max_line: int) -> tuple[list[Line], list[int]]:
    """
    The lines of one text frame, with their sizes in bytes: a JSON object
    C{{"type": "line", "text": TEXT}} or plain text, split at LF (a CR
    before it dropped).  A line over C{max_line} bytes, or a JSON object
    that is not a line, is a L{BadLine}.
    """
    size = len(payload.encode("utf-8"))
    if payload.startswith("{"):
        text = _line_text(payload)
        if isinstance(text, BadLine):
            return [text], [size]
    else:
        text = payload
    parts = text.split("\n")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()
    lines: list[Line] = []
    sizes = []
    for part in parts:
        part = part.removesuffix("\r")
        length = len(part.encode("utf-8"))
        lines.append(too_long(length, max_line) if length > max_line else part)
        sizes.append(length)
    return lines, sizes


_EXPECTED = 'expected {"type": "line", "text": "..."}'


def _line_text(payload: str) -> str | BadLine:
    """The text of a JSON line object, or why there is none."""
    size = len(payload.encode("utf-8"))
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError):
        return BadLine(
            size,
            f"that is not JSON; {_EXPECTED}",
            f"sent {size} bytes that are not JSON",
            "bad_request",
        )
    if not isinstance(data, dict) or data.get("type") != "line":
        return BadLine(
            size,
            f"unknown request; {_EXPECTED}",
            f"sent an unknown request ({size} bytes)",
            "bad_request",
        )
    text = data.get("text")
    if not isinstance(text, str):
        return BadLine(
            size,
            f'"text" must be a string; {_EXPECTED}',
            f"sent a line without text ({size} bytes)",
            "bad_request",
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # (a lone surrogate, \ud800, which no UTF-8 can hold)
        return BadLine(
            size,
            "that text is not valid Unicode; not delivered",
            f"sent {size} bytes of bad Unicode",
        )
    return text


def normal_origin(origin: str) -> str:
    """An origin as browsers send it: lower case, no path, no default port."""
    origin = origin.strip().rstrip("/").lower()
    for scheme, port in (("http://", ":80"), ("https://", ":443")):
        if origin.startswith(scheme) and origin.endswith(port):
            return origin[: -len(port)]
    return origin


def origin_problem(origin: str) -> str | None:
    """Why C{origin} (an operator's --web-origin) can match no page, or None."""
    if origin == "*":
        return None
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return "is not an origin like https://chat.example.com (or *)"
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return "is an origin without a path: https://chat.example.com"
    if "*" in parts.netloc or "@" in parts.netloc:
        return "names one site exactly (no * in it; * alone allows any)"
    return None


def same_origin(origin: str, host: str) -> bool:
    """Whether the page at C{origin} came from this server, as the browser reached it (C{host})."""
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc.lower() == host.lower()


#: What autobahn keeps of the opening handshake, unused once open.
_HANDSHAKE = (
    "http_headers",
    "http_request_data",
    "http_response_data",
    "http_status_line",
    "http_request_params",
    "http_request_uri",
    "http_request_path",
    "http_request_host",
)


class _SmallQueue(list[Any]):
    """
    autobahn's queue of chopped writes, which tcpchat never asks for: a
    list, 0.6 KiB smaller than the deque autobahn gives every connection.
    """

    __slots__ = ()

    def popleft(self) -> Any:
        return self.pop(0)


@implementer(IPushProducer)
class _SendQueue:
    """
    Counts what is sent to a client while its transport says it is not
    reading (Twisted pauses its producer at 64 KiB unsent): past the send-queue
    cap, the client is cut off at the end of the turn.
    """

    __slots__ = ("connection", "queued")

    def __init__(self, connection: WebConnection) -> None:
        self.connection = connection
        self.queued: int | None = None

    def pauseProducing(self) -> None:
        if self.queued is None:
            self.queued = 0
            self.connection.factory.chat.stats.backlogged.add(self.connection)

    def resumeProducing(self) -> None:
        self.queued = None

    def stopProducing(self) -> None:
        self.queued = None


def _settings_from_factory(cls: type[WebSocketServerProtocol]) -> type[WebSocketServerProtocol]:
    """
    Make autobahn's per-connection settings (29 of them, the same for every
    connection of a factory) read the factory's, instead of being copied
    into each connection: autobahn copies only what the class lacks.  1.6
    KiB less per WebSocket (docs/performance.md, ws-idle).  The size
    limits, which a reload may change, are copied: a connection keeps those
    it started with, as a TCP connection does.
    """
    for name in cls.CONFIG_ATTRS:
        if name not in _OWN_SETTINGS:
            setattr(cls, name, property(attrgetter(f"factory.{name}")))
    return cls


#: autobahn's settings each connection keeps (see L{_settings_from_factory}).
_OWN_SETTINGS = ("maxFramePayloadSize", "maxMessagePayloadSize")


#: autobahn's own closes, as the metrics count them (L{Stats.ended}).
_AUTOBAHN_CLOSES = {1007: "not_text", 1009: "unterminated"}


@_settings_from_factory
@implementer(IConnection)
class WebConnection(WebSocketServerProtocol):
    """
    One WebSocket client: autobahn's protocol towards the browser,
    L{IConnection} towards its L{Session} (made once the handshake is done).
    """

    session: Session | None = None
    factory: WebFactory
    #: The front end, for the metrics.
    frontend = "websocket"
    #: autobahn's own log: errors only (the chat logs each connection itself).
    log = txaio.make_logger(level="error")  # type: ignore[attr-defined]

    def __init__(self) -> None:
        super().__init__()
        self._closing = False
        # (Set only where the session's ending does not say it: a binary frame.)
        self._close_code: int | None = None
        self._close_reason = ""
        self._abort: IDelayedCall | None = None
        self._overflow_call: IDelayedCall | None = None
        self._queue = _SendQueue(self)
        # On a socket of the reactor: its send(), and this turn's frames
        # (sent at the end of the turn, as the TCP front end does).
        self._socket: Any = None
        self._out: list[bytes] | None = None

    @property
    def _settings(self) -> ChatConfig:
        """The settings this client started with (its session's), or the server's before."""
        session = self.session
        return session.config if session is not None else self.factory.chat.config

    @property
    def _stream(self) -> StreamTransport:
        return cast(StreamTransport, self.transport)

    # autobahn

    def onConnect(self, request: ConnectionRequest) -> None:
        if self.factory.site is not None:
            self.factory.site.upgraded(self.transport)
        origin = request.headers.get("origin")
        host = request.headers.get("host", "")
        if origin is not None and not self.factory.allows(origin, host):
            host, port = address_parts(self._stream.getPeer())
            log.info(
                "{peer} refused: a WebSocket from the page at {origin}, which is not this "
                "server's (--web-origin allows it)",
                peer=str(Peer(host, port, "")),
                origin=origin,
                address=host,
                reason="origin",
            )
            self.factory.chat.stats.refused["origin"] += 1
            raise ConnectionDeny(ConnectionDeny.FORBIDDEN, "origin not allowed")

    def onOpen(self) -> None:
        transport = self._stream
        tune_tcp(transport, self.factory.chat.config.keepalive)
        # The web server's channel was its producer; now the chat's send
        # queue is.
        transport.unregisterProducer()
        transport.registerProducer(self._queue, True)
        self._socket = direct_socket(transport, self.factory.flusher)
        # The upgrade's request and answer: autobahn keeps them, nothing
        # reads them again (a third of a connection's memory otherwise).
        for name in _HANDSHAKE:
            setattr(self, name, None)
        self.send_queue = _SmallQueue()  # type: ignore[assignment]
        host, port = address_parts(transport.getPeer())
        local_host, local_port = address_parts(transport.getHost())
        server = str(Peer(local_host, local_port, ""))
        # (A WebSocket handshake is no health check: in at once.)
        self.session = self.factory.chat.connected(self, Peer(host, port, server), probe=False)

    def who(self) -> str:
        """Who this is, for the log."""
        host, port = address_parts(self._stream.getPeer())
        return str(Peer(host, port, ""))

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        session = self.session
        if session is None:
            return
        if isBinary:
            self._close_code = UNSUPPORTED
            self._close_reason = "binary frames are not accepted"
            session.end(
                "sent a binary frame",
                "binary frames are not accepted; send text",
                f"sent a binary frame ({len(payload)} bytes); disconnected",
            )
            return
        self.factory.chat.stats.bytes_in += len(payload)
        # (autobahn has checked that it is UTF-8, or closed with 1007.)
        lines, sizes = lines_of(payload.decode("utf-8"), session.config.max_line)
        session.received(lines, sizes)

    def sendCloseFrame(
        self, code: int | None = None, reasonUtf8: bytes | None = None, isReply: bool = False
    ) -> None:
        # Whoever closes (we, or autobahn answering the client's close or
        # failing it), this turn's frames go first, and none after.
        self.send_now()
        self._closing = True
        super().sendCloseFrame(code, reasonUtf8, isReply)

    def onPing(self, payload: bytes) -> None:
        # A pong is owed only to a client that reads: one that pings and
        # does not read would have its pongs pile up here without bound.
        # (RFC 6455 lets an endpoint answer only the latest of many pings.)
        if self._queue.queued is None and not self._closing:
            self.sendPong(payload)

    def connectionLost(self, reason: Any = None) -> None:
        # A handshake that failed (no Upgrade, a refused Origin) never
        # reached onConnect: its HTTP connection stops waiting here.
        if self.factory.site is not None:
            self.factory.site.upgraded(self.transport, websocket=False)
        super().connectionLost(reason)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self._cancel(self._abort)
        self._cancel(self._overflow_call)
        self._closing = True
        self._out = None
        self.factory.chat.stats.backlogged.discard(self)
        session, self.session = self.session, None
        if session is not None:
            clean = False
            if self.closedByMe and self.localCloseCode is not None:
                # (autobahn's own closes, 1007 and 1009, say why only here.)
                code, reason = self.localCloseCode, self.localCloseReason
                why = f"closed by the server ({code}{': ' if reason else ''}{reason or ''})"
                if session.cause is None:
                    session.cause = _AUTOBAHN_CLOSES.get(code)
            elif code is None or code == ABNORMAL:
                why = "connection lost"
            else:
                why = f"closed by the client ({code}{': ' if reason else ''}{reason or ''})"
                clean = True
            session.ended(why, clean)

    # IConnection

    def send(self, event: Event) -> None:
        if self._closing or self.state != self.STATE_OPEN:
            return
        frame = event.rendered(FRAME_KEY, frame_of)
        if self._socket is not None and not self.send_queue:
            # (autobahn's send_queue: its own chopped writes, which go first.)
            if self._out is None:
                self._out = [frame.payloadHybi]
                self.factory.flusher.add(self)
            else:
                self._out.append(frame.payloadHybi)
            return
        self.sendPreparedMessage(frame)
        self.factory.chat.stats.sent(frame.payloadHybi, 1)
        queue = self._queue
        if queue.queued is not None:
            queue.queued += len(frame.payloadHybi)
            cap = self._settings.send_queue
            if queue.queued > cap and self._overflow_call is None:
                # At the end of the turn: a room may be in the middle of a relay.
                self._overflow_call = self.factory.clock.callLater(0, self._overflowed)

    def send_now(self) -> None:
        """Send this turn's frames (see L{TurnFlusher}); past the send-queue cap, cut off."""
        out, self._out = self._out, None
        if out is None or self._socket is None or self.transport is None:
            return
        stats = self.factory.chat.stats
        queued = send_gathered(out, self._socket, self.transport, stats)  # type: ignore[arg-type]
        if queued:
            stats.backlogged.add(self)
            if queued > self._settings.send_queue and self.session is not None:
                self.session.send_queue_full(queued)

    def queued_bytes(self) -> int:
        """Backlogged API: the bytes waiting for the client."""
        if self._closing or self.transport is None:
            return 0
        return queued_on(self.transport, self._queue.queued)

    def _overflowed(self) -> None:
        self._overflow_call = None
        queued = self._queue.queued
        if queued is not None and self.session is not None:
            self.session.send_queue_full(queued)

    def close(self, ending: Ending | None = None) -> None:
        if self._closing:
            return
        self.send_now()  # (what is owed goes before the close)
        self._closing = True
        code, reason = self._close_code, self._close_reason
        if code is None:
            code, reason = CLOSE_CODES[ending] if ending is not None else (NORMAL, "")
        # (sendClose takes only the codes an application may choose; 1001,
        # 1003, 1008 and 1013 are the protocol's own.)
        self.sendCloseFrame(code, reason.encode("utf-8"))
        self._abort = self.factory.clock.callLater(self.factory.chat.config.close_grace, self.abort)

    def abort(self) -> None:
        self._closing = True
        self._out = None
        if self.transport is not None:
            self._stream.abortConnection()

    def pause_reading(self) -> None:
        self._stream.pauseProducing()

    def resume_reading(self) -> None:
        if not self._closing:
            self._stream.resumeProducing()

    @staticmethod
    def _cancel(call: IDelayedCall | None) -> None:
        if call is not None and call.active():
            call.cancel()


class _Timer:
    """A call autobahn may cancel after it ran (its own batched timer allows that)."""

    __slots__ = ("call",)

    def __init__(self, call: IDelayedCall) -> None:
        self.call = call

    def cancel(self) -> None:
        if self.call.active():
            self.call.cancel()


class _Timers:
    """
    autobahn's timers (handshake and ping timeouts) on the front end's clock,
    not on the global reactor that txaio would pick: a test's clock drives
    them like every other timer of the chat.
    """

    __slots__ = ("clock",)

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock

    def call_later(self, delay: float, func: Any, *args: Any, **kwargs: Any) -> _Timer:
        return _Timer(self.clock.callLater(delay, func, *args, **kwargs))


class WebFactory(WebSocketServerFactory):
    """
    Builds a L{WebConnection} per WebSocket, all serving one L{ChatServer}.

    @ivar origins: the origins of pages, besides this server's own, that
        may open a WebSocket (C{*}: any).
    """

    protocol = WebConnection  # type: ignore[assignment]
    #: The site it serves under (set by L{web_site}).
    site: WebSite | None = None
    log = txaio.make_logger(level="error")  # type: ignore[attr-defined]

    def __init__(
        self, server: ChatServer, clock: IReactorTime, origins: Sequence[str] = ()
    ) -> None:
        super().__init__(server="tcpchat")
        self.chat = server
        self.clock = clock
        self.flusher = turn_flusher(clock)
        self._batched_timer = _Timers(clock)
        self.origins = frozenset(normal_origin(origin) for origin in origins)
        limit = server.config.max_unterminated
        self.setProtocolOptions(
            maxFramePayloadSize=limit,
            maxMessagePayloadSize=limit,
            autoPingInterval=PING_INTERVAL,
            autoPingTimeout=PING_TIMEOUT,
            # Origins are checked in onConnect, against the Host header.
            allowedOrigins=["*"],
            # A client that breaks the protocol (too big, not UTF-8) hears
            # the close code that says why before the connection goes.
            failByDrop=False,
            # The Origin check is ours (onConnect), "null" included.
            allowNullOrigin=True,
            # No status page (nor its ?redirect=) for a GET without Upgrade.
            webStatus=False,
        )

    def allows(self, origin: str, host: str) -> bool:
        """Whether a page at C{origin} may open a WebSocket here, reached as C{host}."""
        origin = normal_origin(origin)
        return "*" in self.origins or origin in self.origins or same_origin(origin, host)

    def buildProtocol(self, addr: Any) -> Any:
        """
        IProtocolFactory API: each WebSocket takes autobahn's options as they
        are when it starts; after a reload, new ones get the new size limit.
        """
        limit = self.chat.config.max_unterminated
        if self.maxMessagePayloadSize != limit:
            self.setProtocolOptions(maxFramePayloadSize=limit, maxMessagePayloadSize=limit)
        return super().buildProtocol(addr)


class _Static(Resource):
    """One file of the page, from memory, with headers that keep it to itself."""

    isLeaf = True

    def __init__(self, body: bytes, content_type: str) -> None:
        super().__init__()
        self.body = body
        self.content_type = content_type.encode("ascii")

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", self.content_type)
        request.setHeader(b"x-content-type-options", b"nosniff")
        request.setHeader(b"referrer-policy", b"no-referrer")
        request.setHeader(b"x-frame-options", b"DENY")
        request.setHeader(
            b"content-security-policy",
            b"default-src 'self'; connect-src 'self'; img-src 'self' data:; "
            b"frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        )
        request.setHeader(b"cache-control", b"no-cache")
        return self.body

    def render_HEAD(self, request: Request) -> bytes:
        self.render_GET(request)
        request.setHeader(b"content-length", b"%d" % len(self.body))
        return b""


#: The page's files and their types.
_FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "icon.svg": "image/svg+xml",
}


class _Root(Resource):
    """C{/}: the page; C{/ws}: the WebSocket; the page's files by name."""

    def __init__(
        self,
        websocket: WebSocketResource,
        chat: ChatServer,
        metrics: tuple[bytes, Resource] | None = None,
    ) -> None:
        super().__init__()
        self._page = {
            name.encode("ascii"): _Static((PAGE / name).read_bytes(), kind)
            for name, kind in _FILES.items()
        }
        self.putChild(b"ws", websocket)
        self.putChild(b"health", HealthPage(chat))
        if metrics is not None:  # (--metrics /PATH)
            self.putChild(*metrics)
        for name, resource in self._page.items():
            self.putChild(name, resource)

    def getChild(self, path: bytes, request: Request) -> Resource:
        if path == b"":
            return self._page[b"index.html"]
        return cast(Resource, notFound())


class _Refused(Protocol):
    """A connection the web port will not serve: closed at once, plain or TLS."""

    def connectionMade(self) -> None:
        cast(StreamTransport, self.transport).abortConnection()


class _NoBody(Request):
    """A request that may not have a body: the page takes none, and a body is buffered whole."""

    _refused = False

    def handleContentChunk(self, data: bytes) -> None:
        if not self._refused:
            super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if not self._refused:
            super().requestReceived(command, path, version)

    def gotLength(self, length: int | None) -> None:
        if length != 0:
            # (What came with the headers still arrives before the abort.)
            self._refused = True
            transport = cast(StreamTransport, self.channel.transport)
            host, port = address_parts(transport.getPeer())
            log.info(
                "{peer} refused at the web port: a request with a body",
                peer=str(Peer(host, port, "")),
                address=host,
                reason="body",
            )
            site = getattr(self.channel, "site", None)
            if isinstance(site, WebSite):
                site.chat.stats.refused["body"] += 1
            transport.abortConnection()
            return
        super().gotLength(length)


def _let_go(channel: Any) -> None:
    """
    Drop the references that keep an HTTP channel and its request alive in
    cycles (ours, of the wrapped methods; Twisted's, channel and request):
    freed at once, not at Python's rare full collection (1 KiB a WebSocket).
    """
    for name in ("makeConnection", "connectionLost"):
        channel.__dict__.pop(name, None)
    inner = getattr(channel, "_channel", None)
    if inner is not None and inner.transport is None:  # (taken by the WebSocket)
        inner.requests = []


class WebSite(Site):
    """
    The page and the WebSocket on twisted.web, under the chat's rules for
    connections until one becomes a WebSocket (and a session, with its own):
    HTTP connections count against C{--max-clients} and C{--per-address}
    with the sessions, and past them are closed at once; each
    may last C{HTTP_LIFETIME} seconds at most (a client that trickles a
    request byte by byte is not held); no request may have a body.  No
    access log: the chat logs each connection itself.

    @ivar waiting: the HTTP connections that are not (yet) WebSockets, by
        transport: the peer's address, and the call that ends it.
    """

    noisy = False

    def __init__(self, root: Resource, chat: ChatServer, clock: IReactorTime) -> None:
        super().__init__(root, requestFactory=_NoBody, timeout=HTTP_IDLE, reactor=clock)
        self.chat = chat
        self.clock = clock
        self.waiting: dict[object, tuple[str | None, IDelayedCall, Any]] = {}
        self._per_host: Counter[str] = Counter()

    def log(self, request: Any) -> None:
        pass

    def buildProtocol(self, addr: IAddress | None) -> Any:
        host, port = address_parts(addr)  # type: ignore[arg-type]
        refusal = self._refusal(host)
        if refusal is not None:
            log.info(
                "{peer} refused at the web port: {why}",
                peer=str(Peer(host, port, "")),
                why=refusal,
                address=host,
                reason=refusal,
            )
            # (Not None: a TLS port would wrap None and keep the connection.)
            return _Refused()
        channel = super().buildProtocol(addr)
        made = channel.makeConnection
        lost = channel.connectionLost

        connection: list[Any] = [None]
        key = self.chat.admission.key(host)

        def connection_made(transport: Any) -> None:
            connection[0] = transport
            call = self.clock.callLater(HTTP_LIFETIME, self._expire, transport)
            self.waiting[transport] = (key, call, channel)
            if key is not None:
                self._per_host[key] += 1
            made(transport)

        def connection_lost(reason: Any) -> None:
            self.upgraded(connection[0], websocket=False)
            lost(reason)

        channel.makeConnection = connection_made
        channel.connectionLost = connection_lost
        return channel

    def _refusal(self, host: str) -> str | None:
        # (A banned or denied address is let as far as its session, which
        # tells it why in one line: a browser cannot read an HTTP refusal.)
        chat = self.chat
        if len(self.waiting) + chat.client_count >= chat.max_clients:
            chat.stats.refused["full"] += 1
            return f"server full ({chat.max_clients} clients)"
        per_address = chat.config.per_address
        key = chat.admission.key(host)  # (None: exempt; IPv6 by its /64)
        if per_address and key is not None and self._per_host[key] >= per_address:
            chat.stats.refused["per_address"] += 1
            return f"more than {per_address} connections from the address"
        return None

    def upgraded(self, transport: object, websocket: bool = True) -> None:
        """The connection on C{transport} became a WebSocket, or is gone: no longer waiting."""
        entry = self.waiting.pop(transport, None)
        if entry is None:
            return
        key, call, channel = entry
        if call.active():
            call.cancel()
        if websocket:
            # Once the upgrade's request is done with (after this turn).
            self.clock.callLater(0, _let_go, channel)
        else:
            _let_go(channel)
        if key is not None:
            self._per_host[key] -= 1
            if not self._per_host[key]:
                del self._per_host[key]

    def _expire(self, transport: Any) -> None:
        if transport in self.waiting:
            self.upgraded(transport)
            transport.abortConnection()


def web_site(
    server: ChatServer,
    clock: IReactorTime,
    origins: Sequence[str] = (),
    metrics: tuple[bytes, Resource] | None = None,
) -> WebSite:
    """
    The page and the WebSocket of C{server}, as a twisted.web site to
    listen with (and C{metrics}: a path and the metrics page, when asked).
    """
    factory = WebFactory(server, clock, origins)
    site = WebSite(_Root(WebSocketResource(factory), server, metrics), server, clock)
    factory.site = site
    return site
