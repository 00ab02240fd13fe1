"""Unit tests for ``proxy/streams.py``: frames read off a real TCP socket, and relayed.

``relay_frame`` must pass a frame on byte for byte however its bytes arrive, with splice(2)
(Linux) and with plain reads and writes, and leave whatever follows the frame to be read as the
next frame; it must say whether the source ended inside the frame (``TruncatedFrame``) or the
destination failed (``SendFailed``). ``peek_frame`` looks at the start of a frame without
consuming it and refuses a size over the limit before the body arrives.
"""

from __future__ import annotations

import errno
import os
import random
import socket
import struct
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress

import pytest
import trio

from proxy.framing import FrameError, frame
from proxy.streams import FrameReader, SendFailed, TruncatedFrame, send_nowait, send_parts

Pair = tuple[trio.socket.SocketType, trio.socket.SocketType]


def _tcp_pair() -> Pair:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        a = socket.create_connection(listener.getsockname())
        b, _ = listener.accept()
    a.setblocking(False)
    b.setblocking(False)
    return trio.socket.from_stdlib_socket(a), trio.socket.from_stdlib_socket(b)


@asynccontextmanager
async def _pairs() -> AsyncIterator[tuple[Pair, Pair]]:
    """(source writer, source reader), (destination writer, destination reader)."""
    source, dest = _tcp_pair(), _tcp_pair()
    try:
        yield source, dest
    finally:
        for sock in (*source, *dest):
            sock.close()


async def _send_in_pieces(sock: trio.socket.SocketType, data: bytes, seed: int) -> None:
    rng = random.Random(seed)
    pos = 0
    while pos < len(data):
        step = rng.choice([1, 7, 4096, 65536, 300_000])
        pos += await sock.send(data[pos : pos + step])
        if rng.random() < 0.2:
            await trio.sleep(0.001)


async def _next(reader: FrameReader) -> bytes | None:
    got = await reader.next_frame()
    return None if got is None else bytes(got)


async def _read_all(sock: trio.socket.SocketType, into: bytearray) -> None:
    while chunk := await sock.recv(1 << 20):
        into += chunk


@pytest.fixture(params=["splice", "copy"])
def relay_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    mode: str = request.param
    if mode == "splice" and not FrameReader.use_splice:
        pytest.skip("no splice(2) here")
    monkeypatch.setattr(FrameReader, "use_splice", mode == "splice")
    return mode


async def test_relay_frame_passes_frames_on_byte_for_byte(relay_mode: str) -> None:
    rng = random.Random(1)
    big = frame(rng.randbytes(3_000_000))
    small = frame(b"between")
    medium = frame(rng.randbytes(300_000))
    received = bytearray()
    async with _pairs() as ((src_w, src_r), (dst_w, dst_r)):
        reader = FrameReader(src_r)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_send_in_pieces, src_w, big + small + medium, 2)
            nursery.start_soon(_read_all, dst_r, received)
            peeked = await reader.peek_frame(4)
            assert peeked == (len(big) - 4, big[4:8])
            await reader.relay_frame(dst_w)
            assert await reader.peek_frame(100) == (len(small) - 4, small[4:])
            assert await _next(reader) == small
            assert await reader.peek_frame(4) is not None
            await reader.relay_frame(dst_w)
            dst_w.shutdown(socket.SHUT_WR)
            src_w.shutdown(socket.SHUT_WR)
            assert await reader.peek_frame(4) is None
        reader.close()
    assert bytes(received) == big + medium


async def test_relay_frame_of_a_frame_already_buffered(relay_mode: str) -> None:
    data = frame(b"a" * 1000) + frame(b"b" * 10)
    received = bytearray()
    async with _pairs() as ((src_w, src_r), (dst_w, dst_r)):
        await src_w.send(data)
        src_w.shutdown(socket.SHUT_WR)
        reader = FrameReader(src_r)
        await reader.peek_frame(1000)  # returns once the whole first frame is buffered
        assert reader.frame_is_buffered()
        await reader.relay_frame(dst_w)
        assert await _next(reader) == frame(b"b" * 10)
        assert await _next(reader) is None
        dst_w.shutdown(socket.SHUT_WR)
        await _read_all(dst_r, received)
        reader.close()
    assert bytes(received) == frame(b"a" * 1000)


