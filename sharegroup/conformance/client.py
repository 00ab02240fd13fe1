"""A blocking Kafka protocol client for conformance testing, on the project's codecs.

One ``Connection`` is one TCP connection to one broker (or proxy port), one request at a time,
with exact control of every field: member ids, share-session epochs, acknowledgement ranges and
types are whatever the caller passes, nothing is filled in or corrected. Closing a connection
is how a test "drops" a share session (Kafka evicts the sessions a connection created).

Helpers for the setup a conformance run needs: metadata with topic ids, topic creation,
producing record batches with a known layout (one Produce request per batch, so the log holds
exactly those batches), reading the log's batch layout back with a plain Fetch, group configs
(IncrementalAlterConfigs on a GROUP resource) and share-group start offsets
(DescribeShareGroupOffsets).
"""

from __future__ import annotations

import contextlib
import socket
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kafka.record.memory_records import MemoryRecords, MemoryRecordsBuilder

from proxy import messages, wire
from proxy.framing import FrameBuffer

CLIENT_ID = "sharegroup-conformance"
GROUP_RESOURCE = 32
SHARE_FETCH = 78
SHARE_ACKNOWLEDGE = 79
SHARE_GROUP_HEARTBEAT = 76
SHARE_GROUP_DESCRIBE = 77
DESCRIBE_SHARE_GROUP_OFFSETS = 90
CREATE_TOPICS = 19
DELETE_RECORDS = 21

_RecordsBuilder: Any = MemoryRecordsBuilder  # kafka-python's record classes are untyped
_Records: Any = MemoryRecords

for _key, _req in messages.SHARE_REQUESTS.items():
    wire.register(_req, messages.SHARE_RESPONSES[_key])


class ClientError(Exception):
    """The target did something a protocol client cannot go on from (closed, bad frame)."""


@dataclass(frozen=True, slots=True)
class Broker:
    node_id: int
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class TopicMeta:
    name: str
    topic_id: uuid.UUID
    leaders: dict[int, int]  # partition -> leader node id


@dataclass(frozen=True, slots=True)
class LogBatchInfo:
    """One record batch of the log: its offsets, and the offsets that hold records."""

    first_offset: int
    last_offset: int
    control: bool
    record_offsets: tuple[int, ...]


def parse_host_port(text: str) -> tuple[str, int]:
    first = text.split(",")[0].strip()
    host, sep, port = first.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


class Connection:
    """A blocking, one-request-at-a-time Kafka protocol connection."""

    def __init__(self, host: str, port: int, *, timeout_s: float = 30.0) -> None:
        self.host = host
        self.port = port
        self.timeout_s = timeout_s
        try:
            self.sock: socket.socket | None = socket.create_connection(
                (host, port), timeout=timeout_s
            )
        except OSError as e:
            raise ClientError(f"cannot connect to {host}:{port}: {e}") from e
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buf = FrameBuffer()
        self._cid = 0
        self._versions: dict[int, tuple[int, int]] | None = None

    @property
    def closed(self) -> bool:
        return self.sock is None

    def request(self, msg: Any, version: int, *, timeout_s: float | None = None) -> Any:
        """Send ``msg`` as ``version`` and return the decoded response."""
        sock = self.sock
        if sock is None:
            raise ClientError("connection closed")
        self._cid += 1
        msg.API_VERSION = version
        sock.settimeout(timeout_s or self.timeout_s)
        try:
            sock.sendall(wire.encode_request(msg, self._cid, CLIENT_ID))
            while (payload := self._buf.next_frame()) is None:
                chunk = sock.recv(1 << 16)
                if not chunk:
                    raise ClientError(
                        f"{self.host}:{self.port} closed the connection "
                        f"(request {type(msg).__name__} v{version})"
                    )
                self._buf.feed(chunk)
        except OSError as e:
            self.close()
            raise ClientError(f"{self.host}:{self.port}: {type(e).__name__}: {e}") from e
        except ClientError:
            self.close()
            raise
        return wire.decode_response(payload, msg.API_KEY, version)

    def versions(self) -> dict[int, tuple[int, int]]:
        """The target's ApiVersions table (asked once per connection)."""
        if self._versions is None:
            resp = self.request(wire.api_versions_request(3), 3)
            if resp.error_code:
                raise ClientError(f"ApiVersions: error {resp.error_code}")
            self._versions = {
                int(k.api_key): (int(k.min_version), int(k.max_version)) for k in resp.api_keys
            }
        return self._versions

    def version_for(self, api_key: int, want: int) -> int:
        """The highest version <= ``want`` that both sides speak."""
        low, high = self.versions().get(api_key, (-1, -1))
        ours = wire.max_version(api_key)
        top = min(want, high, ours if ours is not None else want)
        if top < low or high < 0:
            raise ClientError(f"the target does not speak API {api_key} (versions {low}-{high})")
        return top

    def reopen(self) -> None:
        """Connect again (after the target closed this connection)."""
        self.close()
        fresh = Connection(self.host, self.port, timeout_s=self.timeout_s)
        self.sock, fresh.sock = fresh.sock, None
        self._buf, self._cid, self._versions = FrameBuffer(), 0, None

    def close(self, *, abort: bool = False) -> None:
        """Close; ``abort`` sends a TCP reset instead of a FIN (a crashed client)."""
        sock, self.sock = self.sock, None
        if sock is None:
            return
        if abort:
            with contextlib.suppress(OSError):
                sock.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
        sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------- cluster helpers


