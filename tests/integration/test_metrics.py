"""The proxy's Prometheus endpoint, scraped over HTTP while a real ShareConsumer works through it."""

from __future__ import annotations

import json
import re
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import AcknowledgeType, ShareConsumer
from prometheus_client.parser import text_string_to_metric_families

from proxy.metrics import LAG_REFRESH_S, metrics_of
from proxy.thread import ProxyThread
from sharegroup.brokers import Broker
from sharegroup.cli.offsets import describe_offsets
from tests.conftest import PROXY_CONFIGS
from tests.integration.test_share_consumers import new_topic, produce, records, set_group_configs

pytestmark = pytest.mark.integration

DEADLINE_S = 30.0
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.status == 200
        text = resp.read().decode()
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def wait_for(url: str, what: str, probe: Callable[[Samples], object], want: object) -> Samples:
    deadline = time.monotonic() + DEADLINE_S + LAG_REFRESH_S
    while True:
        samples = scrape(url)
        got = probe(samples)
        if got == want:
            return samples
        assert time.monotonic() < deadline, f"{what}: still {got!r}, want {want!r}"
        time.sleep(0.3)


@pytest.fixture
def proxy_with_metrics(kafka39: Broker) -> Iterator[tuple[ProxyThread, str]]:
    configs = {**PROXY_CONFIGS, "sharegroup.metrics.listen": "127.0.0.1:0"}
    with ProxyThread(kafka39.bootstrap, configs) as p:
        assert p.proxy is not None
        m = metrics_of(p.proxy)
        assert m is not None
        yield p, f"http://127.0.0.1:{m.port}/metrics"


def test_metrics_follow_a_share_consumer(proxy_with_metrics: tuple[ProxyThread, str]) -> None:
    p, url = proxy_with_metrics
    topic = new_topic(p.bootstrap)
    group = f"g-{uuid.uuid4().hex[:8]}"
    set_group_configs(
        p.bootstrap,
        group,
        {"share.auto.offset.reset": "earliest", "share.record.lock.duration.ms": "1000"},
    )
    produce(p.bootstrap, topic, 10)
    part = {"group": group, "topic": topic, "partition": "0"}
    c = ShareConsumer(
        {
            "bootstrap.servers": p.bootstrap,
            "group.id": group,
            "share.acknowledgement.mode": "explicit",
        }
    )
    c.subscribe([topic])
    try:
        # Before anyone acknowledged anything, the whole topic is lag.
        got: list[int] = []
        deadline = time.monotonic() + DEADLINE_S
        while len(got) < 10:
            assert time.monotonic() < deadline, f"consumed {got}"
            for m in records(c.poll(0.5)):
                offset = m.offset()
                assert offset is not None
                got.append(offset)
                # offsets 0-6 accepted, 7-8 released, 9 rejected
                ack = (
                    AcknowledgeType.ACCEPT
                    if offset < 7
                    else AcknowledgeType.RELEASE
                    if offset < 9
                    else AcknowledgeType.REJECT
                )
                c.acknowledge(m, ack)
        c.commit_sync()

        # KIP-1226: high watermark 10 - start offset 7 - 1 archived record in flight = 2.
        samples = wait_for(
            url, "lag", lambda s: value(s, "sharegroup_share_partition_lag", **part), 2.0
        )
        [(_, _, start, lag)] = describe_offsets(p.bootstrap, group)
        assert (start, lag) == (7, 2)  # DescribeShareGroupOffsets v1 says the same
        for state, n in {"available": 2, "acquired": 0, "acknowledged": 0, "archived": 1}.items():
            assert value(samples, "sharegroup_share_partition_records", state=state, **part) == n
        assert value(samples, "kafka_share_partition_in_flight_messages", **part) == 3
        assert value(samples, "kafka_share_partition_in_flight_batches", **part) == 2
        for kind, n in {"accept": 7, "release": 2, "reject": 1}.items():
            assert (
                value(
                    samples,
                    "kafka_share_group_record_acknowledgements_total",
                    group=group,
                    ack_type=kind,
                )
                == n
            )
        assert (
            value(samples, "sharegroup_records_by_delivery_count", group=group, delivery_count="1")
            == 2
        )
        assert value(samples, "kafka_share_group_count", state="Stable") == 1
        assert value(samples, "kafka_share_group_count", state="Empty") == 0
        assert (value(samples, "kafka_share_group_rebalances_total") or 0) >= 1
        assert value(samples, "kafka_share_session_cache_sessions") == 1
        assert value(samples, "kafka_share_session_cache_partitions") == 1
        assert value(samples, "sharegroup_fenced") == 0
        assert value(samples, "sharegroup_acls_current") == 1  # no authorizer: nothing to read
        read_ahead = value(samples, "sharegroup_read_ahead_bytes")  # 0 once all is handed out
        assert read_ahead is not None and read_ahead >= 0, read_ahead
        assert (value(samples, "kafka_share_fetch_requests_total") or 0) >= 1
        assert value(samples, "kafka_share_fetch_requests_failed_total") == 0
        counted = value(samples, "sharegroup_request_duration_seconds_count", api="ShareFetch")
        assert counted == value(samples, "kafka_share_fetch_requests_total")
        assert (value(samples, "kafka_share_coordinator_write_latency_seconds_count") or 0) >= 1
        assert value(samples, "kafka_share_coordinator_write_failures_total") == 0
        assert (value(samples, "kafka_share_group_partition_load_time_seconds_count") or 0) >= 1
        assert (
            value(samples, "sharegroup_upstream_request_duration_seconds_count", api="Fetch") or 0
        ) >= 1

        # The released records come again; left unacknowledged, their locks expire.
        again: list[int] = []
        deadline = time.monotonic() + DEADLINE_S
        while len(again) < 2:
            assert time.monotonic() < deadline, f"redelivered {again}"
            again += [m.offset() or 0 for m in records(c.poll(0.5))]
        assert sorted(again) == [7, 8]
        samples = wait_for(
            url,
            "lock timeouts",
            lambda s: value(
                s, "kafka_share_partition_acquisition_lock_timeouts_total", group=group
            ),
            2.0,
        )
        assert (
            value(samples, "sharegroup_records_by_delivery_count", group=group, delivery_count="2")
            == 2
        )
    finally:
        c.close()
    wait_for(url, "empty group", lambda s: value(s, "kafka_share_group_count", state="Empty"), 1.0)
    # With no consumer left, lag still follows what is produced (an autoscaler scaling from
    # zero needs that): 2 left over plus 4 new.
    produce(p.bootstrap, topic, 4)
    wait_for(
        url,
        "lag without consumers",
        lambda s: value(s, "sharegroup_share_partition_lag", **part),
        6.0,
    )


DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana" / "sharegroup.json"
#: Every label the endpoint may use (docs/operations.md): bounded by groups, share partitions,
#: record states, acknowledgement types, delivery counts up to the limit, and API names.
DOCUMENTED_LABELS = {
    "group",
    "topic",
    "partition",
    "state",
    "ack_type",
    "delivery_count",
    "api",
    "le",
}


def dashboard_queries() -> list[str]:
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    queries = [t["expr"] for panel in dash["panels"] for t in panel["targets"]]
    queries += [v["definition"] for v in dash["templating"]["list"]]
    return queries


def check_dashboard(samples: Samples) -> None:
    """Every metric a dashboard query names is in the live scrape, with every label the query
    selects or groups by."""
    labels_of: dict[str, set[str]] = {}
    for name, labels in samples:
        labels_of.setdefault(name, set()).update(k for k, _ in labels)
    queries = dashboard_queries()
    assert len(queries) >= 15
    for query in queries:
        names = set(re.findall(r"\b((?:kafka|sharegroup)_[a-z0-9_]+)", query))
        assert names, query
        wanted = set(re.findall(r"(\w+)\s*=~?", query))
        for by in re.findall(r"by \(([^)]*)\)", query):
            wanted |= {w.strip() for w in by.split(",")}
        wanted |= set(re.findall(r"label_values\(\w+, (\w+)\)", query))
        for name in names:
            assert name in labels_of, f"{query}: {name} is not in the scrape"
            assert wanted <= labels_of[name], f"{query}: {name} has only {labels_of[name]}"


def test_dashboard_queries_name_only_proxy_metrics() -> None:
    """The dashboard is valid JSON whose queries all name this proxy's metrics (the live
    check is in test_metrics_follow_a_share_consumer)."""
    for query in dashboard_queries():
        assert re.search(r"(kafka|sharegroup)_", query), query
