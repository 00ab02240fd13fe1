"""Shared pytest fixtures. Real-broker fixtures only wrap ``sharegroup/brokers.py``; keep logic there."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from sharegroup.brokers import Broker, start_kafka, start_tansu
from sharegroup.kafka_dist import KAFKA3_VERSION, KAFKA4_VERSION
from tests.harness import ProxyThread

BROKER_FIXTURES = {"tansu", "kafka39", "own_kafka39", "kafka4", "target"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that starts a broker must be marked ``integration``, so ``-m "not integration"``
    (the fast subset in the README) never starts one."""
    unmarked = [
        item.nodeid
        for item in items
        if BROKER_FIXTURES & set(getattr(item, "fixturenames", ()))
        and item.get_closest_marker("integration") is None
    ]
    if unmarked:
        raise pytest.UsageError(
            f"tests using a broker without @pytest.mark.integration: {unmarked}"
        )


@pytest.fixture
def tansu() -> Iterator[Broker]:
    """A fresh in-memory Tansu per test (starts in well under a second)."""
    with start_tansu() as broker:
        yield broker


@pytest.fixture(scope="session")
def kafka39() -> Iterator[Broker]:
    """Apache Kafka 3.9 (KRaft, no share groups), shared by the whole session."""
    with start_kafka(KAFKA3_VERSION, share_groups=False) as broker:
        yield broker


@pytest.fixture(scope="session")
def kafka4() -> Iterator[Broker]:
    """Newest Apache Kafka 4.x with share groups on (share.version=1), shared by the session."""
    with start_kafka(KAFKA4_VERSION, share_groups=True) as broker:
        yield broker


@pytest.fixture(scope="session")
def kafka4_dlq() -> Iterator[Broker]:
    """Kafka 4.4 with share.version=2: share groups with Kafka's own dead-letter queue
    (KIP-1191), the reference for the DLQ tests. Shared by the session."""
    with start_kafka(KAFKA4_VERSION, share_groups=True, share_version=2) as broker:
        yield broker


@dataclass
class Target:
    """Where share consumers connect: the proxy on some upstream, or Kafka 4.x itself."""

    name: str
    bootstrap: str


# Short heartbeats and locks for tests; the same bounds the Kafka 4.x fixture uses.
PROXY_CONFIGS = {
    "group.share.min.record.lock.duration.ms": "1000",
    "group.share.heartbeat.interval.ms": "1000",
    "group.share.min.heartbeat.interval.ms": "1000",
}


@pytest.fixture(params=["proxy-tansu", "proxy-kafka39", "kafka4"])
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    """The same test against the proxy on Tansu, on Kafka 3.9, and Kafka 4.x share groups."""
    if request.param == "kafka4":
        broker: Broker = request.getfixturevalue("kafka4")
        yield Target("kafka4", broker.bootstrap)
        return
    broker = request.getfixturevalue(request.param.removeprefix("proxy-"))
    with ProxyThread(broker.bootstrap, PROXY_CONFIGS) as p:
        yield Target(request.param, p.bootstrap)
