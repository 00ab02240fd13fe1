"""Unit tests for ``proxy/framing.py``: size-prefixed frames collected from arbitrary chunks.

``FrameBuffer`` must hand out exactly the frames that were sent, however the bytes are cut into
chunks (a frame split over several feeds, several frames in one feed), and refuse a size prefix
above its limit or below zero with ``FrameError`` as soon as the four size bytes are in.
"""

from __future__ import annotations

import itertools
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.framing import DEFAULT_MAX_FRAME_BYTES, FrameBuffer, FrameError, frame


def drain(buf: FrameBuffer) -> list[bytes]:
    out: list[bytes] = []
    while (payload := buf.next_frame()) is not None:
        out.append(payload)
    return out


def test_default_limit_is_kafkas_socket_request_max_bytes() -> None:
    assert DEFAULT_MAX_FRAME_BYTES == 104857600
    assert FrameBuffer().max_frame_bytes == 104857600


def test_frame_prefixes_the_size() -> None:
    assert frame(b"abc") == b"\x00\x00\x00\x03abc"
    assert frame(b"") == b"\x00\x00\x00\x00"
    assert frame(bytearray(b"x")) == b"\x00\x00\x00\x01x"


def test_empty_buffer_needs_more() -> None:
    buf = FrameBuffer()
    assert buf.next_frame() is None
    assert buf.buffered == 0


def test_partial_size_prefix_then_rest() -> None:
    buf = FrameBuffer()
    data = frame(b"hello")
    buf.feed(data[:2])
    assert buf.next_frame() is None
    assert buf.buffered == 2
    buf.feed(data[2:])
    assert buf.next_frame() == b"hello"
    assert buf.next_frame() is None
    assert buf.buffered == 0


def test_frame_split_over_many_feeds() -> None:
    buf = FrameBuffer()
    payload = bytes(range(256)) * 4
    data = frame(payload)
    for i in range(len(data) - 1):
        buf.feed(data[i : i + 1])
        assert buf.next_frame() is None
    buf.feed(data[-1:])
    assert buf.next_frame() == payload
    assert buf.buffered == 0


def test_several_frames_in_one_feed_and_a_partial_tail() -> None:
    buf = FrameBuffer()
    tail = frame(b"fourth")
    buf.feed(frame(b"one") + frame(b"") + frame(b"three") + tail[:5])
    assert drain(buf) == [b"one", b"", b"three"]
    assert buf.buffered == 5
    buf.feed(memoryview(tail[5:]))
    assert drain(buf) == [b"fourth"]
    assert buf.buffered == 0


def test_size_at_the_limit_is_accepted() -> None:
    buf = FrameBuffer(max_frame_bytes=8)
    buf.feed(frame(b"12345678"))
    assert buf.next_frame() == b"12345678"


def test_size_over_the_limit_is_refused_before_the_body_arrives() -> None:
    buf = FrameBuffer(max_frame_bytes=8)
    buf.feed(struct.pack(">i", 9))
    with pytest.raises(FrameError, match="9"):
        buf.next_frame()


def test_default_limit_refuses_one_byte_more() -> None:
    buf = FrameBuffer()
    buf.feed(struct.pack(">i", DEFAULT_MAX_FRAME_BYTES + 1))
    with pytest.raises(FrameError):
        buf.next_frame()


@pytest.mark.parametrize("size", [-1, -(2**31), -100])
def test_negative_size_is_refused(size: int) -> None:
    buf = FrameBuffer()
    buf.feed(struct.pack(">i", size))
    with pytest.raises(FrameError):
        buf.next_frame()


def test_bad_size_after_good_frames() -> None:
    buf = FrameBuffer(max_frame_bytes=100)
    buf.feed(frame(b"ok") + struct.pack(">i", 101))
    assert buf.next_frame() == b"ok"
    with pytest.raises(FrameError):
        buf.next_frame()


@given(
    payloads=st.lists(st.binary(max_size=300), max_size=20),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=30),
)
def test_any_chunking_yields_the_same_frames(payloads: list[bytes], cuts: list[int]) -> None:
    data = b"".join(frame(p) for p in payloads)
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    buf = FrameBuffer(max_frame_bytes=300)
    got: list[bytes] = []
    for start, end in itertools.pairwise(points):
        buf.feed(data[start:end])
        got.extend(drain(buf))
    assert got == payloads
    assert buf.buffered == 0
