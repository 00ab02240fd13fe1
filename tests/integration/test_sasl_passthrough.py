"""Clients authenticate to a secured upstream through the proxy: SASL_SSL on both sides, the
client's SCRAM exchange relayed over its own upstream connection, the upstream authorizing
the relayed requests as that client (Kafka 3.9, SCRAM users, StandardAuthorizer)."""

from __future__ import annotations

import socket
import ssl
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer, ShareConsumer
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._acl import AclBinding, AclOperation, AclPermissionType
from confluent_kafka.admin._config import AlterConfigOpType, ConfigEntry, ConfigResource
from confluent_kafka.admin._resource import ResourcePatternType, ResourceType
from confluent_kafka.cimpl import NewTopic

from proxy import wire
from sharegroup.brokers import Broker
from sharegroup.pki import P12_PASSWORD, Pki
from tests.conftest import SECURE_USERS
from tests.harness import ProxyThread

pytestmark = pytest.mark.integration

PROXY_TEST_CONFIGS = {
    "group.share.min.record.lock.duration.ms": "1000",
    "group.share.heartbeat.interval.ms": "1000",
    "group.share.min.heartbeat.interval.ms": "1000",
}


def proxy_configs(pki: Pki) -> dict[str, str]:
    return {
        **PROXY_TEST_CONFIGS,
        "ssl.keystore.location": str(pki.server),
        "upstream.security.protocol": "SASL_SSL",
        "upstream.ssl.truststore.location": str(pki.ca),
        "upstream.sasl.mechanism": "SCRAM-SHA-512",
        "upstream.sasl.username": "proxy",
        "upstream.sasl.password": SECURE_USERS["proxy"],
        "sharegroup.acl.refresh.ms": "500",
        # As the broker's super.users (the fixture's): the same principals pass everywhere.
        "super.users": "User:ANONYMOUS;User:admin;User:proxy",
    }


@pytest.fixture(scope="module")
def proxied(kafka39_sasl: Broker, pki: Pki) -> Iterator[ProxyThread]:
    with ProxyThread(kafka39_sasl.bootstrap, proxy_configs(pki), listen_protocol="SASL_SSL") as p:
        yield p


def client(bootstrap: str, pki: Pki, user: str, password: str | None = None) -> dict[str, Any]:
    return {
        "bootstrap.servers": bootstrap,
        "security.protocol": "sasl_ssl",
        "ssl.ca.location": str(pki.ca),
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": user,
        "sasl.password": password if password is not None else SECURE_USERS[user],
        "log_level": 3,
    }


def allow(
    broker: Broker, principal: str, kind: ResourceType, name: str, *ops: AclOperation
) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap, **broker.client_config})
    bindings = [
        AclBinding(
            kind, name, ResourcePatternType.LITERAL, principal, "*", op, AclPermissionType.ALLOW
        )
        for op in ops
    ]
    for f in admin.create_acls(bindings).values():
        f.result(30)


def acls_read(proxied: ProxyThread, times: int = 2, timeout_s: float = 30.0) -> None:
    """Wait until the proxy has read the upstream ACLs ``times`` more times: ACLs made before
    the call are then in force in the proxy."""
    proxy = proxied.proxy
    assert proxy is not None and proxy.authz is not None
    authz = proxy.authz
    start: int = proxied.call(lambda: authz.reads)
    deadline = time.monotonic() + timeout_s
    while proxied.call(lambda: authz.reads) < start + times:
        assert time.monotonic() < deadline, "the proxy does not read the upstream ACLs"
        time.sleep(0.05)


def new_topic(broker: Broker) -> str:
    name = f"sec-{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": broker.bootstrap, **broker.client_config})
    for f in admin.create_topics([NewTopic(name, 1, 1)]).values():
        f.result(30)
    return name


def produce(config: dict[str, Any], topic: str, count: int) -> None:
    producer = Producer({**config, "linger.ms": 0})
    for i in range(count):
        producer.produce(topic, value=b"%d" % i, partition=0)
    assert producer.flush(30) == 0


def test_share_consumer_over_sasl_ssl_scram_512(
    proxied: ProxyThread, kafka39_sasl: Broker, pki: Pki
) -> None:
    """alice produces (authorized upstream as alice) and share-consumes through the proxy."""
    share_consume_as_alice(proxied, kafka39_sasl, pki)