async def test_source_ending_inside_the_frame_is_truncated(relay_mode: str) -> None:
    whole = frame(random.Random(3).randbytes(2_000_000))
    received = bytearray()
    async with _pairs() as ((src_w, src_r), (dst_w, dst_r)):
        reader = FrameReader(src_r)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_read_all, dst_r, received)

            async def send_part() -> None:
                await _send_in_pieces(src_w, whole[:1_200_000], 4)
                src_w.shutdown(socket.SHUT_WR)

            nursery.start_soon(send_part)
            await reader.peek_frame(4)
            with pytest.raises(TruncatedFrame) as caught:
                await reader.relay_frame(dst_w)
            dst_w.shutdown(socket.SHUT_WR)
        reader.close()
    assert caught.value.pending == 1_200_000
    assert bytes(received) == whole[:1_200_000]


async def test_destination_gone_is_send_failed(relay_mode: str) -> None:
    whole = frame(bytes(8_000_000))
    async with _pairs() as ((src_w, src_r), (dst_w, dst_r)):
        dst_r.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        dst_r.close()  # reset: the destination is gone
        reader = FrameReader(src_r)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_send_in_pieces, src_w, whole, 5)
            await reader.peek_frame(4)
            with pytest.raises(SendFailed):
                await reader.relay_frame(dst_w)
            nursery.cancel_scope.cancel()
        reader.close()


async def test_a_destination_closed_mid_frame_never_gets_its_descriptor_reused(
    relay_mode: str,
) -> None:
    """The destination is closed by another task while the relay waits for the source, and
    a new socket takes its descriptor's number: the rest of the frame must not go to that
    socket (it belongs to someone else), and the relay fails."""
    whole = frame(bytes(2_000_000))
    async with _pairs() as ((src_w, src_r), (dst_w, dst_r)):
        reader = FrameReader(src_r)
        closed = trio.Event()
        stranger = socket.socketpair()  # (the number's new socket, its peer)
        for sock in stranger:
            sock.setblocking(False)
        taken: list[int] = []

        async def close_then_reuse() -> None:
            # Once the destination has the 100,000 bytes sent so far, the relay has passed
            # them on and waits for the rest of the frame.
            received = 0
            while received < 100_000:
                received += len(await dst_r.recv(1 << 20))
            number = dst_w.fileno()
            dst_w.close()
            # The number now names the stranger's socket (as the next socket opened in a
            # busy process may take it).
            taken.append(os.dup2(stranger[0].fileno(), number))
            closed.set()

        try:
            async with trio.open_nursery() as nursery:
                await src_w.send(whole[:100_000])
                await reader.peek_frame(4)
                nursery.start_soon(close_then_reuse)

                async def rest() -> None:
                    await closed.wait()
                    await src_w.send(whole[100_000:300_000])

                nursery.start_soon(rest)
                failed: Exception | None = None
                with trio.move_on_after(5):
                    try:
                        await reader.relay_frame(dst_w)
                    except (SendFailed, trio.ClosedResourceError) as e:
                        failed = e
                nursery.cancel_scope.cancel()
            reader.close()
            reached = []
            with suppress(BlockingIOError):
                reached.append(len(stranger[1].recv(1 << 20)))
        finally:
            for number in taken:
                os.close(number)
            for sock in stranger:
                sock.close()
        assert reached == [], f"{reached} bytes of the frame went to the socket that reused it"
        assert failed is not None, "the relay did not notice that its destination was closed"


@pytest.mark.skipif(sys.platform != "linux", reason="splice(2) is Linux only")
async def test_splice_refused_falls_back_to_copying(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(FrameReader, "use_splice", True)

    def refuse(*_args: object, **_kwargs: object) -> int:
        raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))

    monkeypatch.setattr(os, "splice", refuse)
    whole = frame(random.Random(6).randbytes(1_500_000))
    received = bytearray()
    async with _pairs() as ((src_w, src_r), (dst_w, dst_r)):
        reader = FrameReader(src_r)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_send_in_pieces, src_w, whole, 7)
            nursery.start_soon(_read_all, dst_r, received)
            await reader.peek_frame(4)
            await reader.relay_frame(dst_w)
            dst_w.shutdown(socket.SHUT_WR)
        reader.close()
    assert bytes(received) == whole
    assert FrameReader.use_splice is False


