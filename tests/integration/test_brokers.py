"""Smoke tests of the real-broker fixtures: every broker really stores and serves records.

Plain librdkafka clients talk straight to each broker (no proxy): if these fail, every other
integration test would fail for a reason that has nothing to do with sharegroup.
"""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    Message,
    Producer,
    ShareConsumer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

# confluent_kafka.admin re-exports these without __all__, which mypy --strict refuses: import them
# from where they are defined.
from confluent_kafka.admin._config import AlterConfigOpType, ConfigEntry, ConfigResource
from confluent_kafka.admin._resource import ResourceType
from confluent_kafka.cimpl import NewTopic

from sharegroup.brokers import Broker

pytestmark = pytest.mark.integration

N = 100
TIMEOUT_S = 30.0


def create_topic(broker: Broker, partitions: int = 1) -> str:
    topic = f"it-{uuid.uuid4().hex[:12]}"
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1)],
        operation_timeout=TIMEOUT_S,
    )
    futures[topic].result(TIMEOUT_S)
    return topic


def produce(broker: Broker, topic: str, start: int, count: int) -> None:
    """``count`` records ``v<start>..``, idempotent and acks=all; fails on any delivery error."""
    errors: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            errors.append(err)

    producer = Producer(
        {"bootstrap.servers": broker.bootstrap, "acks": "all", "enable.idempotence": True}
    )
    for i in range(start, start + count):
        producer.produce(
            topic, key=f"k{i}".encode(), value=f"v{i}".encode(), on_delivery=on_delivery
        )
    assert producer.flush(TIMEOUT_S) == 0, "records still unsent after flush"
    assert errors == []


def consume_assigned(broker: Broker, topic: str, count: int) -> list[bytes]:
    """Read ``count`` records of partition 0 from the beginning, without any group."""
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": "unused-assign-mode",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        values: list[bytes] = []
        deadline = time.monotonic() + TIMEOUT_S
        while len(values) < count and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=count, timeout=1.0):
                assert msg.error() is None, msg.error()
                value = msg.value()
                assert isinstance(value, bytes)
                values.append(value)
        return values
    finally:
        consumer.close()


@pytest.mark.parametrize("name", ["tansu", "kafka39", "kafka4"])
def test_produce_then_consume(name: str, request: pytest.FixtureRequest) -> None:
    broker: Broker = request.getfixturevalue(name)
    topic = create_topic(broker)
    produce(broker, topic, 0, N)
    assert consume_assigned(broker, topic, N) == [f"v{i}".encode() for i in range(N)]


@pytest.mark.parametrize("name", ["tansu", "own_kafka39"])
def test_restart_same_port(name: str, request: pytest.FixtureRequest) -> None:
    broker: Broker = request.getfixturevalue(name)
    topic = create_topic(broker)
    produce(broker, topic, 0, 10)
    port = broker.port
    broker.restart()
    assert broker.port == port
    if broker.kind == "kafka":  # data kept on disk
        assert consume_assigned(broker, topic, 10) == [f"v{i}".encode() for i in range(10)]
    else:  # Tansu keeps records in memory only: a new, empty broker on the same port
        topic = create_topic(broker)
        produce(broker, topic, 0, 10)
        assert len(consume_assigned(broker, topic, 10)) == 10


def share_poll(consumer: ShareConsumer, want: int) -> list[bytes]:
    values: list[bytes] = []
    deadline = time.monotonic() + TIMEOUT_S
    while len(values) < want and time.monotonic() < deadline:
        for msg in consumer.poll(1.0):
            assert msg.error() is None, msg.error()
            value = msg.value()
            assert isinstance(value, bytes)
            values.append(value)
    return values


def test_kafka4_share_consumer(kafka4: Broker) -> None:
    topic = create_topic(kafka4)
    group = f"share-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": kafka4.bootstrap})
    resource = ConfigResource(
        ResourceType.GROUP,
        group,
        incremental_configs=[
            ConfigEntry(
                "share.auto.offset.reset",
                "earliest",
                incremental_operation=AlterConfigOpType.SET,
            )
        ],
    )
    admin.incremental_alter_configs([resource])[resource].result(TIMEOUT_S)

    half = N // 2
    produce(kafka4, topic, 0, half)  # before the member joins: found through "earliest"
    consumer = ShareConsumer({"bootstrap.servers": kafka4.bootstrap, "group.id": group})
    try:
        consumer.subscribe([topic])
        first = share_poll(consumer, half)
        produce(kafka4, topic, half, N - half)  # after it joined and fetched
        second = share_poll(consumer, N - half)
    finally:
        consumer.close()
    assert sorted(first + second) == sorted(f"v{i}".encode() for i in range(N))
