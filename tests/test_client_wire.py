"""
The client's pure parts: framing what a server sends (NUL-terminated C
greetings included), making it safe to show, encoding what is typed,
addresses, and the command line.
"""

from __future__ import annotations

import io
import random

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import error
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, UNIXClientEndpoint
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from twisted_tcpchat.client.main import Target, parse_arguments, parse_target
from twisted_tcpchat.client.session import why_lost, why_not_connected
from twisted_tcpchat.client.wire import (
    LINE_ENDINGS,
    IncomingLines,
    check_encoding,
    encode_message,
    for_screen,
)
from twisted_tcpchat.core.config import DEFAULT_GREETING, DEFAULT_PORT

C_GREETING = DEFAULT_GREETING.encode() + b"\0"


def feed_in_pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    """Feed C{data} split at C{cuts}, then flush; all the lines that came out."""
    incoming = IncomingLines()
    lines: list[bytes] = []
    start = 0
    for cut in [*sorted(cuts), len(data)]:
        lines += incoming.feed(data[start:cut])
        start = cut
    return lines + incoming.flush()


class IncomingLinesTests(SynchronousTestCase):
    def test_lf_and_crlf_end_lines(self) -> None:
        """LF ends a line and one CR before it goes: our server's CRLF and nc's LF."""
        self.assertEqual(IncomingLines().feed(b"a\r\nb\nc\r\r\n"), [b"a", b"b", b"c\r"])

    def test_unfinished_line_waits(self) -> None:
        """Bytes after the last line end wait for the rest of their line."""
        incoming = IncomingLines()
        self.assertEqual(incoming.feed(b"Conn"), [])
        self.assertEqual(incoming.pending, 4)
        self.assertEqual(incoming.feed(b"ect\r"), [])
        self.assertEqual(incoming.feed(b"\nnext"), [b"Connect"])
        self.assertEqual(incoming.pending, 4)

    def test_flush_gives_the_unfinished_line(self) -> None:
        """A tutorial server's reply with no line end at all is still a line when flushed."""
        incoming = IncomingLines()
        incoming.feed(b"Message received\r")
        self.assertEqual(incoming.flush(), [b"Message received"])
        self.assertEqual(incoming.flush(), [])
        self.assertEqual(incoming.pending, 0)

    def test_nul_ends_a_c_greeting(self) -> None:
        """send(s, msg, sizeof(msg), 0): the message shows, its NUL does not."""
        self.assertEqual(IncomingLines().feed(C_GREETING), [DEFAULT_GREETING.encode()])

    def test_garbage_after_nul_is_dropped(self) -> None:
        """A reply padded to a fixed buffer: what follows the NUL in that read is not shown."""
        reply = b"Message received\0\0\0\0STALE GARBAGE\0\0\xff\x01\0\0"
        incoming = IncomingLines()
        self.assertEqual(incoming.feed(reply), [b"Message received"])
        self.assertEqual(incoming.pending, 0)
        self.assertEqual(incoming.feed(b"next line\n"), [b"next line"])

    def test_padding_split_over_reads_shows_nothing(self) -> None:
        """A read that is only the rest of a big buffer's NUL padding shows no empty line."""
        incoming = IncomingLines()
        self.assertEqual(incoming.feed(b"hi\0" + b"\0" * 100), [b"hi"])
        self.assertEqual(incoming.feed(b"\0" * 5000), [])

    def test_long_line_comes_out_in_pieces(self) -> None:
        """A server that never ends its line cannot make the client hold it all."""
        incoming = IncomingLines(max_line=4)
        self.assertEqual(incoming.feed(b"abcdefghij"), [b"abcd", b"efgh"])
        self.assertEqual(incoming.pending, 2)

    @given(
        lines=st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")), max_size=8),
        crlf=st.booleans(),
        c_style_end=st.booleans(),
        cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=10),
    )
    def test_chunking_invariance(
        self, lines: list[bytes], crlf: bool, c_style_end: bool, cuts: list[int]
    ) -> None:
        """
        Lines without NULs, then maybe a NUL-ended C message: the same lines
        come out whatever the reads the bytes arrive in.
        """
        lines = [line.replace(b"\0", b"") for line in lines]
        lines = [line for line in lines if not line.endswith(b"\r")]
        data = b"".join(line + (b"\r\n" if crlf else b"\n") for line in lines)
        expected = list(lines)
        if c_style_end:
            data += b"bye\0"
            expected.append(b"bye")
        cuts = [c for c in cuts if c <= len(data)]
        self.assertEqual(feed_in_pieces(data, cuts), expected)
        self.assertEqual(feed_in_pieces(data, list(range(len(data)))), expected)


