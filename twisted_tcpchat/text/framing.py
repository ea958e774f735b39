"""
Framing: the bytes of a stream into lines.

LF ends a line and one CR before it is dropped, so nc, telnet and C
C{fgets} + C{send} clients all work.  NUL ends a line too - a C string -
and tells two kinds of C client apart:

  - one that sends its strings with their NUL, back to back
    (C{send(s, msg, strlen(msg) + 1, 0)}): every string is a line, even when
    TCP joins several in one read;
  - one that sends its whole fixed-size buffer (C{send(s, buf, sizeof buf,
    0)}): the string, its NUL, whatever an earlier, longer message left
    behind, then a run of NULs.  Only the string is a line; the rest is
    padding and is dropped.

What follows a NUL is therefore held until it is known which it is: a run of
two or more NULs shows it was padding (dropped); a new read that starts with
anything else, the client going quiet, or the end of its input show it was
strings (delivered, in order), and so does holding more than a buffer's
padding could be (L{MAX_PADDING}).  The first string of a read is never
held, so a client that sends one string and waits for the answer is not
delayed.
One split cannot be told apart: a buffer cut by TCP right after one of its
NULs (its string's, or one inside the stale bytes) looks exactly like two
sends, and the stale bytes after the cut are then taken for a string.
"""

from __future__ import annotations

#: The line end tcpchat writes.  CRLF is the network's line ending (telnet
#: needs it; nc, C C{printf} clients and the tcpchat client all accept it).
EOL = b"\r\n"


#: The most bytes held after a NUL as perhaps a fixed-size buffer's
#: padding: the tutorials' buffers are of a few hundred bytes to a few KiB.
MAX_PADDING = 16 * 1024


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

    def __len__(self) -> int:
        """Its size in bytes, as a line's length is."""
        return self.size

    def __repr__(self) -> str:
        return f"Overlong({self.size})"


#: What framing gives for each line: its bytes, or that it was too long.
Frame = bytes | Overlong


class LineBuffer:
    """
    Incremental framing of one stream (see the module for NUL).

    Linear in the input (one C-level C{split} per read, unlike
    C{LineReceiver}, twisted#6357), and bounded: a line longer than
    C{max_line} bytes is reported as L{Overlong} and its bytes are not kept;
    the number of bytes since the last line end is C{pending}, so the caller
    can drop a client that never ends its line.
    """

    __slots__ = (
        "_after_nul",
        "_held",
        "_held_bytes",
        "_overflow",
        "_overflow_cr",
        "_tail",
        "max_line",
        "terminated",
    )

    def __init__(self, max_line: int = 4096) -> None:
        self.max_line = max_line
        #: Whether a line end (LF or NUL) has been seen: a client that ends its
        #: lines is held to them, so its partial lines are never cut short.
        self.terminated = False
        self._tail = b""
        # Bytes of the current over-long line seen so far (0: not in one).
        self._overflow = 0
        self._overflow_cr = False
        # Whether the bytes now coming follow a NUL of the same send, and the
        # complete lines among them, held until it is known whether they
        # were strings or a buffer's padding.
        self._after_nul = False
        self._held: list[Frame] | None = None  # (made when first needed)
        self._held_bytes = 0

    @property
    def pending(self) -> int:
        """Bytes received since the last line end."""
        return self._overflow or len(self._tail)

    @property
    def holding(self) -> bool:
        """Whether lines after a NUL are held (see L{quiet})."""
        return bool(self._held)

    def feed(self, data: bytes) -> list[Frame]:
        """Take the bytes of one read; return the lines they complete, in order."""
        frames: list[Frame] = []
        if not self._tail and not self._overflow and data[:1] != b"\0":
            # A new send begins: what was held after a NUL were strings.
            frames = self._release()
            self._after_nul = False
        if b"\0" not in data:
            if self._after_nul:
                self._hold(self._take(data, False))
            else:
                frames.extend(self._take(data, False))
            return self._unless_too_much_held(frames)
        parts = data.split(b"\0")
        last = len(parts) - 1
        for i, part in enumerate(parts):
            ended = i < last
            empty = ended and not part and not self._tail and not self._overflow
            if not self._after_nul:
                if empty:
                    continue  # a NUL with nothing before it
                frames.extend(self._take(part, ended))
                self._after_nul = ended
            elif empty:
                # A NUL right after a NUL: a fixed-size buffer's padding.
                self._release()
                self._after_nul = False
            else:
                self._hold(self._take(part, ended))
        return self._unless_too_much_held(frames)

    def quiet(self) -> list[Frame]:
        """
        The client has gone quiet: lines held after a NUL were strings, and
        a client that never ended a line has sent its message.
        """
        frames = self._release()
        self._after_nul = False
        if not self.terminated and self.pending:
            frames.extend(self._take(b"", True))
            self.terminated = False
        return frames

    def flush(self) -> list[Frame]:
        """The input has ended: what is held and the unterminated rest, as lines."""
        frames = self._release()
        self._after_nul = False
        if self.pending:
            terminated = self.terminated
            frames.extend(self._take(b"", True))
            self.terminated = terminated
        return frames

    def _hold(self, frames: list[Frame]) -> None:
        if frames:
            if self._held is None:
                self._held = []
            self._held.extend(frames)
            self._held_bytes += sum(map(len, frames))

    def _release(self) -> list[Frame]:
        held, self._held = self._held, None
        self._held_bytes = 0
        return held if held is not None else []

    def _unless_too_much_held(self, frames: list[Frame]) -> list[Frame]:
        """
        C{frames}, and what is held after them if it is more than one
        fixed-size buffer's padding could be (a client that streams strings
        without pause is never quiet: what it sends must not pile up).
        """
        if self._held_bytes > MAX_PADDING:
            frames.extend(self._release())
        return frames

    def _take(self, chunk: bytes, ended: bool) -> list[Frame]:
        """
        The lines that C{chunk} (which holds no NUL) completes after the
        tail; C{ended}: a NUL came after it, which ends its last line too.
        """
        data = self._tail + chunk if self._tail else chunk
        if ended and (data or self._overflow) and data[-1:] != b"\n":
            data += b"\n"
        # An over-long line's dropped part ended in CR, and this LF ends it.
        split_crlf = bool(self._overflow) and self._overflow_cr and data[:1] == b"\n"
        if b"\r" in data:
            # One CR before each LF goes (the tail keeps a CR whose LF may
            # come with the next read).
            data = data.replace(b"\r\n", b"\n")
        limit = self.max_line
        parts = data.split(b"\n")
        tail = parts.pop()
        frames: list[Frame]
        if not parts:
            frames = []
        elif self._overflow or max(map(len, parts)) > limit:
            frames = self._with_overlong(parts, split_crlf)
        else:
            frames = parts  # type: ignore[assignment]  # (a list of bytes is a list of frames)
        if parts:
            self.terminated = True
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


def split_lines(data: bytes, max_line: int = 4096) -> list[Frame]:
    """The lines of C{data} as one stream (what is held or unterminated dropped)."""
    return LineBuffer(max_line).feed(data)


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
    the error to answer it with, or None for anything that may be chat.
    """
    if first[:2] == b"\x16\x03":
        return "this port speaks plain text, not TLS; connect without TLS"
    if first.startswith(_HTTP_METHODS) and b" HTTP/" in first.split(b"\n", 1)[0]:
        return "this is a chat server, not a web server; connect with nc or tcpchat"
    return None
