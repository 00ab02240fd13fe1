"""Named cases for ShareGroupHeartbeat membership (Kafka's
``GroupMetadataManager.shareGroupHeartbeat``) and share-group configs (``GroupConfig``,
``ShareGroupConfig``)."""

from __future__ import annotations

import pytest

from model import (
    BrokerConfig,
    ConfigError,
    ErrorCode,
    GroupConfig,
    ShareApiError,
    ShareGroup,
    assign,
)

COUNTS = {"t": 2}


def join(g: ShareGroup, member: str, now: int = 0) -> int:
    r = g.heartbeat(member, 0, now_ms=now, partition_counts=COUNTS, subscribed_topic_names=["t"])
    assert r.assignment is not None
    return r.member_epoch


def test_join_gets_a_full_assignment_and_a_server_chosen_epoch() -> None:
    g = ShareGroup("g")
    r = g.heartbeat("a", 0, now_ms=0, partition_counts=COUNTS, subscribed_topic_names=["t"])
    assert r.member_epoch >= 1 and r.assignment == {"t": (0, 1)}
    assert r.heartbeat_interval_ms == 5000
    # A steady heartbeat carries no assignment.
    r2 = g.heartbeat("a", r.member_epoch, now_ms=1, partition_counts=COUNTS)
    assert r2.assignment is None and r2.member_epoch == r.member_epoch


def test_second_member_moves_the_first_to_a_new_epoch_without_revocation() -> None:
    g = ShareGroup("g")
    e1 = join(g, "a")
    join(g, "b")
    r = g.heartbeat("a", e1, now_ms=1, partition_counts=COUNTS)
    assert r.member_epoch > e1 and r.assignment is not None and len(r.assignment["t"]) == 1
    # The previous epoch is still accepted once (a lost response).
    assert g.heartbeat("a", e1, now_ms=2, partition_counts=COUNTS).member_epoch == r.member_epoch


@pytest.mark.parametrize(
    ("member", "epoch", "topics", "code"),
    [
        ("", 0, ["t"], ErrorCode.INVALID_REQUEST),
        ("x" * 37, 0, ["t"], ErrorCode.INVALID_REQUEST),
        ("a", 0, [], ErrorCode.INVALID_REQUEST),
        ("a", -2, None, ErrorCode.INVALID_REQUEST),
        ("zz", 3, None, ErrorCode.UNKNOWN_MEMBER_ID),
        ("zz", -1, None, ErrorCode.UNKNOWN_MEMBER_ID),
        ("a", 99, None, ErrorCode.FENCED_MEMBER_EPOCH),
    ],
)
def test_heartbeat_errors(
    member: str, epoch: int, topics: list[str] | None, code: ErrorCode
) -> None:
    g = ShareGroup("g")
    join(g, "a")
    with pytest.raises(ShareApiError) as e:
        g.heartbeat(member, epoch, now_ms=1, partition_counts=COUNTS, subscribed_topic_names=topics)
    assert e.value.code == code


def test_group_size_limit() -> None:
    g = ShareGroup("g", max_size=1)
    join(g, "a")
    with pytest.raises(ShareApiError) as e:
        join(g, "b")
    assert e.value.code == ErrorCode.GROUP_MAX_SIZE_REACHED


def test_session_timeout_fences_and_a_fenced_member_may_rejoin() -> None:
    g = ShareGroup("g", session_timeout_ms=45000)
    join(g, "a", now=0)
    assert g.next_deadline_ms() == 45000
    assert g.expire_members(44999, COUNTS) == []
    assert g.expire_members(45000, COUNTS) == ["a"]
    assert g.state == "Empty"
    with pytest.raises(ShareApiError) as e:
        g.heartbeat("a", 1, now_ms=45001, partition_counts=COUNTS)
    assert e.value.code == ErrorCode.UNKNOWN_MEMBER_ID
    join(g, "a", now=45002)
    assert g.state == "Stable"


def test_more_members_than_partitions_share_partitions() -> None:
    result = assign({f"m{i}": ["t"] for i in range(8)}, {"t": 2})
    holders = [p for parts in result.values() for p in parts["t"]]
    assert sorted(holders) == [0] * 4 + [1] * 4


def test_fewer_members_than_partitions_are_balanced() -> None:
    result = assign({"a": ["t"], "b": ["t"]}, {"t": 5})
    assert sorted(len(r["t"]) for r in result.values()) == [2, 3]
    assert sorted(p for r in result.values() for p in r["t"]) == [0, 1, 2, 3, 4]


