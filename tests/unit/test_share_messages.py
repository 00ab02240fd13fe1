"""Wire tests for the share-API messages (``proxy/messages.py``, schemas in ``proxy/schemas/``).

Three kinds of checks:

* golden bytes, written here by hand from the wire layouts (Kafka's message schemas, e.g.
  ``ShareFetchRequest.json``, and the v1 frames librdkafka 2.16 sends), so a
  field in the wrong place, of the wrong width or with the wrong nullability fails;
* named round trips (encode with header and frame, decode, compare, re-encode) of every version of
  every message, with nested arrays filled and with every nullable field both null and set;
* a Hypothesis round trip drawing every field of every message version from its schema.

Plus the kafka-python behaviours the proxy relies on (zero uuid is ``None``, unknown tagged
fields, the minimum version not being enforced) and a check that the typed stub is current.
"""

from __future__ import annotations

import functools
import struct
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka.protocol.api_header import RequestHeader, ResponseClassRegistry

from proxy.messages import (
    SHARE_REQUESTS,
    SHARE_RESPONSES,
    AlterShareGroupOffsetsRequest,
    AlterShareGroupOffsetsResponse,
    DeleteShareGroupOffsetsRequest,
    DeleteShareGroupOffsetsResponse,
    DescribeShareGroupOffsetsRequest,
    DescribeShareGroupOffsetsResponse,
    ShareAcknowledgeRequest,
    ShareAcknowledgeResponse,
    ShareFetchRequest,
    ShareFetchResponse,
    ShareGroupDescribeRequest,
    ShareGroupDescribeResponse,
    ShareGroupHeartbeatRequest,
    ShareGroupHeartbeatResponse,
    ShareMessage,
)
from tools.gen_stubs import STUB_PATH, render

T1 = uuid.UUID("01a2058e-3f4b-4c5d-8e6f-708192a3b4c5")
T2 = uuid.UUID("fedcba98-7654-4321-8fed-cba987654321")
MEMBER = "+IynZot5TLSs0s6P73EHiw"  # a librdkafka member id (22 chars, base64url of a random uuid)

# Nested classes, named as kafka-python names them (after the schema's struct type).
HbAssignment = ShareGroupHeartbeatResponse.Assignment
HbTopic = HbAssignment.TopicPartitions
DescGroup = ShareGroupDescribeResponse.DescribedGroup
DescMember = DescGroup.Member
DescTopic = DescMember.Assignment.TopicPartitions
FetchTopic = ShareFetchRequest.FetchTopic
FetchPartition = FetchTopic.FetchPartition
FetchAck = FetchPartition.AcknowledgementBatch
Forgotten = ShareFetchRequest.ForgottenTopic
FetchedTopic = ShareFetchResponse.ShareFetchableTopicResponse
FetchedPartition = FetchedTopic.PartitionData
FetchedLeader = FetchedPartition.LeaderIdAndEpoch
Acquired = FetchedPartition.AcquiredRecords
FetchNode = ShareFetchResponse.NodeEndpoint
AckTopic = ShareAcknowledgeRequest.AcknowledgeTopic
AckPartition = AckTopic.AcknowledgePartition
AckBatch = AckPartition.AcknowledgementBatch
AckedTopic = ShareAcknowledgeResponse.ShareAcknowledgeTopicResponse
AckedPartition = AckedTopic.PartitionData
AckedLeader = AckedPartition.LeaderIdAndEpoch
AckNode = ShareAcknowledgeResponse.NodeEndpoint
DsoGroup = DescribeShareGroupOffsetsRequest.DescribeShareGroupOffsetsRequestGroup
DsoTopic = DsoGroup.DescribeShareGroupOffsetsRequestTopic
DsoRespGroup = DescribeShareGroupOffsetsResponse.DescribeShareGroupOffsetsResponseGroup
DsoRespTopic = DsoRespGroup.DescribeShareGroupOffsetsResponseTopic
DsoRespPartition = DsoRespTopic.DescribeShareGroupOffsetsResponsePartition
AlterTopic = AlterShareGroupOffsetsRequest.AlterShareGroupOffsetsRequestTopic
AlterPartition = AlterTopic.AlterShareGroupOffsetsRequestPartition
AlteredTopic = AlterShareGroupOffsetsResponse.AlterShareGroupOffsetsResponseTopic
AlteredPartition = AlteredTopic.AlterShareGroupOffsetsResponsePartition
DeleteTopic = DeleteShareGroupOffsetsRequest.DeleteShareGroupOffsetsRequestTopic
DeletedTopic = DeleteShareGroupOffsetsResponse.DeleteShareGroupOffsetsResponseTopic


# --- hand-made wire encoding (flexible versions: compact strings/arrays, tagged-field sections) ---


def i8(v: int) -> bytes:
    return struct.pack(">b", v)


def i16(v: int) -> bytes:
    return struct.pack(">h", v)


def i32(v: int) -> bytes:
    return struct.pack(">i", v)


def i64(v: int) -> bytes:
    return struct.pack(">q", v)


def uvarint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def cstr(s: str | None) -> bytes:
    """COMPACT_(NULLABLE_)STRING: varint length+1 (0 = null), then UTF-8."""
    if s is None:
        return b"\x00"
    raw = s.encode()
    return uvarint(len(raw) + 1) + raw


def cbytes(b: bytes) -> bytes:
    """COMPACT_BYTES / COMPACT_RECORDS: varint length+1, then the bytes."""
    return uvarint(len(b) + 1) + b


def carr(n: int | None) -> bytes:
    """The length prefix of a COMPACT_(NULLABLE_)ARRAY of n elements (None = null)."""
    return b"\x00" if n is None else uvarint(n + 1)


