"""State-topic records: keys and values as versioned kafka-python data classes.

Framing follows Kafka's coordinator records (``CoordinatorRecordSerde``): a key is an int16
record type and the key struct at version 0; a value is an int16 version and the value struct; a
null value is a tombstone. Record types: 0 ShareSnapshot, 1 ShareUpdate (as in Kafka), 2
GroupConfig, 3 TopicId and 4 WriterClaim (ours). The schemas are JSON files in ``schemas/``,
loaded by kafka-python.

ShareSnapshot and ShareUpdate records (and their tombstones) are written for every acknowledging
request, so :func:`encode` packs those with ``struct`` (``_encode_share``) instead of building
kafka-python's generic objects, which cost about 7 us per state batch. The bytes are the same:
``tests/unit/test_persist_records.py`` holds the two encoders to that. The other record types,
and all decoding, go through kafka-python (:func:`encode_generic`, :func:`decode`).
"""

from __future__ import annotations

import dataclasses
import functools
import io
import struct
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from kafka.protocol.api_data import ApiData

from model import RecordState, StateBatch

SCHEMAS = "sharegroup.persist.schemas"
RECORD_SNAPSHOT, RECORD_UPDATE, RECORD_GROUP_CONFIG, RECORD_TOPIC_ID = 0, 1, 2, 3
RECORD_WRITER_CLAIM = 4
_TYPE = struct.Struct(">h")

# Every record an instance writes carries this header: its writer id (16 bytes) and the
# record's sequence number in that instance (8 bytes, big-endian).
WRITER_HEADER = "sharegroup.writer"
_SEQ = struct.Struct(">q")


class ShareSnapshotKey(ApiData, load_json=SCHEMAS):
    pass


class ShareSnapshotValue(ApiData, load_json=SCHEMAS):
    pass


class ShareUpdateKey(ApiData, load_json=SCHEMAS):
    pass


class ShareUpdateValue(ApiData, load_json=SCHEMAS):
    pass


class GroupConfigKey(ApiData, load_json=SCHEMAS):
    pass


class GroupConfigValue(ApiData, load_json=SCHEMAS):
    pass


class TopicIdKey(ApiData, load_json=SCHEMAS):
    pass


class TopicIdValue(ApiData, load_json=SCHEMAS):
    pass


class WriterClaimKey(ApiData, load_json=SCHEMAS):
    pass


class WriterClaimValue(ApiData, load_json=SCHEMAS):
    pass


PartitionKey = tuple[str, UUID, int]


@dataclass(frozen=True, slots=True)
class Snapshot:
    key: PartitionKey
    snapshot_epoch: int
    state_epoch: int
    leader_epoch: int
    start_offset: int
    create_timestamp: int
    write_timestamp: int
    batches: tuple[StateBatch, ...]


@dataclass(frozen=True, slots=True)
class Update:
    key: PartitionKey
    snapshot_epoch: int
    leader_epoch: int
    start_offset: int
    batches: tuple[StateBatch, ...]


@dataclass(frozen=True, slots=True)
class Tombstone:
    key: PartitionKey


@dataclass(frozen=True, slots=True)
class GroupConfigs:
    group_id: str
    configs: dict[str, str] | None  # None: deleted


@dataclass(frozen=True, slots=True)
class TopicIdAssigned:
    topic_name: str
    topic_id: UUID


@dataclass(frozen=True, slots=True)
class WriterClaim:
    """An instance takes over the state topic: from here on only its records count."""

    writer_id: UUID
    claim_timestamp: int = 0
    host: str = ""
    process_id: int = 0


Record = Snapshot | Update | Tombstone | GroupConfigs | TopicIdAssigned | WriterClaim


def writer_header(writer_id: UUID, seq: int) -> bytes:
    return writer_id.bytes + _SEQ.pack(seq)


def read_writer_header(value: bytes | None) -> tuple[UUID, int] | None:
    """(writer id, sequence number) of a writer header; None when it is not one."""
    if value is None or len(value) != 24:
        return None
    return UUID(bytes=bytes(value[:16])), _SEQ.unpack_from(value, 16)[0]


def type_of_key(key: bytes | None) -> int | None:
    """The record type of a key, without decoding the rest."""
    if key is None or len(key) < 2:
        return None
    return int(_TYPE.unpack_from(key, 0)[0])


class RecordError(ValueError):
    """A state-topic record this version cannot read."""


def _batches_out(cls: Any, batches: tuple[StateBatch, ...]) -> list[Any]:
    item = cls.StateBatch
    return [
        item(
            first_offset=b.first_offset,
            last_offset=b.last_offset,
            delivery_state=int(b.state),
            delivery_count=b.delivery_count,
        )
        for b in batches
    ]


