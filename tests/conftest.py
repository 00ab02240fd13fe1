"""Shared pytest fixtures. Real-broker fixtures only wrap ``sharegroup/brokers.py``; keep logic there."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import pytest

from sharegroup.brokers import Broker, KafkaSecurity, start_kafka, start_tansu
from sharegroup.kafka_dist import KAFKA3_VERSION, KAFKA4_VERSION
from sharegroup.pki import Pki, make_pki
from tests.harness import ProxyThread

BROKER_FIXTURES = {
    "tansu",
    "kafka39",
    "own_kafka39",
    "kafka4",
    "target",
    "kafka39_sasl",
    "kafka39_ssl",
    "kafka4_sasl",
}


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


@pytest.fixture
def own_kafka39() -> Iterator[Broker]:
    """A Kafka 3.9 of this test's own, for tests that stop or restart their broker: the
    session-wide one stays up, so no other test's outcome depends on running after them."""
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


# -- secured brokers -------------------------------------------------------------------------

# SCRAM users of the secured fixtures: the proxy's own principal, an administrator (super user)
# and ordinary clients whose rights come from ACLs alone.
SECURE_USERS = {
    "admin": "admin-secret",
    "proxy": "proxy-secret",
    "alice": "alice-secret",
    "bob": "bob-secret",
}


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A test CA and certificates for 127.0.0.1, made at test time."""
    return make_pki(tmp_path_factory.mktemp("pki"))


def secure(pki: Pki, protocol: Literal["SSL", "SASL_SSL"] = "SASL_SSL") -> KafkaSecurity:
    return KafkaSecurity(
        keystore=pki.kafka_keystore,
        truststore=pki.ca,
        protocol=protocol,
        users=SECURE_USERS,
        super_users=("proxy",),
    )


@pytest.fixture(scope="session")
def kafka39_sasl(pki: Pki) -> Iterator[Broker]:
    """Kafka 3.9 with a SASL_SSL listener (SCRAM and PLAIN users of SECURE_USERS),
    StandardAuthorizer, super users admin and proxy."""
    with start_kafka(KAFKA3_VERSION, share_groups=False, security=secure(pki)) as broker:
        yield broker


@pytest.fixture(scope="session")
def kafka39_ssl(pki: Pki) -> Iterator[Broker]:
    """Kafka 3.9 with an SSL listener, no SASL and no authorizer."""
    security = KafkaSecurity(
        keystore=pki.kafka_keystore, truststore=pki.ca, protocol="SSL", authorizer=False
    )
    with start_kafka(KAFKA3_VERSION, share_groups=False, security=security) as broker:
        yield broker


@pytest.fixture(scope="session")
def kafka4_sasl(pki: Pki) -> Iterator[Broker]:
    """Kafka 4.x share groups, secured as kafka39_sasl (the reference for the ACL tests)."""
    with start_kafka(KAFKA4_VERSION, share_groups=True, security=secure(pki)) as broker:
        yield broker
