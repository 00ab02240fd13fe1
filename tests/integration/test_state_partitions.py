"""The state topic as several partitions on Kafka 3.9: each record in the state partition its
key maps to, a claim in every partition, replay across them, fencing per partition, and an
existing one-partition topic that keeps working."""

from __future__ import annotations

import logging
import time
import uuid
from collections import defaultdict

import pytest
import trio
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from model import RecordState, StateBatch
from proxy.state_partitions import PartitionedStateStore
from proxy.state_store import StateWriteError, StoreConfig
from sharegroup.brokers import Broker
from sharegroup.persist.partitioning import state_partition_of
from sharegroup.persist.records import GroupConfigs, Record, Snapshot, WriterClaim, decode

pytestmark = pytest.mark.integration

TOPIC_ID = uuid.UUID(int=0x0123456789ABCDEFFEDCBA9876543210)


def _snapshot(group: str, partition: int, acked_to: int) -> Snapshot:
    batch = StateBatch(0, acked_to, RecordState.ACKNOWLEDGED, 1)
    return Snapshot((group, TOPIC_ID, partition), 1, 0, 0, 0, 0, 0, (batch,))


def _read_all(bootstrap: str, topic: str) -> dict[int, list[Record]]:
    """Every record of every partition of ``topic``, by partition."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"state-partitions-reader-{uuid.uuid4().hex[:6]}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    out: dict[int, list[Record]] = defaultdict(list)
    try:
        partitions = list(consumer.list_topics(topic, timeout=30).topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, -2) for p in partitions])
        at_end: set[int] = set()
        deadline = time.monotonic() + 60
        while at_end != set(partitions):
            assert time.monotonic() < deadline, f"could not read {topic} to its end"
            for m in consumer.consume(1000, 1.0):
                if m.error() is not None:
                    at_end.add(m.partition() or 0)
                    continue
                key = m.key()
                assert key is not None
                out[m.partition() or 0].append(decode(key, m.value()))
    finally:
        consumer.close()
    return out


def test_records_go_to_their_state_partitions_and_replay_across_them(kafka39: Broker) -> None:
    topic = f"state-parts-{uuid.uuid4().hex[:8]}"
    groups = [f"group-{i}" for i in range(12)]
    written: list[Record] = [
        GroupConfigs(g, {"share.auto.offset.reset": "earliest"}) for g in groups
    ]
    written += [_snapshot(g, p, 10 + p) for g in groups for p in range(3)]
    outcome: dict[str, object] = {}

    async def main() -> None:
        config = StoreConfig(bootstrap=kafka39.bootstrap, topic=topic, partitions=4)
        first = PartitionedStateStore(config)
        async with trio.open_nursery() as nursery:
            replay = await first.start(nursery)
            assert first.partitions == 4 and not replay.partitions
            outcome["first_fenced_at_start"] = first.fenced
            with trio.fail_after(30):
                await first.write(written)  # one write over every state partition
            assert len(first.replay.partitions) == 36 and len(first.replay.group_configs) == 12

            second = PartitionedStateStore(config)
            replay = await second.start(nursery)
            outcome["replayed"] = (dict(replay.group_configs), set(replay.partitions))
            outcome["second_fenced"] = second.fenced
            # The first instance's tail readers meet the second's claims: it stops writing.
            with trio.fail_after(30):
                while not first.fenced:
                    await trio.sleep(0.05)
            with pytest.raises(StateWriteError) as refused:
                await first.write([GroupConfigs("group-0", None)])
            outcome["first_refused_fenced"] = refused.value.fenced
            with trio.fail_after(30):
                await second.write([GroupConfigs("group-0", {"a": "1"})])
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert outcome["replayed"] == (
        {g: {"share.auto.offset.reset": "earliest"} for g in groups},
        {(g, TOPIC_ID, p) for g in groups for p in range(3)},
    )
    assert outcome["first_fenced_at_start"] is False
    assert outcome["second_fenced"] is False and outcome["first_refused_fenced"] is True

    logged = _read_all(kafka39.bootstrap, topic)
    assert sorted(logged) == [0, 1, 2, 3]
    for partition, records in logged.items():
        claims = [r for r in records if isinstance(r, WriterClaim)]
        assert len(claims) == 2, (partition, claims)  # one per instance, in every partition
        for r in records:
            if not isinstance(r, WriterClaim):
                assert state_partition_of(r, 4) == partition, (partition, r)
    data = {p: [r for r in rs if not isinstance(r, WriterClaim)] for p, rs in logged.items()}
    assert all(data.values()), "36 share partitions and 12 groups use every state partition"


def test_an_existing_one_partition_topic_keeps_working(
    kafka39: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    topic = f"state-one-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": kafka39.bootstrap})
    for f in admin.create_topics([NewTopic(topic, 1, 1)]).values():
        f.result(30)
    caplog.set_level(logging.INFO, logger="sharegroup.state")
    outcome: dict[str, object] = {}

    async def main() -> None:
        config = StoreConfig(bootstrap=kafka39.bootstrap, topic=topic, partitions=8)
        async with trio.open_nursery() as nursery:
            first = PartitionedStateStore(config)
            await first.start(nursery)
            with trio.fail_after(30):
                await first.write([GroupConfigs("g", {"a": "1"}), _snapshot("g", 5, 7)])
            await first.aclose()
            second = PartitionedStateStore(config)
            replay = await second.start(nursery)
            outcome["partitions"] = (first.partitions, second.partitions)
            outcome["replayed"] = (dict(replay.group_configs), set(replay.partitions))
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert outcome["partitions"] == (1, 1)
    assert outcome["replayed"] == ({"g": {"a": "1"}}, {("g", TOPIC_ID, 5)})
    kept = [r.message for r in caplog.records if "has 1 partition(s), not the 8" in r.message]
    assert len(kept) == 2, [r.message for r in caplog.records]
    assert sorted(_read_all(kafka39.bootstrap, topic)) == [0]
