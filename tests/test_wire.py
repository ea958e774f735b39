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
    Codec,
    LineBuffer,
    Overlong,
    check_template,
    decode,
    encode_line,
    escape_controls,
    escape_lines,
    render_template,
    sniff,
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


@given(
    st.lists(
        st.tuples(
            st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"").replace(b"\0", b"")),
            st.binary(max_size=30),
        ),
        max_size=6,
    )
)
def test_c_string_sends_yield_the_strings(sends: list[tuple[bytes, bytes]]) -> None:
    """Property: sends of a C string, a NUL and buffer leftovers yield exactly the strings."""
    buffer = LineBuffer(max_line=64)
    frames: list[object] = []
    for string, leftovers in sends:
        frames += buffer.feed(string.rstrip(b"\r") + b"\0" + leftovers)
    assert frames == [string.rstrip(b"\r") for string, _ in sends]


class CStringTests(SynchronousTestCase):
    def test_nul_ends_a_line(self) -> None:
        self.assertEqual(split_lines(b"hello\0"), [b"hello"])

    def test_rest_of_the_send_after_nul_is_dropped(self) -> None:
        """A whole fixed-size buffer: the string, a NUL, leftovers: only the string counts."""
        buffer = LineBuffer()
        self.assertEqual(buffer.feed(b"hi\0ld message\nleftovers\0\0\0"), [b"hi"])
        self.assertEqual(buffer.pending, 0)
        self.assertEqual(buffer.feed(b"next\0" + b"\0" * 990), [b"next"])

    def test_lines_before_the_nul_in_the_same_send_count(self) -> None:
        self.assertEqual(split_lines(b"a\nb\0c\n"), [b"a", b"b"])

    def test_pending_string_completed_by_nul(self) -> None:
        buffer = LineBuffer()
        self.assertEqual(buffer.feed(b"hel"), [])
        self.assertEqual(buffer.feed(b"lo\0junk"), [b"hello"])

    def test_terminated_after_first_line_end(self) -> None:
        """A client is held to line mode once it has ended a line (LF or NUL)."""
        buffer = LineBuffer()
        buffer.feed(b"partial")
        self.assertFalse(buffer.terminated)
        self.assertEqual(buffer.flush(), [b"partial"])
        self.assertFalse(buffer.terminated)
        buffer.feed(b"x\n")
        self.assertTrue(buffer.terminated)
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

    def test_encode_line_memo_is_per_encoding(self) -> None:
        text = "中文"
        self.assertEqual(encode_line(text, "utf-8"), "中文".encode() + EOL)
        self.assertEqual(encode_line(text, "gbk"), "中文".encode("gbk") + EOL)
        self.assertEqual(encode_line(text, "utf-8"), "中文".encode() + EOL)


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


def _texts_of(pieces: list[str]) -> st.SearchStrategy[str]:
    """Texts of up to 30 of C{pieces}: words, spaces, slashes, line ends."""
    return st.lists(st.sampled_from(pieces), max_size=30).map("".join)


@given(
    _texts_of(
        ["a", "e", "x", "exit", "bye", " ", "\t", "/", "\n", "\u3000", "\x85", "\u2028", "é"]
    ),
    st.sampled_from(["exit", "bye", "e"]),
)
def test_plain_chat_never_says_yes_for_a_line_that_is_not(text: str, word: str) -> None:
    from twisted_tcpchat.commands import chat_text
    from twisted_tcpchat.wire import plain_chat

    lines = text.split("\n")
    really_plain = all(
        line.strip() != word and chat_text(line) == line and line.strip() for line in lines
    )
    if plain_chat(text, word):
        assert really_plain, lines
    if really_plain and not any(line[:1].isspace() for line in lines):
        # ...and says yes for every plain read that has no indented line.
        assert plain_chat(text, word), lines


@given(
    st.lists(
        st.text(alphabet=st.characters(exclude_characters="\n"), max_size=8), min_size=1, max_size=5
    ),
    st.sampled_from(["utf-8", "gb18030", "latin-1", None]),
)
def test_joined_decoding_is_line_by_line_decoding(lines: list[str], encoding: str | None) -> None:
    from twisted_tcpchat.wire import Codec

    raws = [line.encode(encoding or "utf-8", "replace") for line in lines]
    joined, one_by_one = Codec(encoding), Codec(encoding)
    text = joined.decode_joined(b"\n".join(raws))
    if text is not None:
        assert text.split("\n") == [one_by_one.decode(raw) for raw in raws]
        assert joined.encoding == one_by_one.encoding


def test_joined_decoding_is_refused_where_lf_may_be_inside_a_character() -> None:
    from twisted_tcpchat.wire import Codec

    assert Codec("utf-16").decode_joined("a".encode("utf-16")) is None
    assert Codec(None).decode_joined(b"\xff") is None  # let the per-line path report it


