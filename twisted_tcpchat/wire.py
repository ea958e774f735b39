"""
The wire grammar of tcpchat, as pure functions and one small pure class.

Nothing here touches a transport, a reactor or a clock: framing bytes into
lines, decoding, making text safe to show, and rendering the operator's
templates.  The protocol calls these; the tests call them too, to build input
and to read output.
"""

from __future__ import annotations

import codecs
import functools
import re
import string
from collections.abc import Iterator, Mapping, Sequence
from typing import overload

#: What ends every line the server sends.  CRLF is the network's line ending
#: (telnet needs it; nc, C ``printf`` clients and our client all accept it).
EOL = b"\r\n"


class Overlong:
    """
    A line that exceeded the length limit, in place of its text.

    @ivar size: how many bytes the line had (at least the limit + 1).
    """

    __slots__ = ("size",)

    def __init__(self, size: int) -> None:
        self.size = size

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Overlong) and other.size == self.size

    def __hash__(self) -> int:
        return hash((Overlong, self.size))

    def __repr__(self) -> str:
        return f"Overlong({self.size})"


Frame = bytes | Overlong


class Lines(Sequence[bytes]):
    """
    The complete lines of one read, every one within the limit, kept as the
    bytes they came in: joined by LF (C{raw}, without the last line's LF).
    This is what L{LineBuffer.feed} gives for the usual read, so that a read
    of plain chat goes on as one C{bytes} (see L{Joined}) and is split into
    lines only for whoever looks at them one by one.
    """

    __slots__ = ("_split", "raw")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self._split: list[bytes] | None = None

    def _lines(self) -> list[bytes]:
        if self._split is None:
            self._split = self.raw.split(b"\n")
        return self._split

    def __len__(self) -> int:
        return self.raw.count(b"\n") + 1

    def __bool__(self) -> bool:
        return True  # (at least one line; without this, truth would count them)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._lines())

    @overload
    def __getitem__(self, index: int) -> bytes: ...
    @overload
    def __getitem__(self, index: slice) -> list[bytes]: ...
    def __getitem__(self, index: int | slice) -> bytes | list[bytes]:
        return self._lines()[index]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, (str, bytes)):
            return self._lines() == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # (equal to lists, which have none)

    def __repr__(self) -> str:
        return f"Lines({self._lines()!r})"


def _within(data: bytes, end: int, limit: int) -> bool:
    """
    Whether every LF-separated line of C{data[:end]} is at most C{limit}
    bytes long: a few C{rfind}s, each skipping up to C{limit} bytes, instead
    of splitting the read into lines to measure them.
    """
    start = 0
    while end - start > limit:
        lf = data.rfind(b"\n", start, start + limit + 1)
        if lf < 0:
            return False
        start = lf + 1
    return True


