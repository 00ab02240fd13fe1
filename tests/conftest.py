"""Shared pytest fixtures. Real-broker fixtures only wrap ``sharegroup/brokers.py``; keep logic there."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sharegroup.brokers import Broker, start_kafka, start_tansu
from sharegroup.kafka_dist import KAFKA3_VERSION, KAFKA4_VERSION


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