def test_broker_config_defaults_and_bounds() -> None:
    cfg = BrokerConfig.from_mapping()
    assert cfg["group.share.record.lock.duration.ms"] == 30000
    assert cfg["group.share.delivery.count.limit"] == 5
    with pytest.raises(ConfigError, match=r"group\.share\.delivery\.count\.limit"):
        BrokerConfig.from_mapping({"group.share.delivery.count.limit": "11"})
    with pytest.raises(ConfigError, match="unknown"):
        BrokerConfig.from_mapping({"group.share.nope": "1"})
    with pytest.raises(ConfigError, match="not an integer"):
        BrokerConfig.from_mapping({"group.share.max.size": "lots"})


def test_group_config_overrides_are_bounded_by_the_broker() -> None:
    broker = BrokerConfig.from_mapping({"group.share.min.record.lock.duration.ms": "1000"})
    base = GroupConfig.defaults(broker)
    cfg = base.with_overrides(
        broker,
        {
            "share.record.lock.duration.ms": "1000",
            "share.auto.offset.reset": "by_duration:PT1H30M",
            "share.isolation.level": "read_committed",
        },
    )
    assert cfg.record_lock_duration_ms == 1000 and cfg.isolation_level == "read_committed"
    for key, value in [
        ("share.record.lock.duration.ms", "999"),
        ("share.auto.offset.reset", "by_duration:1h"),
        ("share.auto.offset.reset", "newest"),
        ("share.isolation.level", "dirty"),
        ("share.delivery.count.limit", "1"),
        ("share.unknown", "x"),
    ]:
        with pytest.raises(ConfigError):
            base.with_overrides(broker, {key: value})


def test_dead_letter_queue_configs_with_kafkas_names_and_defaults() -> None:
    broker = BrokerConfig.from_mapping()
    assert broker.dlq_topic_name_prefix == "dlq."
    assert broker.dlq_auto_create_topics_enable is False
    assert broker.share_version == 2 and broker.dlq_supported
    assert not BrokerConfig.from_mapping({"sharegroup.share.version": "1"}).dlq_supported
    for bad in ("0", "3", "two"):
        with pytest.raises(ConfigError, match=r"sharegroup\.share\.version"):
            BrokerConfig.from_mapping({"sharegroup.share.version": bad})
    broker = BrokerConfig.from_mapping(
        {
            "errors.deadletterqueue.topic.name.prefix": "",
            "errors.deadletterqueue.auto.create.topics.enable": "true",
        }
    )
    assert broker.dlq_topic_name_prefix == "" and broker.dlq_auto_create_topics_enable
    with pytest.raises(ConfigError, match=r"auto\.create"):
        BrokerConfig.from_mapping({"errors.deadletterqueue.auto.create.topics.enable": "yes"})
    base = GroupConfig.defaults(broker)
    assert base.dlq_topic_name == "" and not base.dlq_enabled
    assert base.dlq_copy_record_enable is False
    cfg = base.with_overrides(
        broker,
        {
            "errors.deadletterqueue.topic.name": "dlq.orders",
            "errors.deadletterqueue.copy.record.enable": "TRUE",
        },
    )
    assert cfg.dlq_enabled and cfg.dlq_topic_name == "dlq.orders" and cfg.dlq_copy_record_enable
    # GroupConfig.validate refuses internal names; the prefix is checked at write time.
    with pytest.raises(ConfigError, match="must not start with '__'"):
        base.with_overrides(broker, {"errors.deadletterqueue.topic.name": "__dlq"})
    with pytest.raises(ConfigError, match=r"copy\.record\.enable"):
        base.with_overrides(broker, {"errors.deadletterqueue.copy.record.enable": "1"})


def test_redelivery_back_off_configs_live_in_the_proxys_namespace() -> None:
    broker = BrokerConfig.from_mapping()
    base = GroupConfig.defaults(broker)
    assert base.redelivery_backoff_ms == 0 and base.redelivery_backoff_max_ms == 60000
    cfg = base.with_overrides(
        broker,
        {
            "sharegroup.share.record.redelivery.backoff.ms": "1000",
            "sharegroup.share.record.redelivery.backoff.max.ms": "8000",
        },
    )
    assert (cfg.redelivery_backoff_ms, cfg.redelivery_backoff_max_ms) == (1000, 8000)
    with pytest.raises(ConfigError, match=r"backoff\.max\.ms must be >="):
        base.with_overrides(
            broker,
            {
                "sharegroup.share.record.redelivery.backoff.ms": "9000",
                "sharegroup.share.record.redelivery.backoff.max.ms": "8000",
            },
        )
    for value in ("-1", "3600001", "soon"):
        with pytest.raises(ConfigError, match=r"redelivery\.backoff\.ms"):
            base.with_overrides(broker, {"sharegroup.share.record.redelivery.backoff.ms": value})
