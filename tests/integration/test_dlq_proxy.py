"""The proxy's dead-letter queue on clusters without one: DLQ topics it creates itself, the
``share.version`` gate it emulates, and ``sharegroup dlq redrive`` through the proxy.

Kafka 3.9 is the upstream throughout: it refuses the DLQ topic config, knows no
``share.version`` and has no share groups, so everything seen here is the proxy's.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable

import pytest
from confluent_kafka import AcknowledgeType, Producer, ShareConsumer
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import ConfigResource
from confluent_kafka.admin._resource import ResourceType

from proxy import wire
from sharegroup.brokers import Broker
from sharegroup.cli import offsets as offsets_cli
from sharegroup.conformance import client as kc
from sharegroup.dlq_format import parse_headers
from tests.conftest import PROXY_CONFIGS
from tests.harness import ProxyThread
from tests.integration.test_dlq_cli import (
    TIMEOUT_S,
    cli,
    create_topics,
    headers_of,
    high_watermark,
    marker_of,
    read_all,
)
from tests.integration.test_share_consumers import set_group_configs

pytestmark = pytest.mark.integration


def topic_exists(bootstrap: str, topic: str) -> bool:
    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
    t = md.topics.get(topic)
    return t is not None and t.error is None and bool(t.partitions)


def consume_and_ack(
    bootstrap: str,
    group: str,
    topic: str,
    ack: Callable[[int], AcknowledgeType],
    done: Callable[[], bool],
) -> list[tuple[bytes | None, bytes | None]]:
    """A librdkafka ShareConsumer in explicit mode acknowledges every record with ``ack``
    (by offset) until ``done()``; returns the (key, value) of what it received."""
    c = ShareConsumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "share.acknowledgement.mode": "explicit",
        }
    )
    c.subscribe([topic])
    got: list[tuple[bytes | None, bytes | None]] = []
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while not done():
            assert time.monotonic() < deadline, f"timed out; received {len(got)} records"
            for m in c.poll(0.5):
                assert m.error() is None, m.error()
                got.append((m.key(), m.value()))
                c.acknowledge(m, ack(m.offset() or 0))
            c.commit_sync()
    finally:
        c.close()
    return got


def produce(bootstrap: str, topic: str, count: int, partitions: int = 1) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i in range(count):
        p.produce(topic, key=b"key-%d" % i, value=b"value-%d" % i, partition=i % partitions)
    assert p.flush(30) == 0


def start_offset(bootstrap: str, group: str, topic: str) -> int:
    """The lowest share-partition start offset of the group's partitions of ``topic``."""
    try:
        rows = offsets_cli.describe_offsets(bootstrap, group, [topic])
    except offsets_cli.OffsetsError:
        return -1  # the group has not started yet
    return min((r[2] for r in rows), default=-1)


def test_a_missing_dlq_topic_is_created_with_auto_create_and_the_prefix(kafka39: Broker) -> None:
    """errors.deadletterqueue.auto.create.topics.enable: the proxy creates a missing DLQ topic
    (broker-default partitions; Kafka 3.9 refuses the DLQ topic config, so it is created
    without and remembered as marked). A name without errors.deadletterqueue.topic.name.prefix
    is never created: that write fails and the records are archived all the same."""
    tag = uuid.uuid4().hex[:8]
    configs = {**PROXY_CONFIGS, "errors.deadletterqueue.auto.create.topics.enable": "true"}
    with ProxyThread(kafka39.bootstrap, configs) as proxy:
        b = proxy.bootstrap
        assert proxy.shares is not None and proxy.shares.dlq is not None
        metrics = proxy.shares.dlq.metrics
        for name, dlq, created in (
            (f"ok-{tag}", f"dlq.auto-{tag}", True),
            (f"bad-{tag}", f"auto-{tag}-dlq", False),
        ):
            topic, group = f"src-{name}", f"g-{name}"
            create_topics(b, (topic, 1, {}))
            set_group_configs(
                b,
                group,
                {
                    "share.auto.offset.reset": "earliest",
                    "errors.deadletterqueue.topic.name": dlq,
                    "errors.deadletterqueue.copy.record.enable": "true",
                },
            )
            produce(b, topic, 3)
            assert not topic_exists(b, dlq)
            consume_and_ack(
                b,
                group,
                topic,
                lambda _offset: AcknowledgeType.REJECT,
                lambda: start_offset(b, group, topic) == 3,  # noqa: B023
            )
            if created:
                deadline = time.monotonic() + TIMEOUT_S
                while not topic_exists(b, dlq) or high_watermark(b, dlq, 1) < 3:
                    assert time.monotonic() < deadline, "the DLQ topic was not created and written"
                    time.sleep(0.2)
                records = read_all(b, dlq, 1)
                origins = [parse_headers(headers_of(m)) for _, m in records]
                assert [(o.topic, o.offset) for o in origins if o is not None] == [
                    (topic, 0),
                    (topic, 1),
                    (topic, 2),
                ]
                assert [m.value() for _, m in records] == [b"value-0", b"value-1", b"value-2"]
                assert metrics.record_count[group] == 3
            else:
                # Archived (start offset 3, waited for above) although nothing was written.
                assert metrics.failed_produce_requests[group] >= 1
                assert metrics.record_count[group] == 0
                assert not topic_exists(b, dlq)


