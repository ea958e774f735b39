"""
The pure wire grammar: framing, escaping, decoding, templates.
"""

from __future__ import annotations

import random
import unicodedata

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from twisted_tcpchat.wire import (
    EOL,
    GREETING_FIELDS,
    LineBuffer,
    Overlong,
    check_template,
    decode,
    encode_line,
    escape_controls,
    render_template,
    split_lines,
)


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
    st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=8),
    st.lists(st.integers(min_value=0, max_value=400), max_size=20),
    st.integers(min_value=1, max_value=30),
)
def test_any_chunking_yields_the_same_frames(
    lines: list[bytes], cuts: list[int], max_line: int
) -> None:
    """Property: any chunking of a byte stream yields the frames of the whole stream."""
    data = b"".join(line + b"\n" for line in lines)
    cuts = [c for c in cuts if c <= len(data)]
    assert feed_in_pieces(data, cuts, max_line) == split_lines(data, max_line)


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
        assert char not in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


class CodecTests(SynchronousTestCase):
    def test_decode_utf8(self) -> None:
        self.assertEqual(decode("中文".encode()), "中文")

    def test_decode_refuses_bad_bytes(self) -> None:
        """Bytes that are not the encoding give None, not an exception."""
        self.assertIsNone(decode(b"\xff\xfe"))

    def test_encode_line_escapes_and_terminates(self) -> None:
        self.assertEqual(encode_line("hi\x1b"), b"hi\\x1b" + EOL)


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