def _batches_in(items: Any) -> tuple[StateBatch, ...]:
    return tuple(
        StateBatch(b.first_offset, b.last_offset, RecordState(b.delivery_state), b.delivery_count)
        for b in items
    )


def _key(record_type: int, key: Any) -> bytes:
    return _TYPE.pack(record_type) + bytes(key.encode(version=0, header=False))


# ShareSnapshotValue / ShareUpdateValue v0 (flexible): the version, the fixed fields, then the
# StateBatches as a compact array (unsigned varint length + 1) whose items each end with an
# empty tagged-field section, and an empty tagged-field section for the value itself.
_SNAPSHOT_HEAD = struct.Struct(">hiiiqqq")
_UPDATE_HEAD = struct.Struct(">hiiq")
_STATE_BATCH = struct.Struct(">qqbhx")  # the pad byte is the item's empty tagged fields
_KEY_TAIL = struct.Struct(">16si")  # topic id, partition


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SMALL_UVARINTS = tuple(_uvarint(n) for n in range(128))


@functools.lru_cache(maxsize=8192)
def _share_key(record_type: int, group_id: str, topic_id: UUID, partition: int) -> bytes:
    """ShareSnapshotKey / ShareUpdateKey v0 (not flexible): int16-length string, uuid, int32."""
    group = group_id.encode()
    if len(group) > 0x7FFF:
        raise ValueError(f"group id of {len(group)} bytes is too long for a state record")
    return (
        _TYPE.pack(record_type)
        + _TYPE.pack(len(group))
        + group
        + _KEY_TAIL.pack(topic_id.bytes, partition)
    )


def _state_batches(batches: tuple[StateBatch, ...]) -> bytes:
    n = len(batches) + 1
    head = _SMALL_UVARINTS[n] if n < 128 else _uvarint(n)
    pack = _STATE_BATCH.pack
    return head + b"".join([pack(*b) for b in batches]) + b"\x00"


def _encode_share(record: Snapshot | Update | Tombstone) -> tuple[bytes, bytes | None]:
    group_id, topic_id, partition = record.key
    if isinstance(record, Update):
        key = _share_key(RECORD_UPDATE, group_id, topic_id, partition)
        head = _UPDATE_HEAD.pack(0, record.snapshot_epoch, record.leader_epoch, record.start_offset)
        return key, head + _state_batches(record.batches)
    key = _share_key(RECORD_SNAPSHOT, group_id, topic_id, partition)
    if isinstance(record, Tombstone):
        return key, None
    head = _SNAPSHOT_HEAD.pack(
        0,
        record.snapshot_epoch,
        record.state_epoch,
        record.leader_epoch,
        record.start_offset,
        record.create_timestamp,
        record.write_timestamp,
    )
    return key, head + _state_batches(record.batches)


def encode(record: Record) -> tuple[bytes, bytes | None]:
    """(key, value) bytes of a record; value None for a tombstone."""
    if isinstance(record, (Snapshot, Update, Tombstone)):
        return _encode_share(record)
    return encode_generic(record)


def coalesce(batches: tuple[StateBatch, ...]) -> tuple[StateBatch, ...]:
    """The same ranges with adjacent ones of equal state and delivery count joined.

    Replay merges offset by offset (``DurableState.merge``), so a record with the joined ranges
    leaves exactly the state the original would. The model keeps a range per acquired producer
    batch, so an acknowledgement of records from many small batches would otherwise write a
    state batch for each of them."""
    if len(batches) < 2:
        return batches
    out: list[StateBatch] = []
    first, last, state, count = batches[0]
    for b in batches[1:]:
        if b.first_offset == last + 1 and b.state == state and b.delivery_count == count:
            last = b.last_offset
        else:
            out.append(StateBatch(first, last, state, count))
            first, last, state, count = b
    if not out:
        return (StateBatch(first, last, state, count),)
    out.append(StateBatch(first, last, state, count))
    return tuple(out) if len(out) < len(batches) else batches


def joined(record: Record) -> Record:
    """The record with adjacent equal state batches joined (``coalesce``): the same state once
    replayed, in fewer bytes to encode, send, store, read back and merge. Every writer of the
    state topic (the proxy's store, the simulator's) writes records through this."""
    if isinstance(record, (Snapshot, Update)):
        batches = coalesce(record.batches)
        if batches is not record.batches:
            return dataclasses.replace(record, batches=batches)
    return record