NO_TAGS = b"\x00"  # an empty tagged-field section: ends every struct in a flexible version
NULL_STRUCT = b"\xff"  # a null nullable struct (int8 -1); present is b"\x01"
TRUE = b"\x01"
FALSE = b"\x00"


def framed(payload: bytes) -> bytes:
    return i32(len(payload)) + payload


def request_header_v2(api_key: int, version: int, correlation_id: int, client_id: str) -> bytes:
    # client_id stays a classic (int16-length) nullable string even in header v2.
    raw = client_id.encode()
    return i16(api_key) + i16(version) + i32(correlation_id) + i16(len(raw)) + raw + NO_TAGS


def response_header_v1(correlation_id: int) -> bytes:
    return i32(correlation_id) + NO_TAGS


def body(msg: ShareMessage) -> bytes:
    return bytes(msg.encode())


# --- the declared versions ---

KAFKA_VERSIONS = {
    76: (1, 1),
    77: (1, 1),
    78: (1, 2),
    79: (1, 2),
    90: (0, 1),
    91: (0, 0),
    92: (0, 0),
}


def test_tables_cover_the_share_apis_with_kafkas_versions() -> None:
    assert set(SHARE_REQUESTS) == set(SHARE_RESPONSES) == set(KAFKA_VERSIONS)
    for key, (lo, hi) in KAFKA_VERSIONS.items():
        req, resp = SHARE_REQUESTS[key], SHARE_RESPONSES[key]
        keys = (req.API_KEY, resp.API_KEY)
        assert keys == (key, key)
        assert req.is_request() and not resp.is_request()
        assert req.__name__.removesuffix("Request") == resp.__name__.removesuffix("Response")
        assert req.valid_versions == resp.valid_versions == (lo, hi)
        # all share APIs are flexible from version 0: header v2 / response header v1
        assert all(c.flexible_version_q(v) for c in (req, resp) for v in range(lo, hi + 1))


def test_kafka_python_answers_for_our_response_classes() -> None:
    # Declaring a response class registers it by API key (what a client-side decoder uses).
    for key, resp in SHARE_RESPONSES.items():
        hdr = RequestHeader(
            request_api_key=key,
            request_api_version=resp.max_version,
            correlation_id=1,
            client_id="c",
        )
        found = ResponseClassRegistry.get_response_class(hdr)
        assert found.__mro__[1] is resp


def test_minimum_version_is_not_enforced_by_kafka_python() -> None:
    # kafka-python clamps the minimum to 0, so the proxy must check valid_versions[0] itself.
    assert ShareGroupHeartbeatRequest.min_version == 0
    assert ShareGroupHeartbeatRequest.valid_versions[0] == 1
    legacy = request_header_v2(76, 0, 1, "c") + cstr("g") + cstr("m") + i32(0) + b"\x00\x00\x00"
    assert ShareGroupHeartbeatRequest.decode(legacy, version=0, header=True).group_id == "g"
    with pytest.raises(ValueError, match="Invalid version"):
        ShareGroupHeartbeatRequest.decode(legacy, version=2, header=True)


def test_the_typed_stub_is_current() -> None:
    assert STUB_PATH.read_text() == render(), "run: .venv/bin/python -m tools.gen_stubs"


# --- golden bytes ---


def test_heartbeat_request_v1_matches_the_librdkafka_join_frame() -> None:
    # librdkafka 2.16's first heartbeat: join with epoch 0, rack unset.
    wire = framed(
        request_header_v2(76, 1, 3, "rdkafka")
        + cstr("share-g1")
        + cstr(MEMBER)
        + i32(0)  # MemberEpoch
        + cstr(None)  # RackId
        + carr(1)
        + cstr("kp1")  # SubscribedTopicNames
        + NO_TAGS
    )
    msg = ShareGroupHeartbeatRequest(
        version=1,
        group_id="share-g1",
        member_id=MEMBER,
        member_epoch=0,
        rack_id=None,
        subscribed_topic_names=["kp1"],
    )
    msg.with_header(correlation_id=3, client_id="rdkafka")
    assert bytes(msg.encode(header=True, framed=True)) == wire
    back = ShareGroupHeartbeatRequest.decode(wire, version=1, header=True, framed=True)
    assert back == msg
    assert (back.header.request_api_key, back.header.request_api_version) == (76, 1)
    assert (back.header.correlation_id, back.header.client_id) == (3, "rdkafka")


def test_heartbeat_response_v1_with_and_without_assignment() -> None:
    # Framed: 0000004d 00000003 00 00000000 0000 00 17 (member id) ...
    full = framed(
        response_header_v1(3)
        + i32(0)  # ThrottleTimeMs
        + i16(0)  # ErrorCode
        + cstr(None)  # ErrorMessage
        + cstr(MEMBER)
        + i32(1)  # MemberEpoch
        + i32(5000)  # HeartbeatIntervalMs
        + b"\x01"  # Assignment present
        + carr(1)
        + T1.bytes
        + carr(3)
        + i32(0)
        + i32(1)
        + i32(2)
        + NO_TAGS  # TopicPartitions
        + NO_TAGS  # Assignment
        + NO_TAGS
    )
    assert full[:4] == bytes.fromhex("0000004d")
    msg = ShareGroupHeartbeatResponse(
        version=1,
        throttle_time_ms=0,
        error_code=0,
        error_message=None,
        member_id=MEMBER,
        member_epoch=1,
        heartbeat_interval_ms=5000,
        assignment=HbAssignment(topic_partitions=[HbTopic(topic_id=T1, partitions=[0, 1, 2])]),
    )
    msg.with_header(correlation_id=3)
    assert bytes(msg.encode(header=True, framed=True)) == full
    assert ShareGroupHeartbeatResponse.decode(full, version=1, header=True, framed=True) == msg

    # Body without an assignment: 00000000 0000 00 00 00000002 00001388 ff 00
    empty = ShareGroupHeartbeatResponse(
        version=1, member_id=None, member_epoch=2, heartbeat_interval_ms=5000, assignment=None
    )
    assert body(empty) == bytes.fromhex("00000000 0000 00 00 00000002 00001388 ff 00")


