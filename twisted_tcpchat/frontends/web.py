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
from collections.abc import Sequence
from importlib.resources import files
from typing import Any, cast
from urllib.parse import urlsplit

import txaio
from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.protocol import PreparedMessage
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.web.pages import notFound
from twisted.web.resource import Resource
from twisted.web.server import Request, Site
from zope.interface import implementer

from twisted_tcpchat.core.events import Event
from twisted_tcpchat.core.interfaces import IConnection
from twisted_tcpchat.core.server import ChatServer
from twisted_tcpchat.core.session import BadLine, Line, Peer, Session, too_long
from twisted_tcpchat.frontends.jsonevents import json_text
from twisted_tcpchat.frontends.tcp import StreamTransport, address_parts, tune_tcp
from twisted_tcpchat.logs import TurnLog

log = TurnLog(namespace="tcpchat")

#: The key of the prepared WebSocket frame kept on an event (L{Event.rendered}).
FRAME_KEY = "websocket"

#: Close codes (RFC 6455, section 7.4.1) this front end closes with.
NORMAL = 1000
UNSUPPORTED = 1003
#: (Never sent: what autobahn reports when the connection went without a close.)
ABNORMAL = 1006

#: The page's files, served from the package.
PAGE = files("twisted_tcpchat.frontends") / "page"

#: Seconds an HTTP connection may stay open without a request (a WebSocket
#: is no longer one: it has its pings).
HTTP_IDLE = 60

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
    size = len(payload.encode("utf-8", "surrogatepass"))
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
        length = len(part.encode("utf-8", "surrogatepass"))
        lines.append(too_long(length, max_line) if length > max_line else part)
        sizes.append(length)
    return lines, sizes


_EXPECTED = 'expected {"type": "line", "text": "..."}'


def _line_text(payload: str) -> str | BadLine:
    """The text of a JSON line object, or why there is none."""
    size = len(payload.encode("utf-8", "surrogatepass"))
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError):
        return BadLine(
            size, f"that is not JSON; {_EXPECTED}", f"sent {size} bytes that are not JSON"
        )
    if not isinstance(data, dict) or data.get("type") != "line":
        return BadLine(
            size, f"unknown request; {_EXPECTED}", f"sent an unknown request ({size} bytes)"
        )
    text = data.get("text")
    if not isinstance(text, str):
        return BadLine(
            size,
            f'"text" must be a string; {_EXPECTED}',
            f"sent a line without text ({size} bytes)",
        )
    return text


def same_origin(origin: str, host: str) -> bool:
    """Whether the page at C{origin} came from this server, as the browser reached it (C{host})."""
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc.lower() == host.lower()


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

    def resumeProducing(self) -> None:
        self.queued = None

    def stopProducing(self) -> None:
        self.queued = None