def test_pkcs12_stores_on_both_sides(kafka39_sasl: Broker, pki: Pki) -> None:
    """The listener's key and chain, and the CAs the proxy trusts upstream (its own
    connections, the relayed ones, and the state topic's librdkafka clients), from PKCS12
    stores made at test time."""
    configs = {
        **proxy_configs(pki),
        "ssl.keystore.type": "PKCS12",
        "ssl.keystore.location": str(pki.server_p12),
        "ssl.keystore.password": P12_PASSWORD,
        "upstream.ssl.truststore.type": "PKCS12",
        "upstream.ssl.truststore.location": str(pki.ca_p12),
        "upstream.ssl.truststore.password": P12_PASSWORD,
        # Its own state topic: a second proxy on the module's would fence the module's proxy.
        "sharegroup.state.topic": f"__sharegroup_state_{uuid.uuid4().hex[:8]}",
    }
    with ProxyThread(kafka39_sasl.bootstrap, configs, listen_protocol="SASL_SSL") as p:
        share_consume_as_alice(p, kafka39_sasl, pki)


def share_consume_as_alice(proxied: ProxyThread, kafka39_sasl: Broker, pki: Pki) -> None:
    topic = new_topic(kafka39_sasl)
    group = f"g-{uuid.uuid4().hex[:8]}"
    allow(
        kafka39_sasl, "User:alice", ResourceType.TOPIC, topic, AclOperation.WRITE, AclOperation.READ
    )
    allow(kafka39_sasl, "User:alice", ResourceType.GROUP, group, AclOperation.READ)
    acls_read(proxied)
    alice = client(proxied.bootstrap, pki, "alice")
    admin = AdminClient(client(proxied.bootstrap, pki, "admin"))  # ALTER_CONFIGS on the group
    entry = ConfigEntry(
        "share.auto.offset.reset", "earliest", incremental_operation=AlterConfigOpType.SET
    )
    for f in admin.incremental_alter_configs(
        [ConfigResource(ResourceType.GROUP, group, incremental_configs=[entry])]
    ).values():
        f.result(30)
    produce(alice, topic, 20)
    consumer = ShareConsumer({**alice, "group.id": group})
    consumer.subscribe([topic])
    got: set[bytes] = set()
    deadline = time.monotonic() + 60
    try:
        while len(got) < 20 and time.monotonic() < deadline:
            for m in consumer.poll(0.5):
                assert m.error() is None, m.error()
                value = m.value()
                assert value is not None
                got.add(value)
        # While alice's consumer is still connected: once it closes, its connections leave
        # the proxy's list and only the admin client's would remain.
        proxy = proxied.proxy
        assert proxy is not None
        principals = proxied.call(lambda: {c.auth.principal for c in proxy.connections})
    finally:
        consumer.close()
    assert got == {b"%d" % i for i in range(20)}
    assert "User:alice" in principals