def test_share_group_describe_v1_layout() -> None:
    req = ShareGroupDescribeRequest(
        version=1, group_ids=["g1", "g2"], include_authorized_operations=True
    )
    assert body(req) == carr(2) + cstr("g1") + cstr("g2") + TRUE + NO_TAGS

    resp = ShareGroupDescribeResponse(
        version=1,
        throttle_time_ms=7,
        groups=[
            DescGroup(
                error_code=0,
                error_message=None,
                group_id="g1",
                group_state="Stable",
                group_epoch=4,
                assignment_epoch=3,
                assignor_name="simple",
                members=[
                    DescMember(
                        member_id="m1",
                        rack_id=None,
                        member_epoch=3,
                        client_id="cid",
                        client_host="/10.0.0.1",
                        subscribed_topic_names=["t1"],
                        assignment=DescMember.Assignment(
                            topic_partitions=[
                                DescTopic(topic_id=T1, topic_name="t1", partitions=[1])
                            ]
                        ),
                    )
                ],
            )
        ],
    )
    member = (
        cstr("m1")
        + cstr(None)  # RackId
        + i32(3)
        + cstr("cid")
        + cstr("/10.0.0.1")
        + carr(1)
        + cstr("t1")
        # Assignment: a non-nullable struct, so no presence byte
        + carr(1)
        + T1.bytes
        + cstr("t1")
        + carr(1)
        + i32(1)
        + NO_TAGS
        + NO_TAGS
        + NO_TAGS
    )
    group = (
        i16(0)
        + cstr(None)
        + cstr("g1")
        + cstr("Stable")
        + i32(4)
        + i32(3)
        + cstr("simple")
        + carr(1)
        + member
        + i32(-(2**31))  # AuthorizedOperations: default INT32_MIN (not requested)
        + NO_TAGS
    )
    assert body(resp) == i32(7) + carr(1) + group + NO_TAGS


SHARE_FETCH_V1_ACK_FRAME = framed(
    request_header_v2(78, 1, 9, "rdkafka")
    + cstr("share-g1")
    + cstr(MEMBER)
    + i32(1)  # ShareSessionEpoch
    + i32(500)  # MaxWaitMs
    + i32(1)  # MinBytes
    + i32(52428800)  # MaxBytes
    + i32(500)  # MaxRecords
    + i32(500)  # BatchSize
    + carr(1)
    + T1.bytes
    + carr(2)
    + i32(0)
    + carr(1)
    + i64(0)
    + i64(9)
    + carr(1)
    + i8(1)  # [[0, 9, [ACCEPT]]]
    + NO_TAGS
    + NO_TAGS  # partition 0
    + i32(1)
    + carr(0)
    + NO_TAGS  # partition 1, no acks
    + NO_TAGS  # topic
    + carr(0)  # ForgottenTopicsData
    + NO_TAGS
)


def share_fetch_v1_ack() -> ShareFetchRequest:
    # librdkafka's second ShareFetch: implicit acks piggy-backed.
    return ShareFetchRequest(
        version=1,
        group_id="share-g1",
        member_id=MEMBER,
        share_session_epoch=1,
        max_wait_ms=500,
        min_bytes=1,
        max_bytes=52428800,
        max_records=500,
        batch_size=500,
        topics=[
            FetchTopic(
                topic_id=T1,
                partitions=[
                    FetchPartition(
                        partition_index=0,
                        acknowledgement_batches=[
                            FetchAck(first_offset=0, last_offset=9, acknowledge_types=[1])
                        ],
                    ),
                    FetchPartition(partition_index=1, acknowledgement_batches=[]),
                ],
            )
        ],
        forgotten_topics_data=[],
    )


def test_share_fetch_request_v1_layout() -> None:
    msg = share_fetch_v1_ack()
    msg.with_header(correlation_id=9, client_id="rdkafka")
    assert bytes(msg.encode(header=True, framed=True)) == SHARE_FETCH_V1_ACK_FRAME
    back = ShareFetchRequest.decode(SHARE_FETCH_V1_ACK_FRAME, version=1, header=True, framed=True)
    assert back == msg
    assert back.topics[0].partitions[0].acknowledgement_batches[0].acknowledge_types == [1]


def test_share_fetch_request_v2_puts_acquire_mode_and_renew_after_batch_size() -> None:
    def msg(version: int) -> ShareFetchRequest:
        return ShareFetchRequest(
            version=version,
            group_id=None,
            member_id="m",
            share_session_epoch=-1,
            max_wait_ms=0,
            min_bytes=0,
            max_bytes=0,
            max_records=0,
            batch_size=10,
            share_acquire_mode=1,  # v2+ only: not written in v1
            is_renew_ack=True,  # v2+ only
            topics=[],
            forgotten_topics_data=[Forgotten(topic_id=T2, partitions=[3, 4])],
        )

    def encoded(v2_fields: bytes) -> bytes:
        return (
            cstr(None)  # GroupId
            + cstr("m")
            + i32(-1)  # ShareSessionEpoch
            + i32(0)  # MaxWaitMs
            + i32(0)  # MinBytes
            + i32(0)  # MaxBytes
            + i32(0)  # MaxRecords
            + i32(10)  # BatchSize
            + v2_fields
            + carr(0)  # Topics
            + carr(1)
            + T2.bytes
            + carr(2)
            + i32(3)
            + i32(4)
            + NO_TAGS  # ForgottenTopicsData
            + NO_TAGS
        )

    assert body(msg(2)) == encoded(i8(1) + TRUE)  # ShareAcquireMode, IsRenewAck
    assert body(msg(1)) == encoded(b"")


