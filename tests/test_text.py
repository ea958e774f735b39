"""
The text of the wire, pure: framing (C strings included), escaping,
decoding, templates, and events rendered as lines.
"""

from __future__ import annotations

import random
import unicodedata

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from twisted_tcpchat.core.events import Error, Message, Presence, Text
from twisted_tcpchat.frontends.render import text_of, wire_bytes
from twisted_tcpchat.text.encodings import Codec, decode
from twisted_tcpchat.text.escaping import (
    _NEEDS_ESCAPE_BUT_LF,
    escape_controls,
    escape_lines,
    needs_escape,
)
from twisted_tcpchat.text.framing import (
    EOL,
    MAX_PADDING,
    LineBuffer,
    Overlong,
    sniff,
    split_lines,
)
from twisted_tcpchat.text.templates import GREETING_FIELDS, check_template, render_template


def feed_in_pieces(data: bytes, cuts: list[int], max_line: int = 4096) -> list[object]:
    buffer = LineBuffer(max_line)
    frames: list[object] = []
    start = 0
    for cut in [*sorted(cuts), len(data)]:
        frames += buffer.feed(data[start:cut])
        start = cut
    return frames


class FramingTests(SynchronousTestCase):
    def test_lf_and_crlf_end_lines(self) -> None:
        """LF ends a line and one CR before it is dropped (nc, telnet, C fgets)."""
        self.assertEqual(split_lines(b"a\nb\r\nc\r\r\n"), [b"a", b"b", b"c\r"])

    def test_unterminated_tail_is_kept(self) -> None:
        """Bytes after the last LF wait for the rest of their line."""
        buffer = LineBuffer()
        self.assertEqual(buffer.feed(b"hel"), [])
        self.assertEqual(buffer.pending, 3)
        self.assertEqual(buffer.feed(b"lo\nwor"), [b"hello"])
        self.assertEqual(buffer.pending, 3)

    def test_empty_lines_are_lines(self) -> None:
        """An empty line is a line (the logic decides what it means)."""
        self.assertEqual(split_lines(b"\n\r\n"), [b"", b""])

    def test_overlong_line_reported_and_next_line_kept(self) -> None:
        """An over-long line becomes Overlong; a good line after it in the same read survives."""
        self.assertEqual(split_lines(b"x" * 11 + b"\nok\n", max_line=10), [Overlong(11), b"ok"])

    def test_line_of_exactly_the_limit_with_crlf_split(self) -> None:
        """A line of exactly the limit is accepted even when CR and LF arrive in separate reads."""
        buffer = LineBuffer(max_line=4)
        self.assertEqual(buffer.feed(b"abcd\r"), [])
        self.assertEqual(buffer.feed(b"\n"), [b"abcd"])

    def test_overlong_bytes_are_not_kept(self) -> None:
        """An over-long line in progress is counted, not stored: memory stays bounded."""
        buffer = LineBuffer(max_line=10)
        for _ in range(100):
            self.assertEqual(buffer.feed(b"y" * 1000), [])
        self.assertEqual(buffer.pending, 100_000)
        self.assertLess(len(buffer._tail), 12)
        self.assertEqual(buffer.feed(b"z\nnext\n"), [Overlong(100_001), b"next"])
        self.assertEqual(buffer.pending, 0)

    def test_random_splits_give_the_same_frames(self) -> None:
        """The same stream whole, byte by byte and in random splits gives the same frames."""
        data = b"hello\r\nworld\n" + b"q" * 30 + b"\r\n\n\xe4\xb8\xad\r\nend\r"
        whole = split_lines(data, max_line=20)
        self.assertEqual(feed_in_pieces(data, list(range(len(data))), 20), whole)
        rng = random.Random(1234)
        for _ in range(200):
            cuts = rng.sample(range(len(data)), rng.randint(0, len(data) - 1))
            self.assertEqual(feed_in_pieces(data, cuts, 20), whole)


@given(
    st.lists(
        st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"").replace(b"\0", b"")), max_size=8
    ),
    st.lists(st.integers(min_value=0, max_value=400), max_size=20),
    st.integers(min_value=1, max_value=30),
)
def test_any_chunking_yields_the_same_frames(
    lines: list[bytes], cuts: list[int], max_line: int
) -> None:
    """
    Property: any chunking of an LF/CRLF byte stream yields the frames of the
    whole stream.  (NUL is left out: it ends a C string *and its send*, so
    where sends split is meant to matter; see the next property.)
    """
    data = b"".join(line + b"\n" for line in lines)
    cuts = [c for c in cuts if c <= len(data)]
    assert feed_in_pieces(data, cuts, max_line) == split_lines(data, max_line)


