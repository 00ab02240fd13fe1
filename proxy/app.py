"""Assembling a proxy from configs: what ``sharegroup proxy`` and the tests both run.

Configs use Kafka's names where Kafka has one:

* ``group.share.*`` — share-group broker defaults and bounds (Kafka's ``ShareGroupConfig``,
  ``GroupCoordinatorConfig``);
* ``socket.request.max.bytes`` — the largest request frame accepted;
* ``share.coordinator.state.topic.replication.factor``, ``share.coordinator.state.topic.min.isr``,
  ``share.coordinator.snapshot.update.records.per.snapshot`` — the state topic (Kafka's ``ShareCoordinatorConfig``);
* ``sharegroup.state.topic`` (default ``__sharegroup_state``), ``sharegroup.state.enable``
  (default true; false keeps share-group state in memory only) and
  ``sharegroup.state.topic.partitions`` (the partition count a new state topic gets; see
  docs/persistence.md) — ours, where Kafka's own state topic is internal;
* ``ssl.*`` for TLS listeners and ``upstream.*`` for the upstream connections (``proxy.security``).
* ``sharegroup.state.write.timeout.ms`` (default 120000) — how long a state write may go
  unconfirmed before its outcome counts as unknown and the store recovers (docs/persistence.md).
* ``sharegroup.metrics.listen`` (``HOST:PORT``, unset: no endpoint) — Prometheus metrics at
  ``/metrics`` (``proxy/metrics.py``, docs/operations.md).
* ``sharegroup.fleet.*`` — fleet mode, several instances sharing the work (``proxy/fleet_service.py``,
  docs/persistence.md, A fleet of instances): ``enabled`` (default false), ``instance.id``
  (required with it: an integer unique in the fleet, as Kafka's ``node.id``), ``group.id``
  (the fleet's consumer group, default ``sharegroup-fleet-<state topic>``),
  ``session.timeout.ms`` (default 45000, Kafka's consumer default; the cluster's
  ``group.min.session.timeout.ms``, 6000 by default, is the floor) and
  ``heartbeat.interval.ms`` (default 3000): an instance that dies is noticed after the
  session timeout.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from model import BrokerConfig, ConfigError
from model.config import BROKER_DLQ_KEYS
from proxy.admin import AdminHandlers
from proxy.authz import ACL_KEYS, Authorizer, authz_config
from proxy.dlq import MARKED_TOPICS_KEY, DlqWriter
from proxy.fleet import MAX_INSTANCE_ID
from proxy.fleet_service import FleetService
from proxy.framing import DEFAULT_MAX_FRAME_BYTES
from proxy.internal_topic import InternalTopicGuard
from proxy.lock_timer import LockTimer
from proxy.log_reads import UpstreamLog
from proxy.membership import Membership
from proxy.metrics import attach_metrics
from proxy.read_ahead import PartitionWatch
from proxy.read_ahead_fetch import ReadAheadFetcher
from proxy.security import SECURITY_KEYS, security_settings
from proxy.server import Proxy, ProxyConfig
from proxy.share_offsets import ShareOffsets
from proxy.share_persist import SharePersistence
from proxy.shares import ShareService
from proxy.state_partitions import PartitionedStateStore
from proxy.state_store import DEFAULT_TOPIC, StoreConfig
from sharegroup.core import ShareCore
from sharegroup.engine import PartitionKey, ShareEngine
from sharegroup.persist.partitioning import DEFAULT_STATE_PARTITIONS, MAX_STATE_PARTITIONS
from sharegroup.persist.policy import PersistPolicy

METRICS_LISTEN = "sharegroup.metrics.listen"
FLEET_ENABLED = "sharegroup.fleet.enabled"
FLEET_INSTANCE_ID = "sharegroup.fleet.instance.id"
FLEET_GROUP_ID = "sharegroup.fleet.group.id"
FLEET_SESSION_TIMEOUT = "sharegroup.fleet.session.timeout.ms"
FLEET_HEARTBEAT = "sharegroup.fleet.heartbeat.interval.ms"
FLEET_KEYS = {
    FLEET_ENABLED,
    FLEET_INSTANCE_ID,
    FLEET_GROUP_ID,
    FLEET_SESSION_TIMEOUT,
    FLEET_HEARTBEAT,
}
STORE_KEYS = {
    "sharegroup.state.topic",
    "sharegroup.state.enable",
    "sharegroup.state.topic.partitions",
    "share.coordinator.state.topic.replication.factor",
    "share.coordinator.state.topic.min.isr",
    "share.coordinator.snapshot.update.records.per.snapshot",
    "sharegroup.state.write.timeout.ms",
}


def _int(configs: dict[str, str], key: str, low: int, high: int) -> int | None:
    if key not in configs:
        return None
    try:
        value = int(configs[key])
    except ValueError:
        raise ConfigError(f"{key}: {configs[key]!r} is not an integer") from None
    if not low <= value <= high:
        raise ConfigError(f"{key}={value} is outside [{low}, {high}]")
    return value


def split_configs(configs: dict[str, str]) -> tuple[dict[str, str], dict[str, str], int]:
    """(group.share configs, store configs, max frame bytes); ConfigError names a bad key."""
    share: dict[str, str] = {}
    store: dict[str, str] = {}
    max_frame = DEFAULT_MAX_FRAME_BYTES
    for key, value in configs.items():
        if key.startswith("group.share.") or key in BROKER_DLQ_KEYS or key == MARKED_TOPICS_KEY:
            share[key] = value
        elif key in STORE_KEYS:
            store[key] = value
        elif key in SECURITY_KEYS or key in ACL_KEYS:
            continue  # checked by proxy.security when the proxy is built
        elif key == METRICS_LISTEN or key in FLEET_KEYS:
            continue
        elif key == "socket.request.max.bytes":
            max_frame = _int(configs, key, 1024, 2**31 - 1) or DEFAULT_MAX_FRAME_BYTES
        else:
            raise ConfigError(f"unknown config {key!r}")
    BrokerConfig.from_mapping({k: v for k, v in share.items() if k != MARKED_TOPICS_KEY})
    enable = store.get("sharegroup.state.enable", "true").lower()
    if enable not in ("true", "false"):
        raise ConfigError(f"sharegroup.state.enable: {enable!r} is not true/false")
    _int(store, "sharegroup.state.write.timeout.ms", 1000, 3600000)
    _int(store, "sharegroup.state.topic.partitions", 1, MAX_STATE_PARTITIONS)
    for key in STORE_KEYS - {
        "sharegroup.state.topic",
        "sharegroup.state.enable",
        "sharegroup.state.write.timeout.ms",
        "sharegroup.state.topic.partitions",
    }:
        _int(store, key, 0 if "snapshot" in key else 1, 500 if "snapshot" in key else 1000)
    fleet_settings(configs)
    return share, store, max_frame


def fleet_settings(configs: dict[str, str]) -> dict[str, Any] | None:
    """The fleet-mode settings (None: one instance); ConfigError names a bad key."""
    enabled = configs.get(FLEET_ENABLED, "false").lower()
    if enabled not in ("true", "false"):
        raise ConfigError(f"{FLEET_ENABLED}: {enabled!r} is not true/false")
    if enabled == "false":
        return None
    if configs.get("sharegroup.state.enable", "true").lower() == "false":
        raise ConfigError(f"{FLEET_ENABLED}=true needs sharegroup.state.enable=true")
    instance_id = _int(configs, FLEET_INSTANCE_ID, 0, MAX_INSTANCE_ID)
    if instance_id is None:
        raise ConfigError(f"{FLEET_ENABLED}=true needs {FLEET_INSTANCE_ID} (or --instance-id)")
    session = _int(configs, FLEET_SESSION_TIMEOUT, 1000, 3600000) or 45000
    heartbeat = _int(configs, FLEET_HEARTBEAT, 100, 3600000) or min(3000, session // 3)
    if heartbeat >= session:
        raise ConfigError(f"{FLEET_HEARTBEAT}={heartbeat} must be below {FLEET_SESSION_TIMEOUT}")
    return {
        "instance_id": instance_id,
        "group_id": configs.get(FLEET_GROUP_ID) or None,
        "session_timeout_ms": session,
        "heartbeat_interval_ms": heartbeat,
    }


def build_proxy(config: ProxyConfig, configs: dict[str, str]) -> tuple[Proxy, ShareService]:
    share, store_configs, max_frame = split_configs(configs)
    config.share_configs = share
    config.max_frame_bytes = max_frame
    config.listener, config.upstream = security_settings(config.listen_protocol, configs)
    proxy = Proxy(config)
    proxy.authz = Authorizer(lambda: proxy.cluster, authz_config(configs, config.listener.sasl))
    store = None
    if store_configs.get("sharegroup.state.enable", "true").lower() == "true":
        store = PartitionedStateStore(
            StoreConfig(
                bootstrap=",".join(f"{h}:{p}" for h, p in config.bootstrap),
                topic=store_configs.get("sharegroup.state.topic", DEFAULT_TOPIC),
                replication_factor=_int(
                    store_configs, "share.coordinator.state.topic.replication.factor", 1, 1000
                ),
                min_isr=_int(store_configs, "share.coordinator.state.topic.min.isr", 1, 1000),
                commit_retry_s=(
                    _int(store_configs, "sharegroup.state.write.timeout.ms", 1000, 3600000)
                    or 120000
                )
                / 1000,
                security=config.upstream,
                partitions=_int(
                    store_configs, "sharegroup.state.topic.partitions", 1, MAX_STATE_PARTITIONS
                )
                or DEFAULT_STATE_PARTITIONS,
            )
        )
    if store is not None:
        topic = store.config.topic

        def state_topic_id() -> UUID | None:
            info = proxy.cluster.topics.get(topic)
            return info.topic_id if info is not None else None

        proxy.internal_topic = InternalTopicGuard(topic, state_topic_id)
    service = attach(proxy, store)
    fleet = fleet_settings(configs)
    if fleet is not None and store is not None:
        FleetService(proxy, service, store, **fleet)
    snapshot_every = _int(
        store_configs, "share.coordinator.snapshot.update.records.per.snapshot", 0, 500
    )
    if snapshot_every is not None:
        service.persistence.persist_policy = PersistPolicy(max(1, snapshot_every))
    if configs.get(METRICS_LISTEN):
        attach_metrics(proxy, service, configs[METRICS_LISTEN])
    return proxy, service


def attach(proxy: Proxy, store: PartitionedStateStore | None = None) -> ShareService:
    """Give a proxy the share-group APIs (durable when given a state store): the share
    service and its parts, the offsets APIs over it, and the admin APIs that read and change
    its groups."""
    share = proxy.config.share_configs
    broker_config = BrokerConfig.from_mapping(
        {k: v for k, v in share.items() if k.startswith("group.share.") or k in BROKER_DLQ_KEYS}
    )
    proxy.share_version = broker_config.share_version  # reported in ApiVersions
    engine = ShareEngine(broker_config)
    engine.dead_letter_queues = True  # SharePersistence.dead_letter ends every ARCHIVING
    upstream = UpstreamLog(proxy)
    watches: dict[PartitionKey, PartitionWatch] = {}
    persistence = SharePersistence(proxy, engine, store, upstream, watches)
    persistence.dlq = DlqWriter(
        ",".join(f"{h}:{p}" for h, p in proxy.config.bootstrap),
        prefix=broker_config.dlq_topic_name_prefix,
        auto_create=broker_config.dlq_auto_create_topics_enable,
        marked_topics=[t for t in share.get(MARKED_TOPICS_KEY, "").split(",") if t.strip()],
        client_config=proxy.config.upstream.librdkafka,
    )
    timer = LockTimer(engine, lambda: proxy.cluster.partition_counts(), persistence.publish)
    core = ShareCore(engine)
    service = ShareService(
        proxy,
        core,
        persistence,
        timer,
        Membership(proxy, core, persistence, timer),
        ReadAheadFetcher(
            upstream,
            watches,
            {"on_demand": 0, "from_read_ahead": 0, "read_ahead_fetches": 0},
        ),
    )
    service.offsets = ShareOffsets(service)
    proxy.share_handler = service
    AdminHandlers(proxy, service)
    return service