RECORDS = bytes(range(61))  # opaque here: the proxy passes record batches through untouched


def share_fetch_response_v1() -> ShareFetchResponse:
    return ShareFetchResponse(
        version=1,
        throttle_time_ms=0,
        error_code=0,
        error_message=None,
        acquisition_lock_timeout_ms=30000,
        responses=[
            FetchedTopic(
                topic_id=T1,
                partitions=[
                    FetchedPartition(
                        partition_index=0,
                        error_code=0,
                        error_message=None,
                        acknowledge_error_code=0,
                        acknowledge_error_message=None,
                        current_leader=FetchedLeader(leader_id=-1, leader_epoch=-1),
                        records=RECORDS,
                        acquired_records=[
                            Acquired(first_offset=0, last_offset=9, delivery_count=1)
                        ],
                    ),
                    FetchedPartition(
                        partition_index=1,
                        error_code=6,
                        error_message="not leader",
                        acknowledge_error_code=6,
                        acknowledge_error_message="ack failed",
                        current_leader=FetchedLeader(leader_id=2, leader_epoch=5),
                        acquired_records=[],
                    ),
                ],
            )
        ],
        node_endpoints=[FetchNode(node_id=2, host="broker-2", port=9093, rack=None)],
    )


SHARE_FETCH_RESPONSE_V1 = framed(
    response_header_v1(11)
    + i32(0)  # ThrottleTimeMs
    + i16(0)  # ErrorCode
    + cstr(None)  # ErrorMessage
    + i32(30000)  # AcquisitionLockTimeoutMs
    + carr(1)
    + T1.bytes
    + carr(2)
    # partition 0
    + i32(0)
    + i16(0)
    + cstr(None)
    + i16(0)
    + cstr(None)
    + i32(-1)
    + i32(-1)
    + NO_TAGS  # CurrentLeader
    + cbytes(RECORDS)
    + carr(1)
    + i64(0)
    + i64(9)
    + i16(1)
    + NO_TAGS  # AcquiredRecords
    + NO_TAGS
    # partition 1: an error, and empty (not null) records
    + i32(1)
    + i16(6)
    + cstr("not leader")
    + i16(6)
    + cstr("ack failed")
    + i32(2)
    + i32(5)
    + NO_TAGS
    + b"\x01"  # Records: empty COMPACT_RECORDS (length+1 = 1); null (0x00) breaks librdkafka
    + carr(0)
    + NO_TAGS
    + NO_TAGS  # topic
    + carr(1)
    + i32(2)
    + cstr("broker-2")
    + i32(9093)
    + cstr(None)
    + NO_TAGS  # NodeEndpoints
    + NO_TAGS
)


def test_share_fetch_response_v1_layout() -> None:
    msg = share_fetch_response_v1()
    msg.with_header(correlation_id=11)
    assert bytes(msg.encode(header=True, framed=True)) == SHARE_FETCH_RESPONSE_V1
    back = ShareFetchResponse.decode(SHARE_FETCH_RESPONSE_V1, version=1, header=True, framed=True)
    assert back == msg
    assert back.header.correlation_id == 11
    assert back.responses[0].partitions[0].records == RECORDS
    assert back.responses[0].partitions[1].records == b""


def test_empty_records_are_empty_compact_bytes_never_null() -> None:
    leader = FetchedLeader(leader_id=-1, leader_epoch=-1)
    defaulted = FetchedPartition(partition_index=0, current_leader=leader)
    explicit = FetchedPartition(partition_index=0, current_leader=leader, records=b"")

    def only(partition: ShareFetchResponse.ShareFetchableTopicResponse.PartitionData) -> bytes:
        topic = FetchedTopic(topic_id=T1, partitions=[partition])
        return body(ShareFetchResponse(version=1, responses=[topic]))

    expected = (
        i32(0)
        + i16(0)
        + cstr(None)
        + i32(0)
        + carr(1)
        + T1.bytes
        + carr(1)
        + i32(0)
        + i16(0)
        + cstr(None)
        + i16(0)
        + cstr(None)
        + i32(-1)
        + i32(-1)
        + NO_TAGS
        + b"\x01"  # Records: length varint 1 = empty, never 0 (null)
        + carr(0)
        + NO_TAGS
        + NO_TAGS
        + carr(0)
        + NO_TAGS
    )
    assert only(defaulted) == expected  # the schema default is b"", not None
    assert only(explicit) == expected
    decoded = ShareFetchResponse.decode(expected, version=1)
    assert decoded.responses[0].partitions[0].records == b""