def finalized(bootstrap: str) -> dict[str, int]:
    host, port = kc.parse_host_port(bootstrap)
    with kc.Connection(host, port) as conn:
        resp = conn.request(wire.api_versions_request(3), 3)
    assert resp.error_code == 0
    versions = {f.name: (f.min_version, f.max_version) for f in resp.supported_features}
    assert versions.get("share.version") == (0, 2)
    return {f.name: f.max_version_level for f in resp.finalized_features}


def test_share_version_1_keeps_dlq_configs_but_dead_letters_nothing(kafka39: Broker) -> None:
    """The proxy reports share.version in ApiVersions (Kafka 3.9 itself has no such feature):
    2 by default, or the level of sharegroup.share.version. At 1, as Kafka 4.4 at
    share.version=1, a group's DLQ configs are accepted and described, and a REJECT archives
    the record without writing it to the DLQ topic."""
    with ProxyThread(kafka39.bootstrap, PROXY_CONFIGS) as proxy:
        assert finalized(proxy.bootstrap)["share.version"] == 2
    tag = uuid.uuid4().hex[:8]
    topic, dlq, group = f"src-{tag}", f"dlq.src-{tag}", f"g-{tag}"
    configs = {
        **PROXY_CONFIGS,
        "sharegroup.share.version": "1",
        "sharegroup.errors.deadletterqueue.topics": dlq,
    }
    with ProxyThread(kafka39.bootstrap, configs) as proxy:
        b = proxy.bootstrap
        assert finalized(b)["share.version"] == 1
        create_topics(b, (topic, 1, {}), (dlq, 1, {}))
        set_group_configs(
            b,
            group,
            {"share.auto.offset.reset": "earliest", "errors.deadletterqueue.topic.name": dlq},
        )
        produce(b, topic, 4)
        consume_and_ack(
            b,
            group,
            topic,
            lambda _offset: AcknowledgeType.REJECT,
            lambda: start_offset(b, group, topic) == 4,
        )
        resource = ConfigResource(ResourceType.GROUP, group)
        admin = AdminClient({"bootstrap.servers": b})
        described = admin.describe_configs([resource])
        entry = described[resource].result(30)["errors.deadletterqueue.topic.name"]
        assert entry.value == dlq
        assert proxy.shares is not None and proxy.shares.dlq is not None
        assert proxy.shares.dlq.metrics.produce_requests[group] == 0
        assert high_watermark(b, dlq, 1) == 0


def test_redrive_through_the_proxy_redelivers_to_its_share_group(kafka39: Broker) -> None:
    """The proxy dead-letters records of a group on Kafka 3.9; ``sharegroup dlq redrive``
    pointed at the proxy copies them back to their source partitions, and the group's
    share consumer then receives the copies (key and value as before)."""
    tag = uuid.uuid4().hex[:8]
    topic, dlq, group = f"src-{tag}", f"dlq.src-{tag}", f"g-{tag}"
    configs = {**PROXY_CONFIGS, "sharegroup.errors.deadletterqueue.topics": dlq}
    with ProxyThread(kafka39.bootstrap, configs) as proxy:
        b = proxy.bootstrap
        create_topics(b, (topic, 2, {}), (dlq, 1, {}))
        set_group_configs(
            b,
            group,
            {
                "share.auto.offset.reset": "earliest",
                "errors.deadletterqueue.topic.name": dlq,
                "errors.deadletterqueue.copy.record.enable": "true",
            },
        )
        produce(b, topic, 6, partitions=2)
        first = consume_and_ack(
            b,
            group,
            topic,
            lambda _offset: AcknowledgeType.REJECT,
            lambda: high_watermark(b, dlq, 1) >= 6,
        )
        res = cli("redrive", "--bootstrap-server", b, "--group", group, "--dlq-topic", dlq)
        assert res.returncode == 0, res.stderr
        assert "6 record(s) copied" in res.stdout, res.stdout
        again = consume_and_ack(
            b,
            group,
            topic,
            lambda _offset: AcknowledgeType.ACCEPT,
            lambda: start_offset(b, group, topic) == 6,
        )
    assert Counter(again) == Counter(first) and len(first) == 6
    copies = [m for _, m in read_all(kafka39.bootstrap, topic, 2) if marker_of(m) is not None]
    assert len(copies) == 6
