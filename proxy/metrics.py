"""Prometheus metrics of a proxy, served over HTTP (``sharegroup.metrics.listen=HOST:PORT``).

Nothing here runs on the request path except one counter or histogram update per locally
answered request. Everything about state (records by state, in-flight counts, lag, groups by
state, read-ahead bytes, fencing, share sessions) is read at scrape time by
:class:`ShareStateCollector`, which asks the proxy's Trio thread for a snapshot
(``trio.from_thread.run_sync``), so the engine is never read while it changes. Lag needs the
upstream high watermark: a Trio task refreshes it every :data:`LAG_REFRESH_S` seconds for every
share partition with the same code that answers DescribeShareGroupOffsets v1 (KIP-1226), so the
metric and ``kafka-share-groups --describe`` agree, also while no consumer is running.

The instrumentation hangs on the observer hooks of the share service (``on_answered``,
``on_change``, ``on_started``), of its persistence (``on_partition_loaded``), of the state store
(``on_write``) and of the upstream cluster (``on_request``), so the request handlers carry no
metrics code and no method is replaced. Names, labels and their cardinality are documented in
docs/operations.md.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from model import RecordState
from proxy import wire
from proxy.read_ahead import ReadAheadHeld
from proxy.share_offsets import ShareOffsets
from proxy.upstream import parse_host_port

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from proxy.server import Proxy
    from proxy.shares import ShareService
    from sharegroup.engine import Change, PartitionKey

log = logging.getLogger("sharegroup.metrics")

#: How often the lag of every share partition is recomputed from the upstream high watermark.
LAG_REFRESH_S = 5.0

SHARE_FETCH, SHARE_ACKNOWLEDGE = 78, 79
API_NAMES = {
    wire.LIST_GROUPS: "ListGroups",
    15: "DescribeGroups",
    wire.DESCRIBE_CONFIGS: "DescribeConfigs",
    42: "DeleteGroups",
    wire.INCREMENTAL_ALTER_CONFIGS: "IncrementalAlterConfigs",
    76: "ShareGroupHeartbeat",
    77: "ShareGroupDescribe",
    SHARE_FETCH: "ShareFetch",
    SHARE_ACKNOWLEDGE: "ShareAcknowledge",
    90: "DescribeShareGroupOffsets",
    91: "AlterShareGroupOffsets",
    92: "DeleteShareGroupOffsets",
}
# The acknowledgement a persisted state change records (Kafka's ackType tag).
ACK_TYPES = {
    RecordState.ACKNOWLEDGED: "accept",
    RecordState.AVAILABLE: "release",
    RecordState.ARCHIVED: "reject",
}
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

_BY_PROXY: weakref.WeakKeyDictionary[Any, ProxyMetrics] = weakref.WeakKeyDictionary()


def metrics_of(proxy: Proxy) -> ProxyMetrics | None:
    """The metrics attached to ``proxy``, if any."""
    return _BY_PROXY.get(proxy)


@dataclass
class Snapshot:
    """What the collector reads from the engine, taken inside the Trio thread."""

    partitions: list[tuple[str, str, int, dict[str, int], int, int]] = field(default_factory=list)
    lag: dict[tuple[str, str, int], int] = field(default_factory=dict)
    delivery_counts: dict[tuple[str, int], int] = field(default_factory=dict)
    groups_by_state: dict[str, int] = field(default_factory=dict)
    rebalances: int = 0
    sessions: int = 0
    session_partitions: int = 0
    read_ahead_bytes: int = 0
    fenced: bool = False
    # Whether the upstream ACLs are current; requests refused retriably while they were not,
    # by API name.
    acls_current: bool = True
    acl_unknown_refusals: dict[str, int] = field(default_factory=dict)
    # Per group: (DLQ records written, DLQ produce requests, failed ones).
    dlq: dict[str, tuple[int, int, int]] = field(default_factory=dict)


class ProxyMetrics:
    def __init__(self, proxy: Proxy, service: ShareService, listen: str) -> None:
        self.proxy = proxy
        self.service = service
        self.host, self.port = parse_host_port(listen, 9404)
        self.registry = CollectorRegistry()
        self.server: WSGIServer | None = None
        self.token: trio.lowlevel.TrioToken | None = None
        self.lag: dict[PartitionKey, int] = {}
        self._epochs: dict[str, int] = {}
        self._rebalances = 0
        r = self.registry
        self.fetch_requests = Counter(
            "kafka_share_fetch_requests",
            "ShareFetch requests (Kafka: TotalShareFetchRequestsPerSec)",
            registry=r,
        )
        self.fetch_failed = Counter(
            "kafka_share_fetch_requests_failed",
            "ShareFetch requests answered with an error (Kafka: FailedShareFetchRequestsPerSec)",
            registry=r,
        )
        self.ack_requests = Counter(
            "kafka_share_acknowledgement_requests",
            "ShareAcknowledge requests (Kafka: TotalShareAcknowledgementRequestsPerSec)",
            registry=r,
        )
        self.ack_failed = Counter(
            "kafka_share_acknowledgement_requests_failed",
            "ShareAcknowledge requests answered with an error "
            "(Kafka: FailedShareAcknowledgementRequestsPerSec)",
            registry=r,
        )
        self.record_acks = Counter(
            "kafka_share_group_record_acknowledgements",
            "Records acknowledged, by type (Kafka: ShareGroupMetrics RecordAcknowledgementsPerSec)",
            ["group", "ack_type"],
            registry=r,
        )
        self.lock_timeouts = Counter(
            "kafka_share_partition_acquisition_lock_timeouts",
            "Records whose acquisition lock expired (Kafka: AcquisitionLockTimeoutPerSec)",
            ["group"],
            registry=r,
        )
        self.load_time = Histogram(
            "kafka_share_group_partition_load_time_seconds",
            "Time to initialize a share partition (Kafka: ShareGroupMetrics PartitionLoadTimeMs)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.write_latency = Histogram(
            "kafka_share_coordinator_write_latency_seconds",
            "Share-group state writes until durable (Kafka: share-coordinator write-latency)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.write_failures = Counter(
            "kafka_share_coordinator_write_failures",
            "Share-group state writes that failed",
            registry=r,
        )
        self.request_latency = Histogram(
            "sharegroup_request_duration_seconds",
            "Requests the proxy answers itself, from decoding to the answer, by API",
            ["api"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_latency = Histogram(
            "sharegroup_upstream_request_duration_seconds",
            "The proxy's own requests to the upstream cluster, by API",
            ["api"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        r.register(ShareStateCollector(self))

    # ------------------------------------------------------------------ instrumentation
    def instrument(self) -> None:
        """Observe the share service and its parts through their hooks (call once, before
        the proxy runs)."""
        service = self.service
        service.on_answered.append(self._answered)
        service.on_change.append(self._on_change)
        service.persistence.on_partition_loaded.append(self.load_time.observe)
        if service.store is not None:
            service.store.on_write.append(self._written)
        service.on_started.append(self._started)

    async def _started(self, nursery: trio.Nursery) -> None:
        """The state is recovered: time the upstream requests and serve /metrics."""
        self.proxy.cluster.on_request.append(self._upstream_request)
        await nursery.start(self.serve)

    def _written(self, seconds: float | None) -> None:
        if seconds is None:
            self.write_failures.inc()
        else:
            self.write_latency.observe(seconds)

    def _upstream_request(self, msg: Any, seconds: float) -> None:
        api = type(msg).__name__.removesuffix("Request")
        self.upstream_latency.labels(api).observe(seconds)

    def _answered(self, head: wire.RequestHead, response: Any, seconds: float) -> None:
        api = API_NAMES.get(head.api_key, str(head.api_key))
        self.request_latency.labels(api).observe(seconds)
        if head.api_key == SHARE_FETCH:
            self.fetch_requests.inc()
            if _failed(response):
                self.fetch_failed.inc()
        elif head.api_key == SHARE_ACKNOWLEDGE:
            self.ack_requests.inc()
            if _failed(response):
                self.ack_failed.inc()

    def _on_change(self, change: Change) -> None:
        group = change.key[0]
        if change.cause == "ack":
            for b in change.delta.batches:
                kind = ACK_TYPES.get(b.state)
                if kind is not None:
                    self.record_acks.labels(group, kind).inc(b.last_offset - b.first_offset + 1)
        elif change.cause == "expiry":
            n = sum(b.last_offset - b.first_offset + 1 for b in change.delta.batches)
            self.lock_timeouts.labels(group).inc(n)

    # ------------------------------------------------------------------ serving
    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve /metrics on a thread, and refresh lag, until cancelled."""
        self.token = trio.lowlevel.current_trio_token()
        server, _thread = start_http_server(self.port, self.host, self.registry)
        self.server = server
        self.port = server.server_port
        log.info("metrics on http://%s:%d/metrics", self.host, self.port)
        task_status.started()
        try:
            while True:
                await self.refresh_lag()
                await trio.sleep(LAG_REFRESH_S)
        finally:
            server.shutdown()
            server.server_close()

    async def refresh_lag(self) -> None:
        """Recompute the lag of every share partition as DescribeShareGroupOffsets v1 does."""
        offsets = self.service.offsets
        assert isinstance(offsets, ShareOffsets), "proxy.app.attach sets the offsets handler"
        fresh: dict[PartitionKey, int] = {}
        groups = {key[0] for key in self.service.engine.partitions}
        if self.service.store is not None:
            groups |= {key[0] for key in self.service.store.replay.partitions}
        for group in sorted(groups):
            for key, start in offsets.known_partitions(group).items():
                if start >= 0:
                    fresh[key] = await offsets.lag(key, start)
        self.lag = fresh

    def snapshot(self) -> Snapshot:
        """Everything the collector shows; runs in the Trio thread."""
        service = self.service
        engine = service.engine
        names = self.proxy.cluster.topic_names
        snap = Snapshot()
        for (group, topic_id, partition), sp in engine.partitions.items():
            topic = names.get(topic_id)
            if topic is None:
                continue
            by_state = dict.fromkeys(("available", "acquired", "acknowledged", "archived"), 0)
            in_flight = 0
            for first, last, state, count, _owner, _deadline in sp.ranges():
                n = last - first + 1
                in_flight += n
                label = "archived" if state is RecordState.ARCHIVING else state.name.lower()
                by_state[label] += n
                if state in (RecordState.AVAILABLE, RecordState.ACQUIRED) and count > 0:
                    dc = (group, count)
                    snap.delivery_counts[dc] = snap.delivery_counts.get(dc, 0) + n
            snap.partitions.append((group, topic, partition, by_state, in_flight, sp.range_count()))
        for key, lag in self.lag.items():
            topic = names.get(key[1])
            if topic is not None:
                snap.lag[(key[0], topic, key[2])] = lag
        for group_id, entry in engine.groups.items():
            if not entry.exists:
                continue
            group_state = entry.group.state
            snap.groups_by_state[group_state] = snap.groups_by_state.get(group_state, 0) + 1
            epoch = entry.group.group_epoch
            self._rebalances += max(0, epoch - self._epochs.get(group_id, 0))
            self._epochs[group_id] = epoch
        for group_id in [g for g in self._epochs if g not in engine.groups]:
            del self._epochs[group_id]
        snap.rebalances = self._rebalances
        for cache in engine.sessions.values():
            for session in cache.sessions():
                snap.sessions += 1
                snap.session_partitions += len(session.partitions)
        snap.read_ahead_bytes = ReadAheadHeld.bytes
        snap.fenced = service.fenced
        authz = self.proxy.authz
        if authz is not None:
            snap.acls_current = authz.current
            snap.acl_unknown_refusals = {
                API_NAMES.get(key, str(key)): n for key, n in authz.unknown_refusals.items()
            }
        if service.dlq is not None:
            m = service.dlq.metrics
            for group in set(m.record_count) | set(m.produce_requests):
                snap.dlq[group] = (
                    m.record_count[group],
                    m.produce_requests[group],
                    m.failed_produce_requests[group],
                )
        return snap