def test_share_acknowledge_v2_layout() -> None:
    req = ShareAcknowledgeRequest(
        version=2,
        group_id="g",
        member_id="m",
        share_session_epoch=4,
        is_renew_ack=True,
        topics=[
            AckTopic(
                topic_id=T1,
                partitions=[
                    AckPartition(
                        partition_index=2,
                        acknowledgement_batches=[
                            AckBatch(first_offset=5, last_offset=7, acknowledge_types=[4, 0, 1])
                        ],
                    )
                ],
            )
        ],
    )
    ack_topic = (
        T1.bytes
        + carr(1)
        + i32(2)
        + carr(1)
        + i64(5)
        + i64(7)
        + carr(3)
        + i8(4)
        + i8(0)
        + i8(1)
        + NO_TAGS
        + NO_TAGS
        + NO_TAGS
    )
    assert body(req) == cstr("g") + cstr("m") + i32(4) + TRUE + carr(1) + ack_topic + NO_TAGS
    req.API_VERSION = 1  # v1 has no IsRenewAck
    assert body(req) == cstr("g") + cstr("m") + i32(4) + carr(1) + ack_topic + NO_TAGS

    resp = ShareAcknowledgeResponse(
        version=2,
        error_message=None,
        acquisition_lock_timeout_ms=15000,
        responses=[
            AckedTopic(
                topic_id=T2,
                partitions=[
                    AckedPartition(
                        partition_index=0,
                        error_code=87,
                        error_message="bad ack",
                        current_leader=AckedLeader(leader_id=1, leader_epoch=9),
                    )
                ],
            )
        ],
        node_endpoints=[AckNode(node_id=1, host="h", port=1, rack="r1")],
    )
    acked = (
        carr(1)
        + T2.bytes
        + carr(1)
        + i32(0)
        + i16(87)
        + cstr("bad ack")
        + i32(1)
        + i32(9)
        + NO_TAGS
        + NO_TAGS
        + NO_TAGS
        + carr(1)
        + i32(1)
        + cstr("h")
        + i32(1)
        + cstr("r1")
        + NO_TAGS
        + NO_TAGS
    )
    assert body(resp) == i32(0) + i16(0) + cstr(None) + i32(15000) + acked
    resp.API_VERSION = 1  # v1 has no AcquisitionLockTimeoutMs
    assert body(resp) == i32(0) + i16(0) + cstr(None) + acked


def test_describe_share_group_offsets_layout() -> None:
    req = DescribeShareGroupOffsetsRequest(
        version=1,
        groups=[
            DsoGroup(group_id="g1", topics=None),
            DsoGroup(group_id="g2", topics=[DsoTopic(topic_name="t", partitions=[0, 2])]),
        ],
    )
    assert body(req) == (
        carr(2)
        + cstr("g1")
        + carr(None)  # Topics null = all initialized partitions
        + NO_TAGS
        + cstr("g2")
        + carr(1)
        + cstr("t")
        + carr(2)
        + i32(0)
        + i32(2)
        + NO_TAGS
        + NO_TAGS
        + NO_TAGS
    )

    resp = DescribeShareGroupOffsetsResponse(
        version=1,
        throttle_time_ms=0,
        groups=[
            DsoRespGroup(
                group_id="g1",
                topics=[
                    DsoRespTopic(
                        topic_name="t",
                        topic_id=T1,
                        partitions=[
                            DsoRespPartition(
                                partition_index=0,
                                start_offset=100,
                                leader_epoch=3,
                                lag=25,
                                error_code=0,
                                error_message=None,
                            )
                        ],
                    )
                ],
                error_code=0,
                error_message="group note",
            )
        ],
    )

    def encoded(lag: bytes) -> bytes:
        partition = i32(0) + i64(100) + i32(3) + lag + i16(0) + cstr(None) + NO_TAGS
        topic = cstr("t") + T1.bytes + carr(1) + partition + NO_TAGS
        group = cstr("g1") + carr(1) + topic + i16(0) + cstr("group note") + NO_TAGS
        return i32(0) + carr(1) + group + NO_TAGS

    assert body(resp) == encoded(lag=i64(25))  # v1: Lag between LeaderEpoch and ErrorCode
    resp.API_VERSION = 0
    assert body(resp) == encoded(lag=b"")


def test_alter_and_delete_share_group_offsets_v0_layout() -> None:
    alter = AlterShareGroupOffsetsRequest(
        version=0,
        group_id="g",
        topics=[
            AlterTopic(
                topic_name="t", partitions=[AlterPartition(partition_index=1, start_offset=-1)]
            )
        ],
    )
    assert body(alter) == (
        cstr("g") + carr(1) + cstr("t") + carr(1) + i32(1) + i64(-1) + NO_TAGS + NO_TAGS + NO_TAGS
    )
    altered = AlterShareGroupOffsetsResponse(
        version=0,
        error_code=68,
        error_message="NON_EMPTY_GROUP",
        responses=[
            AlteredTopic(
                topic_name="t",
                topic_id=T1,
                partitions=[AlteredPartition(partition_index=1, error_code=3, error_message=None)],
            )
        ],
    )
    assert body(altered) == (
        i32(0)
        + i16(68)
        + cstr("NON_EMPTY_GROUP")
        + carr(1)
        + cstr("t")
        + T1.bytes
        + carr(1)
        + i32(1)
        + i16(3)
        + cstr(None)
        + NO_TAGS
        + NO_TAGS
        + NO_TAGS
    )
    delete = DeleteShareGroupOffsetsRequest(
        version=0, group_id="g", topics=[DeleteTopic(topic_name="a"), DeleteTopic(topic_name="b")]
    )
    assert body(delete) == cstr("g") + carr(2) + cstr("a") + NO_TAGS + cstr("b") + NO_TAGS + NO_TAGS
    deleted = DeleteShareGroupOffsetsResponse(
        version=0,
        responses=[DeletedTopic(topic_name="a", topic_id=None, error_code=3, error_message="x")],
    )
    assert body(deleted) == (
        i32(0)
        + i16(0)
        + cstr(None)
        + carr(1)
        + cstr("a")
        + bytes(16)  # an unknown topic: the zero uuid
        + i16(3)
        + cstr("x")
        + NO_TAGS
        + NO_TAGS
    )