@implementer(IConnection)
class WebConnection(WebSocketServerProtocol):
    """
    One WebSocket client: autobahn's protocol towards the browser,
    L{IConnection} towards its L{Session} (made once the handshake is done).
    """

    session: Session | None = None
    factory: WebFactory
    #: autobahn's own log: errors only (the chat logs each connection itself).
    log = txaio.make_logger(level="error")  # type: ignore[attr-defined]

    def __init__(self) -> None:
        super().__init__()
        self._closing = False
        self._close_code = NORMAL
        self._close_reason = "goodbye"
        self._abort: IDelayedCall | None = None
        self._overflow_call: IDelayedCall | None = None
        self._queue = _SendQueue(self)

    @property
    def _stream(self) -> StreamTransport:
        return cast(StreamTransport, self.transport)

    # autobahn

    def onConnect(self, request: ConnectionRequest) -> None:
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
            raise ConnectionDeny(ConnectionDeny.FORBIDDEN, "origin not allowed")

    def onOpen(self) -> None:
        transport = self._stream
        tune_tcp(transport, self.factory.server.config.keepalive)
        # The web server's channel was its producer; now the chat's send
        # queue is.
        transport.unregisterProducer()
        transport.registerProducer(self._queue, True)
        host, port = address_parts(transport.getPeer())
        local_host, local_port = address_parts(transport.getHost())
        server = str(Peer(local_host, local_port, ""))
        self.session = self.factory.server.connected(self, Peer(host, port, server))

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
        # (autobahn has checked that it is UTF-8, or closed with 1007.)
        lines, sizes = lines_of(payload.decode("utf-8"), self.factory.server.config.max_line)
        session.received(lines, sizes)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self._cancel(self._abort)
        self._cancel(self._overflow_call)
        self._closing = True
        session, self.session = self.session, None
        if session is not None:
            if code is None or code == ABNORMAL:
                why = "connection lost"
            else:
                by = "the server" if self.closedByMe else "the client"
                why = f"closed by {by} ({code}{': ' if reason else ''}{reason or ''})"
            session.ended(why)

    # IConnection

    def send(self, event: Event) -> None:
        if self._closing:
            return
        frame = event.rendered(FRAME_KEY, frame_of)
        self.sendPreparedMessage(frame)
        queue = self._queue
        if queue.queued is not None:
            queue.queued += len(frame.payloadHybi)
            cap = self.factory.server.config.send_queue
            if queue.queued > cap and self._overflow_call is None:
                # At the end of the turn: a room may be in the middle of a relay.
                self._overflow_call = self.factory.clock.callLater(0, self._overflowed)

    def _overflowed(self) -> None:
        self._overflow_call = None
        queued = self._queue.queued
        if queued is not None and self.session is not None:
            self.session.send_queue_full(queued)

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        # (sendClose takes only the codes an application may choose; 1003 is
        # the protocol's own, for data of a type the endpoint cannot accept.)
        self.sendCloseFrame(self._close_code, self._close_reason.encode("utf-8"))
        self._abort = self.factory.clock.callLater(
            self.factory.server.config.close_grace, self.abort
        )

    def abort(self) -> None:
        self._closing = True
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
    log = txaio.make_logger(level="error")  # type: ignore[attr-defined]

    def __init__(
        self, server: ChatServer, clock: IReactorTime, origins: Sequence[str] = ()
    ) -> None:
        super().__init__()
        self.server = server
        self.clock = clock
        self._batched_timer = _Timers(clock)
        self.origins = frozenset(origin.rstrip("/").lower() for origin in origins)
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
        )

    def allows(self, origin: str, host: str) -> bool:
        """Whether a page at C{origin} may open a WebSocket here, reached as C{host}."""
        origin = origin.lower()
        return "*" in self.origins or origin in self.origins or same_origin(origin, host)


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
        return self.render_GET(request)


#: The page's files and their types.
_FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "icon.svg": "image/svg+xml",
}


class _Root(Resource):
    """C{/}: the page; C{/ws}: the WebSocket; the page's files by name."""

    def __init__(self, websocket: WebSocketResource) -> None:
        super().__init__()
        self._page = {
            name.encode("ascii"): _Static((PAGE / name).read_bytes(), kind)
            for name, kind in _FILES.items()
        }
        self.putChild(b"ws", websocket)
        for name, resource in self._page.items():
            self.putChild(name, resource)

    def getChild(self, path: bytes, request: Request) -> Resource:
        if path == b"":
            return self._page[b"index.html"]
        return cast(Resource, notFound())


class WebSite(Site):
    """A site that writes no access log (connections are logged by the chat)."""

    noisy = False

    def log(self, request: Any) -> None:
        pass


def web_site(server: ChatServer, clock: IReactorTime, origins: Sequence[str] = ()) -> Site:
    """The page and the WebSocket of C{server}, as a twisted.web site to listen with."""
    factory = WebFactory(server, clock, origins)
    return WebSite(_Root(WebSocketResource(factory)), timeout=HTTP_IDLE, reactor=clock)