class LineBuffer:
    """
    Incremental line framing: LF ends a line and one CR before it is dropped,
    so nc, telnet and C ``fgets`` + ``send`` clients all work.  NUL ends a
    line too - a C string - and the rest of that read is dropped: a classic
    client that sends its whole fixed-size buffer sends its string, the NUL,
    then whatever was left in the buffer.

    Linear in the input (one C-level ``split`` per read, unlike
    ``LineReceiver``, twisted#6357), and bounded: a line longer than
    C{max_line} bytes is reported as L{Overlong} and its bytes are not kept;
    the number of bytes since the last line end is C{pending}, so the caller
    can drop a client that never ends its line.
    """

    __slots__ = ("_overflow", "_overflow_cr", "_tail", "max_line", "terminated")

    def __init__(self, max_line: int = 4096) -> None:
        self.max_line = max_line
        #: Whether a line end (LF or NUL) has been seen: a client that ends its
        #: lines is held to them, so its partial lines are never cut short.
        self.terminated = False
        self._tail = b""
        # Bytes of the current over-long line seen so far (0: not in one).
        self._overflow = 0
        self._overflow_cr = False

    @property
    def pending(self) -> int:
        """Bytes received since the last line end."""
        return self._overflow or len(self._tail)

    def feed(self, data: bytes) -> Sequence[Frame]:
        """
        Take the bytes of one read; return the lines they complete, in order
        (as L{Lines}, unsplit, when all of them are within the limit).
        """
        nul = data.find(b"\0")
        if nul >= 0:
            data = data[:nul] + b"\n"
        if self._tail:
            data = self._tail + data
        # An over-long line's dropped part ended in CR, and this LF ends it.
        split_crlf = bool(self._overflow) and self._overflow_cr and data[:1] == b"\n"
        if b"\r" in data:
            # One CR before each LF goes (the tail keeps a CR whose LF may
            # come with the next read).
            data = data.replace(b"\r\n", b"\n")
        limit = self.max_line
        end = data.rfind(b"\n")
        if end >= 0 and not self._overflow and _within(data, end, limit):
            # The common case, all in C: every line within the limit.
            self.terminated = True
            tail = data[end + 1 :]
            if len(tail) > limit + 1:
                # +1: a CR that may be the first half of a CRLF split over reads.
                self._overflow = len(tail)
                self._overflow_cr = tail[-1:] == b"\r"
                tail = b""
            self._tail = tail
            return Lines(data[:end])
        parts = data.split(b"\n")
        tail = parts.pop()
        frames: list[Frame] = []
        if parts:
            # (Over-long lines among them, or the end of one.)
            self.terminated = True
            frames = self._with_overlong(parts, split_crlf)
        if self._overflow or len(tail) > limit + 1:
            # +1: a CR that may be the first half of a CRLF split over reads.
            if tail:
                self._overflow += len(tail)
                self._overflow_cr = tail[-1:] == b"\r"
            tail = b""
        self._tail = tail
        return frames

    def _with_overlong(self, parts: list[bytes], split_crlf: bool) -> list[Frame]:
        frames: list[Frame] = []
        limit = self.max_line
        for line in parts:
            if self._overflow:
                # The end of an over-long line: its size without the CR of
                # its CRLF, whether that was dropped with the line's start or
                # (like every other CR before an LF) taken out already.
                size = self._overflow + len(line)
                if split_crlf:
                    size -= 1
                frames.append(Overlong(size))
                self._overflow = 0
                continue
            frames.append(line if len(line) <= limit else Overlong(len(line)))
        return frames

    def flush(self) -> Sequence[Frame]:
        """
        The input has ended: the unterminated rest, if any, as a last frame
        (a classic C client may send its message with no line end at all).
        """
        if not self.pending:
            return []
        terminated = self.terminated
        frames = self.feed(b"\n")
        self.terminated = terminated
        return frames


def split_lines(data: bytes, max_line: int = 4096) -> list[Frame]:
    """The frames of C{data} as one stream (its unterminated tail dropped)."""
    return list(LineBuffer(max_line).feed(data))


# Control characters never reach a terminal raw: C0 (but TAB), DEL, C1, and
# the bidirectional overrides and isolates that reorder what is shown
# ("Trojan Source").  Each becomes a visible escape such as \x1b or \u202e.
_BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_CONTROLS = [c for c in range(0x00, 0xA0) if c == 0x7F or c < 0x20 or c >= 0x80]
_ESCAPES: dict[int, str] = {c: f"\\x{c:02x}" for c in _CONTROLS if c != 0x09}
_ESCAPES.update({ord(c): f"\\u{ord(c):04x}" for c in _BIDI})


# The same set as a regular expression, to find out fast (in C) that a text
# needs no escaping at all - the common case - before paying for translate().
# LF is left out here: joined batches of lines keep it as their separator.
_ESCAPES_BUT_LF = {c: e for c, e in _ESCAPES.items() if c != 0x0A}
_NEEDS_ESCAPE_BUT_LF = re.compile(
    "[" + "".join(re.escape(chr(c)) for c in sorted(_ESCAPES_BUT_LF)) + "]"
)


# In ASCII text only C0 (but TAB) and DEL need escaping; finding them with
# bytes.translate is several times faster than the regular expression.
_ASCII_CONTROLS_BUT_LF = bytes(c for c in _ESCAPES_BUT_LF if c < 0x80)


def _ascii_needs_escape_but_lf(data: bytes) -> bool:
    return len(data.translate(None, _ASCII_CONTROLS_BUT_LF)) != len(data)


def _needs_escape_but_lf(text: str) -> bool:
    if text.isascii():
        return _ascii_needs_escape_but_lf(text.encode("ascii"))
    return _NEEDS_ESCAPE_BUT_LF.search(text) is not None


def escape_controls(text: str) -> str:
    """
    Return C{text} with every control character and bidi override written as
    a visible escape (C{\\x1b}, C{\\u202e}); TAB and all other text stay.
    """
    if "\n" not in text and not _needs_escape_but_lf(text):
        return text
    return text.translate(_ESCAPES)


