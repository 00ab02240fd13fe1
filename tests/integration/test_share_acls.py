"""The share-group APIs under ACLs: the proxy (on Kafka 3.9 with SASL_SSL, SCRAM users and the
StandardAuthorizer) against Kafka 4.4's own share groups, secured the same way, with the same
ACLs. Both must give the same outcomes: the proxy answers these APIs itself, so it must refuse
what Kafka refuses, and never hand out a record Kafka would not."""

from __future__ import annotations

import contextlib
import ssl
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from confluent_kafka import Producer, ShareConsumer
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._acl import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
)
from confluent_kafka.admin._config import AlterConfigOpType, ConfigEntry, ConfigResource
from confluent_kafka.admin._resource import ResourcePatternType, ResourceType
from confluent_kafka.admin._scram import (
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)
from confluent_kafka.cimpl import NewTopic

from proxy import messages, wire
from proxy.metrics import metrics_of
from proxy.sasl import Scram
from sharegroup.brokers import Broker
from sharegroup.conformance.client import (
    ClientError,
    Connection,
    find_coordinator,
    heartbeat,
    metadata,
    share_fetch,
)
from sharegroup.pki import Pki
from tests.conftest import SECURE_USERS
from tests.harness import ProxyThread
from tests.integration.test_metrics import scrape, value
from tests.integration.test_sasl_passthrough import acls_read, client, proxy_configs

pytestmark = pytest.mark.integration

ACL_REFRESH_MS = 500


@dataclass
class Secured:
    name: str
    bootstrap: str  # where clients connect (the proxy, or Kafka 4.4 itself)
    broker: Broker  # where topics and ACLs are made, as the admin user
    proxy: ProxyThread | None = None

    def settle(self) -> None:
        """Let ACLs made on ``broker`` take effect: the proxy reads them within its refresh
        period (waited for as two reads). Kafka's authorizer has them once its DescribeAcls
        shows them, which ``acl`` and ``drop_acl`` wait for."""
        if self.proxy is not None:
            acls_read(self.proxy)


@pytest.fixture(scope="module")
def acl_proxy(kafka39_sasl: Broker, pki: Pki) -> Iterator[ProxyThread]:
    configs = {**proxy_configs(pki), "sharegroup.acl.refresh.ms": str(ACL_REFRESH_MS)}
    assert configs["sharegroup.acl.refresh.ms"] == "500"
    with ProxyThread(kafka39_sasl.bootstrap, configs, listen_protocol="SASL_SSL") as p:
        yield p


@pytest.fixture(params=["proxy-kafka39", "kafka4"])
def target(request: pytest.FixtureRequest) -> Secured:
    if request.param == "kafka4":
        broker: Broker = request.getfixturevalue("kafka4_sasl")
        return Secured("kafka4", broker.bootstrap, broker)
    proxy: ProxyThread = request.getfixturevalue("acl_proxy")
    return Secured("proxy", proxy.bootstrap, request.getfixturevalue("kafka39_sasl"), proxy)


def admin_of(broker: Broker) -> AdminClient:
    return AdminClient({"bootstrap.servers": broker.bootstrap, **broker.client_config})


def acl(
    broker: Broker,
    principal: str,
    kind: ResourceType,
    name: str,
    *ops: AclOperation,
    permission: AclPermissionType = AclPermissionType.ALLOW,
) -> None:
    fields = [
        (kind, name, ResourcePatternType.LITERAL, principal, "*", op, permission) for op in ops
    ]
    admin = admin_of(broker)  # held: a collected client fails its pending futures
    for f in admin.create_acls([AclBinding(*b) for b in fields]).values():
        f.result(30)
    acls_in_force(admin, fields, present=True)


def drop_acl(broker: Broker, *fields: Any) -> None:
    """Delete the ACL of these binding fields, and wait until the broker's authorizer has
    let it go."""
    admin = admin_of(broker)
    for f in admin.delete_acls([AclBindingFilter(*fields)]).values():
        f.result(30)
    acls_in_force(admin, [fields], present=False)


