"""The server half of RFC 6455, just enough for the API server's exec streams (stdlib only)."""

from __future__ import annotations

import base64
import hashlib
import struct
from typing import Protocol

_ACCEPT_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

CLOSE_NORMAL = 1000


class Readable(Protocol):
    def read(self, size: int, /) -> bytes: ...


def accept_key(client_key: str) -> str:
    """The Sec-WebSocket-Accept value that proves the server read the client's Sec-WebSocket-Key."""
    digest = hashlib.sha1((client_key.strip() + _ACCEPT_GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def encode_frame(opcode: int, payload: bytes) -> bytes:
    """One final, unmasked frame (servers never mask)."""
    head = bytes([0x80 | opcode])
    size = len(payload)
    if size < 126:
        head += bytes([size])
    elif size < 1 << 16:
        head += bytes([126]) + struct.pack("!H", size)
    else:
        head += bytes([127]) + struct.pack("!Q", size)
    return head + payload


def close_frame(code: int = CLOSE_NORMAL, reason: str = "") -> bytes:
    return encode_frame(OP_CLOSE, struct.pack("!H", code) + reason.encode("utf-8"))


def read_frame(stream: Readable) -> tuple[int, bytes] | None:
    """The next frame's (opcode, unmasked payload); None when the peer has gone."""
    head = stream.read(2)
    if len(head) < 2:
        return None
    opcode = head[0] & 0x0F
    masked = bool(head[1] & 0x80)
    size = head[1] & 0x7F
    if size == 126:
        (size,) = struct.unpack("!H", stream.read(2))
    elif size == 127:
        (size,) = struct.unpack("!Q", stream.read(8))
    mask = stream.read(4) if masked else b""
    payload = stream.read(size)
    if len(payload) < size:
        return None
    if masked:
        payload = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    return opcode, payload