class Joined(Sequence[str]):
    """
    Lines kept as one LF-joined text with nothing in it to escape (it is
    what L{escape_lines} makes of them), so that a read's lines can be
    prefixed by the room and encoded for the wire in one pass in C each,
    instead of a trip through Python per line.  Split into a list only for
    whoever looks at the lines one by one (the log, the history).

    ASCII lines also keep their bytes, as they came off the wire: then
    prefixing only notes the prefix, and L{encoded} makes the bytes for the
    wire straight from them with one C{bytes.replace} (every encoding of
    L{_LF_SAFE} writes ASCII text as its ASCII bytes); the text with the
    prefix is made only if someone asks for it.
    """

    __slots__ = ("_ascii", "_lines", "_prefix", "_text")

    def __init__(self, text: str) -> None:
        """C{text}'s lines; ValueError if anything in them needs escaping."""
        if _needs_escape_but_lf(text):
            raise ValueError(f"{text!r} holds characters to escape")
        self._text: str | None = text
        self._ascii: bytes | None = None
        self._prefix = ""
        self._lines: list[str] | None = None

    @classmethod
    def of(cls, text: str) -> Joined | None:
        """C{text}'s lines as a L{Joined}, or None if anything in them needs escaping."""
        return None if _needs_escape_but_lf(text) else cls._checked(text)

    @classmethod
    def of_ascii(cls, raw: bytes) -> Joined | None:
        """
        The lines of C{raw}, ASCII text, as a L{Joined} that keeps them as
        bytes (their text is decoded only if asked for); None if anything in
        them needs escaping.  ValueError if C{raw} is not ASCII.
        """
        if not raw.isascii():
            raise ValueError("not ASCII")
        if _ascii_needs_escape_but_lf(raw):
            return None
        joined = cls._checked(None)
        joined._ascii = raw
        return joined

    @classmethod
    def _checked(cls, text: str | None) -> Joined:
        joined = cls.__new__(cls)
        joined._text = text
        joined._ascii = None
        joined._prefix = ""
        joined._lines = None
        return joined

    @property
    def text(self) -> str:
        """The lines, LF-joined."""
        text = self._text
        if text is None:  # (ASCII: made when first asked for)
            text = self._ascii.decode("ascii")  # type: ignore[union-attr]
            prefix = self._prefix
            if prefix:
                text = prefix + text.replace("\n", "\n" + prefix)
            self._text = text
        return text

    def prefixed(self, prefix: str) -> Joined:
        """
        Every line with C{prefix} before it; ValueError if C{prefix} holds an
        LF or anything to escape.
        """
        if "\n" in prefix or _needs_escape_but_lf(prefix):
            raise ValueError(f"{prefix!r} holds characters to escape")
        if self._ascii is None:
            return Joined._checked(prefix + self.text.replace("\n", "\n" + prefix))
        joined = Joined._checked(None)
        joined._ascii = self._ascii
        joined._prefix = prefix + self._prefix
        return joined

    def encoded(self, encoding: str) -> bytes:
        """The lines for the wire: encoded (errors replaced), each ending in CRLF."""
        if _lf_safe(encoding):
            # (Replacing LF in bytes is twice as fast as in text.)
            if self._ascii is None:
                return self.text.encode(encoding, "replace").replace(b"\n", EOL) + EOL
            prefix = self._prefix.encode(encoding, "replace")
            return b"".join((prefix, self._ascii.replace(b"\n", EOL + prefix), EOL))
        return self.text.replace("\n", "\r\n").encode(encoding, "replace") + EOL

    def _split(self) -> list[str]:
        if self._lines is None:
            self._lines = self.text.split("\n")
        return self._lines

    def __bool__(self) -> bool:
        return True  # (at least one line; without this, truth would count them)

    def __len__(self) -> int:
        if self._ascii is not None:
            return self._ascii.count(b"\n") + 1
        return self.text.count("\n") + 1

    def __iter__(self) -> Iterator[str]:
        return iter(self._split())

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> list[str]: ...
    def __getitem__(self, index: int | slice) -> str | list[str]:
        if (
            isinstance(index, slice)
            and index.start is not None
            and index.start < 0
            and index.stop is None
            and index.step is None
            and self._lines is None
        ):
            # The last few lines (a history's worth) of a long batch,
            # without splitting all of it.
            if self._text is None:
                prefix = self._prefix
                tail = self._ascii.rsplit(b"\n", -index.start)[index]  # type: ignore[union-attr]
                return [prefix + line.decode("ascii") for line in tail]
            return self._text.rsplit("\n", -index.start)[index]
        return self._split()[index]


def escape_lines(lines: Sequence[str]) -> str:
    """
    Several lines (which hold no LF: framing took them out) as one text,
    LF-separated, every control character in them escaped: one pass in C
    for a whole batch instead of one call per line.
    """
    text = "\n".join(lines)
    if not _needs_escape_but_lf(text):
        return text
    return text.translate(_ESCAPES_BUT_LF)


