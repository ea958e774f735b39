"""
Text encodings on the wire: UTF-8, or per client the GBK of a Chinese
Windows console, or one encoding fixed by the operator.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence

from twisted_tcpchat.text.framing import Frame

#: What a client's non-ASCII lines are tried as, in order, line by line:
#: valid UTF-8 always wins, then GB18030 (the superset of GBK, what a
#: Chinese Windows console sends).
DETECTED = ("utf-8", "gb18030")

#: What goes back to a client last heard in GB18030: GBK, which a Chinese
#: Windows console shows (characters outside it become "?").
_OUTPUT = {"gb18030": "gbk"}


def writes_ascii_as_ascii(encoding: str) -> bool:
    """
    Whether C{encoding} (a known one) writes ASCII - LF, NUL, the command
    words - as the same bytes and reads them back: the only encodings lines
    can be framed in byte by byte (UTF-16 and UTF-32 are not among them).

    @raise LookupError: for an unknown encoding.
    """
    name = codecs.lookup(encoding).name
    return "a\n\0".encode(name) == b"a\n\0" and b"a\n".decode(name) == "a\n"


def encode_lines(text: str, encoding: str) -> bytes:
    """
    LF-separated lines for the wire: encoded (what the encoding cannot
    write becomes C{?}), each ending in CRLF.
    """
    return (text.replace("\n", "\r\n") + "\r\n").encode(encoding, "replace")


def decode(raw: bytes, encoding: str = "utf-8") -> str | None:
    """Decode one line, or return None when its bytes are not that encoding."""
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError:
        return None


class Codec:
    """
    One client's text encoding: fixed, or detected line by line.

    @ivar encoding: what the client's last non-ASCII line was read as.
    @ivar output: what to encode lines to the client with.
    """

    __slots__ = ("_fixed", "encoding", "output")

    def __init__(self, encoding: str | None = None) -> None:
        self._fixed = encoding is not None
        self.encoding = encoding or DETECTED[0]
        self.output = _OUTPUT.get(self.encoding, self.encoding)

    def decode(self, raw: bytes) -> str | None:
        """The text of one line, or None when no encoding fits its bytes."""
        if self._fixed:
            return decode(raw, self.encoding)
        if raw.isascii():
            return raw.decode("ascii")
        for encoding in DETECTED:
            text = decode(raw, encoding)
            if text is not None:
                self._heard(encoding)
                return text
        return None

    def decode_lines(self, lines: Sequence[Frame]) -> list[str] | None:
        """
        Every line's text, in one pass - or None when they cannot all be
        decoded with the first encoding tried (or one is L{Overlong}): then
        decode them one by one.
        """
        if self._fixed:
            try:
                return [line.decode(self.encoding) for line in lines]  # type: ignore[union-attr]
            except (UnicodeDecodeError, AttributeError):  # (AttributeError: an Overlong)
                return None
        try:
            texts = list(map(bytes.decode, lines))  # type: ignore[arg-type]  # (as UTF-8)
        except (UnicodeDecodeError, TypeError):  # (TypeError: an Overlong among them)
            return None
        if self.output != DETECTED[0] and not all(map(bytes.isascii, lines)):  # type: ignore[arg-type]
            self._heard(DETECTED[0])  # (valid UTF-8 wins over GBK)
        return texts

    def _heard(self, encoding: str) -> None:
        self.encoding = encoding
        self.output = _OUTPUT.get(encoding, encoding)
