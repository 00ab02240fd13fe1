"""The metrics hang on observer hooks: attaching them replaces no method of the share service,
its parts, the state store or the admin handlers, and the hooks deliver what the counters
need. No broker and no socket: the proxy is assembled but not run."""

from __future__ import annotations

from typing import Any

import trio

from proxy import messages, wire
from proxy.admin import DESCRIBE_GROUPS, AdminHandlers
from proxy.app import attach
from proxy.metrics import attach_metrics
from proxy.server import Proxy, ProxyConfig
from proxy.shares import ShareService
from proxy.state_partitions import PartitionedStateStore
from proxy.state_store import StoreConfig
from proxy.upstream import Cluster


def assembled() -> tuple[Proxy, ShareService]:
    proxy = Proxy(ProxyConfig(bootstrap=[("127.0.0.1", 1)]))
    store = PartitionedStateStore(StoreConfig(bootstrap="127.0.0.1:1"))
    return proxy, attach(proxy, store)


def shadowed_methods(obj: Any) -> list[str]:
    """Instance attributes that hide a method of the object's class."""
    return [k for k in vars(obj) if callable(getattr(type(obj), k, None))]


def samples(metrics: Any, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else float(value)


def test_attaching_metrics_replaces_no_method() -> None:
    proxy, service = assembled()
    before = dict(proxy.local_handlers)
    attach_metrics(proxy, service, "127.0.0.1:0")
    assert service.store is not None
    for obj in (service, service.persistence, service.timer, service.store):
        assert shadowed_methods(obj) == [], type(obj).__name__
    assert proxy.local_handlers == before  # the admin handlers stay as they were registered
    assert all(getattr(h, "__self__", None).__class__ is AdminHandlers for h in before.values())


def test_answered_requests_reach_the_metrics_through_on_answered() -> None:
    proxy, service = assembled()
    metrics = attach_metrics(proxy, service, "127.0.0.1:0")

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            proxy.cluster = Cluster([], nursery, 1 << 20)  # knows no topic; never connects
            request = messages.ShareGroupDescribeRequest(
                version=1, group_ids=["g"], include_authorized_operations=False
            )
            await service.handle(None, request, wire.RequestHead(77, 1, 1))  # type: ignore[arg-type]
            # An admin request goes through AdminHandlers.handle, observed the same way.
            describe = wire.request_class(DESCRIBE_GROUPS)(
                version=5, groups=[], include_authorized_operations=False
            )
            admin = proxy.local_handlers[DESCRIBE_GROUPS]
            await admin(None, describe, wire.RequestHead(DESCRIBE_GROUPS, 5, 2))  # type: ignore[arg-type]

    trio.run(main)
    count = "sharegroup_request_duration_seconds_count"
    assert samples(metrics, count, api="ShareGroupDescribe") == 1
    assert samples(metrics, count, api="DescribeGroups") == 1


def test_state_writes_reach_the_metrics_through_on_write() -> None:
    proxy, service = assembled()
    metrics = attach_metrics(proxy, service, "127.0.0.1:0")
    assert service.store is not None
    for observe in service.store.on_write:
        observe(0.01)
        observe(None)
    assert samples(metrics, "kafka_share_coordinator_write_latency_seconds_count") == 1
    assert samples(metrics, "kafka_share_coordinator_write_failures_total") == 1


def test_upstream_requests_are_observed_once_the_service_started() -> None:
    proxy, service = assembled()
    metrics = attach_metrics(proxy, service, "127.0.0.1:0")

    async def no_endpoint(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()  # the /metrics server is left out: no socket here

    metrics.serve = no_endpoint  # type: ignore[method-assign]

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            proxy.cluster = Cluster([], nursery, 1 << 20)
            assert proxy.cluster.on_request == []
            assert len(service.on_started) == 1
            await service.on_started[0](nursery)
            assert len(proxy.cluster.on_request) == 1
            fetch = wire.request_class(wire.FETCH)
            proxy.cluster.on_request[0](fetch(version=4), 0.02)

    trio.run(main)
    assert samples(metrics, "sharegroup_upstream_request_duration_seconds_count", api="Fetch") == 1