def _failed(response: Any) -> bool:
    """A share request failed: a top-level error, or an error on any of its partitions."""
    if getattr(response, "error_code", 0):
        return True
    for topic in getattr(response, "responses", None) or []:
        for p in getattr(topic, "partitions", None) or []:
            if getattr(p, "error_code", 0) or getattr(p, "acknowledge_error_code", 0):
                return True
    return False


class ShareStateCollector(Collector):
    """Gauges computed at scrape time from a snapshot of the engine."""

    def __init__(self, metrics: ProxyMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        token = self.metrics.token
        if token is None:
            return
        try:
            snap: Snapshot = trio.from_thread.run_sync(self.metrics.snapshot, trio_token=token)
        except trio.RunFinishedError:
            return
        pl = ["group", "topic", "partition"]
        lag = GaugeMetricFamily(
            "sharegroup_share_partition_lag",
            "Records of a share partition not yet delivered to completion (KIP-1226: high "
            "watermark - start offset - acknowledged or archived records in flight), as "
            "DescribeShareGroupOffsets v1 answers",
            labels=pl,
        )
        for (g, t, p), value in sorted(snap.lag.items()):
            lag.add_metric([g, t, str(p)], value)
        yield lag
        records = GaugeMetricFamily(
            "sharegroup_share_partition_records",
            "Records in a share partition's in-flight window, by state",
            labels=[*pl, "state"],
        )
        messages = GaugeMetricFamily(
            "kafka_share_partition_in_flight_messages",
            "Records in flight (Kafka: SharePartitionMetrics InFlightMessageCount)",
            labels=pl,
        )
        batches = GaugeMetricFamily(
            "kafka_share_partition_in_flight_batches",
            "In-flight ranges of equal state (Kafka: SharePartitionMetrics InFlightBatchCount)",
            labels=pl,
        )
        for g, t, p, by_state, in_flight, ranges in sorted(snap.partitions):
            for state, n in by_state.items():
                records.add_metric([g, t, str(p), state], n)
            messages.add_metric([g, t, str(p)], in_flight)
            batches.add_metric([g, t, str(p)], ranges)
        yield records
        yield messages
        yield batches
        deliveries = GaugeMetricFamily(
            "sharegroup_records_by_delivery_count",
            "Deliverable records (available or acquired) by how often they were delivered",
            labels=["group", "delivery_count"],
        )
        for (g, count), n in sorted(snap.delivery_counts.items()):
            deliveries.add_metric([g, str(count)], n)
        yield deliveries
        groups = GaugeMetricFamily(
            "kafka_share_group_count",
            "Share groups by state (Kafka: group-coordinator-metrics share-group-count)",
            labels=["state"],
        )
        for state in ("Empty", "Stable"):
            groups.add_metric([state], snap.groups_by_state.get(state, 0))
        yield groups
        yield CounterMetricFamily(
            "kafka_share_group_rebalances",
            "Share-group rebalances: group epoch bumps (Kafka: share-group-rebalance-count)",
            value=snap.rebalances,
        )
        yield GaugeMetricFamily(
            "kafka_share_session_cache_sessions",
            "Open share sessions (Kafka: ShareSessionCache ShareSessionsCount)",
            value=snap.sessions,
        )
        yield GaugeMetricFamily(
            "kafka_share_session_cache_partitions",
            "Partitions in open share sessions (Kafka: ShareSessionCache SharePartitionsCount)",
            value=snap.session_partitions,
        )
        yield GaugeMetricFamily(
            "sharegroup_read_ahead_bytes",
            "Bytes of record batches held by all read-ahead windows",
            value=snap.read_ahead_bytes,
        )
        for name, what, i in (
            ("kafka_share_group_dead_letter_queue_records", "DeadLetterQueueRecordCount", 0),
            (
                "kafka_share_group_dead_letter_queue_produce_requests",
                "DeadLetterQueueTotalProduceRequestsPerSec",
                1,
            ),
            (
                "kafka_share_group_dead_letter_queue_failed_produce_requests",
                "DeadLetterQueueFailedProduceRequestsPerSec",
                2,
            ),
        ):
            family = CounterMetricFamily(
                name,
                f"Dead-letter queue writes (Kafka: ShareGroupMetrics {what})",
                labels=["group"],
            )
            for g, values in sorted(snap.dlq.items()):
                family.add_metric([g], values[i])
            yield family
        yield GaugeMetricFamily(
            "sharegroup_fenced",
            "1 when a newer proxy instance fenced this one off the state topic",
            value=1 if snap.fenced else 0,
        )
        yield GaugeMetricFamily(
            "sharegroup_acls_current",
            "1 while the upstream ACLs were read at the last try; 0 while they cannot be read "
            "(share APIs refused retriably)",
            value=1 if snap.acls_current else 0,
        )
        refusals = CounterMetricFamily(
            "sharegroup_acl_unknown_refusals",
            "Requests refused with COORDINATOR_LOAD_IN_PROGRESS because the upstream ACLs "
            "could not be read, by API",
            labels=["api"],
        )
        for api, n in sorted(snap.acl_unknown_refusals.items()):
            refusals.add_metric([api], n)
        yield refusals


def attach_metrics(proxy: Proxy, service: ShareService, listen: str) -> ProxyMetrics:
    """Serve Prometheus metrics of ``proxy`` on ``listen`` (HOST:PORT, port 0 picks one)."""
    metrics = ProxyMetrics(proxy, service, listen)
    metrics.instrument()
    _BY_PROXY[proxy] = metrics
    return metrics