def metadata(
    conn: Connection, topics: Sequence[str] | None
) -> tuple[dict[int, Broker], dict[str, TopicMeta]]:
    """Brokers and topics (with topic ids; Metadata v10+)."""
    version = conn.version_for(wire.METADATA, 12)
    if version < 10:
        raise ClientError("the target's Metadata has no topic ids (v10+ needed)")
    resp = conn.request(wire.metadata_request(version, topics), version)
    brokers = {int(b.node_id): Broker(int(b.node_id), b.host, int(b.port)) for b in resp.brokers}
    out: dict[str, TopicMeta] = {}
    for t in resp.topics:
        if t.error_code or t.topic_id is None:
            continue
        out[t.name] = TopicMeta(
            t.name, t.topic_id, {int(p.partition_index): int(p.leader_id) for p in t.partitions}
        )
    return brokers, out


def wait_for_topic(
    conn: Connection, name: str, partitions: int, timeout_s: float = 30.0
) -> tuple[dict[int, Broker], TopicMeta]:
    deadline = time.monotonic() + timeout_s
    while True:
        brokers, topics = metadata(conn, [name])
        meta = topics.get(name)
        if (
            meta is not None
            and len(meta.leaders) == partitions
            and all(leader >= 0 and leader in brokers for leader in meta.leaders.values())
        ):
            return brokers, meta
        if time.monotonic() > deadline:
            raise ClientError(f"topic {name} has no leaders after {timeout_s} s")
        time.sleep(0.1)


def create_topic(
    conn: Connection, name: str, partitions: int, configs: Mapping[str, str] | None = None
) -> None:
    code, message = try_create_topic(conn, name, partitions, configs)
    if code not in (0, 36):  # 36 TOPIC_ALREADY_EXISTS
        raise ClientError(f"CreateTopics {name}: error {code} {message}")


def try_create_topic(
    conn: Connection, name: str, partitions: int, configs: Mapping[str, str] | None = None
) -> tuple[int, str | None]:
    """CreateTopics of one topic with topic ``configs``: (error code, error message)."""
    version = conn.version_for(CREATE_TOPICS, 5)
    cls = wire.request_class(CREATE_TOPICS)
    topic = cls.CreatableTopic(
        name=name,
        num_partitions=partitions,
        replication_factor=-1,
        assignments=[],
        configs=[
            cls.CreatableTopic.CreatableTopicConfig(name=k, value=v)
            for k, v in (configs or {}).items()
        ],
    )
    resp = conn.request(
        cls(version=version, topics=[topic], timeout_ms=30000, validate_only=False), version
    )
    t = resp.topics[0]
    return int(t.error_code), t.error_message


def finalized_features(conn: Connection) -> dict[str, int]:
    """The target's finalized feature levels (ApiVersions v3): name -> max version level."""
    resp = conn.request(wire.api_versions_request(3), 3)
    if resp.error_code:
        raise ClientError(f"ApiVersions: error {resp.error_code}")
    return {f.name: int(f.max_version_level) for f in resp.finalized_features or ()}