# --- kafka-python behaviours the proxy relies on ---


def test_zero_uuid_is_none_both_ways() -> None:
    msg = DeleteShareGroupOffsetsResponse(
        version=0, responses=[DeletedTopic(topic_name="a", topic_id=uuid.UUID(int=0))]
    )
    back = DeleteShareGroupOffsetsResponse.decode(msg.encode(), version=0)
    assert back.responses[0].topic_id is None
    msg.responses[0].topic_id = None
    assert body(msg) == body(back)


def test_unknown_tagged_fields_are_read_but_not_written_back() -> None:
    # header: tag 5 -> AABB; body top level: tag 7 -> "B"; first AcknowledgementBatch: tag 2 -> 00
    plain = SHARE_FETCH_V1_ACK_FRAME[4:]
    head_end = 2 + 2 + 4 + 2 + len("rdkafka")
    batch_tags = plain.index(i64(9) + carr(1) + i8(1)) + 8 + 1 + 1  # after LastOffset, types
    assert plain[batch_tags : batch_tags + 1] == NO_TAGS
    tagged = (
        plain[:head_end]
        + b"\x01\x05\x02\xaa\xbb"
        + plain[head_end + 1 : batch_tags]
        + b"\x01\x02\x01\x00"
        + plain[batch_tags + 1 : -1]
        + b"\x01\x07\x01B"
    )
    msg = ShareFetchRequest.decode(tagged, version=1, header=True)
    assert msg.header.unknown_tags == {"_5": b"\xaa\xbb"}
    assert msg.unknown_tags == {"_7": b"B"}
    assert msg.topics[0].partitions[0].acknowledgement_batches[0].unknown_tags == {"_2": b"\x00"}
    assert msg == share_fetch_v1_ack()  # unknown tags do not take part in equality
    msg.with_header(correlation_id=9, client_id="rdkafka")
    assert bytes(msg.encode(header=True, framed=True)) == SHARE_FETCH_V1_ACK_FRAME


def test_a_missing_non_nullable_struct_has_no_default() -> None:
    # CurrentLeader must always be given (the stub makes it a required keyword).
    partition = FetchedPartition(partition_index=0)  # type: ignore[call-arg]
    msg = ShareFetchResponse(
        version=1, responses=[FetchedTopic(topic_id=T1, partitions=[partition])]
    )
    with pytest.raises(NotImplementedError):
        msg.encode()


# --- named round trips: every version of every message, nullable fields null and set ---


def round_trip(msg: ShareMessage, correlation_id: int = 42, client_id: str | None = "c") -> None:
    msg.with_header(correlation_id=correlation_id, client_id=client_id)
    wire = msg.encode(header=True, framed=True)
    assert struct.unpack_from(">i", wire)[0] == len(wire) - 4
    back = type(msg).decode(wire, version=msg.version, header=True, framed=True)
    assert back == msg
    assert back.version == msg.version
    assert back.header.correlation_id == correlation_id
    if msg.is_request():
        assert back.header.request_api_key == msg.API_KEY
        assert back.header.request_api_version == msg.version
        assert back.header.client_id == client_id
    back.with_header(correlation_id=correlation_id, client_id=client_id)
    assert back.encode(header=True, framed=True) == wire


def opt(nulls: bool, value: Any) -> Any:
    return None if nulls else value


def ex_heartbeat_request(v: int, nulls: bool) -> ShareMessage:
    return ShareGroupHeartbeatRequest(
        version=v,
        group_id="g1",
        member_id=MEMBER,
        member_epoch=17,
        rack_id=opt(nulls, "rack-a"),
        subscribed_topic_names=opt(nulls, ["t1", "t2"]),
    )


def ex_heartbeat_response(v: int, nulls: bool) -> ShareMessage:
    topics = [HbTopic(topic_id=T1, partitions=[0, 1, 2]), HbTopic(topic_id=T2, partitions=[])]
    return ShareGroupHeartbeatResponse(
        version=v,
        throttle_time_ms=5,
        error_code=0 if nulls else 27,
        error_message=opt(nulls, "rebalance"),
        member_id=opt(nulls, MEMBER),
        member_epoch=-1,
        heartbeat_interval_ms=5000,
        assignment=opt(nulls, HbAssignment(topic_partitions=topics)),
    )


def ex_describe_request(v: int, nulls: bool) -> ShareMessage:
    return ShareGroupDescribeRequest(
        version=v, group_ids=["g1", "g2"], include_authorized_operations=not nulls
    )


def ex_describe_response(v: int, nulls: bool) -> ShareMessage:
    members = [
        DescMember(
            member_id=f"m{i}",
            rack_id=opt(nulls, f"rack-{i}"),
            member_epoch=10 + i,
            client_id="client",
            client_host="/127.0.0.1",
            subscribed_topic_names=["t1", "t2"],
            assignment=DescMember.Assignment(
                topic_partitions=[
                    DescTopic(topic_id=T1, topic_name="t1", partitions=[i]),
                    DescTopic(topic_id=T2, topic_name="t2", partitions=[i, i + 2]),
                ]
            ),
        )
        for i in range(2)
    ]
    return ShareGroupDescribeResponse(
        version=v,
        throttle_time_ms=1,
        groups=[
            DescGroup(
                error_code=0,
                error_message=opt(nulls, "fine"),
                group_id="g1",
                group_state="Stable",
                group_epoch=12,
                assignment_epoch=11,
                assignor_name="simple",
                members=members,
                authorized_operations=0b110 if not nulls else -(2**31),
            ),
            DescGroup(
                error_code=69,
                error_message="GROUP_ID_NOT_FOUND",
                group_id="gone",
                group_state="Dead",
                members=[],
            ),
        ],
    )


