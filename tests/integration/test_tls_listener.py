"""TLS on the proxy's listeners: librdkafka clients over SSL through the proxy, client
certificates, protocol versions, and plaintext clients refused."""

from __future__ import annotations

import socket
import ssl
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, ShareConsumer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import AlterConfigOpType, ConfigEntry, ConfigResource
from confluent_kafka.admin._resource import ResourceType
from confluent_kafka.cimpl import NewTopic

from proxy import wire
from sharegroup.brokers import Broker
from sharegroup.pki import Pki
from tests.harness import ProxyThread

pytestmark = pytest.mark.integration


@pytest.fixture(params=["tansu", "kafka39"])
def upstream(request: pytest.FixtureRequest) -> Broker:
    broker: Broker = request.getfixturevalue(request.param)
    return broker


def tls_proxy(upstream: Broker, pki: Pki, **extra: str) -> ProxyThread:
    configs = {"ssl.keystore.type": "PEM", "ssl.keystore.location": str(pki.server), **extra}
    return ProxyThread(upstream.bootstrap, configs, listen_protocol="SSL")


@pytest.fixture
def proxied(upstream: Broker, pki: Pki) -> Iterator[ProxyThread]:
    with tls_proxy(upstream, pki) as p:
        yield p


def ssl_client(bootstrap: str, pki: Pki, **extra: Any) -> dict[str, Any]:
    return {
        "bootstrap.servers": bootstrap,
        "security.protocol": "SSL",
        "ssl.ca.location": str(pki.ca),
        "log_level": 3,
        **extra,
    }


