"""``sharegroup dlq describe`` and ``redrive`` against DLQ records Kafka 4.4 wrote itself.

Kafka 4.4 with ``share.version=2`` is the DLQ writer here: a librdkafka ShareConsumer in
explicit mode rejects records or releases them up to the delivery limit, and the broker
dead-letters them (KIP-1191). The tool then reads and copies them over the wire.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter

import pytest
from confluent_kafka import (
    AcknowledgeType,
    Consumer,
    Message,
    Producer,
    ShareConsumer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from sharegroup.brokers import Broker
from sharegroup.cli.dlq import redrive_group_id
from sharegroup.dlq_format import REDRIVE_MARKER, parse_headers
from tests.integration.test_share_consumers import set_group_configs

pytestmark = pytest.mark.integration
TIMEOUT_S = 60.0


def create_topics(bootstrap: str, *topics: tuple[str, int, dict[str, str]]) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = [NewTopic(name, partitions, 1, config=config) for name, partitions, config in topics]
    for f in admin.create_topics(new).values():
        f.result(30)


def high_watermark(bootstrap: str, topic: str, partitions: int) -> int:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "hw-probe"})
    try:
        return sum(
            c.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)[1]
            for p in range(partitions)
        )
    finally:
        c.close()


def headers_of(m: Message) -> list[tuple[str, bytes]]:
    raw = m.headers() or []
    items = list(raw.items()) if isinstance(raw, dict) else raw
    return [(k, v if isinstance(v, bytes) else (v or "").encode()) for k, v in items]


def marker_of(m: Message) -> str | None:
    value = dict(headers_of(m)).get(REDRIVE_MARKER)
    return value.decode() if value is not None else None


def read_all(bootstrap: str, topic: str, partitions: int) -> list[tuple[int, Message]]:
    """(partition, message) of every record of a topic, up to its end now."""
    ends = {
        p: Consumer({"bootstrap.servers": bootstrap, "group.id": "x"}).get_watermark_offsets(
            TopicPartition(topic, p), timeout=10, cached=False
        )[1]
        for p in range(partitions)
    }
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"r-{uuid.uuid4().hex[:6]}",
            "enable.auto.commit": False,
        }
    )
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out: list[tuple[int, Message]] = []
    deadline = time.monotonic() + TIMEOUT_S
    while sum(1 for _ in out) < sum(ends.values()) and time.monotonic() < deadline:
        for m in c.consume(500, 0.5):
            assert m.error() is None, m.error()
            partition = m.partition()
            assert partition is not None
            out.append((partition, m))
    c.close()
    assert len(out) == sum(ends.values()), f"read {len(out)} of {sum(ends.values())}"
    return out


def dead_letter(
    bootstrap: str, *, count: int, copy: bool, release_odd: bool = True, partitions: int = 2
) -> tuple[str, str, str]:
    """A source topic whose ``count`` records all end in the group's DLQ topic: even offsets
    rejected, odd ones released up to the delivery limit (2). Returns (topic, dlq, group)."""
    tag = uuid.uuid4().hex[:8]
    topic, dlq, group = f"src-{tag}", f"dlq.src-{tag}", f"g-{tag}"
    create_topics(
        bootstrap,
        (topic, partitions, {}),
        (dlq, 1, {"errors.deadletterqueue.group.enable": "true"}),
    )
    set_group_configs(
        bootstrap,
        group,
        {
            "share.auto.offset.reset": "earliest",
            "share.delivery.count.limit": "2",
            "errors.deadletterqueue.topic.name": dlq,
            "errors.deadletterqueue.copy.record.enable": str(copy).lower(),
        },
    )
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i in range(count):
        p.produce(
            topic,
            key=b"key-%d" % i,
            value=b"value-%d" % i,
            partition=i % partitions,
            headers=[("source-header", b"not copied")],
        )
    assert p.flush(30) == 0
    c = ShareConsumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "share.acknowledgement.mode": "explicit",
        }
    )
    c.subscribe([topic])
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while high_watermark(bootstrap, dlq, 1) < count:
            assert time.monotonic() < deadline, "Kafka did not dead-letter every record"
            for m in c.poll(0.5):
                assert m.error() is None, m.error()
                odd = (m.offset() or 0) % 2 == 1
                ack = AcknowledgeType.RELEASE if odd and release_odd else AcknowledgeType.REJECT
                c.acknowledge(m, ack)
            c.commit_sync()
    finally:
        c.close()
    return topic, dlq, group


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sharegroup.cli", "dlq", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_describe_counts_by_cause_and_source_partition(kafka4_dlq: Broker) -> None:
    b = kafka4_dlq.bootstrap
    topic, dlq, group = dead_letter(b, count=8, copy=False)
    res = cli("describe", "--bootstrap-server", b, "--dlq-topic", dlq)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].split()[:9] == [
        "DLQ-TOPIC",
        "GROUP",
        "SOURCE-TOPIC",
        "PARTITION",
        "RECORDS",
        "REJECTED",
        "DELIVERY-LIMIT",
        "OTHER",
        "WITH-VALUE",
    ]
    rows = {(*tuple(line.split()[:3]), line.split()[3]): line.split() for line in lines[1:3]}
    for partition, offsets in (("0", "0-3"), ("1", "0-3")):
        row = rows[(dlq, group, topic, partition)]
        # Offsets 0 and 2 rejected, 1 and 3 released twice (limit 2); no values (copy off).
        assert row[4:10] == ["4", "2", "2", "0", "0", offsets], row
    assert "carry no value" in res.stdout
    other = cli("describe", "--bootstrap-server", b, "--dlq-topic", dlq, "--group", "nobody")
    assert other.returncode == 0 and "no DLQ records" in other.stdout


def test_redrive_copies_back_to_the_source_partitions_once(kafka4_dlq: Broker) -> None:
    b = kafka4_dlq.bootstrap
    topic, dlq, group = dead_letter(b, count=6, copy=True)
    dry = cli("redrive", "--bootstrap-server", b, "--group", group, "--dlq-topic", dlq, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would copy 6 record(s)" in dry.stdout
    assert high_watermark(b, topic, 2) == 6  # a dry run writes nothing
    res = cli("redrive", "--bootstrap-server", b, "--group", group, "--dlq-topic", dlq)
    assert res.returncode == 0, res.stderr
    assert "6 record(s) copied" in res.stdout, res.stdout
    assert "6/6 records" in res.stderr  # the progress bar's last state
    got = read_all(b, topic, 2)
    originals = {(p, m.key(), m.value()) for p, m in got if marker_of(m) is None}
    copies = Counter((p, m.key(), m.value()) for p, m in got if marker_of(m) is not None)
    assert len(originals) == 6
    assert copies == Counter(dict.fromkeys(originals, 1))  # same key, value and partition
    again = cli("redrive", "--bootstrap-server", b, "--group", group, "--dlq-topic", dlq)
    assert again.returncode == 0 and "0 record(s) copied" in again.stdout, again.stdout
    assert high_watermark(b, topic, 2) == 12


def test_redrive_needs_records_with_their_value(kafka4_dlq: Broker) -> None:
    b = kafka4_dlq.bootstrap
    topic, dlq, group = dead_letter(b, count=2, copy=False)
    res = cli("redrive", "--bootstrap-server", b, "--group", group, "--dlq-topic", dlq)
    assert res.returncode == 1
    assert "errors.deadletterqueue.copy.record.enable=false" in res.stderr
    assert high_watermark(b, topic, 2) == 2  # nothing written


def test_redrive_max_records_and_another_topic(kafka4_dlq: Broker) -> None:
    b = kafka4_dlq.bootstrap
    _, dlq, group = dead_letter(b, count=6, copy=True)
    target = f"retry-{uuid.uuid4().hex[:8]}"
    create_topics(b, (target, 1, {}))
    args = [
        "redrive",
        "--bootstrap-server",
        b,
        "--group",
        group,
        "--dlq-topic",
        dlq,
        "--to-topic",
        target,
    ]
    res = cli(*args, "--max-records", "4")
    assert res.returncode == 0 and "4 record(s) copied" in res.stdout, (res.stdout, res.stderr)
    assert high_watermark(b, target, 1) == 4
    rest = cli(*args)
    assert rest.returncode == 0 and "2 record(s) copied" in rest.stdout, rest.stdout
    assert high_watermark(b, target, 1) == 6


def test_redrive_killed_and_resumed_writes_every_record_once(kafka4_dlq: Broker) -> None:
    b = kafka4_dlq.bootstrap
    _, dlq, group = dead_letter(b, count=40, copy=True, release_odd=False)
    target = f"retry-{uuid.uuid4().hex[:8]}"
    create_topics(b, (target, 2, {}))
    args = [
        "redrive",
        "--bootstrap-server",
        b,
        "--group",
        group,
        "--dlq-topic",
        dlq,
        "--to-topic",
        target,
        "--batch-size",
        "10",
    ]
    first = subprocess.Popen(
        [sys.executable, "-m", "sharegroup.cli", "dlq", *args, "--rate", "10/s"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + TIMEOUT_S
        # Kill it once 12 records are written: the second batch of ten is under way (at 10/s).
        while high_watermark(b, target, 2) < 12:
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "the first run wrote too little"
        os.killpg(first.pid, signal.SIGKILL)
    finally:
        first.communicate(timeout=30)  # reaps it and closes its pipes
    written = high_watermark(b, target, 2)
    assert 12 <= written < 40
    res = cli(*args)
    assert res.returncode == 0, res.stderr
    assert "already copied by an interrupted run" in res.stdout, res.stdout
    markers: Counter[str] = Counter()
    for _, m in read_all(b, target, 2):
        marker = marker_of(m)
        assert marker is not None
        markers[marker] += 1
    assert len(markers) == 40, len(markers)
    assert set(markers.values()) == {1}, [k for k, n in markers.items() if n > 1]
    # The DLQ records are still there, and their headers are Kafka's.
    dlq_records = read_all(b, dlq, 1)
    origins = [parse_headers(headers_of(m)) for _, m in dlq_records]
    assert all(o is not None and o.group == group for o in origins)
    assert redrive_group_id(group, dlq).startswith("sharegroup-redrive.")
