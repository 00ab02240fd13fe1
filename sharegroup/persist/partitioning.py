"""Which partition of the state topic holds what (pure).

A state partition is the unit of ownership: one proxy instance writes it at a time, and owns
the share partitions and share-group coordination whose records it holds. The mapping follows
Kafka's own coordinators, so a key lands on the state partition Kafka would pick for it in
``__share_group_state`` / ``__consumer_offsets`` with the same partition count:

* a share partition (group, topic id, partition): ``ShareCoordinatorService.partitionFor`` —
  ``Utils.abs(SharePartitionKey.asCoordinatorKey().hashCode()) % partitions``, where the
  coordinator key is ``"<group>:<topic id>:<partition>"`` (the topic id as Kafka's
  ``Uuid.toString``, URL-safe base64 without padding) and ``hashCode`` is Java's
  ``String.hashCode``;
* a share group's coordination (its membership, configs and offsets APIs):
  ``GroupCoordinatorService.partitionFor`` — ``Utils.abs(groupId.hashCode()) % partitions``;
* a topic id the proxy assigned (upstreams without topic ids): the same hash of the topic name;
* a writer claim: every state partition the instance takes (it is written to each one).

The mapping depends on the partition count, so a state topic keeps the count it was created
with (``docs/persistence.md``).
"""

from __future__ import annotations

import base64
from uuid import UUID

from sharegroup.persist.records import (
    GroupConfigs,
    Record,
    Snapshot,
    Tombstone,
    TopicIdAssigned,
    Update,
    WriterClaim,
)

DEFAULT_STATE_PARTITIONS = 8
MAX_STATE_PARTITIONS = 1000
_INT32_MIN = -(1 << 31)


def java_string_hash(text: str) -> int:
    """Java's ``String.hashCode``: ``s[0]*31^(n-1) + ... + s[n-1]`` over the UTF-16 code units,
    in 32-bit two's complement arithmetic."""
    h = 0
    data = text.encode("utf-16-be")
    for i in range(0, len(data), 2):
        h = (31 * h + (data[i] << 8 | data[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h & 0x80000000 else h


def kafka_abs(n: int) -> int:
    """Kafka's ``Utils.abs``: the absolute value, with ``Integer.MIN_VALUE`` taken to 0."""
    return 0 if n == _INT32_MIN else abs(n)


def kafka_uuid(topic_id: UUID) -> str:
    """Kafka's ``Uuid.toString``: URL-safe base64 of the 16 bytes, without padding."""
    return base64.urlsafe_b64encode(topic_id.bytes).decode("ascii").rstrip("=")


def _partition(text: str, partitions: int) -> int:
    if partitions < 1:
        raise ValueError(f"a state topic has at least one partition, not {partitions}")
    return kafka_abs(java_string_hash(text)) % partitions


def share_coordinator_key(group_id: str, topic_id: UUID, partition: int) -> str:
    """``SharePartitionKey.asCoordinatorKey``."""
    return f"{group_id}:{kafka_uuid(topic_id)}:{partition}"


def state_partition_for_share(
    group_id: str, topic_id: UUID, partition: int, partitions: int
) -> int:
    """The state partition of share partition (group, topic id, partition)."""
    return _partition(share_coordinator_key(group_id, topic_id, partition), partitions)


def state_partition_for_group(group_id: str, partitions: int) -> int:
    """The state partition that holds a share group's coordination."""
    return _partition(group_id, partitions)


def state_partition_for_topic_name(topic_name: str, partitions: int) -> int:
    """The state partition that holds the topic id the proxy assigned to ``topic_name``."""
    return _partition(topic_name, partitions)


def state_partition_of(record: Record, partitions: int) -> int | None:
    """The state partition ``record`` is written to; None for a writer claim, which goes to
    every state partition the writer takes."""
    if isinstance(record, Snapshot | Update | Tombstone):
        group_id, topic_id, partition = record.key
        return state_partition_for_share(group_id, topic_id, partition, partitions)
    if isinstance(record, GroupConfigs):
        return state_partition_for_group(record.group_id, partitions)
    if isinstance(record, TopicIdAssigned):
        return state_partition_for_topic_name(record.topic_name, partitions)
    assert isinstance(record, WriterClaim)
    return None
