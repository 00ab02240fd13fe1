"""Size-prefixed Kafka frames, sans I/O.

Every Kafka request and response is a 4-byte big-endian size followed by that many bytes.
``FrameBuffer`` collects bytes as they arrive and hands out whole frames; a size above the
limit (Kafka's ``socket.request.max.bytes``, 100 MiB by default) or below zero is a
``FrameError``, after which the connection must be closed, as Kafka does.
"""

from __future__ import annotations

import struct

DEFAULT_MAX_FRAME_BYTES = 104857600  # socket.request.max.bytes
_SIZE = struct.Struct(">i")


class FrameError(Exception):
    """Bytes that cannot be a Kafka frame; close this connection (and only this one)."""


class FrameBuffer:
    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._buf = bytearray()
        self._pos = 0

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        self._buf += data

    @property
    def buffered(self) -> int:
        return len(self._buf) - self._pos

    def next_frame(self) -> bytes | None:
        """The next whole frame without its size prefix, or None if more bytes are needed."""
        buf = self._buf
        pos = self._pos
        if len(buf) - pos < 4:
            self._compact()
            return None
        (size,) = _SIZE.unpack_from(buf, pos)
        if size < 0 or size > self.max_frame_bytes:
            raise FrameError(
                f"frame size {size} outside 0..{self.max_frame_bytes} (socket.request.max.bytes)"
            )
        end = pos + 4 + size
        if len(buf) < end:
            self._compact()
            return None
        with memoryview(buf) as view:
            frame = bytes(view[pos + 4 : end])  # one copy
        self._pos = end
        if self._pos == len(buf):
            buf.clear()
            self._pos = 0
        return frame

    def _compact(self) -> None:
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0


def frame(payload: bytes | bytearray) -> bytes:
    """Prefix a payload with its size."""
    return _SIZE.pack(len(payload)) + bytes(payload)
