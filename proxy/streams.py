"""Reading Kafka frames straight off a Trio socket: whole, with one copy, or passed on to
another socket as they arrive.

The relay's hot path: a frame is read into its final buffer (``recv_into``; the kernel writes
each byte once) and sent on as is, size prefix included, so the proxy never copies a record batch
it does not look at. A large answer is not even assembled: ``relay_frame`` passes it on while it
arrives (on Linux with splice(2), so its bytes never enter the process), the client receives the
start of a multi-megabyte Fetch answer while the rest is still on its way from the broker, and
the proxy holds one small buffer per connection instead of the whole answer. Reads and writes are
plain system calls on POSIX: Trio's socket methods yield to the scheduler after every call, a
round trip through the event loop that costs more than the call. ``FrameBuffer``
(``framing.py``) stays the sans-I/O reader for everything else.

A TLS connection has no socket to read or write: its bytes are decrypted in the process, so a
``FrameReader`` over a Trio stream (an ``SSLStream``) reads with ``receive_some`` and relays with
``send_all``, a bufferful at a time, and splice(2) is not used.
"""

from __future__ import annotations

import errno
import os
import struct
import sys
from typing import ClassVar

import trio

if sys.platform == "linux":
    import fcntl

import contextlib

from proxy.framing import DEFAULT_MAX_FRAME_BYTES, FrameError

_SIZE = struct.Struct(">i")
_FIRST_ALLOCATION = 1 << 20  # large frames from a client grow past this as bytes arrive
# Plain system calls on the sockets' descriptors where the OS has them: Trio's socket methods
# yield to the scheduler after every call, which costs more than the copy of a bufferful.
_RAW_IO = hasattr(os, "readv") and os.name == "posix"
# On Linux the rest of a relayed frame goes socket -> pipe -> socket with splice(2): the kernel
# moves page references and the proxy never copies the bytes in or out.
_SPLICE = _RAW_IO and sys.platform == "linux" and hasattr(os, "splice")
_SPLICE_FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)
_PIPE_BYTES = 1 << 20  # Linux's default pipe-max-size; the default 64 KiB when refused
# Plain system calls do not yield: a reader that never has to wait lets other tasks run after
# this many reads, a relay after this many bytes.
_YIELD_READS = 32
_YIELD_BYTES = 1 << 20


Source = trio.socket.SocketType | trio.abc.ReceiveStream
Dest = trio.socket.SocketType | trio.abc.SendStream


def raw_socket(stream: trio.abc.Stream) -> trio.socket.SocketType | None:
    """The socket under ``stream`` when its bytes may be read and written directly (a plain
    TCP stream); None for a TLS stream."""
    if isinstance(stream, trio.SocketStream):
        return stream.socket
    return None


def send_nowait(sock: trio.socket.SocketType | None, data: bytes | bytearray | memoryview) -> int:
    """Send what the socket takes now, without yielding to the scheduler; how much went out
    (0 where the OS has no plain write on sockets, or for a TLS stream, ``sock`` None: the
    caller sends the rest as usual)."""
    if not _RAW_IO or sock is None:
        return 0
    fd = sock.fileno()
    sent = 0
    with memoryview(data) as view:
        while sent < len(view):
            try:
                sent += os.write(fd, view[sent:])
            except BlockingIOError:
                break
    return sent


# At most this many buffers go to one writev(2) (the kernel refuses more than IOV_MAX; POSIX
# promises at least 16).
_IOV_MAX = 16
if "SC_IOV_MAX" in getattr(os, "sysconf_names", {}):
    _IOV_MAX = min(max(os.sysconf("SC_IOV_MAX"), 16), 1024)


async def send_parts(
    sock: trio.socket.SocketType | None,
    stream: trio.abc.SendStream,
    parts: list[bytes | bytearray | memoryview],
) -> None:
    """Send ``parts``, in order, as one stream of bytes: with writev(2) on a plain socket
    (the buffers are not joined, so a record batch is copied once, into the socket), waiting
    for the socket only when it takes no more; joined and sent with ``send_all`` on a TLS
    stream (``sock`` None), which encrypts one buffer at a time anyway. ``parts`` is
    consumed."""
    if not _RAW_IO or sock is None:
        await stream.send_all(parts[0] if len(parts) == 1 else b"".join(parts))
        return
    i, n = 0, len(parts)
    while i < n:
        chunk = parts[i : i + _IOV_MAX]
        # The number is read again after every wait: the socket may have been closed meanwhile
        # and its number given to a new one (see FrameReader._splice).
        fd = sock.fileno()
        if fd < 0:
            raise trio.ClosedResourceError("the socket was closed")
        try:
            sent = os.writev(fd, chunk)
        except BlockingIOError:
            sent = 0
        full = sent < sum(len(p) for p in chunk)
        while i < n and sent >= len(parts[i]):
            sent -= len(parts[i])
            i += 1
        if sent:
            parts[i] = memoryview(parts[i])[sent:]
        if full and i < n:
            # A short write: the socket's buffer is full until the peer reads.
            await trio.lowlevel.wait_writable(sock)


