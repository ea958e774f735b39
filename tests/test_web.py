"""
The web front end (twisted_tcpchat.frontends.web): its pure parts, then the
page and the WebSocket in memory - twisted.web's site and autobahn's
protocol joined to a hand-written WebSocket client (tests/wsframes.py) by
twisted.test.iosim, one clock - beside TCP clients of the same server.
"""

from __future__ import annotations

import json
import struct
from typing import Any

from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase

from tests import wsframes
from tests.helpers import Client, tcpchat_log, troubles_logged
from twisted_tcpchat.core.config import ChatConfig
from twisted_tcpchat.core.events import (
    Action,
    Error,
    Help,
    History,
    Identity,
    MemberInfo,
    Members,
    Message,
    Notice,
    Presence,
    Private,
    RoomInfo,
    Rooms,
    Text,
    Topic,
    Whois,
)
from twisted_tcpchat.core.interfaces import Ending
from twisted_tcpchat.core.server import ChatServer
from twisted_tcpchat.core.session import BadLine
from twisted_tcpchat.frontends.jsonevents import event_data, json_text
from twisted_tcpchat.frontends.tcp import ChatFactory
from twisted_tcpchat.frontends.web import HTTP_IDLE, HTTP_LIFETIME, lines_of, same_origin, web_site

HOST = "chat.example:8080"
PAGE = f"http://{HOST}"
SERVER = IPv4Address("TCP", "192.0.2.1", 8080)


# ---------------------------------------------------------------- pure parts


class LinesOfTests(SynchronousTestCase):
    def test_json_line(self) -> None:
        """A JSON line object is its text, sized in UTF-8 bytes."""
        self.assertEqual(lines_of('{"type": "line", "text": "héllo"}', 100), (["héllo"], [6]))

    def test_plain_text_is_lines(self) -> None:
        """Plain text is split at LF, a CR before it dropped, a last LF ending the last line."""
        self.assertEqual(lines_of("one\r\ntwo\n", 100), (["one", "two"], [3, 3]))
        self.assertEqual(lines_of("", 100), ([""], [0]))

    def test_lines_in_json_are_split_too(self) -> None:
        self.assertEqual(
            lines_of(json.dumps({"type": "line", "text": "a\nb"}), 100), (["a", "b"], [1, 1])
        )

    def test_overlong_line_is_a_bad_line(self) -> None:
        """A line over the limit is not said: its sender hears the same error as on TCP."""
        lines, sizes = lines_of("ok\n" + "x" * 11, 10)
        self.assertEqual(lines[0], "ok")
        bad = lines[1]
        assert isinstance(bad, BadLine)
        self.assertEqual(bad.error, "line too long (11 bytes; the limit is 10); not delivered")
        self.assertEqual(sizes, [2, 11])

    def test_bad_requests(self) -> None:
        """Broken JSON, another type, a text that is no string: one error each, never a crash."""
        cases = {
            "{not json": "that is not JSON",
            '{"type": "join", "room": "x"}': "unknown request",
            '["line"]': None,  # (not an object: plain text, said as it is)
            '{"type": "line", "text": 5}': '"text" must be a string',
            '{"type": "line"}': '"text" must be a string',
            "{" * 50_000: "that is not JSON",  # deeper than Python's recursion limit
        }
        for payload, error in cases.items():
            lines, sizes = lines_of(payload, 100_000)
            if error is None:
                self.assertEqual(lines, [payload])
                continue
            self.assertEqual(len(lines), 1, payload)
            bad = lines[0]
            assert isinstance(bad, BadLine), payload
            self.assertTrue(bad.error.startswith(error), bad.error)
            self.assertIn('expected {"type": "line", "text": "..."}', bad.error)
            self.assertEqual(sizes, [len(payload)])


class SameOriginTests(SynchronousTestCase):
    def test_same_host_and_port(self) -> None:
        self.assertTrue(same_origin("http://chat.example:8080", "chat.example:8080"))
        self.assertTrue(same_origin("https://Chat.Example:8080", "chat.example:8080"))

    def test_other_pages(self) -> None:
        for origin in (
            "http://evil.example:8080",
            "http://chat.example:8081",
            "http://chat.example",
            "null",
            "file://chat.example:8080",
        ):
            self.assertFalse(same_origin(origin, "chat.example:8080"), origin)