def ex_fetch_request(v: int, nulls: bool) -> ShareMessage:
    extra: dict[str, Any] = {"share_acquire_mode": 1, "is_renew_ack": True} if v >= 2 else {}
    return ShareFetchRequest(
        version=v,
        group_id=opt(nulls, "g1"),
        member_id=opt(nulls, MEMBER),
        share_session_epoch=3,
        max_wait_ms=500,
        min_bytes=1,
        max_bytes=1 << 20,
        max_records=500,
        batch_size=100,
        topics=[
            FetchTopic(
                topic_id=T1,
                partitions=[
                    FetchPartition(
                        partition_index=0,
                        acknowledgement_batches=[
                            FetchAck(first_offset=0, last_offset=3, acknowledge_types=[1]),
                            FetchAck(first_offset=4, last_offset=6, acknowledge_types=[2, 0, 3]),
                        ],
                    ),
                    FetchPartition(partition_index=5, acknowledgement_batches=[]),
                ],
            ),
            FetchTopic(topic_id=T2, partitions=[]),
        ],
        forgotten_topics_data=[Forgotten(topic_id=T2, partitions=[7, 8])],
        **extra,
    )


def ex_fetch_response(v: int, nulls: bool) -> ShareMessage:
    return ShareFetchResponse(
        version=v,
        throttle_time_ms=0,
        error_code=0,
        error_message=opt(nulls, "partial"),
        acquisition_lock_timeout_ms=30000,
        responses=[
            FetchedTopic(
                topic_id=T1,
                partitions=[
                    FetchedPartition(
                        partition_index=p,
                        error_code=0,
                        error_message=opt(nulls, "e"),
                        acknowledge_error_code=0,
                        acknowledge_error_message=opt(nulls, "a"),
                        current_leader=FetchedLeader(leader_id=p, leader_epoch=7),
                        records=RECORDS[: 10 * p],
                        acquired_records=[
                            Acquired(
                                first_offset=10 * q, last_offset=10 * q + 9, delivery_count=q + 1
                            )
                            for q in range(p)
                        ],
                    )
                    for p in range(3)
                ],
            )
        ],
        node_endpoints=[
            FetchNode(node_id=1, host="h1", port=9092, rack=opt(nulls, "r1")),
            FetchNode(node_id=2, host="h2", port=9093, rack=None),
        ],
    )


def ex_ack_request(v: int, nulls: bool) -> ShareMessage:
    extra: dict[str, Any] = {"is_renew_ack": True} if v >= 2 else {}
    return ShareAcknowledgeRequest(
        version=v,
        group_id=opt(nulls, "g1"),
        member_id=opt(nulls, MEMBER),
        share_session_epoch=-1,
        topics=[
            AckTopic(
                topic_id=T2,
                partitions=[
                    AckPartition(
                        partition_index=1,
                        acknowledgement_batches=[
                            AckBatch(
                                first_offset=0,
                                last_offset=1,
                                acknowledge_types=[4 if v >= 2 else 1],
                            )
                        ],
                    )
                ],
            )
        ],
        **extra,
    )


def ex_ack_response(v: int, nulls: bool) -> ShareMessage:
    extra: dict[str, Any] = {"acquisition_lock_timeout_ms": 20000} if v >= 2 else {}
    return ShareAcknowledgeResponse(
        version=v,
        throttle_time_ms=2,
        error_code=0,
        error_message=opt(nulls, "ok"),
        responses=[
            AckedTopic(
                topic_id=T1,
                partitions=[
                    AckedPartition(
                        partition_index=0,
                        error_code=6,
                        error_message=opt(nulls, "NOT_LEADER_OR_FOLLOWER"),
                        current_leader=AckedLeader(leader_id=3, leader_epoch=4),
                    )
                ],
            )
        ],
        node_endpoints=[AckNode(node_id=3, host="h3", port=9094, rack=opt(nulls, "r3"))],
        **extra,
    )


def ex_dso_request(v: int, nulls: bool) -> ShareMessage:
    return DescribeShareGroupOffsetsRequest(
        version=v,
        groups=[
            DsoGroup(
                group_id="g1",
                topics=opt(nulls, [DsoTopic(topic_name="t1", partitions=[0, 1])]),
            ),
            DsoGroup(group_id="g2", topics=[]),
        ],
    )


def ex_dso_response(v: int, nulls: bool) -> ShareMessage:
    extra: dict[str, Any] = {"lag": 12} if v >= 1 else {}
    return DescribeShareGroupOffsetsResponse(
        version=v,
        throttle_time_ms=0,
        groups=[
            DsoRespGroup(
                group_id="g1",
                topics=[
                    DsoRespTopic(
                        topic_name="t1",
                        topic_id=T1,
                        partitions=[
                            DsoRespPartition(
                                partition_index=0,
                                start_offset=40,
                                leader_epoch=2,
                                error_code=0,
                                error_message=opt(nulls, "note"),
                                **extra,
                            ),
                            DsoRespPartition(
                                partition_index=1, start_offset=-1, leader_epoch=-1, error_code=3
                            ),
                        ],
                    )
                ],
                error_code=0,
                error_message=opt(nulls, "group note"),
            )
        ],
    )


def ex_alter_request(v: int, nulls: bool) -> ShareMessage:
    return AlterShareGroupOffsetsRequest(
        version=v,
        group_id="g1",
        topics=[
            AlterTopic(
                topic_name="t1",
                partitions=[
                    AlterPartition(partition_index=0, start_offset=0),
                    AlterPartition(partition_index=1, start_offset=2**40),
                ],
            )
        ],
    )


