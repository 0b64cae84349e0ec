"""Server side of RFC 6455 WebSockets, as the exec subresource speaks them (channel.k8s.io sub-protocols)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import struct
import threading

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
MAX_FRAME = 16 * 1024 * 1024


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


class Closed(Exception):
    """The peer closed the connection or sent a close frame."""


class WebSocket:
    """One accepted WebSocket: whole messages in, binary messages out (writes are serialised)."""

    def __init__(self, reader: io.BufferedIOBase, writer: io.BufferedIOBase) -> None:
        self.reader = reader
        self.writer = writer
        self._write_lock = threading.Lock()

    def _exactly(self, count: int) -> bytes:
        data = self.reader.read(count) if count else b""
        if len(data) != count:
            raise Closed("connection closed")
        return data

    def receive(self) -> bytes:
        """The next data message (pings answered on the way); Closed at the end."""
        message = b""
        while True:
            first, second = self._exactly(2)
            opcode, final = first & 0x0F, bool(first & 0x80)
            length = second & 0x7F
            if length == 126:
                length = struct.unpack("!H", self._exactly(2))[0]
            elif length == 127:
                length = struct.unpack("!Q", self._exactly(8))[0]
            if length > MAX_FRAME:
                raise Closed("frame too large")
            mask = self._exactly(4) if second & 0x80 else b""
            payload = self._exactly(length)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            if opcode == OP_CLOSE:
                self._frame(OP_CLOSE, payload[:2])
                raise Closed("close frame")
            if opcode == OP_PING:
                self._frame(OP_PONG, payload)
                continue
            if opcode == OP_PONG:
                continue
            message += payload
            if final:
                return message

    def send(self, data: bytes) -> None:
        self._frame(OP_BINARY, data)

    def close(self, code: int = 1000) -> None:
        with contextlib.suppress(OSError):
            self._frame(OP_CLOSE, struct.pack("!H", code))

    def _frame(self, opcode: int, payload: bytes) -> None:
        length = len(payload)
        if length < 126:
            header = struct.pack("!BB", 0x80 | opcode, length)
        elif length < 1 << 16:
            header = struct.pack("!BBH", 0x80 | opcode, 126, length)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 127, length)
        with self._write_lock:
            self.writer.write(header + payload)
            self.writer.flush()