class EventDataTests(SynchronousTestCase):
    """Every event as JSON: its type and its fields by name (docs/websocket.md)."""

    def test_every_event(self) -> None:
        said = Message("lobby", "bob", ("hi", "there"), 3, 1700000000.5)
        cases: list[tuple[Any, dict[str, Any]]] = [
            (
                said,
                {
                    "type": "message",
                    "room": "lobby",
                    "sender": "bob",
                    "lines": ["hi", "there"],
                    "seq": 3,
                    "at": 1700000000.5,
                },
            ),
            (
                Action("lobby", "bob", "waves", 4, 1.0),
                {
                    "type": "action",
                    "room": "lobby",
                    "sender": "bob",
                    "text": "waves",
                    "seq": 4,
                    "at": 1.0,
                },
            ),
            (
                Private("bob", "alice", "psst", 2.0, echo=True),
                {
                    "type": "private",
                    "sender": "bob",
                    "recipient": "alice",
                    "text": "psst",
                    "at": 2.0,
                    "echo": True,
                },
            ),
            (
                Presence("lobby", "bob", Presence.MOVED_OUT, other="dev"),
                {
                    "type": "presence",
                    "room": "lobby",
                    "name": "bob",
                    "change": "moved-out",
                    "reason": "",
                    "other": "dev",
                },
            ),
            (Topic("lobby", "tea"), {"type": "topic", "room": "lobby", "text": "tea", "by": None}),
            (
                Identity("bob", "lobby", Identity.WELCOME),
                {
                    "type": "you",
                    "name": "bob",
                    "room": "lobby",
                    "change": "welcome",
                    "operator": False,
                },
            ),
            (
                History("lobby", (said,)),
                {"type": "history", "room": "lobby", "entries": [event_data(said)]},
            ),
            (
                Members("lobby", (MemberInfo("bob", "lobby", 5.0, True),)),
                {
                    "type": "members",
                    "room": "lobby",
                    "members": [{"name": "bob", "room": "lobby", "idle": 5.0, "operator": True}],
                },
            ),
            (
                Whois(MemberInfo("bob", "dev", 1.0)),
                {
                    "type": "whois",
                    "member": {"name": "bob", "room": "dev", "idle": 1.0, "operator": False},
                },
            ),
            (
                Rooms((RoomInfo("lobby", 2, "tea", 7),)),
                {
                    "type": "rooms",
                    "rooms": [{"name": "lobby", "members": 2, "topic": "tea", "seq": 7}],
                },
            ),
            (
                Help((("/who", "who is here"),)),
                {"type": "help", "commands": [{"usage": "/who", "text": "who is here"}]},
            ),
            (
                Notice("hi", "lobby", "bot"),
                {"type": "notice", "text": "hi", "room": "lobby", "sender": "bot"},
            ),
            (Error("no"), {"type": "error", "text": "no"}),
            (Text("Goodbye."), {"type": "text", "text": "Goodbye."}),
        ]
        for event, expected in cases:
            self.assertEqual(event_data(event), expected)
            self.assertEqual(json.loads(json_text(event)), expected)

    def test_markup_and_controls_are_data(self) -> None:
        """Markup stays text, and control characters are JSON escapes: nothing is rendered here."""
        text = json_text(Message("lobby", "bob", ("<img src=x onerror=alert(1)>\x1b[2J",), 1, 0.0))
        self.assertIn("<img src=x onerror=alert(1)>\\u001b[2J", text)


# ---------------------------------------------------------------- in memory


def _address(n: int) -> IPv4Address:
    return IPv4Address("TCP", "192.0.2.7", 41000 + n)


class _Bytes(Protocol):
    """The client's end: every byte the server sends."""

    def __init__(self) -> None:
        self.data = b""
        self.lost = False

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: object = None) -> None:
        self.lost = True


def _plug(site: Any, clock: Clock, client: Protocol, address: IPv4Address) -> iosim.IOPump:
    """A connection from C{client} at C{address} to C{site}, in memory."""
    server = site.buildProtocol(address)
    return iosim.connect(
        server,
        iosim.FakeTransport(server, isServer=True, hostAddress=SERVER, peerAddress=address),
        client,
        iosim.FakeTransport(client, isServer=False, hostAddress=address, peerAddress=SERVER),
        clock=clock,
    )


class Browser:
    """A WebSocket client of the site, in memory: what it sends, the events it got."""

    count = 0

    def __init__(
        self,
        site: Any,
        clock: Clock,
        origin: str | None = PAGE,
        host: str = HOST,
        address: IPv4Address | None = None,
    ) -> None:
        Browser.count += 1
        address = address or _address(Browser.count)
        self.client = _Bytes()
        self.pump = _plug(site, clock, self.client, address)
        self.reader = wsframes.Reader()
        self.frames: list[wsframes.Frame] = []
        self._seen = 0
        self.write(wsframes.handshake(host, origin=origin))

    def write(self, data: bytes) -> None:
        self.pump.clientIO.write(data)
        self.pump.flush()
        self._read()

    def _read(self) -> None:
        fresh, self.client.data = self.client.data, b""
        self.frames += self.reader.feed(fresh)

    def say(self, text: str) -> None:
        self.write(wsframes.line(text))

    def events(self) -> list[dict[str, Any]]:
        """The events since the last look."""
        self.pump.flush()
        self._read()
        fresh = self.frames[self._seen :]
        self._seen = len(self.frames)
        return [json.loads(f.payload) for f in fresh if f.opcode == wsframes.TEXT]

    def texts(self) -> list[str]:
        """The events since the last look, each as a short line for assertions."""
        return [_short(e) for e in self.events()]

    @property
    def close(self) -> wsframes.Frame | None:
        closes = [f for f in self.frames if f.opcode == wsframes.CLOSE]
        return closes[0] if closes else None