def ex_alter_response(v: int, nulls: bool) -> ShareMessage:
    return AlterShareGroupOffsetsResponse(
        version=v,
        error_code=0,
        error_message=opt(nulls, "m"),
        responses=[
            AlteredTopic(
                topic_name="t1",
                topic_id=T1,
                partitions=[
                    AlteredPartition(partition_index=0, error_code=0, error_message=opt(nulls, "x"))
                ],
            )
        ],
    )


def ex_delete_request(v: int, nulls: bool) -> ShareMessage:
    return DeleteShareGroupOffsetsRequest(
        version=v,
        group_id="g1",
        topics=[DeleteTopic(topic_name="t1"), DeleteTopic(topic_name="t2")],
    )


def ex_delete_response(v: int, nulls: bool) -> ShareMessage:
    return DeleteShareGroupOffsetsResponse(
        version=v,
        error_code=0,
        error_message=opt(nulls, "m"),
        responses=[
            DeletedTopic(topic_name="t1", topic_id=T1, error_code=0, error_message=opt(nulls, "y"))
        ],
    )


EXAMPLES: dict[type[ShareMessage], Callable[[int, bool], ShareMessage]] = {
    ShareGroupHeartbeatRequest: ex_heartbeat_request,
    ShareGroupHeartbeatResponse: ex_heartbeat_response,
    ShareGroupDescribeRequest: ex_describe_request,
    ShareGroupDescribeResponse: ex_describe_response,
    ShareFetchRequest: ex_fetch_request,
    ShareFetchResponse: ex_fetch_response,
    ShareAcknowledgeRequest: ex_ack_request,
    ShareAcknowledgeResponse: ex_ack_response,
    DescribeShareGroupOffsetsRequest: ex_dso_request,
    DescribeShareGroupOffsetsResponse: ex_dso_response,
    AlterShareGroupOffsetsRequest: ex_alter_request,
    AlterShareGroupOffsetsResponse: ex_alter_response,
    DeleteShareGroupOffsetsRequest: ex_delete_request,
    DeleteShareGroupOffsetsResponse: ex_delete_response,
}

CLASSES = [*SHARE_REQUESTS.values(), *SHARE_RESPONSES.values()]
CLASS_VERSIONS = [
    (cls, v) for cls in CLASSES for v in range(cls.valid_versions[0], cls.valid_versions[1] + 1)
]


def test_every_class_has_a_named_example() -> None:
    assert set(EXAMPLES) == set(CLASSES)
    assert len(CLASS_VERSIONS) == 2 * (1 + 1 + 2 + 2 + 2 + 1 + 1)


@pytest.mark.parametrize("nulls", [True, False], ids=["nulls", "values"])
@pytest.mark.parametrize(
    ("cls", "version"), CLASS_VERSIONS, ids=[f"{c.__name__}-v{v}" for c, v in CLASS_VERSIONS]
)
def test_named_round_trip(cls: type[ShareMessage], version: int, nulls: bool) -> None:
    msg = EXAMPLES[cls](version, nulls)
    assert type(msg) is cls
    round_trip(msg, correlation_id=-(2**31) if nulls else 2**31 - 1, client_id=opt(nulls, "cli"))


# --- random round trips: every field drawn from the schema ---

_INT_BITS = {"int8": 8, "int16": 16, "int32": 32, "int64": 64}


def _simple(type_str: str) -> st.SearchStrategy[Any]:
    if type_str in _INT_BITS:
        bits = _INT_BITS[type_str]
        return st.integers(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    if type_str == "bool":
        return st.booleans()
    if type_str == "string":
        return st.text(max_size=12)
    if type_str == "uuid":  # the zero uuid decodes as None, so None stands for it
        return st.none() | st.uuids().filter(lambda u: u.int != 0)
    if type_str in ("records", "bytes"):
        return st.binary(max_size=40)
    raise AssertionError(f"no strategy for {type_str}")


def _field(field: Any, version: int) -> st.SearchStrategy[Any]:
    strategy: st.SearchStrategy[Any]
    if field.is_struct_array():
        strategy = st.lists(_struct(field.data_class, field.fields.values(), version), max_size=3)
    elif field.is_array():
        strategy = st.lists(_simple(field.array_of.type_str), max_size=4)
    elif field.is_struct():
        strategy = _struct(field.data_class, field.fields.values(), version)
    else:
        strategy = _simple(field.type_str)
    if field.nullable_for_version_q(version):
        strategy = st.none() | strategy
    return strategy


def _struct(make: Callable[..., Any], fields: Any, version: int) -> st.SearchStrategy[Any]:
    live = {f.name: _field(f, version) for f in fields if f.for_version_q(version)}
    return st.fixed_dictionaries(live).map(lambda kw: make(**kw))


def messages(cls: type[ShareMessage], version: int) -> st.SearchStrategy[ShareMessage]:
    schema = vars(cls)["_struct"]
    return _struct(functools.partial(cls, version=version), schema.fields.values(), version)


@pytest.mark.parametrize(
    ("cls", "version"), CLASS_VERSIONS, ids=[f"{c.__name__}-v{v}" for c, v in CLASS_VERSIONS]
)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_random_round_trip(cls: type[ShareMessage], version: int, data: st.DataObject) -> None:
    msg = data.draw(messages(cls, version), label="message")
    correlation_id = data.draw(st.integers(-(2**31), 2**31 - 1), label="correlation_id")
    client_id = data.draw(st.none() | st.text(max_size=8), label="client_id")
    round_trip(msg, correlation_id, client_id)
