"""
A WebSocket client's side of the wire (RFC 6455), written here so that the
tests see the server's bytes as a browser would and can send what a browser
never would (binary frames, oversized frames, broken JSON).
"""

from __future__ import annotations

import base64
import json
import os
import struct
from dataclasses import dataclass

TEXT = 0x1
BINARY = 0x2
CLOSE = 0x8
PING = 0x9
PONG = 0xA


def handshake(host: str, path: str = "/ws", origin: str | None = None) -> bytes:
    """The opening request a browser sends, with C{Origin} when given."""
    key = base64.b64encode(os.urandom(16)).decode("ascii")
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    if origin is not None:
        lines.append(f"Origin: {origin}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def frame(payload: bytes, opcode: int = TEXT, fin: bool = True) -> bytes:
    """One client frame: masked, as every client frame must be."""
    head = bytes([(0x80 if fin else 0) | opcode])
    size = len(payload)
    if size < 126:
        head += bytes([0x80 | size])
    elif size < 1 << 16:
        head += bytes([0x80 | 126]) + struct.pack("!H", size)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", size)
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def line(text: str) -> bytes:
    """A chat line as the page sends it."""
    return frame(json.dumps({"type": "line", "text": text}).encode("utf-8"))


@dataclass
class Frame:
    opcode: int
    payload: bytes

    @property
    def close_code(self) -> int | None:
        if self.opcode != CLOSE or len(self.payload) < 2:
            return None
        return int(struct.unpack("!H", self.payload[:2])[0])

    @property
    def close_reason(self) -> str:
        return self.payload[2:].decode("utf-8", "replace")


class Reader:
    """The server's bytes: the HTTP answer to the handshake, then frames."""

    def __init__(self) -> None:
        self.buffer = b""
        self.status: int | None = None
        self.response = b""

    def feed(self, data: bytes) -> list[Frame]:
        self.buffer += data
        frames: list[Frame] = []
        if self.status is None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return frames
            self.response, self.buffer = self.buffer[: end + 4], self.buffer[end + 4 :]
            self.status = int(self.response.split(b" ", 2)[1])
        while len(self.buffer) >= 2:
            first, second = self.buffer[0], self.buffer[1]
            size, at = second & 0x7F, 2
            if size == 126:
                if len(self.buffer) < 4:
                    break
                size, at = struct.unpack("!H", self.buffer[2:4])[0], 4
            elif size == 127:
                if len(self.buffer) < 10:
                    break
                size, at = struct.unpack("!Q", self.buffer[2:10])[0], 10
            if second & 0x80:
                raise AssertionError("the server masked a frame")
            if len(self.buffer) < at + size:
                break
            frames.append(Frame(first & 0x0F, self.buffer[at : at + size]))
            self.buffer = self.buffer[at + size :]
        return frames