@functools.lru_cache(maxsize=8)
def _not_plain(exit_word: str) -> re.Pattern[str]:
    # After an LF: a line that starts with whitespace (it may be blank, or
    # the exit word with spaces around it), a command, the end (an empty
    # last line), or the exit word with nothing but whitespace after it.
    # The literal LF first lets the engine skip from line to line.
    word = re.escape(exit_word)
    return re.compile(rf"\n(?:[\s/]|\Z|{word}\s*(?:\n|\Z))")


# What C{\\s} matches in ASCII text (str patterns), spelt out for bytes ones.
_ASCII_SPACES = rb"\t\n\x0b\x0c\r\x1c-\x1f "


@functools.lru_cache(maxsize=8)
def _not_plain_ascii(exit_word: str) -> re.Pattern[bytes]:
    # L{_not_plain} for the bytes of ASCII text (a non-ASCII exit word
    # cannot occur in them; its alternative then never matches).
    word = re.escape(exit_word.encode("utf-8"))
    spaces = _ASCII_SPACES
    return re.compile(rb"\n(?:[" + spaces + rb"/]|\Z|" + word + rb"[" + spaces + rb"]*(?:\n|\Z))")


def plain_ascii(raw: bytes, exit_word: str) -> bool:
    """L{plain_chat} for the bytes of ASCII text (without decoding it)."""
    return _not_plain_ascii(exit_word).search(b"\n" + raw) is None


def plain_chat(text: str, exit_word: str) -> bool:
    """
    Whether every LF-separated line of C{text} is plain chat: not a command
    (a leading C{/}), not blank, not C{exit_word} alone (whitespace around
    it aside, as C{str.strip} takes it).  One regular-expression pass in C
    for a whole read, so that the usual read skips the per-line path.  It
    never says yes for a line that is not plain chat; it says no for every
    line that starts with whitespace, which the per-line path then sorts out.
    """
    return _not_plain(exit_word).search("\n" + text) is None


def decode(raw: bytes, encoding: str = "utf-8") -> str | None:
    """Decode one line, or return None when its bytes are not that encoding."""
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError:
        return None


_last_encoded: tuple[str, str, bytes] = ("", "", b"")
_last_batch: tuple[Sequence[str], str, bytes] = ((), "", b"")


def encode_lines(lines: Sequence[str], encoding: str = "utf-8") -> bytes:
    """
    Lines to send in one write: made safe to show, encoded, each terminated.
    The room hands the same batch to every member in a row, so the last
    result is kept (by identity of the batch).
    """
    global _last_batch
    last_lines, last_encoding, data = _last_batch
    if lines is last_lines and encoding == last_encoding:
        return data
    if isinstance(lines, Joined):
        data = lines.encoded(encoding)
    else:
        data = Joined._checked(escape_lines(lines)).encoded(encoding)
    _last_batch = (lines, encoding, data)
    return data


def writes_ascii_as_ascii(encoding: str) -> bool:
    """
    Whether C{encoding} (a known one) writes ASCII - LF, NUL, the command
    words - as the same bytes and reads them back: the only encodings lines
    can be framed in byte by byte (UTF-16 and UTF-32 are not among them).
    """
    name = codecs.lookup(encoding).name
    return "a\n\0".encode(name) == b"a\n\0" and b"a\n".decode(name) == "a\n"


@functools.lru_cache(maxsize=16)
def _lf_safe(encoding: str) -> bool:
    """Whether C{encoding} writes LF as byte 0x0A and uses that byte for nothing else."""
    try:
        return codecs.lookup(encoding).name in _LF_SAFE
    except LookupError:
        return False


def encode_line(text: str, encoding: str = "utf-8") -> bytes:
    """
    One line to send: made safe to show, encoded, terminated.  The room sends
    one line to many clients in a row, so the last result is kept.
    """
    global _last_encoded
    last_text, last_encoding, data = _last_encoded
    if text is last_text and encoding == last_encoding:
        return data
    data = escape_controls(text).encode(encoding, "replace") + EOL
    _last_encoded = (text, encoding, data)
    return data


#: What a client's bytes are tried as, in order, until one fits: UTF-8, then
#: GB18030 (the superset of GBK, what a Chinese Windows console sends).
DETECTED = ("utf-8", "gb18030")