async def test_peek_frame_consumes_nothing_and_checks_the_size() -> None:
    async with _pairs() as ((src_w, src_r), _):
        await src_w.send(frame(b"xy") + struct.pack(">i", 1001))
        reader = FrameReader(src_r, max_frame_bytes=1000)
        assert await reader.peek_frame(8) == (2, b"xy")
        assert await reader.peek_frame(8) == (2, b"xy")
        assert reader.frame_is_buffered()
        assert await _next(reader) == frame(b"xy")
        with pytest.raises(FrameError, match="1001"):
            await reader.peek_frame(8)


async def test_peek_frame_at_the_end() -> None:
    async with _pairs() as ((src_w, src_r), _):
        await src_w.send(b"\x00\x00")
        src_w.shutdown(socket.SHUT_WR)
        reader = FrameReader(src_r)
        with pytest.raises(TruncatedFrame):
            await reader.peek_frame(4)
    async with _pairs() as ((src_w, src_r), _):
        src_w.shutdown(socket.SHUT_WR)
        assert await FrameReader(src_r).peek_frame(4) is None


@pytest.mark.parametrize("make", [bytes, bytearray, memoryview])
async def test_send_nowait_sends_what_the_socket_takes(
    make: Callable[[bytes], bytes | bytearray | memoryview],
) -> None:
    data = frame(b"request")
    async with _pairs() as ((src_w, src_r), _):
        sent = send_nowait(src_w, make(data))
        assert sent in (0, len(data))  # 0 where the OS has no plain write on sockets
        if sent:
            assert await _next(FrameReader(src_r)) == data


@pytest.mark.parametrize("trusted", [False, True])
async def test_next_frame_reads_large_frames_whole(trusted: bool) -> None:
    """A frame far larger than the buffer, arriving in pieces: read whole and in order, by a
    trusted reader (which allocates the frame at once) and by an untrusted one (which grows
    it as the bytes arrive), with the next frame intact behind it."""
    rng = random.Random(3)
    big = bytes(rng.getrandbits(8) for _ in range(1000)) * 3000  # ~3 MB
    small = b"after"
    async with _pairs() as ((writer, reader_sock), _):
        reader = FrameReader(reader_sock, 8 << 20, trusted=trusted)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_send_in_pieces, writer, frame(big) + frame(small), 5)
            assert await _next(reader) == frame(big)
            assert await _next(reader) == frame(small)


async def test_send_parts_writes_every_buffer_in_order() -> None:
    """More buffers than one writev(2) takes and more bytes than the socket buffer holds:
    everything arrives, in order, while the peer reads slowly."""
    rng = random.Random(7)
    blob = bytes(rng.getrandbits(8) for _ in range(1 << 16)) * 64  # 4 MiB
    view = memoryview(blob)
    parts: list[bytes | bytearray | memoryview] = []
    pos = 0
    while pos < len(blob):
        step = rng.choices([0, 1, 13, 700, 4096, 300_000], [1, 2, 2, 3, 3, 0.02])[0]
        kind = rng.choice([bytes, bytearray, memoryview])
        piece = view[pos : pos + step]
        parts.append(piece if kind is memoryview else kind(piece))
        pos += step
    assert len(parts) > 1024
    got = bytearray()
    async with _pairs() as ((writer, reader), _), trio.open_nursery() as nursery:
        nursery.start_soon(_read_all, reader, got)
        await send_parts(writer, trio.SocketStream(writer), parts)
        writer.shutdown(socket.SHUT_WR)
    assert got == blob


async def test_send_parts_over_a_stream_without_socket_joins_them() -> None:
    """A TLS stream (no socket to write to): the buffers go out joined, in one send_all."""
    sent: list[bytes] = []

    class Recorder(trio.abc.SendStream):
        async def send_all(self, data: bytes | bytearray | memoryview) -> None:
            sent.append(bytes(data))

        async def wait_send_all_might_not_block(self) -> None:
            pass

        async def aclose(self) -> None:
            pass

    await send_parts(None, Recorder(), [b"ab", bytearray(b"cd"), memoryview(b"ef")])
    assert sent == [b"abcdef"]


async def test_send_parts_to_a_closed_socket_is_closed_resource() -> None:
    """A socket closed by another task: its number is not written to (it may belong to a
    new socket by now)."""
    async with _pairs() as ((writer, _reader), _):
        stream = trio.SocketStream(writer)
        writer.close()
        with pytest.raises(trio.ClosedResourceError):
            await send_parts(writer, stream, [b"a", memoryview(b"b" * 1000)])
