"""ShareFetch answers as a list of buffers: the record batches are not copied.

A ShareFetch answer is mostly record batches, and those are slices (memoryviews) of the
upstream Fetch answers the read-ahead holds. Joined into one bytes object for the Records field
and encoded by kafka-python (into its encoding buffer, then the bytearray it returns), every
record would be copied three times. ``encode_parts`` writes the rest of the answer (the
response header, the fixed fields, the acquired ranges) into small bytearrays with ``struct``
and puts the slices between them as they are, so that the connection's writer sends the whole
list with one vectored write (``streams.send_parts``) and the kernel copies each record once,
into the socket.

The records field of a ``ShareFetchResponse.PartitionData`` holds ``RecordParts`` (the slices)
on this path; anything this encoder does not expect (another version, another type of value, a
null where the schema has none) goes to kafka-python's encoder instead, with the slices joined.
Its output is the same bytes: a Hypothesis test compares the two for every version the proxy
answers (``tests/property/test_fetch_answer.py``).

ShareFetchResponse (Kafka's ``ShareFetchResponse.json``) is flexible in every version: compact
strings, arrays and records (length + 1 as an unsigned varint, 0 for null) and an empty tagged
field section after every struct, since the schema declares no tagged field; its response header
is v1 (the correlation id and an empty tagged field section).
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterable
from typing import Any

from proxy import messages

Buffer = bytes | bytearray | memoryview

SHARE_FETCH = 78
# The versions written here; any other goes to kafka-python's encoder.
VERSIONS = frozenset({1, 2})
# Record slices shorter than this are copied into the surrounding buffer rather than given an
# iovec of their own: a write of many tiny iovecs costs more than the copy.
_INLINE_BYTES = 512

_HEAD = struct.Struct(">iib")  # frame size, correlation id, empty header tagged fields
_TOP = struct.Struct(">ih")  # ThrottleTimeMs, ErrorCode
_I32 = struct.Struct(">i")
_PARTITION = struct.Struct(">ih")  # PartitionIndex, ErrorCode
_I16 = struct.Struct(">h")
_LEADER = struct.Struct(">iib")  # LeaderId, LeaderEpoch, empty tagged fields
_RANGE = struct.Struct(">qqhb")  # FirstOffset, LastOffset, DeliveryCount, empty tagged fields


class RecordParts:
    """The Records field of one partition of an answer: record batches as slices, in order,
    not joined."""

    __slots__ = ("parts", "size")

    def __init__(self, parts: Iterable[Buffer]) -> None:
        self.parts = tuple(parts)
        self.size = sum(len(p) for p in self.parts)

    def __len__(self) -> int:
        return self.size

    def __bytes__(self) -> bytes:
        return b"".join(self.parts)

    def __repr__(self) -> str:
        return f"RecordParts({len(self.parts)} parts, {self.size} bytes)"


class _Unusual(Exception):
    """Something this encoder does not write; kafka-python's encoder does."""


def _uvarint(out: bytearray, value: int) -> None:
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _string(out: bytearray, value: str | None, *, nullable: bool) -> None:
    if value is None:
        if not nullable:
            raise _Unusual("null string")
        out.append(0)
        return
    if not isinstance(value, str):
        raise _Unusual(f"string field holds {type(value).__name__}")
    data = value.encode()
    _uvarint(out, len(data) + 1)
    out += data


def _array(value: Any) -> Any:
    if not isinstance(value, (list, tuple)):
        raise _Unusual(f"array field holds {type(value).__name__}")
    return value


def _encode(msg: Any, correlation_id: int) -> list[Buffer]:
    version = msg.API_VERSION
    if version not in VERSIONS:
        raise _Unusual(f"version {version}")
    parts: list[Buffer] = []
    out = bytearray(_HEAD.size)  # the frame size is packed last
    head = out
    out += _TOP.pack(msg.throttle_time_ms, msg.error_code)
    _string(out, msg.error_message, nullable=True)
    out += _I32.pack(msg.acquisition_lock_timeout_ms)
    topics = _array(msg.responses)
    _uvarint(out, len(topics) + 1)
    for topic in topics:
        topic_id = topic.topic_id
        if not isinstance(topic_id, uuid.UUID):
            raise _Unusual(f"topic id of type {type(topic_id).__name__}")
        out += topic_id.bytes
        partitions = _array(topic.partitions)
        _uvarint(out, len(partitions) + 1)
        for p in partitions:
            out += _PARTITION.pack(p.partition_index, p.error_code)
            _string(out, p.error_message, nullable=True)
            out += _I16.pack(p.acknowledge_error_code)
            _string(out, p.acknowledge_error_message, nullable=True)
            leader = p.current_leader
            out += _LEADER.pack(leader.leader_id, leader.leader_epoch, 0)
            records = p.records
            if isinstance(records, RecordParts):
                _uvarint(out, records.size + 1)
                for piece in records.parts:
                    if len(piece) < _INLINE_BYTES:
                        out += piece
                        continue
                    if out:
                        parts.append(out)
                        out = bytearray()
                    parts.append(piece)
            elif isinstance(records, (bytes, bytearray, memoryview)):
                _uvarint(out, len(records) + 1)
                out += records
            else:  # null records: only version 0 allows them
                raise _Unusual(f"records of type {type(records).__name__}")
            ranges = _array(p.acquired_records)
            _uvarint(out, len(ranges) + 1)
            for r in ranges:
                out += _RANGE.pack(r.first_offset, r.last_offset, r.delivery_count, 0)
            out.append(0)  # PartitionData's tagged fields
        out.append(0)  # ShareFetchableTopicResponse's tagged fields
    endpoints = _array(msg.node_endpoints)
    _uvarint(out, len(endpoints) + 1)
    for e in endpoints:
        out += _I32.pack(e.node_id)
        _string(out, e.host, nullable=False)
        out += _I32.pack(e.port)
        _string(out, e.rack, nullable=True)
        out.append(0)
    out.append(0)  # the body's tagged fields
    parts.append(out)
    size = sum(len(p) for p in parts) - 4
    _HEAD.pack_into(head, 0, size, correlation_id, 0)
    return parts


def encode_parts(msg: Any, correlation_id: int) -> list[Buffer]:
    """The framed answer ``msg`` with a response header carrying ``correlation_id``, as buffers
    to be written in order: a ShareFetch answer with its record slices uncopied, any other
    answer (and a ShareFetch answer this encoder does not expect) as one buffer from
    kafka-python's encoder."""
    if isinstance(msg, messages.ShareFetchResponse):
        try:
            return _encode(msg, correlation_id)
        except (_Unusual, AttributeError, struct.error):
            _join_records(msg)
    msg.with_header(correlation_id=correlation_id)
    data: bytearray = msg.encode(header=True, framed=True)
    return [data]


def _join_records(msg: Any) -> None:
    """Replace every ``RecordParts`` of a ShareFetch answer by its bytes, for kafka-python."""
    for topic in msg.responses or ():
        for p in getattr(topic, "partitions", None) or ():
            if isinstance(getattr(p, "records", None), RecordParts):
                p.records = bytes(p.records)