_STRING = (
    st.binary(min_size=1, max_size=20)
    .map(lambda b: b.replace(b"\n", b"").replace(b"\0", b"").replace(b"\r", b""))
    .filter(bool)
)


def _feed_all(buffer: LineBuffer, data: bytes, cuts: list[int]) -> list[object]:
    frames: list[object] = []
    start = 0
    for cut in [*sorted(set(cuts)), len(data)]:
        frames += buffer.feed(data[start:cut])
        start = cut
    return frames


@given(st.lists(_STRING, min_size=1, max_size=6), st.lists(st.integers(0, 200), max_size=10))
def test_strings_sent_back_to_back_are_all_lines(strings: list[bytes], cuts: list[int]) -> None:
    """
    Property: C strings sent with their NUL, back to back, are every one a
    line, however TCP joins and splits them (the last ones of a joined read
    once the client is quiet).
    """
    data = b"".join(string + b"\0" for string in strings)
    buffer = LineBuffer(max_line=64)
    frames = _feed_all(buffer, data, [c for c in cuts if c <= len(data)])
    assert [*frames, *buffer.quiet()] == strings


def _padded(string: bytes, stale: list[bytes], size: int) -> bytes:
    """A fixed-size buffer as a C client sends it: the string, its NUL, stale bytes, NULs."""
    body = string + b"\0" + b"".join(piece + b"\0" for piece in stale)
    return body + b"\0" * max(2, size - len(body))


@given(
    st.lists(
        st.tuples(_STRING, st.lists(_STRING, max_size=3), st.integers(0, 80)),
        min_size=1,
        max_size=4,
    ),
    st.lists(st.integers(0, 600), max_size=12),
)
def test_fixed_size_buffers_give_their_strings_only(
    sends: list[tuple[bytes, list[bytes], int]], cuts: list[int]
) -> None:
    """
    Property: fixed-size buffers (a string, its NUL, what longer messages
    left behind, a run of NULs) give their strings and nothing else, whole or
    split by TCP anywhere - but right after a single NUL inside a buffer,
    where the rest looks exactly like a second send.
    """
    buffers = [_padded(string, stale, size) for string, stale, size in sends]
    data = b"".join(buffers)
    ambiguous = {i + 1 for i in range(len(data) - 1) if data[i] == 0 and data[i + 1] != 0}
    buffer = LineBuffer(max_line=64)
    frames = _feed_all(buffer, data, [c for c in cuts if c <= len(data) and c not in ambiguous])
    assert [*frames, *buffer.quiet()] == [string for string, _, _ in sends]