# The header every record the kit produces carries (a DLQ record must not copy it).
SOURCE_HEADER = ("conformance-source", b"1")


def record_key(index: int, tag: str = "r") -> bytes:
    return f"{tag}-key-{index}".encode()


def record_value(index: int, tag: str = "r") -> bytes:
    return f"{tag}-{index}".encode()


def record_batch(count: int, *, tag: str = "r") -> bytes:
    """One v2 record batch of ``count`` small records: the ``index``-th has key
    ``record_key(index)``, value ``record_value(index)`` and the header ``SOURCE_HEADER``."""
    builder: Any = _RecordsBuilder(magic=2, compression_type=0, batch_size=1 << 20)
    now = int(time.time() * 1000)
    for i in range(count):
        if builder.append(now, record_key(i, tag), record_value(i, tag), [SOURCE_HEADER]) is None:
            raise ClientError("record batch builder is full")
    builder.close()
    return bytes(builder.buffer())


# UNKNOWN_TOPIC_OR_PARTITION, LEADER_NOT_AVAILABLE, NOT_LEADER_OR_FOLLOWER, NOT_ENOUGH_REPLICAS
RETRIABLE_PRODUCE = {3, 5, 6, 19}


def produce(conn: Connection, topic: str, partition: int, count: int) -> int:
    """Append one record batch of ``count`` records; returns its base offset."""
    version = conn.version_for(wire.PRODUCE, 9)
    cls = wire.request_class(wire.PRODUCE)
    data = cls.TopicProduceData(
        name=topic,
        partition_data=[
            cls.TopicProduceData.PartitionProduceData(index=partition, records=record_batch(count))
        ],
    )
    deadline = time.monotonic() + 30
    while True:
        resp = conn.request(
            cls(
                version=version, transactional_id=None, acks=-1, timeout_ms=30000, topic_data=[data]
            ),
            version,
        )
        p = resp.responses[0].partition_responses[0]
        # A new topic's leader may not be ready yet: retry what Kafka calls retriable.
        if p.error_code in RETRIABLE_PRODUCE and time.monotonic() < deadline:
            time.sleep(0.1)
            continue
        break
    if p.error_code:
        raise ClientError(f"Produce {topic}-{partition}: error {p.error_code}")
    return int(p.base_offset)