def produce_and_consume(config: dict[str, Any], count: int = 500) -> list[bytes]:
    """Create a topic, produce ``count`` records and read them back, all through ``config``."""
    topic = f"tls-{uuid.uuid4().hex[:10]}"
    admin = AdminClient(config)
    for f in admin.create_topics([NewTopic(topic, 1, 1)]).values():
        f.result(30)
    producer = Producer({**config, "linger.ms": 5})
    for i in range(count):
        producer.produce(topic, value=f"v{i}".encode() * 50, partition=0)
    assert producer.flush(30) == 0
    consumer = Consumer({**config, "group.id": "unused", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    values: list[bytes] = []
    deadline = time.monotonic() + 30
    while len(values) < count and time.monotonic() < deadline:
        for m in consumer.consume(500, 1.0):
            assert m.error() is None, m.error()
            value = m.value()
            assert value is not None
            values.append(value)
    consumer.close()
    return values


def test_librdkafka_produces_and_consumes_over_ssl(proxied: ProxyThread, pki: Pki) -> None:
    """Large Fetch answers too: 500 records of ~200 B in one partition, read from offset 0."""
    values = produce_and_consume(ssl_client(proxied.bootstrap, pki))
    assert values == [f"v{i}".encode() * 50 for i in range(500)]


def test_large_fetch_answer_is_relayed_whole_over_tls(proxied: ProxyThread, pki: Pki) -> None:
    """Answers of several megabytes take the relay path that streams them while they arrive."""
    values = produce_and_consume(
        ssl_client(proxied.bootstrap, pki, **{"fetch.max.bytes": 50 << 20}), count=20_000
    )
    assert len(values) == 20_000
    assert values[-1] == b"v19999" * 50


def test_share_consumer_gets_large_share_fetch_answers_over_tls(
    proxied: ProxyThread, pki: Pki
) -> None:
    """ShareFetch answers whose record batches go out as separate buffers on a plain socket
    are joined for TLS: 3,000 records of 1 KB in big batches, every one received intact."""
    config = ssl_client(proxied.bootstrap, pki)
    topic, group = f"tls-{uuid.uuid4().hex[:10]}", f"g-{uuid.uuid4().hex[:8]}"
    admin = AdminClient(config)
    for f in admin.create_topics([NewTopic(topic, 1, 1)]).values():
        f.result(30)
    entry = ConfigEntry(
        "share.auto.offset.reset", "earliest", incremental_operation=AlterConfigOpType.SET
    )
    resource = ConfigResource(ResourceType.GROUP, group, incremental_configs=[entry])
    for f in admin.incremental_alter_configs([resource]).values():
        f.result(30)
    count = 3000
    producer = Producer({**config, "linger.ms": 50, "batch.size": 1 << 20})
    for i in range(count):
        producer.produce(topic, value=b"%06d" % i * 170, partition=0)
    assert producer.flush(30) == 0
    consumer = ShareConsumer({**config, "group.id": group})
    consumer.subscribe([topic])
    got: dict[int, bytes] = {}
    deadline = time.monotonic() + 60
    try:
        while len(got) < count and time.monotonic() < deadline:
            for m in consumer.poll(0.5):
                assert m.error() is None, m.error()
                offset, value = m.offset(), m.value()
                assert offset is not None and value is not None
                got[offset] = value
    finally:
        consumer.close()
    assert got == {i: b"%06d" % i * 170 for i in range(count)}


def read_answer(sock: socket.socket | ssl.SSLSocket) -> bytes:
    """One response frame, or b'' when the proxy closes the connection."""
    data = b""
    while len(data) < 4 or len(data) < 4 + int.from_bytes(data[:4], "big"):
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return b""
        if not chunk:
            return b""
        data += chunk
    return data


def api_versions_bytes() -> bytes:
    return wire.encode_request(wire.api_versions_request(3), 1, "tls-test")


def test_plaintext_client_on_tls_listener_is_closed(proxied: ProxyThread, pki: Pki) -> None:
    host, port = proxied.bootstrap.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(api_versions_bytes())
        assert read_answer(s) == b""
    assert proxied.proxy is not None
    # ... and the proxy goes on serving others: a TLS client still gets its answer.
    context = ssl.create_default_context(cafile=str(pki.ca))
    with (
        socket.create_connection((host, int(port)), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as s,
    ):
        s.sendall(api_versions_bytes())
        answer = read_answer(s)
    versions = wire.decode_response(answer[4:], wire.API_VERSIONS, 3)
    assert versions.error_code == 0


def test_client_certificate_required(upstream: Broker, pki: Pki) -> None:
    with tls_proxy(
        upstream,
        pki,
        **{"ssl.client.auth": "required", "ssl.truststore.location": str(pki.ca)},
    ) as p:
        with_cert = ssl_client(
            p.bootstrap,
            pki,
            **{
                "ssl.certificate.location": str(pki.client_cert),
                "ssl.key.location": str(pki.client_key),
            },
        )
        assert len(produce_and_consume(with_cert, count=10)) == 10
        host, port = p.bootstrap.split(":")
        for cert in (None, pki.stranger):
            context = ssl.create_default_context(cafile=str(pki.ca))
            if cert is not None:
                context.load_cert_chain(str(cert))
            # TLS 1.3: the server checks the certificate after the client's handshake is done,
            # so the refusal shows on the first read.
            with (
                socket.create_connection((host, int(port)), timeout=10) as raw,
                context.wrap_socket(raw, server_hostname="127.0.0.1") as s,
                pytest.raises((ssl.SSLError, ConnectionResetError)),
            ):
                s.sendall(api_versions_bytes())
                if not read_answer(s):
                    raise ConnectionResetError("closed")


def test_enabled_protocols_refuse_older_tls(upstream: Broker, pki: Pki) -> None:
    with tls_proxy(upstream, pki, **{"ssl.enabled.protocols": "TLSv1.3"}) as p:
        host, port = p.bootstrap.split(":")
        context = ssl.create_default_context(cafile=str(pki.ca))
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        with (
            socket.create_connection((host, int(port)), timeout=10) as raw,
            pytest.raises(ssl.SSLError),
        ):
            context.wrap_socket(raw, server_hostname="127.0.0.1")
        admin = AdminClient(ssl_client(p.bootstrap, pki))
        assert admin.list_topics(timeout=10).brokers


def test_client_not_trusting_the_proxy_certificate_fails(proxied: ProxyThread, pki: Pki) -> None:
    admin = AdminClient(
        ssl_client(proxied.bootstrap, pki, **{"ssl.ca.location": str(pki.other_ca)})
    )
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=3)