def test_relayed_produce_is_authorized_upstream_as_the_client(
    proxied: ProxyThread, kafka39_sasl: Broker, pki: Pki
) -> None:
    """bob has no WRITE on the topic: the upstream refuses his relayed Produce, although the
    proxy's own principal is a super user."""
    topic = new_topic(kafka39_sasl)
    allow(kafka39_sasl, "User:bob", ResourceType.TOPIC, topic, AclOperation.DESCRIBE)
    producer = Producer({**client(proxied.bootstrap, pki, "bob"), "message.timeout.ms": 10000})
    errors: list[KafkaError | None] = []
    producer.produce(topic, b"x", partition=0, on_delivery=lambda err, _m: errors.append(err))
    producer.flush(20)
    assert errors
    assert errors[0] is not None
    assert errors[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_wrong_password_fails_and_the_connection_closes(proxied: ProxyThread, pki: Pki) -> None:
    host, port = proxied.bootstrap.split(":")
    context = ssl.create_default_context(cafile=str(pki.ca))
    with (
        socket.create_connection((host, int(port)), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as s,
    ):
        handshake = wire.request_class(17)(mechanism="PLAIN")
        handshake.API_VERSION = 1
        s.sendall(wire.encode_request(handshake, 1, "sasl-test"))
        assert wire.decode_response(read_answer(s)[4:], 17, 1).error_code == 0
        authenticate = wire.request_class(36)(auth_bytes=b"\0alice\0wrong-password")
        authenticate.API_VERSION = 2
        s.sendall(wire.encode_request(authenticate, 2, "sasl-test"))
        answer = wire.decode_response(read_answer(s)[4:], 36, 2)
        assert answer.error_code == 58  # SASL_AUTHENTICATION_FAILED
        assert read_answer(s) == b""  # then closed


def test_librdkafka_with_wrong_password_gets_an_authentication_error(
    proxied: ProxyThread, pki: Pki
) -> None:
    errors: list[KafkaError] = []
    config: dict[str, Any] = {**client(proxied.bootstrap, pki, "alice", "wrong")}
    config["error_cb"] = errors.append
    admin = AdminClient(config)
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=5)
    admin.poll(1)
    assert any(e.code() == KafkaError._AUTHENTICATION for e in errors), errors


def test_requests_before_authentication_close_the_connection(
    proxied: ProxyThread, pki: Pki
) -> None:
    host, port = proxied.bootstrap.split(":")
    context = ssl.create_default_context(cafile=str(pki.ca))
    with (
        socket.create_connection((host, int(port)), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as s,
    ):
        versions = wire.encode_request(wire.api_versions_request(3), 1, "sasl-test")
        s.sendall(versions)
        assert wire.decode_response(read_answer(s)[4:], 18, 3).error_code == 0
        metadata = wire.metadata_request(9, None)
        metadata.API_VERSION = 9
        s.sendall(wire.encode_request(metadata, 2, "sasl-test"))
        assert read_answer(s) == b""


def read_answer(sock: ssl.SSLSocket) -> bytes:
    data = b""
    while len(data) < 4 or len(data) < 4 + int.from_bytes(data[:4], "big"):
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError):
            return b""
        if not chunk:
            return b""
        data += chunk
    return data


def test_java_share_consumer_over_sasl_ssl_scram_512(
    proxied: ProxyThread, kafka39_sasl: Broker, pki: Pki
) -> None:
    """Java's KafkaShareConsumer, SASL_SSL with SCRAM-SHA-512 as alice, through the proxy."""
    from tests.java_probe import ProbeRun

    topic = new_topic(kafka39_sasl)
    group = f"jg-{uuid.uuid4().hex[:8]}"
    allow(kafka39_sasl, "User:alice", ResourceType.TOPIC, topic, AclOperation.READ)
    allow(kafka39_sasl, "User:alice", ResourceType.GROUP, group, AclOperation.READ)
    acls_read(proxied)
    password = SECURE_USERS["alice"]
    props = {
        "security.protocol": "SASL_SSL",
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(pki.ca),
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.jaas.config": "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="alice" password="{password}";',
        "probe.linger.ms": "1000",
    }
    with ProbeRun(proxied.bootstrap, group, topic, 20, "implicit", "accept", 90, props) as probe:
        probe.wait_subscribed(90)
        produce(
            {"bootstrap.servers": kafka39_sasl.bootstrap, **kafka39_sasl.client_config}, topic, 20
        )
        result = probe.result()
    assert result.returncode == 0, result.describe()
    assert sorted(r["offset"] for r in result.records) == list(range(20)), result.describe()


def test_offsets_cli_logs_in_with_a_command_config(
    proxied: ProxyThread, pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sharegroup.cli.main import main

    def run(password: str) -> tuple[int, str]:
        config = tmp_path / f"client-{password}.properties"
        config.write_text(
            "security.protocol=SASL_SSL\n"
            f"ssl.truststore.location={pki.ca}\n"
            "sasl.mechanism=SCRAM-SHA-512\n"
            "sasl.username=alice\n"
            f"sasl.password={password}\n"
        )
        rc = main(
            [
                "offsets",
                "describe",
                "--bootstrap-server",
                proxied.bootstrap,
                "--group",
                f"g-{uuid.uuid4().hex[:8]}",
                "--command-config",
                str(config),
            ]
        )
        return rc, capsys.readouterr().err

    rc, err = run("wrong")
    assert rc == 1
    assert "SASL authentication failed" in err
    rc, err = run(SECURE_USERS["alice"])
    assert "SASL" not in err and "cannot connect" not in err, err
