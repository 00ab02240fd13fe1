"""The offsets APIs' decisions (``sharegroup/core/offsets.py``), one named test each, with no
I/O: topics as the driver knows them, stored start offsets as a dict."""

from __future__ import annotations

from uuid import UUID

from model import AckBatch, BrokerConfig, ErrorCode, LogBatch
from sharegroup.core.messages import Refused
from sharegroup.core.offsets import AlterPlan, DeletePlan, OffsetsCore, TopicInfo, by_owner
from sharegroup.engine import ShareEngine

T1 = UUID("01a2058e-3f4b-4c5d-8e6f-708192a3b4c5")
T2 = UUID("fedcba98-7654-4321-8fed-cba987654321")
TOPICS = {"t1": TopicInfo(T1, frozenset({0, 1})), "t2": TopicInfo(T2, frozenset({0}))}
NAMES = {T1: "t1", T2: "t2"}
G = "g"


def make() -> OffsetsCore:
    return OffsetsCore(ShareEngine(BrokerConfig.from_mapping()))


def with_member(core: OffsetsCore) -> None:
    core.engine.heartbeat(
        G, "m1", 0, now_ms=0, partition_counts={"t1": 2}, subscribed_topic_names=["t1"]
    )


def test_alter_needs_a_group_id_an_empty_group_and_an_unfenced_instance() -> None:
    core = make()
    assert isinstance(core.alter("", [], TOPICS), Refused)
    assert core.alter("", [], TOPICS).code == ErrorCode.INVALID_GROUP_ID  # type: ignore[union-attr]
    fenced = core.alter(G, [], TOPICS, fenced=True)
    assert isinstance(fenced, Refused) and fenced.code == ErrorCode.NOT_COORDINATOR
    with_member(core)
    busy = core.alter(G, [("t1", 0, 5)], TOPICS)
    assert isinstance(busy, Refused) and busy.code == ErrorCode.NON_EMPTY_GROUP


def test_alter_answers_each_partition_and_resets_only_valid_ones() -> None:
    core = make()
    plan = core.alter(G, [("t1", 0, 5), ("t1", 7, 1), ("nope", 0, 1), ("t2", 0, -1)], TOPICS)
    assert isinstance(plan, AlterPlan)
    codes = [(r.topic, r.partition, r.code) for r in plan.results]
    assert codes == [
        ("t1", 0, ErrorCode.NONE),
        ("t1", 7, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION),
        ("nope", 0, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION),
        ("t2", 0, ErrorCode.INVALID_REQUEST),
    ]
    assert plan.resets == [((G, T1, 0), 5)]
    assert core.engine.share_partition((G, T1, 0)) is None  # nothing before it is durable
    core.apply_resets(G, plan.resets)
    sp = core.engine.share_partition((G, T1, 0))
    assert sp is not None and sp.start_offset == 5


def test_describe_of_an_unknown_group_is_group_id_not_found() -> None:
    got = make().describe(G, None, TOPICS, NAMES, None)
    assert isinstance(got, Refused) and got.code == ErrorCode.GROUP_ID_NOT_FOUND


def test_describe_answers_from_the_stored_start_offsets_when_there_is_a_store() -> None:
    core = make()
    core.engine.new_partition((G, T1, 0), 40)  # in memory: ahead of what is durable
    stored = {(G, T1, 0): 30, (G, T2, 0): 0, ("other", T1, 0): 9}
    got = core.describe(G, None, TOPICS, NAMES, stored)
    assert isinstance(got, list)
    assert [(d.topic, d.partition, d.start_offset) for d in got] == [("t1", 0, 30), ("t2", 0, 0)]
    memory = core.describe(G, [("t1", 0), ("t1", 1), ("x", 0)], TOPICS, NAMES, None)
    assert isinstance(memory, list)
    assert [(d.start_offset, d.code, d.lag_of) for d in memory] == [
        (40, ErrorCode.NONE, (G, T1, 0)),
        (-1, ErrorCode.NONE, None),
        (-1, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, None),
    ]


def test_lag_leaves_out_acknowledged_and_archived_records() -> None:
    core = make()
    sp = core.engine.new_partition((G, T1, 0), 0)
    sp.acquire("m1", 0, [LogBatch(0, 9)], now_ms=0, max_records=10)
    sp.acknowledge("m1", [AckBatch(5, 6, (1,)), AckBatch(8, 8, (3,))], now_ms=0)
    assert core.lag((G, T1, 0), 0, 20) == 17  # 20 records, 3 done
    assert core.lag((G, T2, 0), 5, 4) == 0


def test_delete_forgets_the_share_partitions_of_the_named_topics() -> None:
    core = make()
    core.engine.new_partition((G, T1, 0), 0)
    core.engine.new_partition((G, T1, 1), 0)
    core.engine.new_partition((G, T2, 0), 0)
    plan = core.delete(G, ["t1", "nope"], TOPICS, None)
    assert isinstance(plan, DeletePlan)
    assert sorted(k[2] for k in plan.forget) == [0, 1]
    assert [(n, c) for n, _, c, _ in plan.results] == [
        ("t1", ErrorCode.NONE),
        ("nope", ErrorCode.UNKNOWN_TOPIC_OR_PARTITION),
    ]
    core.apply_deletes(G, plan.forget)
    assert set(core.engine.partitions) == {(G, T2, 0)}


def test_delete_needs_an_existing_empty_group() -> None:
    core = make()
    missing = core.delete(G, ["t1"], TOPICS, {})
    assert isinstance(missing, Refused) and missing.code == ErrorCode.GROUP_ID_NOT_FOUND
    with_member(core)
    busy = core.delete(G, ["t1"], TOPICS, None)
    assert isinstance(busy, Refused) and busy.code == ErrorCode.NON_EMPTY_GROUP


def test_a_fleet_splits_a_change_by_the_owner_of_each_share_partition() -> None:
    """The coordinator (instance 0) writes its own part and passes each other part on to its
    owner, keeping the request's order within each part."""
    owner = {"a": 0, "b": 2, "c": 1, "d": 2, "e": 0}
    mine, others = by_owner("abcde", owner.__getitem__, 0)
    assert mine == ["a", "e"]
    assert others == {2: ["b", "d"], 1: ["c"]}
    assert by_owner("abcde", owner.__getitem__, 3) == ([], {0: ["a", "e"], 2: ["b", "d"], 1: ["c"]})