def acls_in_force(admin: AdminClient, bindings: list[Any], *, present: bool) -> None:
    """Wait until the broker's DescribeAcls (answered by its authorizer, the one that
    authorizes requests) shows each binding, or none of them."""
    deadline = time.monotonic() + 30
    for fields in bindings:
        while True:
            found = admin.describe_acls(AclBindingFilter(*fields)).result(30)
            if bool(found) == present:
                break
            assert time.monotonic() < deadline, (
                f"ACL {fields} not {'in force' if present else 'gone'}"
            )
            time.sleep(0.05)


def new_topic(broker: Broker) -> str:
    name = f"acl-{uuid.uuid4().hex[:10]}"
    admin = admin_of(broker)
    for f in admin.create_topics([NewTopic(name, 1, 1)]).values():
        f.result(30)
    return name


def produce(broker: Broker, topic: str, count: int) -> None:
    producer = Producer(
        {"bootstrap.servers": broker.bootstrap, **broker.client_config, "linger.ms": 0}
    )
    for i in range(count):
        producer.produce(topic, value=b"%d" % i, partition=0)
    assert producer.flush(30) == 0


def earliest(target: Secured, pki: Pki, group: str) -> None:
    config: dict[str, Any] = {
        "bootstrap.servers": target.bootstrap,
        "security.protocol": "sasl_ssl",
        "ssl.ca.location": str(pki.ca),
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "admin",
        "sasl.password": SECURE_USERS["admin"],
    }
    entry = ConfigEntry(
        "share.auto.offset.reset", "earliest", incremental_operation=AlterConfigOpType.SET
    )
    resource = ConfigResource(ResourceType.GROUP, group, incremental_configs=[entry])
    admin = AdminClient(config)
    for f in admin.incremental_alter_configs([resource]).values():
        f.result(30)


def share_conn(bootstrap: str, pki: Pki, user: str) -> Connection:
    """A raw protocol connection over TLS, logged in as ``user`` with SCRAM-SHA-512."""
    host, port = bootstrap.split(":")
    conn = Connection(host, int(port))
    context = ssl.create_default_context(cafile=str(pki.ca))
    assert conn.sock is not None
    conn.sock = context.wrap_socket(conn.sock, server_hostname="127.0.0.1")
    handshake = wire.request_class(17)(mechanism="SCRAM-SHA-512")
    assert conn.request(handshake, 1).error_code == 0
    scram = Scram("SCRAM-SHA-512", user, SECURE_USERS[user])
    message: bytes | None = scram.first()
    while message is not None:
        resp = conn.request(wire.request_class(36)(auth_bytes=message), 2)
        assert resp.error_code == 0, resp.error_message
        message = scram.step(bytes(resp.auth_bytes))
    return conn


def topic_id(conn: Connection, topic: str) -> uuid.UUID:
    _brokers, topics = metadata(conn, [topic])
    found: uuid.UUID = topics[topic].topic_id
    return found


class Member:
    """One share-group member speaking the share APIs over its own connection."""

    def __init__(self, conn: Connection, group: str, topic: str) -> None:
        self.conn, self.group, self.topic = conn, group, topic
        self.member = uuid.uuid4().hex[:22]
        self.epoch = 0
        self.tid = topic_id(conn, topic)

    def join(self) -> Any:
        """Join with a first heartbeat. Kafka creates its group coordinator's topic on the first
        FindCoordinator and answers NOT_COORDINATOR (or COORDINATOR_LOAD_IN_PROGRESS) until it
        is loaded: ask it first, as clients do, and try again while it loads."""
        with contextlib.suppress(ClientError):  # refused for a client without DESCRIBE
            find_coordinator(self.conn, self.group)
        deadline = time.monotonic() + 30
        while True:
            hb = heartbeat(
                self.conn, group=self.group, member=self.member, epoch=0, topics=[self.topic]
            )
            if hb.error_code not in (14, 15, 16) or time.monotonic() > deadline:
                return hb
            time.sleep(0.2)

    def fetch(self) -> tuple[int, Any]:
        """(top-level error, partition 0's entry or None)."""
        resp = share_fetch(
            self.conn,
            group=self.group,
            member=self.member,
            epoch=self.epoch,
            add=[(self.tid, 0)] if self.epoch == 0 else [],
            max_wait_ms=500,
        )
        if resp.error_code == 0:
            self.epoch += 1
        parts = {
            p.partition_index: p
            for t in resp.responses
            if t.topic_id == self.tid
            for p in t.partitions
        }
        return resp.error_code, parts.get(0)


