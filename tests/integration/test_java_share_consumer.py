"""Share groups end to end with Java's ``KafkaShareConsumer`` (kafka-clients 4.4), unmodified.

The client is ``tests/java/ShareConsumerProbe.java`` run as a child process (see
``tests/java_probe.py``). The same test code runs against the proxy in front of Tansu, the proxy in
front of Apache Kafka 3.9, and Apache Kafka 4.4 share groups directly (the reference).

The group is new and left at the default ``share.auto.offset.reset=latest``: the probe prints
``subscribed`` once its first ShareFetch came back (its share partitions exist, their start
offset is fixed), and only then do the tests produce. No group configs are needed.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from tests.conftest import Target
from tests.java_probe import Action, Mode, ProbeResult, ProbeRun

pytestmark = pytest.mark.integration

PROBE_TIMEOUT_S = 60.0
LINGER_MS = 3000  # after the expected count: poll on, so that a duplicate would show


def new_topic(bootstrap: str, partitions: int = 1) -> str:
    name = f"j-{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(name, partitions, 1)]).values():
        f.result(30)
    return name


def produce(bootstrap: str, topic: str, count: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    try:
        for i in range(count):
            producer.produce(topic, value=b"v%d" % i, partition=0)
        assert producer.flush(30) == 0
    finally:
        producer.close()


def run_probe(
    t: Target,
    count: int,
    mode: Mode,
    action: Action = "accept",
    *,
    expected: int | None = None,
) -> ProbeResult:
    """Start a probe on a new group and topic, produce ``count`` records once it has subscribed,
    and return what it saw."""
    topic = new_topic(t.bootstrap)
    group = f"jg-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    with ProbeRun(
        t.bootstrap,
        group,
        topic,
        count if expected is None else expected,
        mode,
        action,
        PROBE_TIMEOUT_S,
        {"probe.linger.ms": str(LINGER_MS)},
    ) as probe:
        joined_s = probe.wait_subscribed(PROBE_TIMEOUT_S)
        produce(t.bootstrap, topic, count)
        result = probe.result()
    print(
        f"{t.name} {mode}/{action}: subscribed after {joined_s:.1f}s, "
        f"done in {time.monotonic() - started:.1f}s, summary {result.summary}"
    )
    assert not result.other_stdout, result.describe()
    return result


def deliveries(result: ProbeResult) -> dict[int, list[int]]:
    """offset -> the delivery counts it was delivered with, in order (one partition)."""
    out: dict[int, list[int]] = defaultdict(list)
    for r in result.records:
        assert r["partition"] == 0, r
        out[r["offset"]].append(r["deliveryCount"])
    return dict(out)


def test_java_implicit_mode_gets_every_record_once(target: Target) -> None:
    result = run_probe(target, 50, "implicit")
    assert result.returncode == 0, result.describe()
    assert result.summary["commitErrors"] == [], result.describe()
    assert deliveries(result) == {o: [1] for o in range(50)}, result.describe()
    assert {r["offset"]: r["value"] for r in result.records} == {o: f"v{o}" for o in range(50)}


def test_java_release_first_redelivers_with_delivery_count_two(target: Target) -> None:
    result = run_probe(target, 20, "explicit", "release-first")
    assert result.returncode == 0, result.describe()
    assert result.summary["commitErrors"] == [], result.describe()
    assert deliveries(result) == {o: [1, 2] for o in range(20)}, result.describe()
    acks = defaultdict(list)
    for r in result.records:
        acks[r["offset"]].append(r["ack"])
    assert acks == {o: ["RELEASE", "ACCEPT"] for o in range(20)}


def test_java_rejected_records_are_never_delivered_again(target: Target) -> None:
    result = run_probe(target, 20, "explicit", "reject")
    assert result.returncode == 0, result.describe()
    assert result.summary["commitErrors"] == [], result.describe()
    assert deliveries(result) == {o: [1] for o in range(20)}, result.describe()