class CStringTests(SynchronousTestCase):
    def test_nul_ends_a_line(self) -> None:
        self.assertEqual(split_lines(b"hello\0"), [b"hello"])

    def test_a_fixed_size_buffer_gives_its_string_only(self) -> None:
        """The string, a NUL, what an earlier message left, NULs: only the string counts."""
        buffer = LineBuffer()
        self.assertEqual(buffer.feed(b"hi\0lo world\0\0\0\0"), [b"hi"])
        self.assertEqual(buffer.feed(b"next\0" + b"\0" * 990), [b"next"])
        self.assertEqual(buffer.quiet(), [])

    def test_an_fgets_buffer_gives_its_line_only(self) -> None:
        """fgets keeps the LF: the line, its NUL, an older longer line, NULs."""
        self.assertEqual(split_lines(b"hi\n\0lo world\n\0\0\0\0\0"), [b"hi"])

    def test_stale_bytes_with_nuls_in_them_are_dropped_too(self) -> None:
        self.assertEqual(split_lines(b"hi\0lo\0orld\0\0\0"), [b"hi"])

    def test_strings_joined_in_one_read_all_count(self) -> None:
        """Back-to-back strings joined by TCP: the first at once, the rest once quiet."""
        buffer = LineBuffer()
        self.assertEqual(buffer.feed(b"one\0two\0three\0"), [b"one"])
        self.assertTrue(buffer.holding)
        self.assertEqual(buffer.quiet(), [b"two", b"three"])

    def test_held_strings_go_first_when_the_next_send_comes(self) -> None:
        buffer = LineBuffer()
        self.assertEqual(buffer.feed(b"one\0two\0"), [b"one"])
        self.assertEqual(buffer.feed(b"three\0"), [b"two", b"three"])
        self.assertFalse(buffer.holding)

    def test_one_string_per_send_is_never_held(self) -> None:
        """A lockstep client's message (one send, one string) is a line at once."""
        buffer = LineBuffer()
        for word in [b"a", b"b", b"c"]:
            self.assertEqual(buffer.feed(word + b"\0"), [word])
            self.assertFalse(buffer.holding)

    def test_padding_split_across_reads(self) -> None:
        buffer = LineBuffer()
        self.assertEqual(buffer.feed(b"hi\0lo wor"), [b"hi"])
        self.assertEqual(buffer.feed(b"ld\0\0\0"), [])
        self.assertEqual(buffer.feed(b"hi\0lo world\0"), [b"hi"])
        self.assertEqual(buffer.feed(b"\0\0\0"), [])
        self.assertEqual(buffer.quiet(), [])

    def test_lines_before_the_nul_in_the_same_send_count(self) -> None:
        self.assertEqual(split_lines(b"a\nb\0"), [b"a", b"b"])

    def test_pending_string_completed_by_nul(self) -> None:
        buffer = LineBuffer()
        self.assertEqual(buffer.feed(b"hel"), [])
        self.assertEqual(buffer.feed(b"lo\0"), [b"hello"])

    def test_strings_streamed_without_a_pause_do_not_pile_up(self) -> None:
        """
        A client that sends string after string, each read ending inside
        one, is never quiet: past what any buffer's padding could be, what
        is held is delivered (memory stays bounded, and so does the delay).
        """
        buffer = LineBuffer(max_line=200)
        delivered: list[object] = list(buffer.feed(b"first\0"))
        chunk = b"".join(b"s%05d\0" % i for i in range(1000)) + b"tail"
        for _ in range(10):
            delivered += buffer.feed(chunk)
            self.assertLessEqual(buffer._held_bytes, MAX_PADDING)
        self.assertGreater(len(delivered), 9000)
        self.assertEqual(delivered[:3], [b"first", b"s00000", b"s00001"])

    def test_the_end_of_input_delivers_what_is_held(self) -> None:
        buffer = LineBuffer()
        self.assertEqual(buffer.feed(b"a\0b\0c"), [b"a"])
        self.assertEqual(buffer.flush(), [b"b", b"c"])

    def test_terminated_after_first_line_end(self) -> None:
        """A client is held to line mode once it has ended a line (LF or NUL)."""
        buffer = LineBuffer()
        buffer.feed(b"partial")
        self.assertFalse(buffer.terminated)
        self.assertEqual(buffer.quiet(), [b"partial"])
        self.assertFalse(buffer.terminated)
        buffer.feed(b"x\n")
        self.assertTrue(buffer.terminated)
        buffer.feed(b"unfinished")
        self.assertEqual(buffer.quiet(), [])
        other = LineBuffer()
        other.feed(b"y\0")
        self.assertTrue(other.terminated)


class CodecTests2(SynchronousTestCase):
    def test_detects_gbk_and_answers_in_gbk(self) -> None:
        """A Chinese Windows console's GBK bytes are understood; replies go out in GBK."""
        codec = Codec()
        self.assertEqual(codec.output, "utf-8")
        self.assertEqual(codec.decode("你好，世界".encode("gbk")), "你好，世界")
        self.assertEqual(codec.output, "gbk")
        self.assertEqual(codec.decode(b"plain ascii"), "plain ascii")
        self.assertEqual(codec.output, "gbk")

    def test_utf8_client_stays_utf8(self) -> None:
        codec = Codec()
        self.assertEqual(codec.decode("中文".encode()), "中文")
        self.assertEqual(codec.output, "utf-8")

    def test_undecodable_bytes(self) -> None:
        """Bytes that are neither UTF-8 nor GB18030 decode as nothing."""
        codec = Codec()
        self.assertIsNone(codec.decode(b"\xff\xfe\xff"))
        self.assertEqual(codec.output, "utf-8")

    def test_fixed_encoding(self) -> None:
        codec = Codec("latin-1")
        self.assertEqual(codec.decode("é".encode("latin-1")), "é")
        self.assertEqual(codec.output, "latin-1")
        self.assertIsNone(Codec("utf-8").decode("中".encode("gbk")))

    def test_valid_utf8_wins_line_by_line(self) -> None:
        """
        A client that sent a GBK line and then sends valid UTF-8 is read as
        UTF-8 again (not as GBK mojibake), and answered in UTF-8.
        """
        codec = Codec()
        self.assertEqual(codec.decode("你好".encode("gbk")), "你好")
        self.assertEqual(codec.output, "gbk")
        self.assertEqual(codec.decode("世界".encode()), "世界")
        self.assertEqual(codec.output, "utf-8")
        self.assertEqual(codec.decode_lines(["中文".encode("gbk")]), None)
        self.assertEqual(codec.decode("中文".encode("gbk")), "中文")
        self.assertEqual(codec.output, "gbk")
        self.assertEqual(codec.decode_lines(["一".encode(), b"ok"]), ["一", "ok"])
        self.assertEqual(codec.output, "utf-8")

    def test_ascii_keeps_the_last_encoding(self) -> None:
        """ASCII says nothing about the encoding: a GBK client stays answered in GBK."""
        codec = Codec()
        codec.decode("你好".encode("gbk"))
        self.assertEqual(codec.decode_lines([b"plain", b"ascii"]), ["plain", "ascii"])
        self.assertEqual(codec.output, "gbk")