def settling(part: Any) -> None:
    """A partition of a fetch that should deliver: no error, or UNKNOWN_SERVER_ERROR (-1) with
    nothing acquired, which Kafka 4.4 answers now and then to the first share fetches of a
    freshly started cluster (seen in 1 of 3 fresh starts), and which share consumers retry
    (Java's ShareFetchCollector logs it and goes on)."""
    if part is not None and part.error_code:
        assert part.error_code == -1 and acquired(part) == 0, part


def acquired(part: Any) -> int:
    if part is None:
        return 0
    return sum(r.last_offset - r.first_offset + 1 for r in part.acquired_records)


def test_share_fetch_without_topic_read_gets_29_and_no_record(target: Secured, pki: Pki) -> None:
    topic, group = new_topic(target.broker), f"g-{uuid.uuid4().hex[:8]}"
    produce(target.broker, topic, 5)
    earliest(target, pki, group)
    acl(target.broker, "User:bob", ResourceType.GROUP, group, AclOperation.READ)
    acl(target.broker, "User:bob", ResourceType.TOPIC, topic, AclOperation.DESCRIBE)
    acl(target.broker, "User:alice", ResourceType.GROUP, group, AclOperation.READ)
    acl(target.broker, "User:alice", ResourceType.TOPIC, topic, AclOperation.READ)
    target.settle()
    with share_conn(target.bootstrap, pki, "bob") as conn:
        bob = Member(conn, group, topic)
        hb = bob.join()
        assert hb.error_code == 0, hb.error_message
        code, part = bob.fetch()
        assert code == 0
        assert part is not None and part.error_code == 29  # TOPIC_AUTHORIZATION_FAILED
        assert acquired(part) == 0 and not part.records
    # alice, with READ, gets the records from the same group: they were there to be had.
    with share_conn(target.bootstrap, pki, "alice") as conn:
        alice = Member(conn, group, topic)
        assert alice.join().error_code == 0
        got = 0
        deadline = time.monotonic() + 30
        while got < 5 and time.monotonic() < deadline:
            code, part = alice.fetch()
            assert code == 0
            settling(part)
            got += acquired(part)
        assert got == 5


def test_heartbeat_without_group_read_gets_30(target: Secured, pki: Pki) -> None:
    topic = new_topic(target.broker)
    acl(target.broker, "User:bob", ResourceType.TOPIC, topic, AclOperation.READ)
    target.settle()
    with share_conn(target.bootstrap, pki, "bob") as conn:
        hb = Member(conn, f"g-{uuid.uuid4().hex[:8]}", topic).join()
        assert hb.error_code == 30  # GROUP_AUTHORIZATION_FAILED


