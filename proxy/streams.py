"""Reading whole Kafka frames straight off a Trio socket, with one copy.

The relay's hot path: a pass-through frame is read into its final buffer (``recv_into``; the
kernel writes each byte once) and sent on as is, size prefix included, so the proxy never copies
a record batch it does not look at. ``FrameBuffer`` (``framing.py``) stays the sans-I/O reader
for everything else.
"""

from __future__ import annotations

import struct

import trio

from proxy.framing import DEFAULT_MAX_FRAME_BYTES, FrameError

_SIZE = struct.Struct(">i")
_FIRST_ALLOCATION = 1 << 20  # large frames from a client grow past this as bytes arrive


class TruncatedFrame(FrameError):
    """The peer closed the connection in the middle of a frame."""

    def __init__(self, pending: int) -> None:
        super().__init__(f"closed mid-frame ({pending} bytes pending)")
        self.pending = pending


class FrameReader:
    def __init__(
        self,
        sock: trio.socket.SocketType,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        chunk: int = 65536,
    ) -> None:
        self.sock = sock
        self.max_frame_bytes = max_frame_bytes
        self._buf = bytearray(chunk)
        self._start = 0
        self._end = 0

    @property
    def buffered(self) -> int:
        return self._end - self._start

    async def _fill(self) -> bool:
        if self._start == self._end:
            self._start = self._end = 0
        elif self._end == len(self._buf):
            n = self._end - self._start
            self._buf[:n] = self._buf[self._start : self._end]
            self._start, self._end = 0, n
        with memoryview(self._buf) as view:
            got = await self.sock.recv_into(view[self._end :])
        self._end += got
        return got > 0

    async def next_frame(self) -> bytearray | None:
        """The next frame, size prefix included; None when the stream ends between frames.
        FrameError for a size outside the limit, TruncatedFrame if it ends inside one."""
        while self._end - self._start < 4:
            if not await self._fill():
                if self._end > self._start:
                    raise TruncatedFrame(self._end - self._start)
                return None
        (size,) = _SIZE.unpack_from(self._buf, self._start)
        if size < 0 or size > self.max_frame_bytes:
            raise FrameError(
                f"frame size {size} outside 0..{self.max_frame_bytes} (socket.request.max.bytes)"
            )
        total = 4 + size
        have = self._end - self._start
        if have >= total:
            out = self._buf[self._start : self._start + total]
            self._start += total
            return out
        # Allocate what the frame says, but not all of it up front: an untrusted peer could
        # otherwise reserve socket.request.max.bytes per connection by sending four bytes.
        out = bytearray(min(total, max(_FIRST_ALLOCATION, have)))
        out[:have] = memoryview(self._buf)[self._start : self._end]
        self._start = self._end = 0
        pos = have
        while pos < total:
            if pos == len(out):
                out.extend(bytes(min(total - pos, len(out))))
            with memoryview(out) as view:
                got = await self.sock.recv_into(view[pos:])
            if not got:
                raise TruncatedFrame(pos)
            pos += got
        return out