class SniffTests(SynchronousTestCase):
    def test_tls_client_hello(self) -> None:
        self.assertIn("not TLS", sniff(b"\x16\x03\x01\x02\x00\x01\x00") or "")

    def test_http_request(self) -> None:
        self.assertIn("not a web server", sniff(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") or "")
        self.assertIn("not a web server", sniff(b"POST /api HTTP/1.0\r\n") or "")

    def test_chat_is_not_refused(self) -> None:
        for first in [b"GET me a coffee\n", b"hello\n", b"\x16", b"", "你好".encode()]:
            self.assertIsNone(sniff(first), first)


class EscapeTests(SynchronousTestCase):
    def test_c0_c1_del_escaped_tab_kept(self) -> None:
        """ESC, BEL, BS, CR, NUL, DEL and C1 become visible escapes; TAB stays."""
        self.assertEqual(
            escape_controls("a\x1b[2Jb\x07\x08\r\x00\x7f\x9b\tc"),
            "a\\x1b[2Jb\\x07\\x08\\x0d\\x00\\x7f\\x9b\tc",
        )

    def test_bidi_overrides_escaped(self) -> None:
        """Bidi overrides and isolates cannot reorder what the reader sees."""
        self.assertEqual(escape_controls("a\u202eb\u2066c"), "a\\u202eb\\u2066c")

    def test_text_and_braces_unchanged(self) -> None:
        """Ordinary text, Chinese and braces are left as they are."""
        self.assertEqual(escape_controls("你好 {x} ü"), "你好 {x} ü")


@given(st.text())
def test_escaped_text_holds_no_control_character(text: str) -> None:
    """Property: escaped text has no C0/C1 control (but TAB) and no bidi control."""
    out = escape_controls(text)
    for char in out:
        assert char == "\t" or unicodedata.category(char) != "Cc", repr(char)
        assert (
            char not in "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
        )


class CodecTests(SynchronousTestCase):
    def test_decode_utf8(self) -> None:
        self.assertEqual(decode("中文".encode()), "中文")

    def test_decode_refuses_bad_bytes(self) -> None:
        """Bytes that are not the encoding give None, not an exception."""
        self.assertIsNone(decode(b"\xff\xfe"))

    def test_wire_bytes_escape_and_terminate(self) -> None:
        """What goes on the wire is escaped, each line ends in CRLF, in the client's encoding."""
        self.assertEqual(wire_bytes(Text("hi\x1b"), "utf-8"), b"hi\\x1b" + EOL)
        message = Message("lobby", "alice", ("a\rb", "中"), 1, 0.0)
        self.assertEqual(
            wire_bytes(message, "gbk"), b"<alice> a\\x0db\r\n<alice> " + "中".encode("gbk") + EOL
        )
        self.assertEqual(wire_bytes(Error("no"), "utf-8"), b"error: no\r\n")


class TemplateTests(SynchronousTestCase):
    def test_known_fields_render(self) -> None:
        values = {"peer": "1.2.3.4", "port": 5, "server": "s:1", "clients": 3}
        self.assertEqual(
            render_template("welcome {peer}:{port} ({clients} here) {{x}}", values),
            ["welcome 1.2.3.4:5 (3 here) {x}"],
        )

    def test_multiline_template(self) -> None:
        self.assertEqual(render_template("a\nb", {}), ["a", "b"])

    def test_unknown_field_refused(self) -> None:
        with self.assertRaises(ValueError) as e:
            check_template("hi {nick}")
        self.assertIn("unknown field {nick}", str(e.exception))
        for field in GREETING_FIELDS:
            self.assertIn("{" + field + "}", str(e.exception))

    def test_attribute_access_refused(self) -> None:
        """{peer.__class__} is not a known field: templates cannot reach object internals."""
        with self.assertRaises(ValueError) as e:
            check_template("{peer.__class__}")
        self.assertIn("unknown field {peer.__class__}", str(e.exception))

    def test_positional_field_refused(self) -> None:
        with self.assertRaises(ValueError) as e:
            check_template("hi {}")
        self.assertIn("a field needs a name", str(e.exception))

    def test_unbalanced_brace_refused(self) -> None:
        with self.assertRaises(ValueError) as e:
            check_template("hi {")
        self.assertIn("bad template", str(e.exception))

    def test_bad_format_spec_refused(self) -> None:
        with self.assertRaises(ValueError) as e:
            check_template("{clients:zz}")
        self.assertIn("bad template", str(e.exception))


@given(
    st.lists(
        st.text(alphabet=st.characters(exclude_characters="\n"), max_size=8), min_size=1, max_size=5
    ),
    st.sampled_from(["utf-8", "gb18030", "latin-1", None]),
)
def test_decoding_in_one_pass_is_decoding_one_by_one(
    lines: list[str], encoding: str | None
) -> None:
    """Property: a read's lines decoded in one pass are what decoding them one by one gives."""
    raws = [line.encode(encoding or "utf-8", "replace") for line in lines]
    together, one_by_one = Codec(encoding), Codec(encoding)
    texts = together.decode_lines(raws)
    if encoding in ("utf-8", "latin-1", None):
        assert texts is not None  # (the one pass is taken whenever it can be)
    if texts is not None:
        assert texts == [one_by_one.decode(raw) for raw in raws]
        assert together.output == one_by_one.output


def test_decoding_in_one_pass_leaves_the_odd_lines_to_one_by_one() -> None:
    """An over-long line, or bytes that are not the first encoding tried: line by line."""
    assert Codec(None).decode_lines([b"a", Overlong(5000)]) is None
    assert Codec(None).decode_lines([b"a", b"\xff"]) is None
    assert Codec("latin-1").decode_lines([b"a", b"\xff"]) == ["a", "\xff"]


@given(st.text())
def test_the_ascii_escape_check_agrees_with_the_full_one(text: str) -> None:
    """Property: the check's ASCII shortcut says what the full check says."""
    for sample in (text, text.encode("ascii", "ignore").decode()):
        assert needs_escape(sample) == (_NEEDS_ESCAPE_BUT_LF.search(sample) is not None)
        assert escape_lines(sample.split("\n")) == "\n".join(
            map(escape_controls, sample.split("\n"))
        )


class RenderTests(SynchronousTestCase):
    def test_presence_with_reasons(self) -> None:
        """Presence reads as people expect, with its reason."""
        rendered = [
            text_of(Presence("lobby", "alice", Presence.JOINED)),
            text_of(Presence("lobby", "alice", Presence.MOVED_OUT, other="dev")),
            text_of(Presence("dev", "alice", Presence.MOVED_IN, other="lobby")),
            text_of(Presence("dev", "alice", Presence.LEFT, reason="bye all")),
            text_of(Presence("dev", "alice", Presence.RENAMED, other="al")),
        ]
        self.assertEqual(
            rendered,
            [
                "* alice joined",
                "* alice left for #dev",
                "* alice came from #lobby",
                "* alice left (bye all)",
                "* alice is now known as al",
            ],
        )

    def test_a_message_is_rendered_once_per_encoding(self) -> None:
        """The same message to many members is rendered once for each encoding."""
        calls: list[str] = []

        def render(event: object, encoding: str) -> bytes:
            calls.append(encoding)
            return wire_bytes(event, encoding)  # type: ignore[arg-type]

        message = Message("lobby", "alice", ("中",), 1, 0.0)
        for encoding in ["utf-8", "gbk", "utf-8", "gbk", "utf-8"]:
            self.assertEqual(message.rendered(encoding, render), wire_bytes(message, encoding))
        self.assertEqual(calls, ["utf-8", "gbk"])