def test_deny_added_upstream_takes_effect_within_the_refresh_bound(
    target: Secured, pki: Pki
) -> None:
    topic, group = new_topic(target.broker), f"g-{uuid.uuid4().hex[:8]}"
    earliest(target, pki, group)
    acl(target.broker, "User:alice", ResourceType.GROUP, group, AclOperation.READ)
    acl(target.broker, "User:alice", ResourceType.TOPIC, topic, AclOperation.READ)
    target.settle()
    with share_conn(target.bootstrap, pki, "alice") as conn:
        alice = Member(conn, group, topic)
        assert alice.join().error_code == 0
        produce(target.broker, topic, 3)
        got, deadline = 0, time.monotonic() + 30
        while got < 3 and time.monotonic() < deadline:
            got += acquired(alice.fetch()[1])
        assert got == 3
        # A DENY made directly on the cluster, not through the proxy.
        acl(
            target.broker,
            "User:alice",
            ResourceType.TOPIC,
            topic,
            AclOperation.READ,
            permission=AclPermissionType.DENY,
        )
        denied_at = time.monotonic()
        refused_after = None
        while refused_after is None and time.monotonic() < denied_at + 10:
            code, part = alice.fetch()
            assert code == 0
            if part is not None and part.error_code == 29:
                refused_after = time.monotonic() - denied_at
                assert acquired(part) == 0 and not part.records
        assert refused_after is not None, "the DENY never took effect"
        assert refused_after < ACL_REFRESH_MS / 1000 + 2.0  # the documented bound, plus slack
        # Every fetch answers the partition with 29 while the DENY stands, as Kafka does (the
        # partition stays in the share session), with records there to be had.
        produce(target.broker, topic, 3)
        for _ in range(3):
            code, part = alice.fetch()
            assert code == 0
            assert part is not None and part.error_code == 29
            assert acquired(part) == 0 and not part.records
        # The DENY goes: the same share session fetches the records produced meanwhile.
        drop_acl(
            target.broker,
            ResourceType.TOPIC,
            topic,
            ResourcePatternType.LITERAL,
            "User:alice",
            "*",
            AclOperation.READ,
            AclPermissionType.DENY,
        )
        target.settle()
        offsets: list[tuple[int, int]] = []  # (offset, delivery count)
        deadline = time.monotonic() + 30
        while len(offsets) < 3 and time.monotonic() < deadline:
            code, part = alice.fetch()
            assert code == 0
            settling(part)
            for r in part.acquired_records if part is not None else ():
                offsets += [(o, r.delivery_count) for o in range(r.first_offset, r.last_offset + 1)]
        # The records produced under the DENY, delivered for the first time (not the first
        # three again, after their locks expired).
        assert offsets == [(3, 1), (4, 1), (5, 1)]


def test_list_groups_and_describe_configs_are_filtered_by_acls(target: Secured, pki: Pki) -> None:
    topic = new_topic(target.broker)
    seen, hidden = f"g-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    for group in (seen, hidden):
        acl(target.broker, "User:alice", ResourceType.GROUP, group, AclOperation.READ)
    acl(target.broker, "User:alice", ResourceType.TOPIC, topic, AclOperation.READ)
    acl(
        target.broker,
        "User:bob",
        ResourceType.GROUP,
        seen,
        AclOperation.DESCRIBE,
        AclOperation.DESCRIBE_CONFIGS,
    )
    target.settle()
    with share_conn(target.bootstrap, pki, "alice") as conn:
        for group in (seen, hidden):
            hb = Member(conn, group, topic).join()
            assert hb.error_code == 0, hb.error_message
    list_groups = wire.request_class(16)(version=4, states_filter=[])

    def listed(user: str) -> set[str]:
        with share_conn(target.bootstrap, pki, user) as conn:
            resp = conn.request(list_groups, 4)
            assert resp.error_code == 0
            return {g.group_id for g in resp.groups}

    assert {seen, hidden} <= listed("admin")
    bobs = listed("bob")
    assert seen in bobs
    assert hidden not in bobs

    describe_cls = wire.request_class(32)
    request = describe_cls(
        version=4,
        resources=[
            describe_cls.DescribeConfigsResource(
                resource_type=t, resource_name=n, configuration_keys=None
            )
            for t, n in ((32, hidden), (2, topic), (32, seen))
        ],
        include_synonyms=False,
        include_documentation=False,
    )
    with share_conn(target.bootstrap, pki, "bob") as conn:
        resp = conn.request(request, 4)
    # Kafka lists the authorized resources first; clients match answers by name.
    codes = {r.resource_name: r.error_code for r in resp.results}
    assert codes == {hidden: 30, topic: 29, seen: 0}
    assert all(not r.configs for r in resp.results if r.error_code)


ZERO_UUID = uuid.UUID(int=0)


def _offsets_request(conn: Connection, key: int, build: Any) -> Any:
    version = conn.version_for(key, 1 if key == 90 else 0)
    return conn.request(build(version), version)


def coordinator_ready(conn: Connection, group: str) -> None:
    """Kafka creates its group coordinator's topic on the first FindCoordinator and answers
    COORDINATOR_NOT_AVAILABLE (15) until it is loaded: ask until it answers."""
    deadline = time.monotonic() + 30
    while True:
        try:
            find_coordinator(conn, group)
            return
        except ClientError:
            assert time.monotonic() < deadline, "no group coordinator"
            time.sleep(0.2)


