"""
The wire grammar of tcpchat, as pure functions and one small pure class.

Nothing here touches a transport, a reactor or a clock: framing bytes into
lines, decoding, making text safe to show, and rendering the operator's
templates.  The protocol calls these; the tests call them too, to build input
and to read output.
"""

from __future__ import annotations

import string
from collections.abc import Mapping

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


class LineBuffer:
    """
    Incremental line framing: LF ends a line and one CR before it is dropped,
    so nc, telnet and C ``fgets`` + ``send`` clients all work.

    Linear in the input (one C-level ``split`` per read, unlike
    ``LineReceiver``, twisted#6357), and bounded: a line longer than
    C{max_line} bytes is reported as L{Overlong} and its bytes are not kept;
    the number of bytes since the last line end is C{pending}, so the caller
    can drop a client that never ends its line.
    """

    __slots__ = ("_overflow", "_overflow_cr", "_tail", "max_line")

    def __init__(self, max_line: int = 4096) -> None:
        self.max_line = max_line
        self._tail = b""
        # Bytes of the current over-long line seen so far (0: not in one).
        self._overflow = 0
        self._overflow_cr = False

    @property
    def pending(self) -> int:
        """Bytes received since the last line end."""
        return self._overflow or len(self._tail)

    def feed(self, data: bytes) -> list[Frame]:
        """
        Take the bytes of one read; return the lines they complete, in order.
        """
        if self._tail:
            data = self._tail + data
        parts = data.split(b"\n")
        tail = parts.pop()
        frames: list[Frame] = []
        limit = self.max_line
        for line in parts:
            if self._overflow:
                # The end of an over-long line: its size without the CR.
                size = self._overflow + len(line)
                if line[-1:] == b"\r" or (not line and self._overflow_cr):
                    size -= 1
                frames.append(Overlong(size))
                self._overflow = 0
                continue
            if line[-1:] == b"\r":
                line = line[:-1]
            frames.append(line if len(line) <= limit else Overlong(len(line)))
        if self._overflow or len(tail) > limit + 1:
            # +1: a CR that may be the first half of a CRLF split over reads.
            if tail:
                self._overflow += len(tail)
                self._overflow_cr = tail[-1:] == b"\r"
            tail = b""
        self._tail = tail
        return frames

    def flush(self) -> list[Frame]:
        """
        The input has ended: the unterminated rest, if any, as a last frame
        (a classic C client may send its message with no line end at all).
        """
        return self.feed(b"\n") if self.pending else []


def split_lines(data: bytes, max_line: int = 4096) -> list[Frame]:
    """The frames of C{data} as one stream (its unterminated tail dropped)."""
    return LineBuffer(max_line).feed(data)


# Control characters never reach a terminal raw: C0 (but TAB), DEL, C1, and
# the bidirectional overrides and isolates that reorder what is shown
# ("Trojan Source").  Each becomes a visible escape such as \x1b or \u202e.
_BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_CONTROLS = [c for c in range(0x00, 0xA0) if c == 0x7F or c < 0x20 or c >= 0x80]
_ESCAPES: dict[int, str] = {c: f"\\x{c:02x}" for c in _CONTROLS if c != 0x09}
_ESCAPES.update({ord(c): f"\\u{ord(c):04x}" for c in _BIDI})


def escape_controls(text: str) -> str:
    """
    Return C{text} with every control character and bidi override written as
    a visible escape (C{\\x1b}, C{\\u202e}); TAB and all other text stay.
    """
    return text.translate(_ESCAPES)


def decode(raw: bytes, encoding: str = "utf-8") -> str | None:
    """Decode one line, or return None when its bytes are not that encoding."""
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError:
        return None


def encode_line(text: str, encoding: str = "utf-8") -> bytes:
    """One line to send: made safe to show, encoded, terminated."""
    return escape_controls(text).encode(encoding, "replace") + EOL


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