#: Encodings (as C{codecs} names them) in which byte 0x0A is only ever LF,
#: never part of another character: joined lines may be decoded at once,
#: and LF turned into CRLF in the encoded bytes (see L{_lf_safe}).
_LF_SAFE = frozenset({"utf-8", "gb18030", "gbk", "ascii", "iso8859-1", "cp1252"})

#: What goes back to a client detected as GB18030: GBK, which a Chinese
#: Windows console shows (characters outside it become "?").
_OUTPUT = {"gb18030": "gbk"}


class Codec:
    """
    One client's text encoding: fixed, or detected line by line.

    Detection keeps the encoding of the last non-ASCII line that decoded,
    trying that one first; C{output} is what to encode lines to it with.
    """

    __slots__ = ("_encoding", "_fixed", "_joinable", "output")

    def __init__(self, encoding: str | None = None) -> None:
        self._fixed = encoding is not None
        self.encoding = encoding or DETECTED[0]
        self._joinable = encoding is None or _lf_safe(encoding)

    @property
    def encoding(self) -> str:
        """The encoding this client's text is read in."""
        return self._encoding

    @encoding.setter
    def encoding(self, encoding: str) -> None:
        self._encoding = encoding
        #: The encoding to send this client text in (an attribute, not a
        #: property: it is read once per line sent to every member).
        self.output = _OUTPUT.get(encoding, encoding)

    def decode(self, raw: bytes) -> str | None:
        """The text of one line, or None when no encoding fits its bytes."""
        if self._fixed:
            return decode(raw, self.encoding)
        if raw.isascii():
            return raw.decode("ascii")
        for encoding in (self.encoding, *DETECTED):
            text = decode(raw, encoding)
            if text is not None:
                self.encoding = encoding
                return text
        return None

    def decode_joined(self, raw: bytes) -> str | None:
        """
        Several lines joined with LF, decoded in one go - or None, and then
        they must go one by one through L{decode}.  One go gives what line
        by line would, when every line fits the current encoding: in the
        encodings of L{_LF_SAFE} an LF byte is always a whole character, so
        the whole fits exactly when each line does, and detection keeps its
        current choice.
        """
        if not self._joinable:
            return None
        if raw.isascii():
            return raw.decode("ascii")
        return decode(raw, self.encoding)

    @property
    def joinable(self) -> bool:
        """Whether L{decode_joined} may be used (ASCII text always decodes as itself then)."""
        return self._joinable


_HTTP_METHODS = (
    b"GET ",
    b"HEAD ",
    b"POST ",
    b"PUT ",
    b"DELETE ",
    b"OPTIONS ",
    b"PATCH ",
    b"CONNECT ",
    b"TRACE ",
)


def sniff(first: bytes) -> str | None:
    """
    Recognise traffic that is not chat from the first bytes of a connection:
    the one line to answer it with, or None for anything that may be chat.
    """
    if first[:2] == b"\x16\x03":
        return "error: this port speaks plain text, not TLS; connect without TLS"
    if first.startswith(_HTTP_METHODS) and b" HTTP/" in first.split(b"\n", 1)[0]:
        return "error: this is a chat server, not a web server; connect with nc or tcpchat"
    return None


# ---------------------------------------------------------------- templates

#: The fields an operator's greeting may use, and what each means.
GREETING_FIELDS: Mapping[str, str] = {
    "peer": "the client's address (IP, or 'unix' on a UNIX socket)",
    "port": "the client's port",
    "server": "the address the client connected to",
    "clients": "how many clients are connected, this one included",
}

_SAMPLE = {"peer": "192.0.2.1", "port": 50000, "server": "192.0.2.2:65432", "clients": 1}


def check_template(template: str, fields: Mapping[str, object] = GREETING_FIELDS) -> None:
    """
    Refuse a template that could not be rendered for every client.

    @raise ValueError: with a message naming the problem.
    """
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as e:
        raise ValueError(f"bad template ({e}); write {{{{ and }}}} for literal braces") from e
    known = ", ".join("{" + f + "}" for f in fields)
    for _literal, field, _spec, _conversion in parsed:
        if field is None:
            continue
        if field not in fields:
            what = f"{{{field}}}" if field else "{} (a field needs a name)"
            raise ValueError(f"unknown field {what}; known fields: {known}")
    try:
        template.format(**{k: _SAMPLE.get(k, "x") for k in fields})
    except (ValueError, TypeError) as e:
        raise ValueError(f"bad template ({e})") from e


def render_template(template: str, values: Mapping[str, object]) -> list[str]:
    """
    Render a template that L{check_template} accepted; one string per line,
    so an operator can write a multi-line greeting.
    """
    return template.format(**values).splitlines() or [""]