def describe_offsets(conn: Connection, group: str, topics: list[str] | None) -> Any:
    cls = messages.DescribeShareGroupOffsetsRequest
    gcls = cls.DescribeShareGroupOffsetsRequestGroup
    tcls = gcls.DescribeShareGroupOffsetsRequestTopic
    named = None if topics is None else [tcls(topic_name=t, partitions=[0]) for t in topics]
    resp = _offsets_request(
        conn, 90, lambda v: cls(version=v, groups=[gcls(group_id=group, topics=named)])
    )
    (g,) = resp.groups
    return g


def alter_offsets(conn: Connection, group: str, topics: list[str]) -> Any:
    cls = messages.AlterShareGroupOffsetsRequest
    tcls = cls.AlterShareGroupOffsetsRequestTopic
    pcls = tcls.AlterShareGroupOffsetsRequestPartition
    body = [
        tcls(topic_name=t, partitions=[pcls(partition_index=0, start_offset=0)]) for t in topics
    ]
    return _offsets_request(conn, 91, lambda v: cls(version=v, group_id=group, topics=body))


def delete_offsets(conn: Connection, group: str, topics: list[str]) -> Any:
    cls = messages.DeleteShareGroupOffsetsRequest
    body = [cls.DeleteShareGroupOffsetsRequestTopic(topic_name=t) for t in topics]
    return _offsets_request(conn, 92, lambda v: cls(version=v, group_id=group, topics=body))


def test_share_offsets_apis_check_each_topic(target: Secured, pki: Pki) -> None:
    """APIs 90-92 check the topics as well as the group: DESCRIBE to describe a topic's
    offsets, READ to alter or delete them. Refused topics get TOPIC_AUTHORIZATION_FAILED
    where they were named, and are left out where the client asked for all topics."""
    readable, describable, hidden = (new_topic(target.broker) for _ in range(3))
    group = f"g-{uuid.uuid4().hex[:8]}"
    acl(target.broker, "User:bob", ResourceType.GROUP, group, AclOperation.READ)
    acl(target.broker, "User:bob", ResourceType.GROUP, group, AclOperation.DELETE)
    acl(target.broker, "User:bob", ResourceType.TOPIC, readable, AclOperation.READ)
    acl(target.broker, "User:bob", ResourceType.TOPIC, describable, AclOperation.DESCRIBE)
    target.settle()
    all_three = [readable, describable, hidden]
    with share_conn(target.bootstrap, pki, "admin") as conn:
        # The group's share partitions start at 0 on all three topics (this creates the group).
        coordinator_ready(conn, group)
        deadline = time.monotonic() + 30
        resp = alter_offsets(conn, group, all_three)
        while resp.error_code in (14, 15, 16) and time.monotonic() < deadline:  # still loading
            time.sleep(0.2)
            resp = alter_offsets(conn, group, all_three)
        assert resp.error_code == 0, resp.error_message
        assert {t.topic_name: [p.error_code for p in t.partitions] for t in resp.responses} == {
            t: [0] for t in all_three
        }
    with share_conn(target.bootstrap, pki, "bob") as conn:
        described = describe_offsets(conn, group, all_three)
        assert described.error_code == 0, described.error_message
        outcomes = [
            (
                t.topic_name,
                t.topic_id in (None, ZERO_UUID),
                [(p.partition_index, p.start_offset, p.error_code) for p in t.partitions],
            )
            for t in described.topics
        ]
        # The authorized topics in the coordinator's order, then the refused one, with no
        # offset and no topic id.
        assert sorted(outcomes[:2]) == sorted(
            [(readable, False, [(0, 0, 0)]), (describable, False, [(0, 0, 0)])]
        )
        assert outcomes[2:] == [(hidden, True, [(0, -1, 29)])]
        every = describe_offsets(conn, group, None)
        assert every.error_code == 0, every.error_message
        assert sorted(t.topic_name for t in every.topics) == sorted([readable, describable])

        altered = alter_offsets(conn, group, all_three)
        assert altered.error_code == 0, altered.error_message
        assert [
            (t.topic_name, [(p.partition_index, p.error_code) for p in t.partitions])
            for t in altered.responses
        ] == [(describable, [(0, 29)]), (hidden, [(0, 29)]), (readable, [(0, 0)])]

        deleted = delete_offsets(conn, group, all_three)
        assert deleted.error_code == 0, deleted.error_message
        assert [(t.topic_name, t.error_code) for t in deleted.responses] == [
            (describable, 29),
            (hidden, 29),
            (readable, 0),
        ]
    with share_conn(target.bootstrap, pki, "admin") as conn:
        # Only the readable topic's offsets were deleted.
        remaining = describe_offsets(conn, group, None)
        assert sorted(t.topic_name for t in remaining.topics) == sorted([describable, hidden])