class ForScreenTests(SynchronousTestCase):
    def test_controls_are_escaped(self) -> None:
        """A server cannot clear the screen, ring the bell or retitle the terminal."""
        self.assertEqual(
            for_screen(b"\x1b[2J\x07\x1b]0;pwned\x07ok"), "\\x1b[2J\\x07\\x1b]0;pwned\\x07ok"
        )

    def test_bidi_override_is_escaped(self) -> None:
        """Trojan Source: a right-to-left override shows as \\u202e."""
        self.assertEqual(for_screen("a\u202eb".encode()), "a\\u202eb")

    def test_bytes_not_in_the_encoding_show_as_escapes(self) -> None:
        """Bytes that are not UTF-8 show as \\x.. escapes, not as garbage or an error."""
        self.assertEqual(for_screen(b"caf\xe9 ok"), "caf\\xe9 ok")

    def test_gbk(self) -> None:
        """A Chinese Windows peer's GBK text shows as text with --encoding gbk."""
        self.assertEqual(for_screen("你好，世界".encode("gbk"), "gbk"), "你好，世界")


class EncodeMessageTests(SynchronousTestCase):
    def test_each_line_ending(self) -> None:
        """--line-ending lf, crlf, nul and none: exactly that after the text."""
        sent = {name: encode_message("exit", ending) for name, ending in LINE_ENDINGS.items()}
        self.assertEqual(
            sent, {"lf": b"exit\n", "crlf": b"exit\r\n", "nul": b"exit\0", "none": b"exit"}
        )

    def test_encoding(self) -> None:
        """--encoding gbk sends GBK; a character GBK lacks becomes ?."""
        self.assertEqual(encode_message("你好 🙂", b"\n", "gbk"), "你好 ?".encode("gbk") + b"\n")

    def test_undecodable_input_bytes_go_out_as_they_came(self) -> None:
        """Piped bytes that were not UTF-8 (surrogate-escaped on the way in) pass through."""
        text = b"caf\xe9".decode("utf-8", "surrogateescape")
        self.assertEqual(encode_message(text, b"\n"), b"caf\xe9\n")


class CheckEncodingTests(SynchronousTestCase):
    def test_known_ones_are_canonical(self) -> None:
        self.assertEqual(
            [check_encoding(n) for n in ("UTF8", "gbk", "latin-1")],
            ["utf-8", "gbk", "iso8859-1"],
        )

    def test_unknown_and_unframeable_are_refused(self) -> None:
        """Unknown names, non-text codecs, and UTF-16 (LF is not one byte there) are refused."""
        for name in ("klingon", "rot13", "hex", "utf-16", "utf-32"):
            with self.assertRaises(ValueError, msg=name):
                check_encoding(name)


class TargetTests(SynchronousTestCase):
    def test_forms(self) -> None:
        """HOST, HOST PORT, HOST:PORT, [IPv6]:PORT and a bare IPv6 address."""
        cases = {
            ("example.org", None): Target("example.org", DEFAULT_PORT),
            ("example.org", "7"): Target("example.org", 7),
            ("127.0.0.1:5000", None): Target("127.0.0.1", 5000),
            ("[::1]:5000", None): Target("::1", 5000),
            ("[::1]", "6"): Target("::1", 6),
            ("::1", None): Target("::1", DEFAULT_PORT),
            ("fe80::1", "9"): Target("fe80::1", 9),
        }
        for (text, port), target in cases.items():
            self.assertEqual(parse_target(text, port), target, (text, port))

    def test_endpoint_strings(self) -> None:
        """An endpoint string is kept whole, even when a number follows its type."""
        for text in ("tcp:host=example.org:port=5", "tls:example.org:443", "unix:1234"):
            self.assertEqual(parse_target(text), Target(description=text))

    def test_shown_as_host_and_port(self) -> None:
        """Messages name HOST:PORT, IPv6 in brackets, endpoint strings by their address."""
        shown = [
            str(parse_target(text))
            for text in (
                "example.org",
                "::1",
                "tcp:host=example.org:port=5",
                "tcp:example.org:5",
                "tls:host=\\:\\:1:port=443",
                "unix:/run/chat.sock",
            )
        ]
        self.assertEqual(
            shown,
            [
                f"example.org:{DEFAULT_PORT}",
                f"[::1]:{DEFAULT_PORT}",
                "example.org:5",
                "example.org:5",
                "[::1]:443",
                "unix:/run/chat.sock",
            ],
        )

    def test_bad_ones(self) -> None:
        """A bad port, a port twice, a port with an endpoint string: each is refused."""
        for text, port in (
            ("host", "0"),
            ("host", "65536"),
            ("host", "http"),
            ("host:1", "2"),
            ("tcp:host=h:port=1", "2"),
            ("", None),
            ("two words", None),
        ):
            with self.assertRaises(ValueError, msg=(text, port)):
                parse_target(text, port)

    def test_endpoints_built(self) -> None:
        """HOST PORT dials with HostnameEndpoint (IPv4 and IPv6); strings with their own."""
        reactor = MemoryReactorClock()
        self.assertIsInstance(Target("localhost", 5).endpoint(reactor, 10), HostnameEndpoint)
        self.assertIsInstance(
            Target(description="tcp:host=127.0.0.1:port=5").endpoint(reactor, 10),
            TCP4ClientEndpoint,
        )
        self.assertIsInstance(
            Target(description="unix:/tmp/x").endpoint(reactor, 10), UNIXClientEndpoint
        )
        with self.assertRaises(ValueError):
            Target(description="nosuch:thing").endpoint(reactor, 10)


