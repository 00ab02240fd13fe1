"""The state-partition mapping against values computed with Java and Kafka 4.4's own classes
(``String.hashCode``, ``Utils.abs``, ``Uuid.toString``): a group's coordination as Kafka's
``GroupCoordinatorService.partitionFor``; a share partition by its topic partition alone
(``"<topic id>:<partition>"``), not by Kafka's group-qualified share-coordinator key, so that the
instance that stores a share partition is the one Metadata names as its leader."""

from __future__ import annotations

from uuid import UUID, uuid4

import pytest

from model import ConfigError
from proxy.app import split_configs
from sharegroup.persist.partitioning import (
    java_string_hash,
    kafka_abs,
    kafka_uuid,
    state_partition_for_group,
    state_partition_for_share,
    state_partition_of,
    topic_partition_key,
)
from sharegroup.persist.records import (
    GroupConfigs,
    Snapshot,
    Tombstone,
    TopicIdAssigned,
    Update,
    WriterClaim,
)

TOPIC_ID = UUID(int=(0x0123456789ABCDEF << 64) | 0xFEDCBA9876543210)


def test_kafka_uuid_string() -> None:
    assert kafka_uuid(TOPIC_ID) == "ASNFZ4mrze_-3LqYdlQyEA"
    assert kafka_uuid(UUID(int=0)) == "AAAAAAAAAAAAAAAAAAAAAA"
    assert kafka_uuid(UUID(int=1)) == "AAAAAAAAAAAAAAAAAAAAAQ"


def test_java_string_hash() -> None:
    assert java_string_hash("") == 0
    assert java_string_hash("g") == 103
    assert java_string_hash("orders") == -1008770331
    assert java_string_hash("g:ASNFZ4mrze_-3LqYdlQyEA:0") == 1102242264
    assert java_string_hash("polygenelubricants") == -(1 << 31)
    # UTF-16 code units, not code points: a character outside the BMP is two of them.
    assert java_string_hash("\U0001f600") == 31 * 0xD83D + 0xDE00


def test_kafka_abs_takes_int_min_to_zero() -> None:
    assert kafka_abs(-(1 << 31)) == 0
    assert kafka_abs(-5) == 5 and kafka_abs(7) == 7


# partition -> (state partition of 8, of 50), from Java's String.hashCode and Kafka's Utils.abs
# of "ASNFZ4mrze_-3LqYdlQyEA:<partition>".
SHARE_EXPECTED = {0: (3, 1), 1: (2, 0), 2: (1, 49), 7: (4, 44), 12: (4, 44)}
GROUP_EXPECTED = {
    "g": (7, 3),
    "orders": (3, 31),
    "my-share-group": (0, 46),
    "polygenelubricants": (0, 0),
}


@pytest.mark.parametrize("partition", sorted(SHARE_EXPECTED))
def test_share_partition_maps_by_its_topic_partition(partition: int) -> None:
    assert topic_partition_key(TOPIC_ID, partition) == f"ASNFZ4mrze_-3LqYdlQyEA:{partition}"
    got = tuple(state_partition_for_share(TOPIC_ID, partition, n) for n in (8, 50))
    assert got == SHARE_EXPECTED[partition]


def test_every_group_of_a_topic_partition_shares_its_state_partition() -> None:
    """Routing follows Metadata, which knows no group: the group must not move the key."""
    for group in ("g", "orders", "my-share-group", "polygenelubricants"):
        for partition in SHARE_EXPECTED:
            key = (group, TOPIC_ID, partition)
            assert (
                state_partition_of(Snapshot(key, 1, 0, 0, 0, 0, 0, ()), 8)
                == (SHARE_EXPECTED[partition][0])
            )


@pytest.mark.parametrize("group", sorted(GROUP_EXPECTED))
def test_group_maps_as_kafka_group_coordinator(group: str) -> None:
    got = tuple(state_partition_for_group(group, n) for n in (8, 50))
    assert got == GROUP_EXPECTED[group]


def test_one_partition_holds_everything_and_records_follow_their_keys() -> None:
    key = ("orders", TOPIC_ID, 1)
    for _ in range(50):
        assert state_partition_for_share(uuid4(), 3, 1) == 0
    assert state_partition_of(Snapshot(key, 1, 0, 0, 0, 0, 0, ()), 8) == 2
    assert state_partition_of(Update(key, 1, 0, 0, ()), 8) == 2
    assert state_partition_of(Tombstone(key), 8) == 2
    assert state_partition_of(GroupConfigs("orders", None), 8) == 3
    assert state_partition_of(TopicIdAssigned("orders", TOPIC_ID), 50) == 31
    assert state_partition_of(WriterClaim(TOPIC_ID), 8) is None
    with pytest.raises(ValueError, match="at least one partition"):
        state_partition_for_group("g", 0)


def test_the_partitions_config_is_checked() -> None:
    _share, store, _max_frame = split_configs({"sharegroup.state.topic.partitions": "16"})
    assert store == {"sharegroup.state.topic.partitions": "16"}
    for bad, message in (("0", "outside"), ("1001", "outside"), ("eight", "not an integer")):
        with pytest.raises(ConfigError, match=message) as refused:
            split_configs({"sharegroup.state.topic.partitions": bad})
        assert "sharegroup.state.topic.partitions" in str(refused.value)
