"""The state topic (``sharegroup.state.topic``) belongs to the proxy alone.

Relayed client requests that would write, read, delete the records of, or delete the state
topic (Produce, Fetch, DeleteRecords, DeleteTopics) are answered by the proxy with Kafka's error
for an internal topic, INVALID_TOPIC_EXCEPTION (17, as a broker answers a Produce to
``__consumer_offsets``), whatever the upstream ACLs would allow: a client that could write
there could forge acknowledgements, one that could read there could learn other groups' state.
A request that names other topics too is refused whole (those get INVALID_REQUEST and a message
saying why), since the proxy relays requests byte for byte and does not split them.

The check costs a substring search of the request for the topic's name (or its id, for
versions that name topics by id); only a request that contains it is decoded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

from proxy import wire

INVALID_TOPIC_EXCEPTION = 17
INVALID_REQUEST = 42
DELETE_TOPICS = 20
GUARDED = {wire.PRODUCE, wire.FETCH, wire.DELETE_RECORDS, DELETE_TOPICS}


class InternalTopicGuard:
    def __init__(self, name: str, topic_id: Callable[[], UUID | None]) -> None:
        self.name = name
        self._name_bytes = name.encode()
        self._topic_id = topic_id

    def may_name(self, framed: bytes | bytearray, api_key: int, version: int) -> bool:
        """Cheap: could the request name the topic? By name, or by id in the versions that
        name topics by id (Fetch 13+, DeleteTopics 6+; Produce is relayed at 9 at most)."""
        if self._name_bytes in framed:
            return True
        by_id = (api_key == wire.FETCH and version >= 13) or (
            api_key == DELETE_TOPICS and version >= 6
        )
        if not by_id:
            return False
        topic_id = self._topic_id()
        return topic_id is not None and topic_id.bytes in framed

    def _is_ours(self, name: str | None, topic_id: UUID | None) -> bool:
        if name:
            return name == self.name
        return topic_id is not None and topic_id == self._topic_id()

    def refusal(self, api_key: int, version: int, request: Any) -> Any:
        """The answer refusing ``request``, or None when it does not name the topic."""
        if api_key == wire.PRODUCE:
            return self._produce(version, request)
        if api_key == wire.FETCH:
            return self._fetch(version, request)
        if api_key == wire.DELETE_RECORDS:
            return self._delete_records(version, request)
        if api_key == DELETE_TOPICS:
            return self._delete_topics(version, request)
        return None

    def _codes(self, names: list[tuple[str | None, UUID | None]]) -> list[int] | None:
        ours = [self._is_ours(n, i) for n, i in names]
        if not any(ours):
            return None
        return [INVALID_TOPIC_EXCEPTION if o else INVALID_REQUEST for o in ours]

    def _message(self, code: int) -> str:
        if code == INVALID_TOPIC_EXCEPTION:
            return f"{self.name} is internal to the share-group proxy"
        return f"the request also names {self.name}, which is internal to the proxy"

    def _produce(self, version: int, request: Any) -> Any:
        topics = request.topic_data
        codes = self._codes([(t.name, getattr(t, "topic_id", None)) for t in topics])
        if codes is None:
            return None
        cls = wire.response_class(wire.PRODUCE)
        topic_cls = cls.TopicProduceResponse
        part_cls = topic_cls.PartitionProduceResponse
        return cls(
            version=version,
            throttle_time_ms=0,
            responses=[
                topic_cls(
                    name=t.name,
                    partition_responses=[
                        part_cls(
                            index=p.index,
                            error_code=code,
                            base_offset=-1,
                            log_append_time_ms=-1,
                            log_start_offset=-1,
                            record_errors=[],
                            error_message=self._message(code),
                        )
                        for p in t.partition_data
                    ],
                )
                for t, code in zip(topics, codes, strict=True)
            ],
        )

    def _fetch(self, version: int, request: Any) -> Any:
        topics = request.topics
        codes = self._codes(
            [(getattr(t, "topic", None), getattr(t, "topic_id", None)) for t in topics]
        )
        if codes is None:
            return None
        cls = wire.response_class(wire.FETCH)
        topic_cls = cls.FetchableTopicResponse
        part_cls = topic_cls.PartitionData
        responses = []
        for t, code in zip(topics, codes, strict=True):
            fields: dict[str, Any] = {
                "partitions": [
                    part_cls(
                        partition_index=p.partition,
                        error_code=code,
                        high_watermark=-1,
                        last_stable_offset=-1,
                        log_start_offset=-1,
                        aborted_transactions=None,
                        preferred_read_replica=-1,
                        records=b"",
                    )
                    for p in t.partitions
                ]
            }
            if version >= 13:
                fields["topic_id"] = t.topic_id
            else:
                fields["topic"] = t.topic
            responses.append(topic_cls(**fields))
        return cls(
            version=version,
            throttle_time_ms=0,
            error_code=0,
            session_id=0,
            responses=responses,
        )

    def _delete_records(self, version: int, request: Any) -> Any:
        topics = request.topics
        codes = self._codes([(t.name, None) for t in topics])
        if codes is None:
            return None
        cls = wire.response_class(wire.DELETE_RECORDS)
        topic_cls = cls.DeleteRecordsTopicResult
        part_cls = topic_cls.DeleteRecordsPartitionResult
        return cls(
            version=version,
            throttle_time_ms=0,
            topics=[
                topic_cls(
                    name=t.name,
                    partitions=[
                        part_cls(partition_index=p.partition_index, low_watermark=-1, error_code=c)
                        for p in t.partitions
                    ],
                )
                for t, c in zip(topics, codes, strict=True)
            ],
        )

    def _delete_topics(self, version: int, request: Any) -> Any:
        if version >= 6:
            named = [(t.name, t.topic_id) for t in request.topics]
        else:
            named = [(n, None) for n in request.topic_names]
        codes = self._codes(named)
        if codes is None:
            return None
        cls = wire.response_class(DELETE_TOPICS)
        result_cls = cls.DeletableTopicResult
        results = []
        for (name, topic_id), code in zip(named, codes, strict=True):
            fields: dict[str, Any] = {"name": name, "error_code": code}
            if version >= 5:
                fields["error_message"] = self._message(code)
            if version >= 6:
                fields["topic_id"] = topic_id
            results.append(result_cls(**fields))
        return cls(version=version, throttle_time_ms=0, responses=results)