def read_log(
    conn: Connection, topic: str, partition: int, offset: int = 0, max_bytes: int = 1 << 20
) -> tuple[list[LogBatchInfo], int, int]:
    """The record batches of the log from ``offset``, the log start and the high watermark."""
    version = conn.version_for(wire.FETCH, 12)
    req = wire.fetch_request(
        version, [(topic, partition, offset, max_bytes)], max_wait_ms=1, min_bytes=0
    )
    p = conn.request(req, version).responses[0].partitions[0]
    if p.error_code not in (0, 1):
        raise ClientError(f"Fetch {topic}-{partition}: error {p.error_code}")
    return decode_batches(p.records), max(int(p.log_start_offset), 0), int(p.high_watermark)


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One record read back from a partition."""

    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]


def read_records(
    conn: Connection, topic: str, partition: int, offset: int, max_bytes: int = 1 << 20
) -> tuple[list[LogRecord], int]:
    """The data records of a partition from ``offset`` (one Fetch), and its high watermark."""
    version = conn.version_for(wire.FETCH, 12)
    req = wire.fetch_request(
        version, [(topic, partition, offset, max_bytes)], max_wait_ms=1, min_bytes=0
    )
    p = conn.request(req, version).responses[0].partitions[0]
    if p.error_code:
        raise ClientError(f"Fetch {topic}-{partition}: error {p.error_code}")
    out: list[LogRecord] = []
    if p.records:
        mr: Any = _Records(bytes(p.records))
        while (batch := mr.next_batch()) is not None:
            if batch.is_control_batch:
                continue
            for r in batch:
                if int(r.offset) >= offset:
                    headers = tuple((str(k), v) for k, v in r.headers)
                    out.append(LogRecord(int(r.offset), r.key, r.value, headers))
    return out, int(p.high_watermark)


def decode_batches(records: bytes | bytearray | memoryview | None) -> list[LogBatchInfo]:
    """The whole v2 record batches in a Records field (a partial batch at the end is left out)."""
    out: list[LogBatchInfo] = []
    if not records:
        return out
    mr: Any = _Records(bytes(records))
    while True:
        batch: Any = mr.next_batch()
        if batch is None:
            break
        offsets = () if batch.is_control_batch else tuple(int(r.offset) for r in batch)
        out.append(
            LogBatchInfo(
                int(batch.base_offset),
                int(batch.last_offset),
                bool(batch.is_control_batch),
                offsets,
            )
        )
    return out


def delete_records(conn: Connection, topic: str, partition: int, offset: int) -> tuple[int, int]:
    """DeleteRecords: move the log start to ``offset``; returns (low watermark, error code)."""
    version = conn.version_for(DELETE_RECORDS, 2)
    cls = wire.request_class(DELETE_RECORDS)
    req = cls(
        version=version,
        topics=[
            cls.DeleteRecordsTopic(
                name=topic,
                partitions=[
                    cls.DeleteRecordsTopic.DeleteRecordsPartition(
                        partition_index=partition, offset=offset
                    )
                ],
            )
        ],
        timeout_ms=30000,
    )
    p = conn.request(req, version).topics[0].partitions[0]
    return int(p.low_watermark), int(p.error_code)


def alter_group_configs(conn: Connection, group: str, configs: Mapping[str, str | None]) -> int:
    """SET (value) or DELETE (None) share-group configs; returns the resource's error code."""
    version = conn.version_for(wire.INCREMENTAL_ALTER_CONFIGS, 1)
    cls = wire.request_class(wire.INCREMENTAL_ALTER_CONFIGS)
    res = cls.AlterConfigsResource(
        resource_type=GROUP_RESOURCE,
        resource_name=group,
        configs=[
            cls.AlterConfigsResource.AlterableConfig(
                name=k, config_operation=0 if v is not None else 1, value=v
            )
            for k, v in configs.items()
        ],
    )
    resp = conn.request(cls(version=version, resources=[res], validate_only=False), version)
    return int(resp.responses[0].error_code)


def find_coordinator(conn: Connection, group: str) -> int:
    """The node id of ``group``'s coordinator."""
    version = conn.version_for(wire.FIND_COORDINATOR, 4)
    cls = wire.request_class(wire.FIND_COORDINATOR)
    if version >= 4:
        resp = conn.request(cls(version=version, key_type=0, coordinator_keys=[group]), version)
        c = resp.coordinators[0]
        if c.error_code:
            raise ClientError(f"FindCoordinator {group}: error {c.error_code}")
        return int(c.node_id)
    resp = conn.request(cls(version=version, key=group, key_type=0), version)
    if resp.error_code:
        raise ClientError(f"FindCoordinator {group}: error {resp.error_code}")
    return int(resp.node_id)


# ---------------------------------------------------------------------------- share APIs

AckRanges = Sequence[tuple[int, int, Sequence[int]]]  # (first, last, types)
PartitionAcks = Mapping[tuple[uuid.UUID, int], AckRanges]


