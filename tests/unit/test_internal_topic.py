"""The state-topic guard: which requests it refuses and the answers it makes (no broker)."""

from __future__ import annotations

import uuid
from typing import Any

from proxy import wire
from proxy.internal_topic import InternalTopicGuard

STATE = "__sharegroup_state"
STATE_ID = uuid.uuid4()


def guard() -> InternalTopicGuard:
    return InternalTopicGuard(STATE, lambda: STATE_ID)


def roundtrip(msg: Any, version: int) -> tuple[bytes, Any]:
    """The request as the proxy receives it (framed) and as it decodes it."""
    msg.API_VERSION = version
    framed = wire.encode_request(msg, 9, "t")
    head = wire.peek_head(framed, 4)
    return framed, wire.decode_request(framed[4:], head)


def produce(*topics: str) -> Any:
    cls = wire.request_class(wire.PRODUCE)
    return cls(
        transactional_id=None,
        acks=-1,
        timeout_ms=1000,
        topic_data=[
            cls.TopicProduceData(
                name=t,
                partition_data=[cls.TopicProduceData.PartitionProduceData(index=0, records=b"")],
            )
            for t in topics
        ],
    )


def test_produce_to_the_state_topic_gets_17_and_others_in_it_42() -> None:
    framed, request = roundtrip(produce(STATE, "orders"), 9)
    g = guard()
    assert g.may_name(framed, wire.PRODUCE, 9)
    answer = g.refusal(wire.PRODUCE, 9, request)
    encoded = wire.encode_response(answer, 9)
    decoded = wire.decode_response(encoded[4:], wire.PRODUCE, 9)
    codes = {t.name: [p.error_code for p in t.partition_responses] for t in decoded.responses}
    assert codes == {STATE: [17], "orders": [42]}


def test_other_topics_pass() -> None:
    framed, request = roundtrip(produce("orders"), 9)
    g = guard()
    assert not g.may_name(framed, wire.PRODUCE, 9)
    assert g.refusal(wire.PRODUCE, 9, request) is None
    # A topic whose name contains the state topic's passes the precise check.
    framed, request = roundtrip(produce(STATE + "-copy"), 9)
    assert g.may_name(framed, wire.PRODUCE, 9)
    assert g.refusal(wire.PRODUCE, 9, request) is None


def test_fetch_by_name_and_by_id() -> None:
    g = guard()
    msg = wire.fetch_request(12, [(STATE, 0, 0, 1 << 20)], max_wait_ms=100, min_bytes=1)
    framed, request = roundtrip(msg, 12)
    assert g.may_name(framed, wire.FETCH, 12)
    answer = g.refusal(wire.FETCH, 12, request)
    assert [p.error_code for t in answer.responses for p in t.partitions] == [17]
    wire.encode_response(answer, 9)
    cls = wire.request_class(wire.FETCH)
    by_id = cls(
        replica_id=-1,
        max_wait_ms=100,
        min_bytes=1,
        max_bytes=1 << 20,
        isolation_level=0,
        session_id=0,
        session_epoch=-1,
        topics=[
            cls.FetchTopic(
                topic_id=STATE_ID,
                partitions=[
                    cls.FetchTopic.FetchPartition(
                        partition=0,
                        current_leader_epoch=-1,
                        fetch_offset=0,
                        last_fetched_epoch=-1,
                        log_start_offset=-1,
                        partition_max_bytes=1 << 20,
                    )
                ],
            )
        ],
        forgotten_topics_data=[],
        rack_id="",
    )
    framed, request = roundtrip(by_id, 13)
    assert g.may_name(framed, wire.FETCH, 13)
    answer = g.refusal(wire.FETCH, 13, request)
    assert [p.error_code for t in answer.responses for p in t.partitions] == [17]
    wire.encode_response(answer, 9)
