"""Which partition of the state topic holds what (pure).

A state partition is the unit of ownership: one proxy instance writes it at a time, and owns
the share partitions and share-group coordination whose records it holds. The hashing is
Kafka's (Java's ``String.hashCode``, ``Utils.abs``, modulo the partition count):

* a share partition (group, topic id, partition): ``Utils.abs("<topic id>:<partition>"
  .hashCode()) % partitions``, the topic id as Kafka's ``Uuid.toString`` (URL-safe base64
  without padding). Every group's share partition of one topic partition lands in the same
  state partition. This is where the proxy departs from Kafka's
  ``ShareCoordinatorService.partitionFor``, which hashes ``SharePartitionKey.asCoordinatorKey``
  = ``"<group>:<topic id>:<partition>"``: Kafka keeps the share-partition *leader* (the
  partition leader, found through Metadata) apart from the share *coordinator* that stores its
  state, and connects the two by RPC (ReadShareGroupState, WriteShareGroupState), so the
  coordinator may be anywhere. A proxy instance both serves a share partition and stores its
  state, and a client reaches the instance through Metadata, which names a leader per topic
  partition and knows no group. So the owner of the state must follow from the topic
  partition alone;
* a share group's coordination (its membership, configs and offsets APIs):
  ``GroupCoordinatorService.partitionFor`` — ``Utils.abs(groupId.hashCode()) % partitions``,
  as Kafka (FindCoordinator names the group, so routing can follow the group);
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


def topic_partition_key(topic_id: UUID, partition: int) -> str:
    """``"<topic id>:<partition>"``: Kafka's ``SharePartitionKey.asCoordinatorKey`` without
    the group (see the module's docstring for why)."""
    return f"{kafka_uuid(topic_id)}:{partition}"


def state_partition_for_share(topic_id: UUID, partition: int, partitions: int) -> int:
    """The state partition of the share partitions of topic partition (topic id, partition),
    whatever their group."""
    return _partition(topic_partition_key(topic_id, partition), partitions)


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
        _group_id, topic_id, partition = record.key
        return state_partition_for_share(topic_id, partition, partitions)
    if isinstance(record, GroupConfigs):
        return state_partition_for_group(record.group_id, partitions)
    if isinstance(record, TopicIdAssigned):
        return state_partition_for_topic_name(record.topic_name, partitions)
    assert isinstance(record, WriterClaim)
    return None