def _short(event: dict[str, Any]) -> str:
    kind = event["type"]
    if kind == "message":
        return f"<{event['sender']}> " + " / ".join(event["lines"])
    if kind in ("error", "text", "notice"):
        return f"{kind}: {event['text']}"
    if kind == "presence":
        return f"* {event['name']} {event['change']}"
    if kind == "you":
        return f"you: {event['name']} in #{event['room']} ({event['change']})"
    return kind


class WebTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.make(ChatConfig())

    def make(self, config: ChatConfig, **server: Any) -> None:
        self.server = ChatServer(config, self.clock, **server)
        self.site = web_site(self.server, self.clock)
        self.tcp = ChatFactory(server=self.server, clock=self.clock)

    def browser(self, **kwargs: Any) -> Browser:
        return Browser(self.site, self.clock, **kwargs)

    def get(self, path: str) -> bytes:
        """An HTTP GET of the site, as the raw answer."""
        client = _Bytes()
        pump = _plug(self.site, self.clock, client, _address(0))
        pump.clientIO.write(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        pump.flush()
        return client.data


class PageTests(WebTestCase):
    def test_the_page_and_its_files(self) -> None:
        """/ is the page; its script and style come from the package, with their types."""
        page = self.get("/")
        self.assertTrue(page.startswith(b"HTTP/1.1 200"), page[:40])
        self.assertIn(b"content-type: text/html; charset=utf-8", page.lower())
        self.assertIn(b'<script src="app.js"', page)
        for path, kind in (("/app.js", b"text/javascript"), ("/app.css", b"text/css")):
            answer = self.get(path)
            self.assertTrue(answer.startswith(b"HTTP/1.1 200"), path)
            self.assertIn(b"content-type: " + kind, answer.lower())

    def test_the_page_keeps_to_itself(self) -> None:
        """Nothing from elsewhere, no framing, no sniffing: the headers say so."""
        page = self.get("/").lower()
        self.assertIn(b"content-security-policy: default-src 'self'", page)
        self.assertIn(b"x-content-type-options: nosniff", page)
        self.assertIn(b"x-frame-options: deny", page)

    def test_idle_http_connection_is_closed(self) -> None:
        """A connection that asks for nothing is closed after HTTP_IDLE seconds."""
        self.assertLess(HTTP_LIFETIME, HTTP_IDLE)
        client = _Bytes()
        pump = _plug(self.site, self.clock, client, _address(0))
        self.clock.advance(HTTP_LIFETIME - 1)
        pump.flush()
        self.assertFalse(client.lost)
        self.clock.advance(2)
        pump.flush()
        self.assertTrue(client.lost)
        self.assertEqual(self.site.waiting, {})

    def test_trickling_request_is_closed_too(self) -> None:
        """A request sent a byte at a time, each within HTTP_IDLE, still ends at HTTP_LIFETIME."""
        client = _Bytes()
        pump = _plug(self.site, self.clock, client, _address(0))
        for byte in b"GET / HTTP/1.1\r\nX-Slow: " + b"a" * HTTP_LIFETIME:
            if client.lost:
                break
            pump.clientIO.write(bytes([byte]))
            pump.flush()
            self.clock.advance(1)
        self.assertTrue(client.lost)
        self.assertEqual(self.site.waiting, {})

    def test_nothing_else(self) -> None:
        self.assertTrue(self.get("/etc/passwd").startswith(b"HTTP/1.1 404"))

    def test_script_never_renders_markup(self) -> None:
        """The page puts text in with textContent, never innerHTML (the XSS line is text)."""
        script = self.get("/app.js")
        self.assertIn(b"textContent", script)
        sinks = (b"innerHTML", b"outerHTML", b"insertAdjacentHTML", b"document.write", b"eval(")
        for sink in sinks:
            self.assertNotIn(sink, script)


class WebSocketTests(WebTestCase):
    def test_greeting_and_welcome_as_events(self) -> None:
        """A browser is greeted and let in like a TCP client, in typed events."""
        alice = self.browser()
        self.assertEqual(alice.reader.status, 101)
        events = alice.events()
        self.assertEqual(events[0]["type"], "text")
        self.assertIn("you", [e["type"] for e in events])
        you = next(e for e in events if e["type"] == "you")
        self.assertEqual((you["name"], you["room"], you["change"]), ("guest1", "lobby", "welcome"))

    def test_browser_and_tcp_client_talk_both_ways(self) -> None:
        """A browser and an nc user in one room see each other's lines, names and presence."""
        alice = self.browser()
        alice.events()
        bob = Client(self.tcp)
        bob.new_lines()
        self.assertEqual(alice.texts(), ["* guest2 joined"])
        alice.say("/nick alice")
        bob.send("/nick bob")
        alice.say("hello <b>bob</b>")
        self.assertEqual(
            bob.new_lines(),
            ["* guest1 is now known as alice", "* you are now bob", "<alice> hello <b>bob</b>"],
        )
        bob.send("hi alice")
        self.assertEqual(
            alice.texts(),
            ["you: alice in #lobby (renamed)", "* guest2 renamed", "<bob> hi alice"],
        )

    def test_two_browsers(self) -> None:
        alice, bob = self.browser(), self.browser()
        alice.events()
        bob.events()
        alice.say("one\ntwo")
        self.assertEqual(bob.texts(), ["<guest1> one / two"])
        self.assertEqual(alice.texts(), [])  # (no echo: the page shows its own lines)

    def test_history_and_topic_for_a_newcomer(self) -> None:
        alice = self.browser()
        alice.say("/topic tea")
        alice.say("first")
        bob = self.browser()
        events = bob.events()
        kinds = [e["type"] for e in events]
        self.assertIn("topic", kinds)
        history = next(e for e in events if e["type"] == "history")
        self.assertEqual([e["lines"] for e in history["entries"]], [["first"]])

    def test_rooms_with_counts_and_seq(self) -> None:
        alice = self.browser()
        alice.say("/join dev")
        alice.say("a")
        alice.say("b")
        alice.events()
        alice.say("/rooms")
        rooms = alice.events()[0]
        self.assertEqual(rooms["type"], "rooms")
        dev = next(r for r in rooms["rooms"] if r["name"] == "dev")
        self.assertEqual((dev["members"], dev["seq"]), (1, 2))

    def test_bad_json_gets_one_error_and_the_client_stays(self) -> None:
        alice, bob = self.browser(), self.browser()
        alice.events()
        bob.events()
        logged = tcpchat_log(self)
        alice.write(wsframes.frame(b"{oops"))
        self.assertEqual(
            alice.texts(), ['error: that is not JSON; expected {"type": "line", "text": "..."}']
        )
        self.assertTrue(any("not JSON" in line for line in logged), logged)
        alice.say("still here")
        self.assertEqual(bob.texts(), ["<guest1> still here"])
        self.assertIsNone(alice.close)

    def test_binary_frame_is_closed_with_1003(self) -> None:
        """A binary frame: one error event, then close code 1003; the others carry on."""
        alice, bob = self.browser(), self.browser()
        alice.events()
        bob.events()
        logged = tcpchat_log(self)
        troubles = troubles_logged(self)
        alice.write(wsframes.frame(b"\x00\x01", opcode=wsframes.BINARY))
        self.assertEqual(alice.texts(), ["error: binary frames are not accepted; send text"])
        assert alice.close is not None
        self.assertEqual(alice.close.close_code, 1003)
        self.assertEqual(bob.texts(), ["* guest1 left"])
        self.assertTrue(any("sent a binary frame" in line for line in logged), logged)
        self.assertEqual(troubles, [])

    def test_oversized_message_is_closed_with_1009(self) -> None:
        """More than --max-unterminated bytes in one message: close code 1009, never a crash."""
        self.make(ChatConfig(max_line=100, max_unterminated=200))
        alice, bob = self.browser(), self.browser()
        alice.events()
        bob.events()
        troubles = troubles_logged(self)
        alice.write(wsframes.frame(b"x" * 201))
        assert alice.close is not None
        self.assertEqual(alice.close.close_code, 1009)
        self.clock.advance(1)  # (the client never answers the close: dropped after 1 s)
        alice.events()
        self.assertEqual(bob.texts(), ["* guest1 left"])
        self.assertEqual(self.server.client_count, 1)
        self.assertEqual(troubles, [])

    def test_fragmented_message_over_the_limit_is_closed_too(self) -> None:
        self.make(ChatConfig(max_line=100, max_unterminated=200))
        alice = self.browser()
        alice.events()
        alice.write(wsframes.frame(b"x" * 150, fin=False))
        alice.write(wsframes.frame(b"x" * 150, opcode=0x0))
        assert alice.close is not None
        self.assertEqual(alice.close.close_code, 1009)

    def test_overlong_line_like_tcp(self) -> None:
        self.make(ChatConfig(max_line=10))
        alice = self.browser()
        alice.events()
        alice.say("x" * 11)
        self.assertEqual(
            alice.texts(), ["error: line too long (11 bytes; the limit is 10); not delivered"]
        )

    def test_invalid_utf8_is_closed_with_1007(self) -> None:
        alice = self.browser()
        alice.events()
        alice.write(wsframes.frame(b"\xff\xfe"))
        assert alice.close is not None
        self.assertEqual(alice.close.close_code, 1007)
        self.assertEqual(self.server.client_count, 0)


class OriginTests(WebTestCase):
    def test_same_origin_and_no_origin_are_let_in(self) -> None:
        """The page's own origin, and clients that are not browsers (no Origin), may connect."""
        self.assertEqual(self.browser(origin=PAGE).reader.status, 101)
        self.assertEqual(self.browser(origin=None).reader.status, 101)

    def test_other_origin_is_refused_with_one_log_line(self) -> None:
        """A page elsewhere may not use a visitor's browser to chat here (403)."""
        logged = tcpchat_log(self)
        evil = self.browser(origin="http://evil.example")
        self.assertEqual(evil.reader.status, 403)
        self.assertEqual(self.server.client_count, 0)
        refusals = [line for line in logged if "refused" in line]
        self.assertEqual(len(refusals), 1, logged)
        self.assertIn("http://evil.example", refusals[0])
        self.assertIn("--web-origin", refusals[0])

    def test_default_ports_are_the_same_origin(self) -> None:
        """--web-origin https://x:443 is the page browsers call https://x."""
        self.site = web_site(self.server, self.clock, ["https://other.example:443/"])
        self.assertEqual(self.browser(origin="https://Other.Example").reader.status, 101)

    def test_web_origin_allows_another_page(self) -> None:
        self.site = web_site(self.server, self.clock, ["https://other.example"])
        self.assertEqual(self.browser(origin="https://other.example").reader.status, 101)
        self.assertEqual(self.browser(origin="https://third.example").reader.status, 403)
        self.site = web_site(self.server, self.clock, ["*"])
        self.assertEqual(self.browser(origin="https://third.example").reader.status, 101)


class RulesTests(WebTestCase):
    """The same rules as TCP: limits, bans, logins, operators."""

    def test_server_full(self) -> None:
        """Past --max-clients a connection is closed before HTTP: the page tries again later."""
        self.make(ChatConfig(max_clients=1))
        self.browser().events()
        logged = tcpchat_log(self)
        refused = self.site.buildProtocol(_address(99))
        self.assertEqual(type(refused).__name__, "_Refused")  # (it closes: see below)
        self.assertEqual(self.server.client_count, 1)
        self.assertEqual(len([line for line in logged if "server full" in line]), 1, logged)

    def test_per_address_limit(self) -> None:
        self.make(ChatConfig(per_address=1, exempt=()))
        same = IPv4Address("TCP", "198.51.100.9", 5000)
        self.browser(address=same).events()
        again = self.browser(address=IPv4Address("TCP", "198.51.100.9", 5001))
        self.assertEqual(len(again.texts()), 1)
        assert again.close is not None
        self.assertEqual(again.close.close_code, 1013)  # (try again later)
        self.assertEqual(self.server.client_count, 1)

    def test_deny_list(self) -> None:
        self.make(ChatConfig(deny=("192.0.2.0/24",)))
        refused = self.browser()
        self.assertEqual(refused.texts(), ["error: your address is not allowed on this server"])
        assert refused.close is not None
        self.assertEqual(refused.close.close_code, 4003)  # (refused: the page does not retry)

    def test_flood_is_paced_then_cut_off(self) -> None:
        """A browser that floods is paced like a TCP client, then cut off past the queue."""
        self.make(ChatConfig(flood_rate=1, flood_burst=2, flood_queue=5, exempt=()))
        alice, bob = self.browser(), self.browser()
        alice.events()
        bob.events()
        alice.write(b"".join(wsframes.line(f"line {i}") for i in range(3)))
        self.assertEqual(bob.texts(), ["<guest1> line 0", "<guest1> line 1"])
        self.clock.advance(1)
        self.assertEqual(bob.texts(), ["<guest1> line 2"])
        alice.write(b"".join(wsframes.line(f"more {i}") for i in range(10)))
        flooded = "error: excess flood: more than 5 lines waiting; disconnecting"
        self.assertIn(flooded, alice.texts())
        self.assertIsNotNone(alice.close)

    def test_not_reading_is_cut_off(self) -> None:
        """A browser that stops reading is cut off past the send queue; nobody waits for it."""
        self.make(ChatConfig(send_queue=2000, exempt=("192.0.2.0/24",)))
        alice, bob = self.browser(), self.browser()
        alice.events()
        bob.events()
        connection = next(s for s in self.server.sessions if s.name == "guest1").connection
        connection._queue.pauseProducing()  # what Twisted does at 64 KiB unsent
        for i in range(40):
            bob.say(f"line {i} " + "x" * 50)
            self.clock.advance(0)
        alice.events()
        self.assertTrue(alice.client.lost)
        self.assertEqual(self.server.client_count, 1)
        self.assertEqual(bob.texts()[0], "* guest1 left")

    def test_login_and_operator(self) -> None:
        """On a server with logins a browser logs in; an operator there may kick a TCP user."""
        checker = InMemoryUsernamePasswordDatabaseDontUse(alice=b"wonderland", bob=b"builder")
        self.make(ChatConfig(operators=("alice",)), checkers=[checker])
        alice = self.browser()
        self.assertIn("notice: this server needs a login: /login NAME PASSWORD", alice.texts())
        alice.say("hello?")
        self.assertEqual(len(alice.texts()), 1)  # (an error: log in first)
        alice.say("/login alice wonderland")
        you = [e for e in alice.events() if e["type"] == "you"]
        self.assertEqual((you[0]["name"], you[0]["operator"]), ("alice", True))
        bob = Client(self.tcp)
        bob.send("/login bob builder")
        bob.new_lines()
        alice.say("/kick bob enough")
        self.assertIn("* you were kicked by alice: enough", bob.new_lines())

    def test_ban_by_name_and_refused_after(self) -> None:
        checker = InMemoryUsernamePasswordDatabaseDontUse(boss=b"pw")
        self.make(ChatConfig(operators=("boss",)), checkers=[checker])
        boss = Client(self.tcp, IPv4Address("TCP", "198.51.100.1", 4000))
        boss.send("/login boss pw")
        victim = self.browser()
        victim.say("/login nobody x")
        victim.events()
        # (not logged in: banned by address instead)
        boss.send("/ban 192.0.2.7")
        again = self.browser()
        texts = again.texts()
        self.assertEqual(len(texts), 1)
        self.assertTrue(texts[0].startswith("error: your address is banned"), texts)

    def test_shutdown_tells_browsers(self) -> None:
        alice = self.browser()
        alice.events()
        self.server.shut_down()
        self.assertEqual(alice.texts(), ["text: server shutting down"])
        assert alice.close is not None
        self.assertEqual(alice.close.close_code, 1001)  # (going away: the page comes back)

    def test_quit_says_goodbye_and_closes(self) -> None:
        alice, bob = self.browser(), self.browser()
        alice.events()
        bob.events()
        alice.say("/quit bye all")
        self.assertEqual(alice.texts(), ["text: Goodbye."])
        self.assertIsNotNone(alice.close)
        self.assertEqual(bob.texts(), ["* guest1 left"])

    def test_client_closing_leaves_the_room(self) -> None:
        alice, bob = self.browser(), self.browser()
        alice.events()
        bob.events()
        logged = tcpchat_log(self)
        alice.write(wsframes.frame(b"\x03\xe8", opcode=wsframes.CLOSE))
        self.assertEqual(bob.texts(), ["* guest1 left"])
        self.assertTrue(any("closed by the client (1000)" in line for line in logged), logged)


class HostileInputTests(WebTestCase):
    """What no browser sends: each gets a clear answer, and nobody else notices."""

    def test_pings_are_answered_only_while_the_client_reads(self) -> None:
        alice = self.browser()
        alice.events()
        alice.write(wsframes.frame(b"are you there", opcode=wsframes.PING))
        pongs = [f for f in alice.frames if f.opcode == wsframes.PONG]
        self.assertEqual([f.payload for f in pongs], [b"are you there"])
        connection = next(iter(self.server.sessions)).connection
        connection._queue.pauseProducing()  # (Twisted: the client stopped reading)
        before = len(connection.transport.stream) if hasattr(connection.transport, "stream") else 0
        alice.write(b"".join(wsframes.frame(b"x" * 100, opcode=wsframes.PING) for _ in range(50)))
        pongs = [f for f in alice.frames if f.opcode == wsframes.PONG]
        self.assertEqual(len(pongs), 1, "no pong piles up for a client that does not read")
        self.assertGreaterEqual(before, 0)

    def test_a_request_body_is_refused_before_it_is_read(self) -> None:
        logged = tcpchat_log(self)
        client = _Bytes()
        pump = _plug(self.site, self.clock, client, _address(0))
        pump.clientIO.write(
            f"POST /ws HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 300000000\r\n\r\n".encode()
        )
        pump.flush()
        self.assertTrue(client.lost)
        self.assertEqual(len([line for line in logged if "a request with a body" in line]), 1)

    def test_a_lone_surrogate_is_refused_with_one_error(self) -> None:
        alice, bob = self.browser(), self.browser()
        alice.events()
        bob.events()
        alice.write(wsframes.frame(b'{"type": "line", "text": "hidden \\ud800 line"}'))
        self.assertEqual(alice.texts(), ["error: that text is not valid Unicode; not delivered"])
        self.assertEqual(bob.texts(), [])

    def test_server_header_names_no_library(self) -> None:
        alice = self.browser()
        self.assertIn(b"server: tcpchat\r\n", alice.reader.response.lower())

    def test_head_has_no_body_and_no_warning(self) -> None:
        troubles = troubles_logged(self)
        client = _Bytes()
        pump = _plug(self.site, self.clock, client, _address(0))
        pump.clientIO.write(f"HEAD / HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        pump.flush()
        head, _, body = client.data.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200"), head)
        self.assertEqual(body, b"")
        self.assertNotIn(b"content-length: 0", head.lower())
        self.assertEqual(troubles, [])

    def test_ws_without_upgrade_is_a_plain_refusal(self) -> None:
        """No status page, and none of its ?redirect= (an open redirect)."""
        answer = self.get("/ws?redirect=https%3A%2F%2Fevil.example")
        self.assertTrue(answer.startswith(b"HTTP/1.1 4"), answer[:40])
        self.assertNotIn(b"evil.example", answer)
        self.assertNotIn(b"Autobahn", answer)

    def test_null_origin_is_refused_and_logged(self) -> None:
        logged = tcpchat_log(self)
        page = self.browser(origin="null")
        self.assertEqual(page.reader.status, 403)
        self.assertEqual(len([line for line in logged if "refused" in line]), 1, logged)

    def test_oversized_message_is_logged_with_why(self) -> None:
        self.make(ChatConfig(max_line=100, max_unterminated=200))
        logged = tcpchat_log(self)
        alice = self.browser()
        alice.events()
        alice.write(wsframes.frame(b"x" * 201))
        self.clock.advance(2)
        alice.events()
        ended = [line for line in logged if "disconnected" in line]
        self.assertEqual(len(ended), 1, logged)
        self.assertIn("1009", ended[0])


class CloseCodeTests(WebTestCase):
    """The close code says why a session ended, so the page knows whether to come back."""

    def test_quit_flood_kick(self) -> None:
        checker = InMemoryUsernamePasswordDatabaseDontUse(boss=b"pw", web=b"pw")
        self.make(
            ChatConfig(operators=("boss",), flood_rate=1, flood_burst=1, flood_queue=2, exempt=()),
            checkers=[checker],
        )
        quitter = self.browser()
        quitter.say("/quit")
        assert quitter.close is not None
        self.assertEqual(quitter.close.close_code, 1000)

        flooder = self.browser()
        flooder.write(b"".join(wsframes.line(f"/help {i}") for i in range(10)))
        assert flooder.close is not None
        self.assertEqual(flooder.close.close_code, 1008)

        boss = Client(self.tcp, IPv4Address("TCP", "198.51.100.1", 4000))
        boss.send("/login boss pw")
        kicked = self.browser()
        kicked.say("/login web pw")
        kicked.events()
        boss.send("/kick web go")
        self.clock.advance(2)  # (boss is paced too: one line a second)
        self.assertIn("notice: you were kicked by boss: go", kicked.texts())
        assert kicked.close is not None
        self.assertEqual(kicked.close.close_code, 4001)


class SecondReviewTests(WebTestCase):
    """What the second review found: each case as it was shown."""

    def test_refused_connection_is_closed_by_its_protocol(self) -> None:
        """Past the limits the site gives a protocol that closes (a TLS port would keep None)."""
        self.make(ChatConfig(max_clients=1))
        self.browser().events()
        refused = self.site.buildProtocol(_address(98))
        client = _Bytes()
        pump = iosim.connect(
            refused,
            iosim.FakeTransport(
                refused, isServer=True, hostAddress=SERVER, peerAddress=_address(98)
            ),
            client,
            iosim.FakeTransport(client, isServer=False),
            clock=self.clock,
        )
        pump.flush()
        self.assertTrue(client.lost)

    def test_failed_handshakes_free_their_place(self) -> None:
        """GET /ws without Upgrade, again and again, does not lock the address out."""
        self.make(ChatConfig(per_address=1, exempt=()))
        for _ in range(3):
            self.assertTrue(self.get("/ws").startswith(b"HTTP/1.1 4"))
        self.assertEqual(self.site.waiting, {})
        self.assertEqual(self.browser(address=_address(0)).reader.status, 101)

    def test_a_body_in_the_same_read_is_not_a_traceback(self) -> None:
        troubles = troubles_logged(self)
        for request in (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\n\r\n",
        ):
            client = _Bytes()
            pump = _plug(self.site, self.clock, client, _address(0))
            pump.clientIO.write(request)
            pump.flush()
            self.assertTrue(client.lost)
            self.assertNotIn(b"HTTP/1.1 200", client.data)
        self.assertEqual(troubles, [])

    def test_no_data_frame_after_a_close_frame(self) -> None:
        """Lines answered in the turn the client closes: sent before the close, none after."""
        alice = self.browser()
        alice.events()
        alice.write(
            wsframes.line("/nick alice")
            + wsframes.line("/who")
            + wsframes.frame(b"\x03\xe8", opcode=wsframes.CLOSE)
        )
        opcodes = [f.opcode for f in alice.frames]
        self.assertIn(wsframes.CLOSE, opcodes)
        self.assertEqual(opcodes[-1], wsframes.CLOSE, opcodes)

    def test_lost_place_closes_with_1012(self) -> None:
        """A node that lost its place in a shared chat: the page may come back at once."""
        alice = self.browser()
        alice.events()
        session = next(iter(self.server.sessions))
        session.disconnect("node lost", Ending.LOST)
        alice.events()
        assert alice.close is not None
        self.assertEqual(alice.close.close_code, 1012)

    def test_ipv6_connections_are_counted_by_their_64(self) -> None:
        self.make(ChatConfig(per_address=1, exempt=()))
        first = IPv6Address("TCP", "2001:db8::1", 5000)
        client = _Bytes()
        server = self.site.buildProtocol(first)
        iosim.connect(
            server,
            iosim.FakeTransport(server, isServer=True, hostAddress=SERVER, peerAddress=first),
            client,
            iosim.FakeTransport(client, isServer=False),
            clock=self.clock,
        )
        neighbour = self.site.buildProtocol(IPv6Address("TCP", "2001:db8::2", 5000))
        self.assertEqual(type(neighbour).__name__, "_Refused")
        elsewhere = self.site.buildProtocol(IPv6Address("TCP", "2001:db8:1::2", 5000))
        self.assertNotEqual(type(elsewhere).__name__, "_Refused")


class HealthTests(WebTestCase):
    def test_health_is_json_and_no_client(self) -> None:
        self.browser().events()
        answer = self.get("/health")
        head, _, body = answer.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200"), head)
        self.assertIn(b"content-type: application/json", head.lower())
        self.assertEqual(json.loads(body), {"live": True, "ready": True, "clients": 1})
        self.assertEqual(self.server.client_count, 1)

    def test_not_ready_is_503(self) -> None:
        self.server.directory.health = lambda: {"ready": False, "redis": "lost", "lost_for": 3.0}  # type: ignore[attr-defined]
        head, _, body = self.get("/health").partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 503"), head)
        self.assertEqual(json.loads(body)["redis"], "lost")


class MetricsTests(WebTestCase):
    """What the WebSocket front end adds to the metrics (issue 17)."""

    def test_websocket_clients_are_counted_apart(self) -> None:
        from tests.test_metrics import scrape, value
        from twisted_tcpchat.frontends.metrics import MetricsPage

        page = MetricsPage(self.server)
        alice, bob = self.browser(), self.browser()
        alice.events()
        bob.events()
        before = scrape(page)
        bob.say("hello")
        self.assertIn("<guest2> hello", alice.texts())
        after = scrape(page)
        self.assertEqual(value(after, "tcpchat_connections", frontend="websocket"), 2)
        self.assertEqual(value(after, "tcpchat_connections", frontend="tcp"), 0)
        payload = len(json.dumps({"type": "line", "text": "hello"}))
        for name, moved in (
            ("tcpchat_received_bytes_total", payload),
            ("tcpchat_lines_received_total", 1),
            ("tcpchat_deliveries_total", 1),
        ):
            self.assertEqual(value(after, name) - value(before, name), moved, name)

    def test_refusals_at_the_web_port_by_reason(self) -> None:
        from tests.test_metrics import scrape, value
        from twisted_tcpchat.frontends.metrics import MetricsPage

        page = MetricsPage(self.server)
        self.assertEqual(self.browser(origin="http://evil.example").reader.status, 403)
        bad = self.browser()
        bad.events()
        bad.write(wsframes.frame(b"{oops"))
        self.assertIn("error: that is not JSON", " ".join(bad.texts()))
        figures = scrape(page)
        self.assertEqual(value(figures, "tcpchat_connections_refused_total", reason="origin"), 1)
        self.assertEqual(value(figures, "tcpchat_lines_dropped_total", limit="bad_request"), 1)

    def test_a_close_frame_is_closed_not_lost(self) -> None:
        from tests.test_metrics import scrape, value
        from twisted_tcpchat.frontends.metrics import MetricsPage

        page = MetricsPage(self.server)
        alice = self.browser()
        alice.events()
        alice.write(wsframes.frame(struct.pack("!H", 1000) + b"bye", wsframes.CLOSE))
        self.clock.advance(5)
        figures = scrape(page)
        self.assertEqual(value(figures, "tcpchat_sessions_ended_total", reason="closed"), 1)
        self.assertEqual(value(figures, "tcpchat_sessions_ended_total", reason="lost"), 0)
        self.assertEqual(value(figures, "tcpchat_connections", frontend="websocket"), 0)

    def test_metrics_on_a_path_of_the_web_port(self) -> None:
        from twisted_tcpchat.frontends.metrics import MetricsPage

        self.site = web_site(
            self.server, self.clock, metrics=(b"metrics", MetricsPage(self.server))
        )
        head, _, body = self.get("/metrics").partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200"), head)
        self.assertIn(b"tcpchat_connections{", body)


class EventsCommandTests(WebTestCase):
    def test_a_websocket_gets_json_only(self) -> None:
        """/events is for TCP connections: a WebSocket is told it cannot switch, and stays."""
        alice = self.browser()
        alice.events()
        alice.say("/events text")
        self.assertEqual(alice.texts(), ["error: this connection cannot change how it gets events"])
        alice.say("/events json")
        self.assertEqual(alice.texts(), ["error: this connection cannot change how it gets events"])


class ReloadTests(WebTestCase):
    def test_a_websocket_keeps_its_size_limit_after_a_reload(self) -> None:
        """Connected before a reload, a WebSocket keeps the limits it started with."""
        from dataclasses import replace

        self.make(ChatConfig(max_line=1000, max_unterminated=8000))
        alice = self.browser()
        alice.events()
        self.server.reconfigure(replace(self.server.config, max_unterminated=5000))
        newcomer = self.browser()  # (made under the new limit)
        newcomer.events()
        alice.events()
        alice.say("x" * 6000)
        self.assertIsNone(alice.close)
        (error,) = alice.texts()  # (too long for a line: not delivered, and she stays)
        self.assertIn("line too long", error)
        newcomer.say("x" * 6000)
        self.assertIsNotNone(newcomer.close)
        self.assertEqual(newcomer.close.close_code, 1009)  # type: ignore[union-attr]
