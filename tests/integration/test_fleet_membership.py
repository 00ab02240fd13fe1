"""Two instances divide the state partitions through a consumer group on Kafka 3.9, and one
takes everything over when the other leaves: each owner claims and replays what it is given,
and a partition given away is released before the other one claims it."""

from __future__ import annotations

import uuid

import pytest
import trio

from proxy.fleet import FleetMembership
from proxy.state_partitions import PartitionedStateStore
from proxy.state_store import StateWriteError, StoreConfig
from sharegroup.brokers import Broker
from sharegroup.persist.partitioning import state_partition_for_group
from sharegroup.persist.records import GroupConfigs

pytestmark = pytest.mark.integration

PARTITIONS = 4


def _group_of_each_partition() -> dict[int, str]:
    out: dict[int, str] = {}
    i = 0
    while len(out) < PARTITIONS:
        out.setdefault(state_partition_for_group(f"group-{i}", PARTITIONS), f"group-{i}")
        i += 1
    return out


async def _until(condition: object, what: str, timeout_s: float = 60) -> None:
    assert callable(condition)
    with trio.move_on_after(timeout_s):
        while not condition():
            await trio.sleep(0.05)
        return
    raise AssertionError(f"not within {timeout_s}s: {what}")


def test_two_instances_divide_the_state_partitions_and_one_takes_over(kafka39: Broker) -> None:
    topic = f"state-fleet-{uuid.uuid4().hex[:8]}"
    group_id = f"fleet-{uuid.uuid4().hex[:8]}"
    groups = _group_of_each_partition()
    seen: dict[str, object] = {}
    splits: list[tuple[set[int], set[int]]] = []

    async def main() -> None:
        config = StoreConfig(bootstrap=kafka39.bootstrap, topic=topic, partitions=PARTITIONS)
        a, b = PartitionedStateStore(config), PartitionedStateStore(config)
        every = set(range(PARTITIONS))
        async with trio.open_nursery() as nursery:
            await a.open(nursery)
            await b.open(nursery)
            member_a = FleetMembership(
                a, group_id=group_id, session_timeout_ms=6000, heartbeat_interval_ms=500
            )
            member_b = FleetMembership(
                b, group_id=group_id, session_timeout_ms=6000, heartbeat_interval_ms=500
            )
            nursery.start_soon(member_a.run)
            await _until(lambda: member_a.owned == every, "A owns every state partition")
            with trio.fail_after(30):
                await a.write([GroupConfigs(g, {"v": "1"}) for g in groups.values()])

            nursery.start_soon(member_b.run)
            await _until(
                lambda: (
                    member_a.owned and member_b.owned and member_a.owned | member_b.owned == every
                ),
                "A and B divide the state partitions",
            )
            splits.append((set(member_a.owned), set(member_b.owned)))
            seen["stores"] = (set(a.stores), set(b.stores))
            # B replayed what A wrote in the partitions it was given.
            seen["b_replayed"] = {g: dict(c) for g, c in b.replay.group_configs.items()}
            mine_a, mine_b = min(member_a.owned), min(member_b.owned)
            with pytest.raises(StateWriteError) as refused:
                await a.write([GroupConfigs(groups[mine_b], {"v": "stale"})])
            seen["refused"] = str(refused.value)
            with trio.fail_after(30):
                await a.write([GroupConfigs(groups[mine_a], {"v": "2"})])
                await b.write([GroupConfigs(groups[mine_b], {"v": "2"})])

            await member_a.aclose()
            await _until(lambda: member_b.owned == every, "B owns every state partition")
            seen["a_after"] = (set(member_a.owned), set(a.stores), a.fenced)
            seen["b_final"] = {g: dict(c) for g, c in b.replay.group_configs.items()}
            with trio.fail_after(30):
                await b.write([GroupConfigs(g, {"v": "3"}) for g in groups.values()])
            await member_b.aclose()
            nursery.cancel_scope.cancel()

    trio.run(main)
    ((split_a, split_b),) = splits
    assert not split_a & split_b, splits
    assert seen["stores"] == (split_a, split_b), "each instance writes exactly what it owns"
    assert seen["b_replayed"] == {g: {"v": "1"} for p, g in groups.items() if p in split_b}, seen[
        "b_replayed"
    ]
    assert "not owned by this instance" in str(seen["refused"])
    assert seen["a_after"] == (set(), set(), True)
    expected = {g: {"v": "1"} for g in groups.values()}
    expected[groups[min(split_a)]] = {"v": "2"}
    expected[groups[min(split_b)]] = {"v": "2"}
    assert seen["b_final"] == expected