@dataclass
class Outage:
    """A proxy whose own principal's right to read the ACLs (DESCRIBE on the cluster) the test
    takes away and gives back, as a broker outage would make the ACLs unreadable."""

    proxied: ProxyThread
    authz: Any
    admin: AdminClient
    read_acls: tuple[Any, ...]  # the fields of that ACL's binding
    topic: str
    group: str

    def revoke(self) -> None:
        for f in self.admin.delete_acls([AclBindingFilter(*self.read_acls)]).values():
            f.result(30)
        deadline = time.monotonic() + 30
        while self.proxied.call(lambda: self.authz.current):
            assert time.monotonic() < deadline, "the proxy still takes its ACLs as current"
            time.sleep(0.05)

    def restore(self) -> None:
        for f in self.admin.create_acls([AclBinding(*self.read_acls)]).values():
            f.result(30)

    def refusals(self, key: int) -> int:
        return int(self.proxied.call(lambda: self.authz.unknown_refusals[key]))

    def wait_refusals(self, key: int, count: int, *, while_waiting: Any = None) -> None:
        """Until the proxy has refused ``count`` more requests of API ``key`` retriably."""
        goal, deadline = self.refusals(key) + count, time.monotonic() + 60
        while self.refusals(key) < goal:
            assert time.monotonic() < deadline, f"API {key} was not refused {count} times"
            if while_waiting is not None:
                while_waiting()
            else:
                time.sleep(0.1)


@contextlib.contextmanager
def outage_proxy(broker: Broker, pki: Pki, *, readable: bool) -> Iterator[Outage]:
    """A proxy logged in as a principal of its own (its own state topic too), and a topic and
    group alice may consume; the ACLs readable by the proxy at first or not."""
    user, password = f"proxy-{uuid.uuid4().hex[:8]}", "outage-secret"
    admin = admin_of(broker)
    upsert = UserScramCredentialUpsertion(
        user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096), password.encode()
    )
    for f in admin.alter_user_scram_credentials([upsert]).values():
        f.result(30)
    state_topic = f"__sharegroup_state_{uuid.uuid4().hex[:8]}"
    topic, group = new_topic(broker), f"g-{uuid.uuid4().hex[:8]}"
    principal = f"User:{user}"
    acl(
        broker,
        principal,
        ResourceType.TOPIC,
        state_topic,
        AclOperation.CREATE,
        AclOperation.DESCRIBE,
        AclOperation.READ,
        AclOperation.WRITE,
        AclOperation.DESCRIBE_CONFIGS,
    )
    acl(broker, principal, ResourceType.TOPIC, topic, AclOperation.READ)
    acl(
        broker,
        principal,
        ResourceType.GROUP,
        f"sharegroup-state-reader-{state_topic}",
        AclOperation.READ,
    )
    read_acls = (
        ResourceType.BROKER,
        "kafka-cluster",
        ResourcePatternType.LITERAL,
        principal,
        "*",
        AclOperation.DESCRIBE,
        AclPermissionType.ALLOW,
    )
    if readable:
        acl(broker, principal, ResourceType.BROKER, "kafka-cluster", AclOperation.DESCRIBE)
    acl(broker, "User:alice", ResourceType.TOPIC, topic, AclOperation.READ, AclOperation.WRITE)
    acl(broker, "User:alice", ResourceType.GROUP, group, AclOperation.READ)
    configs = {
        **proxy_configs(pki),
        "upstream.sasl.username": user,
        "upstream.sasl.password": password,
        "sharegroup.state.topic": state_topic,
        "sharegroup.acl.refresh.ms": str(ACL_REFRESH_MS),
        "sharegroup.metrics.listen": "127.0.0.1:0",
    }
    with ProxyThread(broker.bootstrap, configs, listen_protocol="SASL_SSL") as proxied:
        proxy = proxied.proxy
        assert proxy is not None and proxy.authz is not None
        outage = Outage(proxied, proxy.authz, admin, read_acls, topic, group)
        if readable:
            acls_read(proxied)
        # As admin, a super user: allowed whether the ACLs can be read or not.
        earliest(Secured("proxy", proxied.bootstrap, broker, proxied), pki, group)
        yield outage