@given(st.text())
def test_fast_escape_check_agrees_with_the_full_one(text: str) -> None:
    from twisted_tcpchat.wire import _NEEDS_ESCAPE_BUT_LF, _needs_escape_but_lf

    assert _needs_escape_but_lf(text) == (_NEEDS_ESCAPE_BUT_LF.search(text) is not None)
    ascii_text = text.encode("ascii", "ignore").decode()
    assert _needs_escape_but_lf(ascii_text) == (_NEEDS_ESCAPE_BUT_LF.search(ascii_text) is not None)


_LINE = st.text(alphabet=st.characters(exclude_characters="\n"), max_size=8)


@given(
    st.lists(_LINE, min_size=1, max_size=6),
    st.text(alphabet=st.characters(exclude_characters="\n"), max_size=4),
    st.sampled_from(["utf-8", "gbk", "latin-1", "utf-16", "UTF8", "cp437"]),
)
def test_joined_lines_are_what_a_list_of_the_same_lines_is(
    lines: list[str], prefix: str, encoding: str
) -> None:
    """
    L{Joined} is only a faster way to the same bytes: kept whole, prefixed,
    encoded (LF replaced in the bytes, for encodings where that is safe),
    it gives what the list of its lines gives, and looks like that list.
    """
    from twisted_tcpchat.wire import Joined, encode_lines

    text = "\n".join(lines)
    joined = Joined.of(text)
    if joined is None:  # something to escape: the list path does that
        assert escape_lines(lines) != text
        return
    assert escape_lines(lines) == text
    assert list(joined) == lines
    assert len(joined) == len(lines)
    for start in range(-len(lines) - 2, 0):
        assert Joined(text)[start:] == lines[start:]  # unsplit: from the end
        assert joined[start:] == lines[start:]  # split already
    assert joined[0] == lines[0]
    assert joined[-1] == lines[-1]
    assert encode_lines(joined, encoding) == encode_lines(list(lines), encoding)
    if escape_controls(prefix) == prefix:
        with_prefix = joined.prefixed(prefix)
        assert list(with_prefix) == [prefix + line for line in lines]
        assert encode_lines(with_prefix, encoding) == encode_lines(
            [prefix + line for line in lines], encoding
        )


def test_joined_lines_refuse_what_needs_escaping() -> None:
    from twisted_tcpchat.wire import Joined

    assert Joined.of("fine\nalso fine\twith a tab") is not None
    for bad in ("a\x1b[2J", "\x00", "b\x7f", "\x85", "right\u202eto left", "\r"):
        assert Joined.of("ok\n" + bad) is None, repr(bad)


def test_joined_lines_are_checked_when_made_directly() -> None:
    """Only L{Joined.of} says None; the constructor and prefixed() refuse."""
    import pytest

    from twisted_tcpchat.wire import Joined

    with pytest.raises(ValueError, match="to escape"):
        Joined("a\x1bb")
    clean = Joined("one\ntwo")
    for prefix in ("<a\x1b> ", "<a\n> ", "\u202e"):
        with pytest.raises(ValueError, match="to escape"):
            clean.prefixed(prefix)
    assert list(clean.prefixed("> ")) == ["> one", "> two"]


# The usual read stays one bytes (wire.Lines); these pin it to what plain
# splitting gives, and the ASCII bytes path of Joined to the text path.

_ASCII_LINE = st.lists(
    st.sampled_from(["a", "b", " ", "\t", "/", "x" * 7, "\r", "\x1b", "\x7f", "\x1c"]),
    max_size=12,
).map("".join)


@given(
    st.lists(_ASCII_LINE.map(str.encode), min_size=1, max_size=12),
    st.integers(min_value=1, max_value=40),
    st.binary(max_size=60).map(lambda b: b.replace(b"\n", b"").replace(b"\0", b"")),
)
def test_one_read_frames_are_its_lines_split(
    lines: list[bytes], max_line: int, tail: bytes
) -> None:
    """
    One read, fed whole: its frames are its lines, CR before LF dropped,
    each over C{max_line} an L{Overlong} - whether the fast path (one
    L{Lines}, line lengths found by rfind) or the split path gave them.
    """
    from twisted_tcpchat.wire import Lines

    data = b"\n".join(lines) + b"\n" + tail
    expected = [
        line if len(line) <= max_line else Overlong(len(line))
        for line in data.replace(b"\r\n", b"\n").split(b"\n")[:-1]
    ]
    frames = LineBuffer(max_line).feed(data)
    assert frames == expected
    assert list(frames) == expected
    assert len(frames) == len(expected)
    if isinstance(frames, Lines):
        assert all(isinstance(line, bytes) and len(line) <= max_line for line in expected)
        assert frames.raw == b"\n".join(expected)  # type: ignore[arg-type]
        assert frames[0] == expected[0]
        assert frames[-1] == expected[-1]
        assert frames  # true, without counting
    else:
        # Only a line over the limit sends a read down the split path.
        assert not all(isinstance(frame, bytes) for frame in expected)


