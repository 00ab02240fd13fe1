"""The relay: ordinary Kafka clients work through the proxy, and never see an upstream address."""

from __future__ import annotations

import socket
import struct
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KpTopicPartition

from proxy import wire
from proxy.framing import FrameBuffer
from sharegroup.brokers import Broker
from tests.harness import ProxyThread

pytestmark = pytest.mark.integration


@pytest.fixture(params=["tansu", "kafka39"])
def upstream(request: pytest.FixtureRequest) -> Broker:
    broker: Broker = request.getfixturevalue(request.param)
    return broker


@pytest.fixture
def proxied(upstream: Broker) -> Iterator[ProxyThread]:
    with ProxyThread(upstream.bootstrap) as p:
        yield p


def create_topic(bootstrap: str, partitions: int = 1) -> str:
    name = f"t-{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(name, partitions, 1)]).values():
        f.result(30)
    return name


def raw_request(host: str, port: int, msg: Any, version: int) -> Any:
    """One request over a fresh blocking socket, answered and decoded."""
    msg.API_VERSION = version
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(wire.encode_request(msg, 7, "relay-test"))
        buf = FrameBuffer()
        while (payload := buf.next_frame()) is None:
            chunk = s.recv(65536)
            assert chunk, "proxy closed the connection"
            buf.feed(chunk)
    return wire.decode_response(payload, msg.API_KEY, version)


def fetch_request(topic: str, version: int, correlation_id: int) -> bytes:
    """A Fetch of partition 0 from offset 0, up to 16 MiB."""
    msg = wire.fetch_request(version, [(topic, 0, 0, 16 << 20)], max_wait_ms=100, min_bytes=1)
    msg.API_VERSION = version
    return wire.encode_request(msg, correlation_id, "relay-test")


def pipelined(host: str, port: int, requests: list[bytes], delay_s: float = 0.0) -> list[bytes]:
    """Send all requests at once, wait ``delay_s``, then read one answer per request."""
    answers: list[bytes] = []
    with socket.create_connection((host, port), timeout=30) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)  # a slow reader holds back
        s.sendall(b"".join(requests))
        time.sleep(delay_s)
        buf = FrameBuffer()
        while len(answers) < len(requests):
            while len(answers) < len(requests) and (payload := buf.next_frame()) is not None:
                answers.append(payload)
            if len(answers) < len(requests):
                chunk = s.recv(65536)
                assert chunk, "proxy closed the connection"
                buf.feed(chunk)
    return answers


@pytest.mark.parametrize("delay_s", [0.0, 0.5])
def test_large_fetch_answers_pipelined_with_local_ones_come_byte_for_byte_in_order(
    proxied: ProxyThread, upstream: Broker, delay_s: float
) -> None:
    """Multi-megabyte Fetch answers (passed on while they arrive) between answers the proxy
    makes itself (ApiVersions) and rewrites (Metadata): every answer in request order, the
    Fetch answers exactly the broker's. With a delay the client reads late and slowly, so the
    proxy must hold the broker back in the middle of an answer."""
    topic = create_topic(proxied.bootstrap)
    producer = Producer({"bootstrap.servers": proxied.bootstrap, "linger.ms": 5})
    value = bytes(range(256)) * 4
    for _ in range(3000):
        producer.produce(topic, value=value, partition=0)
    assert producer.flush(30) == 0
    proxy = proxied.proxy
    assert proxy is not None
    host, port = proxy.bootstrap_address
    version = min(12, proxy.advertised_versions(next(iter(proxy.brokers.ports)))[wire.FETCH][1])
    (direct,) = pipelined(upstream.host, upstream.port, [fetch_request(topic, version, 1)])
    assert len(direct) > 3_000_000

    def api_versions(cid: int) -> bytes:
        return wire.encode_request(wire.api_versions_request(3), cid, "relay-test")

    metadata_cls = wire.request_class(wire.METADATA)
    metadata = metadata_cls(version=9, topics=None, allow_auto_topic_creation=False)
    metadata.API_VERSION = 9
    requests = [
        fetch_request(topic, version, 1),
        api_versions(2),
        fetch_request(topic, version, 3),
        wire.encode_request(metadata, 4, "relay-test"),
        fetch_request(topic, version, 5),
        api_versions(6),
    ]
    answers = pipelined(host, port, requests, delay_s)
    assert [struct.unpack_from(">i", a)[0] for a in answers] == [1, 2, 3, 4, 5, 6]
    for fetched in (answers[0], answers[2], answers[4]):
        assert fetched[4:] == direct[4:]
    versions = wire.decode_response(answers[1], wire.API_VERSIONS, 3)
    assert versions.error_code == 0
    assert wire.decode_response(answers[5], wire.API_VERSIONS, 3).error_code == 0
    brokers = wire.decode_response(answers[3], wire.METADATA, 9).brokers
    assert {b.port for b in brokers} <= set(proxy.brokers.ports.values())


def test_confluent_idempotent_producer_and_assign_consumer(proxied: ProxyThread) -> None:
    topic = create_topic(proxied.bootstrap, 2)
    producer = Producer(
        {"bootstrap.servers": proxied.bootstrap, "acks": "all", "enable.idempotence": True}
    )
    for i in range(2000):
        producer.produce(topic, key=str(i).encode(), value=b"x" * 100, partition=i % 2)
    assert producer.flush(30) == 0
    consumer = Consumer(
        {"bootstrap.servers": proxied.bootstrap, "group.id": "unused", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, 0, 0), TopicPartition(topic, 1, 0)])
    keys: set[bytes] = set()
    deadline = time.monotonic() + 30
    while len(keys) < 2000 and time.monotonic() < deadline:
        for m in consumer.consume(500, 1.0):
            assert m.error() is None, m.error()
            key = m.key()
            assert key is not None
            keys.add(key)
    consumer.close()
    assert len(keys) == 2000


