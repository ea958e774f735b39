"""
The client's side of the wire grammar, as pure functions and one small pure
class: framing what a server sends for showing it, making it safe to show,
and encoding what the user types.

Nothing here touches a transport, a reactor or a clock (see
L{twisted_tcpchat.wire} for the server's side, whose escaping it reuses).
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Mapping

from twisted_tcpchat.text.encodings import writes_ascii_as_ascii
from twisted_tcpchat.text.escaping import escape_controls

#: What ends each line the client sends, by C{--line-ending} name.  A classic
#: C server compares its raw receive buffer with "exit", so it needs C{none}
#: (or C{nul}); our server and nc-style peers take C{lf} or C{crlf}.
LINE_ENDINGS: Mapping[str, bytes] = {"lf": b"\n", "crlf": b"\r\n", "nul": b"\0", "none": b""}

#: Line endings that do not separate messages on the wire: the peer can only
#: tell two messages apart if they arrive in separate reads.
UNFRAMED = frozenset({b"", b"\0"})

_LINE_END = re.compile(b"[\n\0]")


class IncomingLines:
    """
    Incremental framing of what a server sends, for showing it.

    LF ends a line, and one CR before it is dropped.  NUL ends a line too: a
    classic C server sends its message with the terminating NUL
    (C{send(s, msg, sizeof(msg), 0)}), often followed by the rest of a
    fixed-size buffer (more NULs, or stale bytes).  So whatever follows a NUL
    in the same read is taken as the rest of that buffer and dropped, and a
    line that is empty because a NUL ended it is not a line.  (TCP keeps no
    message boundaries; a read is the best stand-in for one C{send} there is.
    A NUL-ended message that arrives in the same read as the one before it is
    dropped with that one's padding.)

    A line longer than C{max_line} bytes comes out in pieces of that size,
    so memory stays bounded whatever the server sends.
    """

    __slots__ = ("_tail", "max_line")

    def __init__(self, max_line: int = 65536) -> None:
        self.max_line = max_line
        self._tail = b""

    @property
    def pending(self) -> int:
        """Bytes received since the last line end (an unfinished line)."""
        return len(self._tail)

    def feed(self, data: bytes) -> list[bytes]:
        """Take the bytes of one read; return the lines they complete, in order."""
        buffer = self._tail + data if self._tail else data
        lines: list[bytes] = []
        start = 0
        while (end := _LINE_END.search(buffer, start)) is not None:
            stop = end.start()
            line = buffer[start:stop]
            if line[-1:] == b"\r":
                line = line[:-1]
            if buffer[stop] == 0:
                if line:
                    lines.append(line)
                start = len(buffer)  # the rest of this read is the buffer's padding
                break
            lines.append(line)
            start = stop + 1
        tail = buffer[start:]
        while len(tail) > self.max_line:
            lines.append(tail[: self.max_line])
            tail = tail[self.max_line :]
        self._tail = tail
        return lines

    def flush(self) -> list[bytes]:
        """
        The unfinished line, if any, as a line: the server has gone quiet or
        closed (a tutorial server answers "Message received" with no line end).
        """
        tail, self._tail = self._tail, b""
        if tail[-1:] == b"\r":
            tail = tail[:-1]
        return [tail] if tail else []


def for_screen(raw: bytes, encoding: str = "utf-8") -> str:
    """
    One line from the server as text that is safe to show: decoded (bytes
    that are not C{encoding} become C{\\x..} escapes), and every control
    character escaped, so a server cannot move the cursor, clear the screen
    or retitle the terminal.
    """
    return escape_controls(raw.decode(encoding, "backslashreplace"))


def encode_message(text: str, ending: bytes = b"\n", encoding: str = "utf-8") -> bytes:
    """
    One line the user typed, to send: encoded and terminated.  Bytes that
    came in undecodable (as surrogate escapes) go out as they came; a
    character the encoding lacks becomes C{?}.
    """
    try:
        data = text.encode(encoding, "surrogateescape")
    except UnicodeEncodeError:
        data = text.encode(encoding, "replace")
    return data + ending


def check_encoding(name: str) -> str:
    """
    The canonical name of a text encoding the client can frame lines in.

    @raise ValueError: naming the problem, when C{name} is not a known text
        encoding, or not one in which ASCII (LF, NUL, the command words) is
        written as ASCII (UTF-16 and UTF-32 are not).
    """
    try:
        info = codecs.lookup(name)
        ascii_ok = writes_ascii_as_ascii(info.name)
    except LookupError:
        raise ValueError(f"unknown encoding {name!r}") from None
    if not ascii_ok:
        raise ValueError(f"{name!r} does not write ASCII as ASCII; lines cannot be framed in it")
    return info.name
