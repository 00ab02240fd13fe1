"""Share groups in the group admin APIs: ListGroups, DescribeGroups, ShareGroupDescribe."""

from __future__ import annotations

import time
import uuid

import pytest

from proxy import messages, wire
from sharegroup.brokers import Broker
from sharegroup.cli.offsets import WireClient
from tests.harness import ProxyThread
from tests.integration.test_share_consumers import consumer, key_of, new_topic, poll_until

pytestmark = pytest.mark.integration


def session_sizes(p: ProxyThread, group: str) -> list[int]:
    """How many partitions each share session of ``group`` holds in the proxy, sorted."""

    def read() -> list[int]:
        assert p.shares is not None
        return sorted(
            len(s.partitions)
            for cache in p.shares.engine.sessions.values()
            for s in cache.sessions()
            if s.group_id == group
        )

    sizes: list[int] = p.call(read)
    return sizes


def test_share_groups_are_listed_and_described_with_their_type(tansu: Broker) -> None:
    with ProxyThread(tansu.bootstrap) as p:
        topic = new_topic(p.bootstrap)
        group = f"g-{uuid.uuid4().hex[:8]}"
        c = consumer(p.bootstrap, group, topic)
        try:
            with WireClient(p.bootstrap) as client:
                list_cls = wire.request_class(wire.LIST_GROUPS)

                def listed() -> list[tuple[str, str, str]]:
                    groups = client.request(
                        list_cls(version=5, states_filter=[], types_filter=["share"]), 5
                    ).groups
                    return [(g.group_id, g.group_type, g.group_state) for g in groups]

                deadline = time.monotonic() + 20
                while listed() != [(group, "share", "Stable")] and time.monotonic() < deadline:
                    poll_until(c, lambda: False, 0.5, lambda m: None)  # the member joins
                assert listed() == [(group, "share", "Stable")]
                everything = client.request(
                    list_cls(version=5, states_filter=[], types_filter=[]), 5
                )
                assert group in {g.group_id for g in everything.groups}
                describe_cls = wire.request_class(15)
                described = client.request(
                    describe_cls(
                        version=5,
                        groups=[group, "no-such-group"],
                        include_authorized_operations=False,
                    ),
                    5,
                )
                share, other = described.groups
                assert (share.group_id, share.protocol_type, len(share.members)) == (
                    group,
                    "share",
                    1,
                )
                assert other.group_id == "no-such-group"
                sgd = messages.ShareGroupDescribeRequest(
                    version=1, group_ids=[group], include_authorized_operations=False
                )
                resp = client.request(sgd, 1)
                [g] = resp.groups
                assert (
                    g.error_code == 0 and g.group_state == "Stable" and g.assignor_name == "simple"
                )
                [member] = g.members
                assert member.subscribed_topic_names == [topic]
                assert member.assignment.topic_partitions[0].topic_name == topic
        finally:
            c.close()


def test_a_partition_added_back_to_a_session_is_answered_once(tansu: Broker) -> None:
    """Regression: a partition both newly added to a live share session and carrying records
    was listed twice in one ShareFetch answer, so librdkafka delivered its records twice."""
    from collections import Counter

    from confluent_kafka import Producer

    from tests.integration.test_share_consumers import set_group_configs

    with ProxyThread(tansu.bootstrap, {"sharegroup.state.enable": "false"}) as p:
        topic = new_topic(p.bootstrap, 2)
        group = f"g-{uuid.uuid4().hex[:8]}"
        set_group_configs(p.bootstrap, group, {"share.auto.offset.reset": "earliest"})
        seen: Counter[tuple[int, int]] = Counter()

        def count(m: object) -> None:
            seen[key_of(m)] += 1  # type: ignore[arg-type]

        a = consumer(p.bootstrap, group, topic)
        try:
            # A alone: both partitions in its session.
            deadline = time.monotonic() + 20
            while session_sizes(p, group) != [2] and time.monotonic() < deadline:
                poll_until(a, lambda: False, 0.5, count)
            assert session_sizes(p, group) == [2]
            # B joins: each gets one partition, and A's session forgets the other.
            b = consumer(p.bootstrap, group, topic)
            deadline = time.monotonic() + 20
            while session_sizes(p, group) != [1, 1] and time.monotonic() < deadline:
                poll_until(b, lambda: False, 0.5, count)
                poll_until(a, lambda: False, 0.5, count)
            assert session_sizes(p, group) == [1, 1]
            producer = Producer({"bootstrap.servers": tansu.bootstrap})
            for _ in range(10):
                for part in (0, 1):
                    producer.produce(topic, b"y", partition=part)
            assert producer.flush(10) == 0
            b.close()  # B leaves before consuming: A gets the partition back, records waiting
            poll_until(a, lambda: sum(seen.values()) >= 20, 20, count)
            poll_until(a, lambda: False, 2, count)
            a.commit_sync()
        finally:
            a.close()
        assert {k: n for k, n in seen.items() if n > 1} == {}
        assert len(seen) == 20


def test_group_and_topic_configs_in_one_request(tansu: Broker) -> None:
    """GROUP resources are answered by the proxy, the others by the broker, in one answer."""
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.admin._config import AlterConfigOpType, ConfigEntry, ConfigResource
    from confluent_kafka.admin._resource import ResourceType

    with ProxyThread(tansu.bootstrap) as p:
        topic = new_topic(p.bootstrap)
        group = f"g-{uuid.uuid4().hex[:8]}"
        admin = AdminClient({"bootstrap.servers": p.bootstrap})
        alter = [
            ConfigResource(
                ResourceType.GROUP,
                group,
                incremental_configs=[
                    ConfigEntry(
                        "share.delivery.count.limit",
                        "3",
                        incremental_operation=AlterConfigOpType.SET,
                    )
                ],
            ),
            ConfigResource(
                ResourceType.TOPIC,
                topic,
                incremental_configs=[
                    ConfigEntry(
                        "retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET
                    )
                ],
            ),
        ]
        for f in admin.incremental_alter_configs(alter).values():
            f.result(10)
        futures = admin.describe_configs(
            [ConfigResource(ResourceType.GROUP, group), ConfigResource(ResourceType.TOPIC, topic)]
        )
        described = {r.name: f.result(10) for r, f in futures.items()}
        assert described[group]["share.delivery.count.limit"].value == "3"
        assert described[group]["share.record.lock.duration.ms"].value == "30000"
        assert described[topic]["retention.ms"].value == "3600000"
        bad = ConfigResource(
            ResourceType.GROUP,
            group,
            incremental_configs=[
                ConfigEntry(
                    "share.delivery.count.limit", "99", incremental_operation=AlterConfigOpType.SET
                )
            ],
        )
        [future] = admin.incremental_alter_configs([bad]).values()
        try:
            future.result(10)
        except Exception as e:  # noqa: BLE001 - the client raises KafkaException
            # Kafka's error code, and a message that names the config.
            assert "INVALID_CONFIG" in str(e) and "share.delivery.count.limit" in str(e), e
        else:
            raise AssertionError("an out-of-range group config was accepted")