def test_kafka_python_producer_consumer_and_list_offsets(proxied: ProxyThread) -> None:
    topic = create_topic(proxied.bootstrap)
    producer = KafkaProducer(
        bootstrap_servers=proxied.bootstrap, acks="all", enable_idempotence=True
    )
    for i in range(300):
        producer.send(topic, value=f"v{i}".encode())
    producer.flush(30)
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=proxied.bootstrap, enable_auto_commit=False)
    tp = KpTopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    values: list[bytes] = []
    deadline = time.monotonic() + 30
    while len(values) < 300 and time.monotonic() < deadline:
        for records in consumer.poll(1000).values():
            values += [r.value for r in records]
    assert values == [f"v{i}".encode() for i in range(300)]
    assert consumer.beginning_offsets([tp])[tp] == 0
    consumer.close()


def test_admin_calls_see_only_proxy_addresses(proxied: ProxyThread, upstream: Broker) -> None:
    admin = AdminClient({"bootstrap.servers": proxied.bootstrap})
    create_topic(proxied.bootstrap, 3)
    proxy = proxied.proxy
    assert proxy is not None
    ports = set(proxy.brokers.ports.values())
    md = admin.list_topics(timeout=10)
    assert {(b.host, b.port) for b in md.brokers.values()} <= {("127.0.0.1", p) for p in ports}
    cluster = admin.describe_cluster().result(10)
    assert {(n.host, n.port) for n in cluster.nodes} <= {("127.0.0.1", p) for p in ports}
    assert upstream.port not in ports


def test_no_upstream_address_in_any_version_of_address_carrying_answers(
    proxied: ProxyThread, upstream: Broker
) -> None:
    """Metadata, FindCoordinator and DescribeCluster at every version the proxy advertises."""
    proxy = proxied.proxy
    assert proxy is not None
    host, port = proxy.bootstrap_address
    ports = set(proxy.brokers.ports.values())
    advertised = proxy.advertised_versions(next(iter(proxy.brokers.ports)))
    seen = 0
    for key in (wire.METADATA, wire.FIND_COORDINATOR, wire.DESCRIBE_CLUSTER):
        if key not in advertised:
            continue
        low, high = advertised[key]
        cls = wire.request_class(key)
        for version in range(low, high + 1):
            if key == wire.METADATA:
                msg = cls(
                    version=version,
                    topics=None if version >= 1 else [],
                    allow_auto_topic_creation=False,
                )
                resp = raw_request(host, port, msg, version)
                addresses = [(b.host, b.port) for b in resp.brokers]
            elif key == wire.FIND_COORDINATOR:
                msg = cls(version=version, key="g1", key_type=0, coordinator_keys=["g1"])
                resp = raw_request(host, port, msg, version)
                if version >= 4:
                    addresses = [(c.host, c.port) for c in resp.coordinators if c.node_id >= 0]
                else:
                    addresses = [(resp.host, resp.port)] if resp.node_id >= 0 else []
            else:
                msg = cls(version=version, include_cluster_authorized_operations=False)
                resp = raw_request(host, port, msg, version)
                addresses = [(b.host, b.port) for b in resp.brokers]
            for address in addresses:
                seen += 1
                assert address[1] in ports, (key, version, address)
                assert address[1] != upstream.port
    assert seen >= 3


def test_upstream_restart_clients_recover(own_kafka39: Broker) -> None:
    kafka39 = own_kafka39
    with ProxyThread(kafka39.bootstrap) as p:
        topic = create_topic(p.bootstrap)
        producer = Producer(
            {"bootstrap.servers": p.bootstrap, "acks": "all", "enable.idempotence": True}
        )
        for i in range(100):
            producer.produce(topic, value=b"before-%d" % i)
        assert producer.flush(30) == 0
        kafka39.restart()
        for i in range(100):
            producer.produce(topic, value=b"after-%d" % i)
        assert producer.flush(60) == 0
        consumer = Consumer(
            {"bootstrap.servers": p.bootstrap, "group.id": "unused", "enable.auto.commit": False}
        )
        consumer.assign([TopicPartition(topic, 0, 0)])
        values: list[bytes] = []
        deadline = time.monotonic() + 30
        while len(values) < 200 and time.monotonic() < deadline:
            for m in consumer.consume(500, 1.0):
                if m.error() is None:
                    value = m.value()
                    assert value is not None
                    values.append(value)
        consumer.close()
        assert sorted(values) == sorted(
            [b"before-%d" % i for i in range(100)] + [b"after-%d" % i for i in range(100)]
        )


def test_classic_consumer_group_through_the_proxy(kafka39: Broker) -> None:
    with ProxyThread(kafka39.bootstrap) as p:
        topic = create_topic(p.bootstrap, 2)
        producer = Producer({"bootstrap.servers": p.bootstrap})
        for i in range(200):
            producer.produce(topic, value=b"%d" % i, partition=i % 2)
        assert producer.flush(30) == 0
        consumer = Consumer(
            {
                "bootstrap.servers": p.bootstrap,
                "group.id": f"classic-{topic}",
                "auto.offset.reset": "earliest",
                "session.timeout.ms": 6000,
            }
        )
        consumer.subscribe([topic])
        got = 0
        deadline = time.monotonic() + 60
        while got < 200 and time.monotonic() < deadline:
            got += sum(1 for m in consumer.consume(500, 1.0) if m.error() is None)
        consumer.commit(asynchronous=False)
        committed = consumer.committed(
            [TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=10
        )
        consumer.close()
        assert got == 200
        assert sum(tp.offset for tp in committed) == 200
