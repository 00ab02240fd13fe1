"""Clients cannot produce to, fetch from, delete records of or delete the proxy's state topic."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from proxy.state_store import DEFAULT_TOPIC
from sharegroup.brokers import Broker
from tests.harness import ProxyThread

pytestmark = pytest.mark.integration


def test_relayed_produce_fetch_and_delete_of_the_state_topic_are_refused(tansu: Broker) -> None:
    with ProxyThread(tansu.bootstrap) as proxied:
        other = f"t-{uuid.uuid4().hex[:8]}"
        admin = AdminClient({"bootstrap.servers": proxied.bootstrap})
        for f in admin.create_topics([NewTopic(other, 1, 1)]).values():
            f.result(30)
        assert DEFAULT_TOPIC in admin.list_topics(timeout=10).topics  # the proxy made it

        outcomes: dict[str, KafkaError | None] = {}
        producer = Producer({"bootstrap.servers": proxied.bootstrap, "message.timeout.ms": 10000})
        producer.produce(
            DEFAULT_TOPIC,
            b"forged",
            partition=0,
            on_delivery=lambda err, _m: outcomes.__setitem__("state", err),
        )
        producer.produce(
            other,
            b"fine",
            partition=0,
            on_delivery=lambda err, _m: outcomes.__setitem__("other", err),
        )
        producer.flush(20)
        state_error = outcomes["state"]
        assert state_error is not None
        assert state_error.code() == KafkaError.TOPIC_EXCEPTION  # 17, INVALID_TOPIC_EXCEPTION
        assert outcomes["other"] is None  # the proxy keeps serving the rest

        consumer = Consumer(
            {"bootstrap.servers": proxied.bootstrap, "group.id": "g", "log_level": 3}
        )
        consumer.assign([TopicPartition(DEFAULT_TOPIC, 0, 0)])
        errors: list[int] = []
        records = 0
        deadline = time.monotonic() + 10
        while not errors and time.monotonic() < deadline:
            for m in consumer.consume(10, 0.5):
                err = m.error()
                if err is None:
                    records += 1
                else:
                    errors.append(err.code())
        consumer.close()
        assert records == 0
        assert KafkaError.TOPIC_EXCEPTION in errors

        futures = admin.delete_topics([DEFAULT_TOPIC], operation_timeout=10)
        with pytest.raises(KafkaException, match="TOPIC_EXCEPTION"):
            futures[DEFAULT_TOPIC].result(20)
        assert DEFAULT_TOPIC in admin.list_topics(timeout=10).topics
