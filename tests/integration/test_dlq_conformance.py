"""The proxy's dead-letter queue against Kafka 4.4's own, record by record.

The same history runs on Kafka 4.4 with ``share.version=2`` (the reference, which writes its
DLQ itself) and on the proxy in front of Tansu and of Kafka 3.9: a librdkafka ShareConsumer in
explicit mode rejects the records at even offsets and releases the odd ones up to the delivery
limit. The three DLQ topics must then hold the same records: the same DLQ partition, key,
value and headers (Kafka's six ``__dlq.errors.*`` in Kafka's order) for every source offset.
Only the timestamps (the time of each write) and the order between source partitions differ.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from confluent_kafka import AcknowledgeType, Producer, ShareConsumer

from proxy.dlq import MARKED_TOPICS_KEY
from sharegroup.brokers import Broker
from sharegroup.cli import offsets as offsets_cli
from sharegroup.dlq_format import parse_headers
from tests.conftest import PROXY_CONFIGS
from tests.harness import ProxyThread
from tests.integration.test_dlq_cli import (
    TIMEOUT_S,
    create_topics,
    headers_of,
    high_watermark,
    read_all,
)
from tests.integration.test_share_consumers import set_group_configs

pytestmark = pytest.mark.integration

Normalized = tuple[int, bytes | None, bytes | None, tuple[tuple[str, bytes], ...]]


def run_history(bootstrap: str, tag: str, *, mark_by_config: bool, copy: bool) -> list[Normalized]:
    topic, dlq, group = f"orders-{tag}", f"dlq.orders-{tag}", f"g-{tag}"
    dlq_config = {"errors.deadletterqueue.group.enable": "true"} if mark_by_config else {}
    create_topics(bootstrap, (topic, 3, {}), (dlq, 2, dlq_config))
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
    for i in range(9):
        key = None if i == 4 else b"k%d" % i  # one record without a key
        p.produce(topic, key=key, value=b"v%d" % i, partition=i % 3, headers=[("h", b"x")])
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
        while high_watermark(bootstrap, dlq, 2) < 9:
            assert time.monotonic() < deadline, "not every record was dead-lettered"
            for m in c.poll(0.5):
                assert m.error() is None, m.error()
                odd = (m.offset() or 0) % 2 == 1
                c.acknowledge(m, AcknowledgeType.RELEASE if odd else AcknowledgeType.REJECT)
            c.commit_sync()
    finally:
        c.close()
    out = []
    for partition, m in read_all(bootstrap, dlq, 2):
        headers = tuple(headers_of(m))
        assert parse_headers(headers) is not None, headers
        out.append((partition, m.key(), m.value(), headers))
    # Order by source (topic, partition, offset): the one order all writers share.
    return sorted(out, key=lambda r: (r[3][0][1], int(r[3][1][1]), int(r[3][2][1])))


@contextmanager
def through_proxy(broker: Broker, dlq: str, tag: str) -> Iterator[str]:
    configs = {**PROXY_CONFIGS, MARKED_TOPICS_KEY: dlq}
    if broker.kind == "tansu":
        # Tansu answers DescribeAcls with an empty list rather than SECURITY_DISABLED, which
        # the proxy's authorizer takes for an authorizer without ACLs: allow as Kafka would
        # with this setting.
        configs["allow.everyone.if.no.acl.found"] = "true"
    with ProxyThread(broker.bootstrap, configs) as proxy:
        yield proxy.bootstrap
        # Kafka's DLQ meters: nine records, none failed.
        assert proxy.shares is not None and proxy.shares.dlq is not None
        metrics = proxy.shares.dlq.metrics
        assert metrics.record_count[f"g-{tag}"] == 9
        assert metrics.failed_produce_requests[f"g-{tag}"] == 0


@pytest.mark.parametrize("copy", [True, False], ids=["copy", "headers-only"])
def test_dlq_topics_agree_record_by_record(
    kafka4_dlq: Broker, tansu: Broker, kafka39: Broker, copy: bool
) -> None:
    tag = uuid.uuid4().hex[:8]
    reference = run_history(kafka4_dlq.bootstrap, tag, mark_by_config=True, copy=copy)
    assert len(reference) == 9
    # Tansu keeps any topic config: the DLQ topic is marked as on Kafka 4.4.
    with through_proxy(tansu, "", tag) as bootstrap:
        on_tansu = run_history(bootstrap, tag, mark_by_config=True, copy=copy)
    # Kafka 3.9 refuses the unknown topic config: the proxy's own list marks it.
    with through_proxy(kafka39, f"dlq.orders-{tag}", tag) as bootstrap:
        on_kafka39 = run_history(bootstrap, tag, mark_by_config=False, copy=copy)
    assert on_tansu == reference
    assert on_kafka39 == reference


def test_a_failed_dlq_write_still_archives(kafka39: Broker) -> None:
    """Kafka archives ARCHIVING records also when the DLQ write failed: here the DLQ topic is
    not marked (Kafka 3.9 cannot hold the topic config, and the proxy's list is empty)."""
    tag = uuid.uuid4().hex[:8]
    topic, dlq, group = f"orders-{tag}", f"dlq.orders-{tag}", f"g-{tag}"
    with ProxyThread(kafka39.bootstrap, PROXY_CONFIGS) as proxy:
        bootstrap = proxy.bootstrap
        create_topics(bootstrap, (topic, 1, {}), (dlq, 1, {}))
        set_group_configs(
            bootstrap,
            group,
            {"share.auto.offset.reset": "earliest", "errors.deadletterqueue.topic.name": dlq},
        )
        p = Producer({"bootstrap.servers": bootstrap})
        for i in range(3):
            p.produce(topic, value=b"v%d" % i, partition=0)
        assert p.flush(30) == 0
        c = ShareConsumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group,
                "share.acknowledgement.mode": "explicit",
            }
        )
        c.subscribe([topic])
        assert proxy.shares is not None and proxy.shares.dlq is not None
        metrics = proxy.shares.dlq.metrics
        deadline = time.monotonic() + TIMEOUT_S
        try:
            rows: list[tuple[str, int, int, int]] = []
            while not rows or rows[0][2] < 3:
                assert time.monotonic() < deadline, (rows, metrics)
                for m in c.poll(0.5):
                    assert m.error() is None, m.error()
                    c.acknowledge(m, AcknowledgeType.REJECT)
                c.commit_sync()
                rows = offsets_cli.describe_offsets(bootstrap, group, [topic])
        finally:
            c.close()
        # The start offset passed the rejected records, although nothing was written.
        assert rows == [(topic, 0, 3, 0)]
        assert metrics.failed_produce_requests[group] >= 1
        assert metrics.record_count[group] == 0
        assert high_watermark(bootstrap, dlq, 1) == 0