def encode_generic(record: Record) -> tuple[bytes, bytes | None]:
    """(key, value) bytes of any record through kafka-python's generic classes."""
    if isinstance(record, (Snapshot, Update, Tombstone)):
        group_id, topic_id, partition = record.key
        key_cls: Any = ShareUpdateKey if isinstance(record, Update) else ShareSnapshotKey
        record_type = RECORD_UPDATE if isinstance(record, Update) else RECORD_SNAPSHOT
        key = _key(record_type, key_cls(group_id=group_id, topic_id=topic_id, partition=partition))
        if isinstance(record, Tombstone):
            return key, None
        if isinstance(record, Snapshot):
            value: Any = ShareSnapshotValue(
                version=0,
                snapshot_epoch=record.snapshot_epoch,
                state_epoch=record.state_epoch,
                leader_epoch=record.leader_epoch,
                start_offset=record.start_offset,
                create_timestamp=record.create_timestamp,
                write_timestamp=record.write_timestamp,
                state_batches=_batches_out(ShareSnapshotValue, record.batches),
            )
        else:
            value = ShareUpdateValue(
                version=0,
                snapshot_epoch=record.snapshot_epoch,
                leader_epoch=record.leader_epoch,
                start_offset=record.start_offset,
                state_batches=_batches_out(ShareUpdateValue, record.batches),
            )
        return key, bytes(value.encode(version=0))
    if isinstance(record, GroupConfigs):
        key = _key(RECORD_GROUP_CONFIG, GroupConfigKey(group_id=record.group_id))
        if record.configs is None:
            return key, None
        item = GroupConfigValue.Config  # type: ignore[attr-defined]
        value = GroupConfigValue(
            version=0, configs=[item(name=k, value=v) for k, v in sorted(record.configs.items())]
        )
        return key, bytes(value.encode(version=0))
    if isinstance(record, WriterClaim):
        key = _key(RECORD_WRITER_CLAIM, WriterClaimKey(writer_id=record.writer_id))
        claim = WriterClaimValue(
            version=0,
            claim_timestamp=record.claim_timestamp,
            host=record.host,
            process_id=record.process_id,
        )
        return key, bytes(claim.encode(version=0))
    key = _key(RECORD_TOPIC_ID, TopicIdKey(topic_name=record.topic_name))
    return key, bytes(TopicIdValue(version=0, topic_id=record.topic_id).encode(version=0))


def decode(key: bytes, value: bytes | None) -> Record:
    record_type = type_of_key(key)
    if record_type is None:
        raise RecordError("state record without a key")
    body = io.BytesIO(key[2:])
    try:
        if record_type in (RECORD_SNAPSHOT, RECORD_UPDATE):
            key_cls: Any = ShareSnapshotKey if record_type == RECORD_SNAPSHOT else ShareUpdateKey
            k = key_cls.decode(body, version=0, header=False)
            pkey = (k.group_id, k.topic_id, k.partition)
            if value is None:
                return Tombstone(pkey)
            if record_type == RECORD_SNAPSHOT:
                v = ShareSnapshotValue.decode(value)
                return Snapshot(
                    pkey,
                    v.snapshot_epoch,
                    v.state_epoch,
                    v.leader_epoch,
                    v.start_offset,
                    v.create_timestamp,
                    v.write_timestamp,
                    _batches_in(v.state_batches),
                )
            u = ShareUpdateValue.decode(value)
            return Update(
                pkey, u.snapshot_epoch, u.leader_epoch, u.start_offset, _batches_in(u.state_batches)
            )
        if record_type == RECORD_GROUP_CONFIG:
            g = GroupConfigKey.decode(body, version=0, header=False)
            if value is None:
                return GroupConfigs(g.group_id, None)
            gv = GroupConfigValue.decode(value)
            return GroupConfigs(g.group_id, {c.name: c.value for c in gv.configs})
        if record_type == RECORD_TOPIC_ID:
            t = TopicIdKey.decode(body, version=0, header=False)
            if value is None:
                raise RecordError("topic id record without a value")
            return TopicIdAssigned(t.topic_name, TopicIdValue.decode(value).topic_id)
        if record_type == RECORD_WRITER_CLAIM:
            w = WriterClaimKey.decode(body, version=0, header=False)
            if value is None:
                raise RecordError("writer claim record without a value")
            wv = WriterClaimValue.decode(value)
            return WriterClaim(w.writer_id, wv.claim_timestamp, wv.host, wv.process_id)
    except (ValueError, EOFError, struct.error) as e:
        raise RecordError(f"unreadable state record of type {record_type}: {e}") from e
    raise RecordError(f"unknown state record type {record_type}")
