"""Unit tests for ``proxy/wire.py``'s response codec: the header is parsed from the first
bytes of a frame and the body decoded from a view of it, with the result the whole-frame
decode gives (kafka-python's ``decode(header=True)``)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy import wire
from proxy.framing import FrameError


def _fetch_response(records: bytes, correlation_id: int = 42) -> bytearray:
    cls = wire.response_class(wire.FETCH)
    part = cls.FetchableTopicResponse.PartitionData(
        partition_index=3,
        error_code=0,
        high_watermark=1234,
        last_stable_offset=1234,
        log_start_offset=0,
        aborted_transactions=[],
        preferred_read_replica=-1,
        records=records,
    )
    resp = cls(
        version=12,
        throttle_time_ms=0,
        error_code=0,
        session_id=0,
        responses=[cls.FetchableTopicResponse(topic="t", partitions=[part])],
    )
    return wire.encode_response(resp, correlation_id)


@pytest.mark.parametrize("size", [0, 10, 5 << 20])
def test_decode_response_matches_the_whole_frame_decode(size: int) -> None:
    records = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    framed = _fetch_response(records)
    assert isinstance(framed, bytearray)  # handed on as encoded: no copy into bytes
    body = memoryview(framed)[4:]
    got = wire.decode_response(body, wire.FETCH, 12)
    whole = wire.response_class(wire.FETCH).decode(bytes(body), version=12, header=True)
    assert got.header.correlation_id == whole.header.correlation_id == 42
    assert got == whole
    assert bytes(got.responses[0].partitions[0].records) == records
    assert got.responses[0].partitions[0].high_watermark == 1234


def test_decode_response_skips_tagged_fields_of_the_header() -> None:
    """A flexible response header may carry tagged fields; the body starts after them."""
    framed = _fetch_response(b"abc", correlation_id=7)
    body = bytes(memoryview(framed)[4:])
    assert body[4] == 0  # no tagged fields in the encoded header
    tagged = body[:4] + bytes([1, 9, 3]) + b"xyz" + body[5:]  # one field: tag 9, 3 bytes
    got = wire.decode_response(tagged, wire.FETCH, 12)
    assert got.header.correlation_id == 7
    assert got.responses[0].partitions[0].records == b"abc"


def test_decode_response_of_a_cut_frame_is_a_frame_error() -> None:
    body = bytes(memoryview(_fetch_response(b"abc"))[4:])
    with pytest.raises(FrameError):
        wire.decode_response(body[:2], wire.FETCH, 12)
    with pytest.raises(FrameError):
        wire.decode_response(body[:-4], wire.FETCH, 12)


def test_decode_response_of_a_non_flexible_version() -> None:
    cls = wire.response_class(wire.METADATA)
    resp = cls(
        version=8, throttle_time_ms=0, brokers=[], cluster_id="c", controller_id=1, topics=[]
    )
    body = memoryview(wire.encode_response(resp, 99))[4:]
    assert struct.unpack_from(">i", body, 0)[0] == 99
    got = wire.decode_response(body, wire.METADATA, 8)
    assert got.header.correlation_id == 99
    assert got.cluster_id == "c" and got.controller_id == 1


# ---------------------------------------------------------------------------- scan_batches


def _batch(base: int, count: int, control: bool) -> bytes:
    from kafka.record.memory_records import MemoryRecordsBuilder

    builder = MemoryRecordsBuilder(magic=2, compression_type=0, batch_size=1 << 20, offset=0)
    for i in range(count):
        builder.append(timestamp=i, key=None, value=b"v" * (i % 7), headers=[])
    builder.close()
    data = bytearray(builder.buffer())
    struct.pack_into(">q", data, 0, base)  # the base offset, as the log assigns it
    if control:  # attributes (int16 at byte 21): bit 5 marks a control batch
        (attributes,) = struct.unpack_from(">h", data, 21)
        struct.pack_into(">h", data, 21, attributes | 0x20)
    return bytes(data)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 5), st.booleans(), st.integers(0, 3)), max_size=8),
    st.integers(0, 400),
)
def test_scan_batches_finds_every_whole_batch(
    shape: list[tuple[int, bool, int]], cut_back: int
) -> None:
    """Spans of batches built by kafka-python, with gaps between their offsets, control
    batches, and the answer cut anywhere (a partial batch ends the scan)."""
    data, expected, offset = b"", [], 0
    for count, control, gap in shape:
        offset += gap
        raw = _batch(offset, count, control)
        expected.append((len(data), len(data) + len(raw), offset, offset + count - 1, control))
        data += raw
        offset += count
    cut = max(0, len(data) - cut_back)
    whole = [span for span in expected if span[1] <= cut]
    assert wire.scan_batches(data[:cut]) == whole
    assert wire.scan_batches(memoryview(data)[:cut]) == whole


def test_scan_batches_stops_at_a_legacy_message_set() -> None:
    v2 = _batch(0, 2, False)
    legacy = bytearray(_batch(2, 1, False))
    legacy[16] = 1  # magic
    assert wire.scan_batches(v2 + bytes(legacy) + v2) == [(0, len(v2), 0, 1, False)]
    assert wire.scan_batches(None) == [] and wire.scan_batches(b"") == []