def test_acls_that_cannot_be_read_pause_a_share_consumer_without_ending_it(
    kafka39_sasl: Broker, pki: Pki
) -> None:
    """The proxy's principal loses DESCRIBE on the cluster, so the proxy cannot read the ACLs
    (as when the upstream is away): alice's librdkafka share consumer gets no record while
    they are unknown, sees no error, and goes on consuming once they can be read again. An
    authorization error instead (30 on the heartbeat) would end it."""
    with outage_proxy(kafka39_sasl, pki, readable=True) as outage:
        alice = client(outage.proxied.bootstrap, pki, "alice")
        produce(kafka39_sasl, outage.topic, 3)
        consumer = ShareConsumer({**alice, "group.id": outage.group})
        consumer.subscribe([outage.topic])
        got: list[bytes] = []

        def consume(until: int, timeout_s: float) -> None:
            deadline = time.monotonic() + timeout_s
            while len(got) < until and time.monotonic() < deadline:
                for m in consumer.poll(0.5):
                    assert m.error() is None, m.error()
                    value = m.value()
                    assert value is not None
                    got.append(value)

        try:
            consume(3, 60)
            assert len(got) == 3
            outage.revoke()
            produce(kafka39_sasl, outage.topic, 3)
            # Heartbeats and fetches are refused meanwhile: no record, no error surfaces.
            for key in (76, 78):
                outage.wait_refusals(key, 2, while_waiting=lambda: consume(4, 0.5))
            assert len(got) == 3, "a record was served while the ACLs were unknown"
            assert outage.proxied.call(lambda: outage.authz.current) is False
            proxy = outage.proxied.proxy
            assert proxy is not None
            metrics = metrics_of(proxy)
            assert metrics is not None
            samples = scrape(f"http://127.0.0.1:{metrics.port}/metrics")
            assert value(samples, "sharegroup_acls_current") == 0
            for api in ("ShareGroupHeartbeat", "ShareFetch"):
                refused = value(samples, "sharegroup_acl_unknown_refusals_total", api=api)
                assert refused is not None and refused >= 2, (api, refused)
            outage.restore()
            consume(6, 60)
            assert sorted(got) == sorted([b"0", b"1", b"2"] * 2)
        finally:
            consumer.close()


def test_acls_unreadable_from_the_start_do_not_end_a_java_share_consumer(
    kafka39_sasl: Broker, pki: Pki
) -> None:
    """Java's KafkaShareConsumer through a proxy that cannot read the ACLs yet: its
    heartbeats are refused retriably (GroupAuthorizationException would end it), and once the
    ACLs can be read it joins and consumes everything."""
    from tests.java_probe import ProbeRun

    with outage_proxy(kafka39_sasl, pki, readable=False) as outage:
        produce(kafka39_sasl, outage.topic, 5)
        props = {
            "security.protocol": "SASL_SSL",
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(pki.ca),
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.jaas.config": "org.apache.kafka.common.security.scram.ScramLoginModule "
            f'required username="alice" password="{SECURE_USERS["alice"]}";',
            "probe.linger.ms": "500",
        }
        bootstrap = outage.proxied.bootstrap
        with ProbeRun(
            bootstrap, outage.group, outage.topic, 5, "implicit", "accept", 90, props
        ) as probe:
            outage.wait_refusals(76, 3)  # three heartbeats, retried each time
            outage.restore()
            result = probe.result()
        assert result.returncode == 0, result.describe()
        assert sorted(r["offset"] for r in result.records) == list(range(5)), result.describe()