def share_fetch(
    conn: Connection,
    *,
    group: str,
    member: str,
    epoch: int,
    add: Iterable[tuple[uuid.UUID, int]] = (),
    forget: Iterable[tuple[uuid.UUID, int]] = (),
    acks: PartitionAcks | None = None,
    max_wait_ms: int = 0,
    min_bytes: int = 1,
    max_bytes: int = 1 << 20,
    max_records: int = 500,
    batch_size: int = 500,
    acquire_mode: int = 0,
    renew: bool = False,
    version: int = 2,
) -> Any:
    cls = messages.ShareFetchRequest
    parts: dict[tuple[uuid.UUID, int], AckRanges] = dict.fromkeys(add, ())
    for tp, ranges in (acks or {}).items():
        parts[tp] = ranges
    by_topic: dict[uuid.UUID, list[Any]] = {}
    for (topic_id, partition), ranges in parts.items():
        by_topic.setdefault(topic_id, []).append(
            cls.FetchTopic.FetchPartition(
                partition_index=partition,
                acknowledgement_batches=[
                    cls.FetchTopic.FetchPartition.AcknowledgementBatch(
                        first_offset=f, last_offset=la, acknowledge_types=list(types)
                    )
                    for f, la, types in ranges
                ],
            )
        )
    forgotten: dict[uuid.UUID, list[int]] = {}
    for topic_id, partition in forget:
        forgotten.setdefault(topic_id, []).append(partition)
    fields: dict[str, Any] = {
        "version": version,
        "group_id": group,
        "member_id": member,
        "share_session_epoch": epoch,
        "max_wait_ms": max_wait_ms,
        "min_bytes": min_bytes,
        "max_bytes": max_bytes,
        "max_records": max_records,
        "batch_size": batch_size,
        "topics": [cls.FetchTopic(topic_id=t, partitions=ps) for t, ps in by_topic.items()],
        "forgotten_topics_data": [
            cls.ForgottenTopic(topic_id=t, partitions=ps) for t, ps in forgotten.items()
        ],
    }
    if version >= 2:
        fields.update(share_acquire_mode=acquire_mode, is_renew_ack=renew)
    return conn.request(cls(**fields), version, timeout_s=max_wait_ms / 1000 + 30)


def share_acknowledge(
    conn: Connection,
    *,
    group: str,
    member: str,
    epoch: int,
    acks: PartitionAcks,
    renew: bool = False,
    version: int = 2,
) -> Any:
    cls = messages.ShareAcknowledgeRequest
    by_topic: dict[uuid.UUID, list[Any]] = {}
    for (topic_id, partition), ranges in acks.items():
        by_topic.setdefault(topic_id, []).append(
            cls.AcknowledgeTopic.AcknowledgePartition(
                partition_index=partition,
                acknowledgement_batches=[
                    cls.AcknowledgeTopic.AcknowledgePartition.AcknowledgementBatch(
                        first_offset=f, last_offset=la, acknowledge_types=list(types)
                    )
                    for f, la, types in ranges
                ],
            )
        )
    fields: dict[str, Any] = {
        "version": version,
        "group_id": group,
        "member_id": member,
        "share_session_epoch": epoch,
        "topics": [cls.AcknowledgeTopic(topic_id=t, partitions=ps) for t, ps in by_topic.items()],
    }
    if version >= 2:
        fields["is_renew_ack"] = renew
    return conn.request(cls(**fields), version)


def heartbeat(
    conn: Connection,
    *,
    group: str,
    member: str,
    epoch: int,
    topics: Sequence[str] | None,
    rack: str | None = None,
) -> Any:
    cls = messages.ShareGroupHeartbeatRequest
    req = cls(
        version=1,
        group_id=group,
        member_id=member,
        member_epoch=epoch,
        rack_id=rack,
        subscribed_topic_names=None if topics is None else list(topics),
    )
    return conn.request(req, 1)


def describe_group(conn: Connection, group: str) -> Any:
    cls = messages.ShareGroupDescribeRequest
    resp = conn.request(cls(version=1, group_ids=[group], include_authorized_operations=False), 1)
    return resp.groups[0]


def share_group_start_offsets(
    conn: Connection, group: str, topic: str, partitions: Sequence[int]
) -> dict[int, tuple[int, int]]:
    """partition -> (start offset, error code) from DescribeShareGroupOffsets."""
    cls = messages.DescribeShareGroupOffsetsRequest
    gcls = cls.DescribeShareGroupOffsetsRequestGroup
    version = conn.version_for(DESCRIBE_SHARE_GROUP_OFFSETS, 1)
    req = cls(
        version=version,
        groups=[
            gcls(
                group_id=group,
                topics=[
                    gcls.DescribeShareGroupOffsetsRequestTopic(
                        topic_name=topic, partitions=list(partitions)
                    )
                ],
            )
        ],
    )
    g = conn.request(req, version).groups[0]
    out: dict[int, tuple[int, int]] = {}
    if g.error_code:
        return {p: (-1, int(g.error_code)) for p in partitions}
    for t in g.topics:
        for p in t.partitions:
            out[int(p.partition_index)] = (int(p.start_offset), int(p.error_code))
    return out
