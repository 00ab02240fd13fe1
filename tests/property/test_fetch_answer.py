"""``proxy/fetch_answer.py`` writes a ShareFetch answer as kafka-python would, byte for byte.

For any answer (errors and their messages, topics, partitions, record slices of every size on
either side of the inline threshold, acquired ranges, node endpoints), at every version the
proxy answers, the joined buffers of ``encode_parts`` equal kafka-python's encoding of the same
answer with its records joined; the large slices go out as the very objects given (not
copies); and an answer the encoder does not write (version 0) still comes out as kafka-python
writes it.
"""

from __future__ import annotations

import uuid
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy import messages, wire
from proxy.fetch_answer import VERSIONS, RecordParts, encode_parts
from proxy.shares import SHARE_API_VERSIONS

Resp = messages.ShareFetchResponse
Topic = Resp.ShareFetchableTopicResponse
Part = Topic.PartitionData

int16 = st.integers(-(2**15), 2**15 - 1)
int32 = st.integers(-(2**31), 2**31 - 1)
int64 = st.integers(-(2**63), 2**63 - 1)
text = st.text(max_size=40)  # any code point: the lengths are of the UTF-8 bytes
maybe_text = st.none() | text
# Record slices: empty, below and above the size copied inline, as views of a larger buffer
# (the read-ahead's slices are views of an upstream Fetch answer).
slice_ = (st.binary(max_size=100) | st.binary(min_size=500, max_size=2000)).map(
    lambda b: memoryview(b"<<" + b + b">>")[2:-2]
)

partition = st.fixed_dictionaries(
    {
        "partition_index": int32,
        "error_code": int16,
        "error_message": maybe_text,
        "acknowledge_error_code": int16,
        "acknowledge_error_message": maybe_text,
        "leader": st.tuples(int32, int32),
        "records": st.lists(slice_, max_size=6),
        "ranges": st.lists(st.tuples(int64, int64, int16), max_size=4),
    }
)
answer = st.fixed_dictionaries(
    {
        "throttle_time_ms": int32,
        "error_code": int16,
        "error_message": maybe_text,
        "acquisition_lock_timeout_ms": int32,
        "topics": st.lists(st.tuples(st.uuids(), st.lists(partition, max_size=4)), max_size=3),
        "endpoints": st.lists(st.tuples(int32, text, int32, maybe_text), max_size=2),
    }
)


def _response(a: dict[str, Any], version: int, *, parts: bool) -> Any:
    def records(slices: list[memoryview]) -> Any:
        return RecordParts(slices) if parts else b"".join(slices)

    return Resp(
        version=version,
        throttle_time_ms=a["throttle_time_ms"],
        error_code=a["error_code"],
        error_message=a["error_message"],
        acquisition_lock_timeout_ms=a["acquisition_lock_timeout_ms"],
        responses=[
            Topic(
                topic_id=topic_id,
                partitions=[
                    Part(
                        partition_index=p["partition_index"],
                        error_code=p["error_code"],
                        error_message=p["error_message"],
                        acknowledge_error_code=p["acknowledge_error_code"],
                        acknowledge_error_message=p["acknowledge_error_message"],
                        current_leader=Part.LeaderIdAndEpoch(
                            leader_id=p["leader"][0], leader_epoch=p["leader"][1]
                        ),
                        records=records(p["records"]),
                        acquired_records=[
                            Part.AcquiredRecords(
                                first_offset=first, last_offset=last, delivery_count=count
                            )
                            for first, last, count in p["ranges"]
                        ],
                    )
                    for p in partitions
                ],
            )
            for topic_id, partitions in a["topics"]
        ],
        node_endpoints=[
            Resp.NodeEndpoint(node_id=node, host=host, port=port, rack=rack)
            for node, host, port, rack in a["endpoints"]
        ],
    )


def test_the_versions_written_are_those_the_proxy_answers() -> None:
    low, high = SHARE_API_VERSIONS[78]
    assert set(range(low, high + 1)) == VERSIONS


@settings(max_examples=300, deadline=None)
@given(answer, st.sampled_from(sorted(VERSIONS)), int32)
def test_parts_join_to_kafka_pythons_encoding(a: dict[str, Any], version: int, cid: int) -> None:
    expected = bytes(wire.encode_response(_response(a, version, parts=False), cid))
    got = encode_parts(_response(a, version, parts=True), cid)
    assert b"".join(got) == expected
    # Written here, not by kafka-python: the slices that are not copied inline are the very
    # objects the answer held, in order, and nothing else is a view.
    large = [s for _t, ps in a["topics"] for p in ps for s in p["records"] if len(s) >= 512]
    assert [id(p) for p in got if isinstance(p, memoryview)] == [id(s) for s in large]
    assert all(len(p) for p in got)


@settings(max_examples=50, deadline=None)
@given(answer, int32)
def test_a_version_not_written_here_goes_to_kafka_python(a: dict[str, Any], cid: int) -> None:
    expected = bytes(wire.encode_response(_response(a, 0, parts=False), cid))
    got = encode_parts(_response(a, 0, parts=True), cid)
    assert len(got) == 1 and bytes(got[0]) == expected


def test_an_answer_of_other_records_types_is_written_too() -> None:
    """Plain bytes in the records field (the answers authz builds) are written inline."""
    topic = uuid.uuid4()
    a: dict[str, Any] = {
        "throttle_time_ms": 0,
        "error_code": 0,
        "error_message": None,
        "acquisition_lock_timeout_ms": 30000,
        "topics": [],
        "endpoints": [],
    }
    resp = _response(a, 2, parts=False)
    resp.responses = [
        Topic(
            topic_id=topic,
            partitions=[
                Part(
                    partition_index=0,
                    error_code=29,
                    error_message="not authorized to read the topic",
                    acknowledge_error_code=0,
                    acknowledge_error_message=None,
                    current_leader=Part.LeaderIdAndEpoch(leader_id=-1, leader_epoch=-1),
                    records=b"",
                    acquired_records=[],
                )
            ],
        )
    ]
    expected = bytes(wire.encode_response(resp, 7))
    got = encode_parts(resp, 7)
    assert len(got) == 1 and bytes(got[0]) == expected
