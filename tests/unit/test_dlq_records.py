"""The DLQ record as Kafka 4.4 writes it (``ShareGroupDLQStateManager``), byte for byte."""

from __future__ import annotations

from model import ArchivingRange, DlqCause
from proxy.dlq import ATTEMPTS, dlq_records, producer_config
from sharegroup.dlq_format import dlq_partition, parse_headers, validate_dlq_topic


def test_headers_are_kafkas_six_utf8_strings_in_kafkas_order() -> None:
    [r] = dlq_records(
        group="g1",
        topic="orders",
        partition=7,
        work=ArchivingRange(42, 42, 3, DlqCause.DELIVERY_COUNT_EXCEEDED),
        dlq_partitions=3,
        copy=None,
    )
    assert r.headers == (
        ("__dlq.errors.topic", b"orders"),
        ("__dlq.errors.partition", b"7"),
        ("__dlq.errors.offset", b"42"),
        ("__dlq.errors.group", b"g1"),
        ("__dlq.errors.delivery.count", b"3"),
        ("__dlq.errors.message", b"Offset delivery count exceeded the threshold."),
    )
    assert r.partition == 1  # 7 mod 3
    assert r.key is None and r.value is None  # copy disabled: headers only


def test_copy_takes_key_and_value_and_never_the_source_headers() -> None:
    records = dlq_records(
        group="g",
        topic="t",
        partition=0,
        work=ArchivingRange(5, 7, 1, DlqCause.CLIENT_REJECT),
        dlq_partitions=1,
        copy={5: (b"k5", b"v5"), 7: (None, b"v7")},  # 6 is gone from the log
    )
    assert [(r.key, r.value) for r in records] == [(b"k5", b"v5"), (None, None), (None, b"v7")]
    assert [dict(r.headers)["__dlq.errors.offset"] for r in records] == [b"5", b"6", b"7"]
    assert all(
        dict(r.headers)["__dlq.errors.message"] == b"Offset rejected by client." for r in records
    )
    assert all(len(r.headers) == 6 for r in records)


def test_headers_read_back() -> None:
    [r] = dlq_records(
        group="g",
        topic="t",
        partition=2,
        work=ArchivingRange(9, 9, 1, DlqCause.CLIENT_REJECT),
        dlq_partitions=4,
        copy=None,
    )
    origin = parse_headers(list(r.headers))
    assert origin is not None
    assert (origin.topic, origin.partition, origin.offset, origin.group) == ("t", 2, 9, "g")
    assert origin.delivery_count == 1 and origin.cause is DlqCause.CLIENT_REJECT
    assert parse_headers([("other", b"x")]) is None
    assert dlq_partition(5, 5) == 0


def test_the_sender_is_set_up_as_kafkas() -> None:
    config = producer_config("127.0.0.1:9092")
    assert config["acks"] == "all" and config["compression.type"] == "none"
    assert config["retries"] == ATTEMPTS - 1 == 4
    assert (config["retry.backoff.ms"], config["retry.backoff.max.ms"]) == (1000, 30000)


def test_dlq_topic_checks_in_kafkas_order() -> None:
    def check(topic: str, **kw: object) -> str | None:
        args: dict[str, object] = {
            "prefix": "dlq.",
            "exists": True,
            "marked": True,
            "auto_create": False,
        }
        args.update(kw)
        return validate_dlq_topic("g", topic, **args)  # type: ignore[arg-type]

    assert check("dlq.orders") is None
    assert "no DLQ topic" in (check("") or "")
    assert "'__'" in (check("__dlq.x") or "")
    assert "not marked" in (check("dlq.orders", marked=False) or "")
    assert "does not exist" in (check("dlq.orders", exists=False, marked=False) or "")
    assert check("dlq.orders", exists=False, marked=False, auto_create=True) is None
    assert "prefix" in (check("orders-dlq") or "")
    assert check("orders-dlq", prefix="") is None


def test_the_engine_turns_the_dlq_on_only_for_a_driver_that_writes_it() -> None:
    import uuid

    from model import AckBatch, LogBatch, RecordState
    from sharegroup.engine import ShareEngine

    for writes, expected in ((False, RecordState.ARCHIVED), (True, RecordState.ARCHIVING)):
        engine = ShareEngine()
        engine.dead_letter_queues = writes
        engine.set_group_configs("g", {"errors.deadletterqueue.topic.name": "dlq.t"})
        key = ("g", uuid.uuid4(), 0)
        sp = engine.new_partition(key, 0)
        sp.acquire("m", 0, [LogBatch(0, 0)], now_ms=0, max_records=10)
        change = engine.acknowledge(key, "m", [AckBatch(0, 0, (3,))], 1)
        assert change.delta.batches[0].state is expected


def test_below_share_version_2_a_dlq_topic_archives_as_kafka_4_4_does() -> None:
    """Kafka 4.4 dead-letters only at share.version=2; at 1 a group's DLQ configs are kept
    (and described) but REJECT archives. The proxy's sharegroup.share.version is that level."""
    import uuid

    from model import AckBatch, BrokerConfig, LogBatch, RecordState
    from sharegroup.engine import ShareEngine

    for level, expected in (("1", RecordState.ARCHIVED), ("2", RecordState.ARCHIVING)):
        engine = ShareEngine(BrokerConfig.from_mapping({"sharegroup.share.version": level}))
        engine.dead_letter_queues = True
        config = engine.set_group_configs("g", {"errors.deadletterqueue.topic.name": "dlq.t"})
        assert config.dlq_topic_name == "dlq.t"
        key = ("g", uuid.uuid4(), 0)
        sp = engine.new_partition(key, 0)
        sp.acquire("m", 0, [LogBatch(0, 0)], now_ms=0, max_records=10)
        change = engine.acknowledge(key, "m", [AckBatch(0, 0, (3,))], 1)
        assert change.delta.batches[0].state is expected