@given(
    st.lists(st.integers(min_value=0, max_value=12), min_size=1, max_size=12),
    st.integers(min_value=1, max_value=10),
)
def test_rfind_line_length_check_is_split_and_measure(sizes: list[int], limit: int) -> None:
    from twisted_tcpchat.wire import _within

    data = b"\n".join(b"x" * size for size in sizes)
    end = data.rfind(b"\n")
    if end >= 0:
        assert _within(data, end, limit) == all(
            len(part) <= limit for part in data[:end].split(b"\n")
        )


def test_lines_look_like_the_list_of_their_lines() -> None:
    from twisted_tcpchat.wire import Lines

    frames = LineBuffer().feed(b"one\r\ntwo\nthree\npart")
    assert isinstance(frames, Lines)
    assert frames == [b"one", b"two", b"three"]
    assert [b"one", b"two", b"three"] == frames  # noqa: SIM300  (the list's side, reflected)
    assert frames != [b"one"]
    assert frames != "one\ntwo\nthree"
    assert frames[1:] == [b"two", b"three"]
    assert repr(frames) == "Lines([b'one', b'two', b'three'])"
    assert bool(Lines(b""))
    assert list(Lines(b"")) == [b""]


@given(
    st.lists(_ASCII_LINE, min_size=1, max_size=8),
    st.sampled_from(["", "> ", "<guest1> ", "<\u00e9\u4e2d> ", "<a\tb> "]),
    st.sampled_from(["", "* "]),
    st.sampled_from(["utf-8", "gbk", "gb18030", "ascii", "latin-1", "cp1252", "utf-16"]),
)
def test_ascii_joined_is_the_text_joined(
    lines: list[str], prefix: str, inner: str, encoding: str
) -> None:
    """
    L{Joined.of_ascii} - the lines kept as their bytes, prefixes only noted,
    the text made only when asked for - refuses, gives bytes, text, lines
    and history tails exactly as L{Joined.of} of the decoded text does.
    """
    from twisted_tcpchat.wire import Joined, encode_lines

    text = "\n".join(lines)
    by_text = Joined.of(text)
    by_bytes = Joined.of_ascii(text.encode("ascii"))
    assert (by_bytes is None) == (by_text is None)
    if by_text is None or by_bytes is None:
        return
    for made in (by_text, by_bytes):  # twice prefixed, as a relay of a relay would be
        made_prefixed = made.prefixed(inner).prefixed(prefix)
        assert len(made_prefixed) == len(lines)
        fresh = Joined.of_ascii(text.encode("ascii")) if made is by_bytes else Joined.of(text)
        assert fresh is not None
        tail = fresh.prefixed(inner).prefixed(prefix)[-3:]  # before the text is made
        assert tail == [prefix + inner + line for line in lines][-3:]
        assert encode_lines(made_prefixed, encoding) == encode_lines(
            [prefix + inner + line for line in lines], encoding
        )
        assert made_prefixed.text == "\n".join(prefix + inner + line for line in lines)
        assert list(made_prefixed) == [prefix + inner + line for line in lines]
        assert made_prefixed[-2:] == [prefix + inner + line for line in lines][-2:]
    assert by_bytes.text == text
    assert list(by_bytes) == lines


def test_ascii_joined_takes_only_ascii() -> None:
    import pytest

    from twisted_tcpchat.wire import Joined

    with pytest.raises(ValueError, match="not ASCII"):
        Joined.of_ascii("\u4e2d".encode())
    assert Joined.of_ascii(b"fine\ttab\nline") is not None
    for bad in (b"\x1b[2J", b"\x00", b"\x7f", b"\r", b"\x1c"):
        assert Joined.of_ascii(b"ok\n" + bad) is None, bad


@given(
    _texts_of(["a", "e", "x", "exit", "bye", " ", "\t", "/", "\n", "\r", "\x0b", "\x0c", "\x1c"]),
    st.sampled_from(["exit", "bye", "e", "\u9000\u51fa", "a.b"]),
)
def test_plain_ascii_is_plain_chat_on_bytes(text: str, word: str) -> None:
    """L{plain_ascii} says what L{plain_chat} says, for ASCII text as bytes (\\s included)."""
    from twisted_tcpchat.wire import plain_ascii, plain_chat

    assert plain_ascii(text.encode("ascii"), word) == plain_chat(text, word)
