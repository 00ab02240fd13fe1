"""``PartitionedStateStore._rehome``: share partitions replayed from a state partition that
the mapping does not name for them (a topic written under an earlier mapping) move to the
partition it names when this instance owns that one too; otherwise they stay where they are,
and so does the log of their partition (``keep_log``: nothing there is pruned)."""

from __future__ import annotations

import dataclasses
import uuid

from proxy.state_partitions import PartitionedStateStore
from proxy.state_store import StateStore, StoreConfig
from sharegroup.persist.partitioning import state_partition_for_share
from sharegroup.persist.recovery import DurableState

PARTITIONS = 4


def _stores(owned: list[int]) -> PartitionedStateStore:
    config = StoreConfig("127.0.0.1:9", topic="state", partitions=PARTITIONS)
    store = PartitionedStateStore(config)
    store.partitions = PARTITIONS
    for p in owned:
        store.stores[p] = StateStore(dataclasses.replace(config, partition=p))
    return store


def _misplaced_key(in_partition: int) -> tuple[tuple[str, uuid.UUID, int], int]:
    """A share partition key whose state partition is not ``in_partition``, and its home."""
    for i in range(1000):
        tid = uuid.UUID(int=i + 1)
        home = state_partition_for_share(tid, 0, PARTITIONS)
        if home != in_partition:
            return ("g", tid, 0), home
    raise AssertionError("no key found")


def test_a_share_partition_moves_home_when_both_partitions_are_owned_here() -> None:
    key, home = _misplaced_key(0)
    store = _stores([0, home])
    store.stores[0].replay.partitions[key] = DurableState(start_offset=7)
    store._rehome({0: store.stores[0]})
    assert key not in store.stores[0].replay.partitions
    assert store.stores[home].replay.partitions[key].start_offset == 7
    assert not store.stores[0].keep_log


def test_a_share_partition_whose_home_is_owned_elsewhere_stays_and_keeps_its_log() -> None:
    key, home = _misplaced_key(0)
    store = _stores([0])
    store.stores[0].replay.partitions[key] = DurableState(start_offset=7)
    store._rehome({0: store.stores[0]})
    assert store.stores[0].replay.partitions[key].start_offset == 7
    assert store.stores[0].keep_log
    assert home not in store.stores


def test_a_share_partition_at_home_is_left_alone() -> None:
    key, home = _misplaced_key(0)
    store = _stores([home])
    store.stores[home].replay.partitions[key] = DurableState(start_offset=3)
    store._rehome({home: store.stores[home]})
    assert store.stores[home].replay.partitions[key].start_offset == 3
    assert not store.stores[home].keep_log