async def close_quietly(stream: trio.abc.AsyncResource) -> None:
    """Close ``stream``; a TLS stream whose peer or socket is already gone cannot send its
    close_notify, which is no reason to fail."""
    with (
        trio.CancelScope(shield=True),
        contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError),
    ):
        await stream.aclose()


class _SpliceUnsupported(Exception):
    """splice(2) refused these descriptors before moving anything."""


class SendFailed(Exception):
    """``relay_frame`` could not send to its destination (the cause is the OSError)."""


class TruncatedFrame(FrameError):
    """The peer closed the connection in the middle of a frame."""

    def __init__(self, pending: int) -> None:
        super().__init__(f"closed mid-frame ({pending} bytes pending)")
        self.pending = pending


class FrameReader:
    # splice(2) for relay_frame; switched off for good if the kernel refuses it.
    use_splice: ClassVar[bool] = _SPLICE

    def __init__(
        self,
        source: Source,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        chunk: int = 65536,
        relay_chunk: int = 1 << 20,
        *,
        trusted: bool = False,
    ) -> None:
        # A socket is read with plain system calls; any other stream (TLS) with receive_some.
        self.sock: trio.socket.SocketType | None = None
        self.stream: trio.abc.ReceiveStream | None = None
        if isinstance(source, trio.abc.ReceiveStream):
            self.stream = source
        else:
            self.sock = source
        # A trusted peer (an upstream broker) gets the whole of a large frame allocated at
        # once; a client's frame grows as its bytes arrive (see next_frame).
        self.trusted = trusted
        self.max_frame_bytes = max_frame_bytes
        self._buf = bytearray(chunk)
        self._start = 0
        self._end = 0
        self._relay_chunk = max(chunk, relay_chunk)  # the buffer grows to this for relay_frame
        self._pipe: tuple[int, int, int] | None = None  # read end, write end, capacity
        self._unyielded = 0  # reads since this reader last let other tasks run

    def close(self) -> None:
        """Release the pipe ``relay_frame`` may have opened (not the socket)."""
        pipe, self._pipe = self._pipe, None
        if pipe is not None:
            os.close(pipe[0])
            os.close(pipe[1])

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
            got = await self._recv_into(view[self._end :])
        self._end += got
        return got > 0

    async def _recv_into(self, view: memoryview) -> int:
        """Read what has arrived into ``view`` (0 at the end of the stream). With plain reads
        this waits only when nothing has arrived, instead of yielding to the scheduler after
        every read as Trio's socket methods do; a reader that never waits yields now and then."""
        if self.stream is not None:
            data = await self.stream.receive_some(len(view))
            view[: len(data)] = data
            return len(data)
        assert self.sock is not None
        if not _RAW_IO:
            return await self.sock.recv_into(view)
        got = -1
        while got < 0:
            try:
                # The number is read again after every wait: the socket may have been closed
                # meanwhile and its number given to a new one (whose bytes are not ours).
                got = os.readv(self.sock.fileno(), [view])
            except BlockingIOError:
                self._unyielded = 0
                await trio.lowlevel.wait_readable(self.sock)
        self._unyielded += 1
        if self._unyielded >= _YIELD_READS:
            self._unyielded = 0
            await trio.lowlevel.checkpoint()
        return got

    async def _next_size(self) -> int | None:
        """The size of the frame at the front of the buffer, once its prefix is in."""
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
        return int(size)

    async def peek_frame(self, want: int) -> tuple[int, bytes] | None:
        """The size of the next frame and its first ``want`` bytes (fewer if the frame is
        shorter), consuming nothing: ``next_frame`` or ``relay_frame`` then takes the frame.
        None when the stream ends between frames; errors as ``next_frame``."""
        size = await self._next_size()
        if size is None:
            return None
        need = 4 + min(size, want)
        if need > len(self._buf):
            raise ValueError(f"cannot peek {want} bytes with a {len(self._buf)}-byte buffer")
        while self._end - self._start < need:
            if not await self._fill():
                raise TruncatedFrame(self._end - self._start)
        return size, bytes(self._buf[self._start + 4 : self._start + need])

    def frame_is_buffered(self) -> bool:
        """Whether the frame at the front (its size prefix already in) is wholly buffered."""
        (size,) = _SIZE.unpack_from(self._buf, self._start)
        return bool(self._end - self._start >= 4 + size)

    async def relay_frame(self, dest: Dest) -> None:
        """Send the next frame, size prefix included, on to ``dest`` as its bytes arrive,
        without assembling it. Call after ``peek_frame`` (which checked the size). Bytes after
        the frame stay buffered for the next one. SendFailed if sending fails; TruncatedFrame
        if this stream ends inside the frame (part of it has been sent by then)."""
        (size,) = _SIZE.unpack_from(self._buf, self._start)
        total = left = 4 + size
        while True:
            n = min(left, self._end - self._start)
            if n:
                await self._send(dest, self._start, self._start + n)
                self._start += n
                left -= n
            if not left:
                return
            if (
                self.use_splice
                and self.sock is not None
                and not isinstance(dest, trio.abc.SendStream)
            ):
                try:
                    await self._splice(dest, total, left)
                    return
                except _SpliceUnsupported:
                    FrameReader.use_splice = False
            # Everything buffered has gone out: refill the whole buffer, larger if need be.
            self._start = self._end = 0
            if len(self._buf) < self._relay_chunk:
                self._buf = bytearray(self._relay_chunk)
            with memoryview(self._buf) as view:
                got = await self._recv_into(view)
            if not got:
                raise TruncatedFrame(total - left)
            self._end = got
            await trio.lowlevel.checkpoint()  # a bufferful at most between yields

    async def _splice(self, dest: trio.socket.SocketType, total: int, left: int) -> None:
        """Move the last ``left`` bytes of the frame (none of them buffered) from the socket
        through a pipe to ``dest``, as they arrive."""
        assert self.sock is not None
        read_end, write_end, capacity = self._pipe or self._open_pipe()
        source, target = self.sock.fileno(), dest.fileno()
        held = 0  # in the pipe
        first = left
        unyielded = 0
        while left or held:
            moved = False
            if left and held < capacity:
                try:
                    got = os.splice(
                        source, write_end, min(left, capacity - held), flags=_SPLICE_FLAGS
                    )
                except BlockingIOError:
                    pass  # nothing has arrived, or the pipe is full
                except OSError as e:
                    if e.errno == errno.EINVAL and left == first:
                        raise _SpliceUnsupported from e
                    raise
                else:
                    if not got:
                        raise TruncatedFrame(total - left)
                    left -= got
                    held += got
                    moved = True
            if held:
                try:
                    sent = os.splice(read_end, target, held, flags=_SPLICE_FLAGS)
                except BlockingIOError:
                    pass
                except OSError as e:
                    raise SendFailed(str(e)) from e
                else:
                    held -= sent
                    unyielded += sent
                    moved = True
            if not moved:
                unyielded = 0
                if held:
                    await trio.lowlevel.wait_writable(dest)
                else:
                    await trio.lowlevel.wait_readable(self.sock)
            elif unyielded >= _YIELD_BYTES:
                unyielded = 0
                await trio.lowlevel.checkpoint()
            else:
                continue
            # Another task may have closed either socket meanwhile, and the descriptor's
            # number may already belong to a new one: never reuse a number across a wait.
            source, target = self.sock.fileno(), dest.fileno()
            if target < 0:
                raise SendFailed("the destination was closed")
            if source < 0:
                raise trio.ClosedResourceError("the source was closed")

    def _open_pipe(self) -> tuple[int, int, int]:
        if sys.platform != "linux":
            raise _SpliceUnsupported
        read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            capacity = fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
        except OSError:
            capacity = fcntl.fcntl(write_end, fcntl.F_GETPIPE_SZ)
        self._pipe = read_end, write_end, capacity
        return self._pipe

    async def _send(self, dest: Dest, start: int, stop: int) -> None:
        with memoryview(self._buf) as view:
            if isinstance(dest, trio.abc.SendStream):
                try:
                    await dest.send_all(view[start:stop])
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
                    raise SendFailed(str(e)) from e
                return
            if not _RAW_IO:
                while start < stop:
                    try:
                        start += await dest.send(view[start:stop])
                    except OSError as e:
                        raise SendFailed(str(e)) from e
                return
            while start < stop:
                try:
                    start += os.write(dest.fileno(), view[start:stop])  # read again: see _splice
                except BlockingIOError:
                    await trio.lowlevel.wait_writable(dest)
                except OSError as e:
                    raise SendFailed(str(e)) from e

    async def next_frame(self) -> bytearray | None:
        """The next frame, size prefix included; None when the stream ends between frames.
        FrameError for a size outside the limit, TruncatedFrame if it ends inside one."""
        size = await self._next_size()
        if size is None:
            return None
        total = 4 + size
        have = self._end - self._start
        if have >= total:
            out = self._buf[self._start : self._start + total]
            self._start += total
            return out
        # Allocate what the frame says, but not all of it up front: an untrusted peer could
        # otherwise reserve socket.request.max.bytes per connection by sending four bytes.
        out = bytearray(total if self.trusted else min(total, max(_FIRST_ALLOCATION, have)))
        out[:have] = memoryview(self._buf)[self._start : self._end]
        self._start = self._end = 0
        pos = have
        while pos < total:
            if pos == len(out):
                out.extend(bytes(min(total - pos, len(out))))
            with memoryview(out) as view:
                got = await self._recv_into(view[pos:])
            if not got:
                raise TruncatedFrame(pos)
            pos += got
        return out