class WhyNotConnectedTests(SynchronousTestCase):
    def test_reasons_in_a_few_words(self) -> None:
        """Each way a connect fails reads as a few plain words, not an exception's repr."""
        reasons = [
            why_not_connected(e)
            for e in (
                error.ConnectionRefusedError(111, "Connection refused"),
                error.NoRouteError(101, "Network is unreachable"),
                error.ConnectError(113, "No route to host"),
                error.DNSLookupError("no results for hostname lookup: x.invalid"),
                DeferredTimeout(),
                error.ConnectionRefusedError(),
                error.ConnectError(string="something odd."),
            )
        ]
        self.assertEqual(
            reasons,
            [
                "connection refused",
                "network is unreachable",
                "no route to host",
                "host name not found",
                "timed out",
                "connection refused",
                "An error occurred while connecting: something odd",
            ],
        )


class WhyLostTests(SynchronousTestCase):
    def test_reasons_in_a_few_words(self) -> None:
        """How a connection broke reads as a few words."""
        from OpenSSL.SSL import Error

        reasons = [
            why_lost(e)
            for e in (
                error.ConnectionLost(),
                error.ConnectionLost("Connection reset by peer"),
                Error([("SSL routines", "", "certificate verify failed")]),
                error.ConnectionAborted(),
            )
        ]
        self.assertEqual(
            reasons,
            [
                "connection reset",
                "Connection reset by peer",
                "TLS: certificate verify failed",
                "connection reset",
            ],
        )


class ArgumentTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.stderr = io.StringIO()
        self.patch(__import__("sys"), "stderr", self.stderr)

    def refused(self, *argv: str) -> str:
        """Parse argv, expect exit status 2; return what went to stderr."""
        self.stderr.seek(0)
        self.stderr.truncate()
        with self.assertRaises(SystemExit) as caught:
            parse_arguments(argv)
        self.assertEqual(caught.exception.code, 2, argv)
        return self.stderr.getvalue()

    def test_defaults(self) -> None:
        """No arguments: no target yet (asked on a terminal, 127.0.0.1 otherwise), LF, UTF-8."""
        arguments = parse_arguments([])
        self.assertEqual(
            (
                arguments.target,
                arguments.timeout,
                arguments.wait,
                arguments.line_ending,
                arguments.encoding,
                arguments.message,
                arguments.reconnect,
                arguments.nick,
            ),
            (None, 10.0, 1.0, "lf", "utf-8", [], False, None),
        )

    def test_options_anywhere(self) -> None:
        """Options go before or after HOST PORT; -m repeats, in order."""
        arguments = parse_arguments(
            ["-m", "one", "example.org", "--line-ending", "none", "5", "--message", "two"]
        )
        self.assertEqual(arguments.target, Target("example.org", 5))
        self.assertEqual(arguments.message, ["one", "two"])
        self.assertEqual(arguments.line_ending, "none")

    def test_bad_arguments_give_usage_and_status_2(self) -> None:
        """Each bad argument: the usage line, one line naming the problem, status 2."""
        cases = {
            ("--line-ending", "cr"): "invalid choice: 'cr'",
            ("--timeout", "0"): "--timeout: '0' is not a number of seconds (more than 0)",
            ("--timeout", "soon"): "--timeout: 'soon' is not a number of seconds",
            ("--wait", "-1"): "--wait: '-1' is not a number of seconds (0 or more)",
            ("--encoding", "utf-16"): "does not write ASCII as ASCII",
            ("--nick", "two words"): "--nick: 'two words' must be one word",
            ("host", "99999"): "port '99999' is not a number from 1 to 65535",
            ("a", "1", "extra"): "unrecognized arguments: extra",
            ("--frobnicate",): "unrecognized arguments: --frobnicate",
            ("-m", "x", "--reconnect"): "--reconnect keeps a chat going; -m sends and ends",
        }
        for argv, problem in cases.items():
            output = self.refused(*argv)
            self.assertTrue(output.startswith("usage: tcpchat "), output)
            self.assertIn(problem, output)
            self.assertNotIn("Traceback", output)

    def test_random_junk_never_crashes_the_parser(self) -> None:
        """Whatever the arguments, the parser answers or exits 2: never a traceback."""
        rng = random.Random(4)
        words = ["-m", "--timeout", "x", "1", "::1", "[", "tcp:", "--wait", "--nick", "", "-"]
        for _ in range(200):
            argv = [rng.choice(words) for _ in range(rng.randint(0, 5))]
            try:
                parse_arguments(argv)
            except SystemExit as e:
                self.assertEqual(e.code, 2, argv)
