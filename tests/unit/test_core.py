"""The sans-I/O core (``sharegroup/core``), one named test per decision, in the manner of
Kafka's SharePartitionManagerTest and ShareFetchUtilsTest: a fake log answers the core's log
reads, and nothing opens a socket or reads a clock.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from pathlib import Path
from uuid import UUID

import pytest

from model import AckBatch, AcquireMode, BrokerConfig, ErrorCode, LogBatch, RecordState
from sharegroup.core import (
    Acquired,
    Batches,
    FetchAction,
    FetchAnswer,
    HeartbeatAnswer,
    HeartbeatRequest,
    LogStartNeeded,
    NoAnswer,
    NoRecords,
    Outcome,
    OutOfRange,
    PartitionFailed,
    ReadFailed,
    ReadResult,
    Refused,
    ShareAcknowledge,
    ShareAcknowledgeRequest,
    ShareCore,
    ShareFetch,
    ShareFetchRequest,
)
from sharegroup.engine import Change, ShareEngine

T1 = UUID("01a2058e-3f4b-4c5d-8e6f-708192a3b4c5")
T2 = UUID("fedcba98-7654-4321-8fed-cba987654321")
GONE = UUID("00000000-0000-4000-8000-000000000001")
NAMES = {T1: "t1", T2: "t2"}
G, M = "g", "member-1"
NODE, CONN = 0, 1


class FakeLog:
    """Record batches per (topic id, partition): ``batch_size`` records each, 100 bytes a
    record; a log start that can move; reads counted."""

    def __init__(self) -> None:
        self.batches: dict[tuple[UUID, int], list[LogBatch]] = {}
        self.log_start: dict[tuple[UUID, int], int] = {}
        self.reads: list[tuple[UUID, int, int, int]] = []
        self.failing: dict[tuple[UUID, int], ReadResult[str]] = {}

    def produce(self, tp: tuple[UUID, int], count: int, batch: int = 10, **kw: bool) -> None:
        have = self.batches.setdefault(tp, [])
        start = have[-1].last_offset + 1 if have else 0
        for first in range(start, start + count, batch):
            have.append(LogBatch(first, min(first + batch, start + count) - 1, **kw))

    def hwm(self, tp: tuple[UUID, int]) -> int:
        have = self.batches.get(tp, [])
        return have[-1].last_offset + 1 if have else 0

    def read(self, tp: tuple[UUID, int], offset: int, max_bytes: int) -> ReadResult[str]:
        self.reads.append((tp[0], tp[1], offset, max_bytes))
        if tp in self.failing:
            return self.failing[tp]
        start = self.log_start.get(tp, 0)
        if offset < start:
            return OutOfRange(start, self.hwm(tp))
        out: list[tuple[LogBatch, str]] = []
        size = 0
        for b in self.batches.get(tp, []):
            if b.last_offset < offset or b.first_offset < start:
                continue
            bytes_ = (b.last_offset - b.first_offset + 1) * 100
            if out and size + bytes_ > max_bytes:
                break
            out.append((b, f"{tp[1]}:{b.first_offset}"))
            size += bytes_
        return Batches(tuple(out), self.hwm(tp))


def make_core(**group_configs: str) -> ShareCore:
    engine = ShareEngine(BrokerConfig.from_mapping())
    if group_configs:
        engine.set_group_configs(G, dict(group_configs))
    return ShareCore(engine)


def fetch_request(
    epoch: int = 0,
    parts: Sequence[tuple[UUID, int]] = ((T1, 0),),
    acks: Mapping[tuple[UUID, int], Sequence[AckBatch]] | None = None,
    **kw: object,
) -> ShareFetchRequest:
    acks = acks or {}
    fields: dict[str, object] = {"max_wait_ms": 0, "max_records": 500, "batch_size": 500}
    fields.update(kw)
    return ShareFetchRequest(
        G,
        str(fields.pop("member", M)),
        epoch,
        tuple((tp, tuple(acks.get(tp, ()))) for tp in parts),
        **fields,  # type: ignore[arg-type]
    )


def begin(core: ShareCore, req: ShareFetchRequest, now: int = 0, **kw: object) -> ShareFetch[str]:
    op: Refused | ShareFetch[str] = core.share_fetch(
        req,
        node_id=NODE,
        connection_id=CONN,
        now_ms=now,
        topic_names=NAMES,
        **kw,  # type: ignore[arg-type]
    )
    assert isinstance(op, ShareFetch), op
    return op


def init_all(core: ShareCore, op: ShareFetch[str], log: FakeLog, **kw: bool) -> None:
    """Create every share partition the core names, at the log start (``reset`` aside)."""
    for need in op.prepare(NAMES, **kw):
        core.engine.new_partition(need.key, log.log_start.get(need.key[1:], 0))
    op.plan()


def serve_round(
    op: ShareFetch[str],
    log: FakeLog,
    now: int = 0,
    busy: frozenset[tuple[UUID, int]] = frozenset(),
    hwm: Mapping[tuple[UUID, int], int] | None = None,
) -> tuple[bool, list[tuple[UUID, int]], list[Change]]:
    """One round as a driver runs it; returns whether the fetch answers now, the order in
    which partitions were served, and the changes the core made."""
    rnd = op.new_round()
    served: list[tuple[UUID, int]] = []
    changes: list[Change] = []
    while (turn := rnd.next_turn()) is not None:
        if turn.may_pass and turn.tp in busy:
            rnd.passed(turn)
            continue
        served.append(turn.tp)
        pr = op.read(turn, now)
        outcome: Outcome[str] | LogStartNeeded
        if pr.outcome is not None:
            outcome = pr.outcome
        elif pr.nothing_new((hwm or {}).get(turn.tp, -1)):
            outcome = NoRecords(wait_for_log=True)
        else:
            read = pr.log_read()
            outcome = pr.on_read(log.read(turn.tp, read.offset, read.max_bytes))
            if isinstance(outcome, LogStartNeeded):
                outcome = pr.on_log_start(log.log_start.get(turn.tp, 0))
        changes += pr.changes
        rnd.took(turn, outcome)
    return op.round_done(rnd, now), served, changes


def listed(answer: FetchAnswer[str]) -> list[tuple[UUID, int]]:
    return [(p.topic_id, p.partition) for p in answer.partitions]


def one(answer: FetchAnswer[str], tp: tuple[UUID, int]) -> object:
    return next(p for p in answer.partitions if (p.topic_id, p.partition) == tp)


def acquire_first(core: ShareCore, log: FakeLog, parts: Sequence[tuple[UUID, int]]) -> int:
    """Open a session over ``parts`` and acquire once; returns the next epoch."""
    op = begin(core, fetch_request(0, parts))
    init_all(core, op, log)
    serve_round(op, log)
    return 1


# ---------------------------------------------------------------------- layering
def test_the_core_imports_only_the_model_the_engine_and_the_standard_library() -> None:
    root = Path(__file__).resolve().parents[2] / "sharegroup" / "core"
    allowed = {"model", "sharegroup", "__future__", "collections", "dataclasses", "enum"}
    allowed |= {"typing", "uuid"}
    for path in sorted(root.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] in allowed, f"{path.name} imports {name}"
                if name.startswith("sharegroup."):
                    assert name == "sharegroup.engine" or name.startswith("sharegroup.core."), name


# ---------------------------------------------------------------------- request checks
def test_null_group_id_is_refused() -> None:
    core = make_core()
    req = ShareFetchRequest(None, M, 0, (((T1, 0), ()),))
    got: Refused | ShareFetch[str] = core.share_fetch(
        req, node_id=NODE, connection_id=CONN, now_ms=0, topic_names=NAMES
    )
    assert got == Refused(ErrorCode.INVALID_REQUEST, "group id must not be null")


def test_unknown_acquire_mode_is_refused() -> None:
    got: Refused | ShareFetch[str] = make_core().share_fetch(
        fetch_request(mode=None), node_id=NODE, connection_id=CONN, now_ms=0, topic_names=NAMES
    )
    assert isinstance(got, Refused) and got.code == ErrorCode.INVALID_REQUEST


def test_renew_only_fetch_must_have_zero_fetch_parameters() -> None:
    got: Refused | ShareFetch[str] = make_core().share_fetch(
        fetch_request(renew=True), node_id=NODE, connection_id=CONN, now_ms=0, topic_names=NAMES
    )
    assert isinstance(got, Refused) and got.code == ErrorCode.INVALID_REQUEST
    assert "renew-only" in got.message


def test_renew_only_fetch_persists_its_acks_and_fetches_nothing() -> None:
    core, log = make_core(**{"share.renew.acknowledge.enable": "true"}), FakeLog()
    log.produce((T1, 0), 10)
    acquire_first(core, log, [(T1, 0)])
    renew = {(T1, 0): [AckBatch(0, 9, (4,))]}
    req = fetch_request(
        1, acks=renew, renew=True, max_bytes=0, min_bytes=0, max_records=0, batch_size=0
    )
    op = begin(core, req, now=5)
    assert op.action is FetchAction.ACKS_ONLY
    assert op.acks[0].code == ErrorCode.NONE
    assert listed(op.answer()) == [(T1, 0)]


def test_session_limit_refusal_waits_max_wait() -> None:
    core = ShareCore(
        ShareEngine(
            BrokerConfig.from_mapping(
                {"group.share.max.share.sessions": "1", "group.share.max.size": "1"}
            )
        )
    )
    begin(core, fetch_request(member="a"))
    got: Refused | ShareFetch[str] = core.share_fetch(
        fetch_request(member="b", max_wait_ms=700),
        node_id=NODE,
        connection_id=CONN,
        now_ms=0,
        topic_names=NAMES,
    )
    assert got == Refused(ErrorCode.SHARE_SESSION_LIMIT_REACHED, got.message, 700)  # type: ignore[union-attr]


def test_wrong_epoch_is_refused_before_any_acknowledgement() -> None:
    core, log = make_core(), FakeLog()
    log.produce((T1, 0), 10)
    acquire_first(core, log, [(T1, 0)])
    got: Refused | ShareFetch[str] = core.share_fetch(
        fetch_request(7, acks={(T1, 0): [AckBatch(0, 9, (1,))]}),
        node_id=NODE,
        connection_id=CONN,
        now_ms=0,
        topic_names=NAMES,
    )
    assert isinstance(got, Refused) and got.code == ErrorCode.INVALID_SHARE_SESSION_EPOCH
    sp = core.engine.share_partition((G, T1, 0))
    assert sp is not None and sp.state_of(0) is not None
    assert sp.state_of(0)[0] is RecordState.ACQUIRED  # type: ignore[index]


# ---------------------------------------------------------------------- acknowledgements
def test_renew_ack_without_is_renew_ack_is_invalid_request() -> None:
    core, log = make_core(**{"share.renew.acknowledge.enable": "true"}), FakeLog()
    log.produce((T1, 0), 10)
    acquire_first(core, log, [(T1, 0)])
    op = begin(core, fetch_request(1, acks={(T1, 0): [AckBatch(0, 9, (4,))]}))
    assert op.acks[0].code == ErrorCode.INVALID_REQUEST
    assert op.acks[0].change is None and not op.ack_changes


def test_ack_of_an_unknown_topic_id_is_unknown_topic_id() -> None:
    core, log = make_core(), FakeLog()
    log.produce((T1, 0), 10)
    acquire_first(core, log, [(T1, 0)])
    op = core.share_acknowledge(
        ShareAcknowledgeRequest(G, M, 1, (((GONE, 0), (AckBatch(0, 9, (1,)),)),)),
        node_id=NODE,
        now_ms=0,
        topic_names=NAMES,
    )
    assert isinstance(op, ShareAcknowledge)
    assert [p.ack_code for p in op.answer().partitions] == [ErrorCode.UNKNOWN_TOPIC_ID]


def test_ack_when_fenced_is_not_leader_and_changes_nothing() -> None:
    core, log = make_core(), FakeLog()
    log.produce((T1, 0), 10)
    acquire_first(core, log, [(T1, 0)])
    op = core.share_acknowledge(
        ShareAcknowledgeRequest(G, M, 1, (((T1, 0), (AckBatch(0, 9, (1,)),)),)),
        node_id=NODE,
        now_ms=0,
        topic_names=NAMES,
        fenced=True,
    )
    assert isinstance(op, ShareAcknowledge) and not op.changes
    assert op.outcomes[0].code == ErrorCode.NOT_LEADER_OR_FOLLOWER


def test_share_acknowledge_with_invalid_is_renew_ack_is_refused() -> None:
    got = make_core().share_acknowledge(
        ShareAcknowledgeRequest(G, M, 1, (), renew=None), node_id=NODE, now_ms=0, topic_names=NAMES
    )
    assert got == Refused(ErrorCode.INVALID_REQUEST, "bad IsRenewAck")


def test_model_refusal_is_reported_with_its_code() -> None:
    core, log = make_core(), FakeLog()
    log.produce((T1, 0), 10)
    acquire_first(core, log, [(T1, 0)])
    begin(core, fetch_request(0, member="member-2"))
    other = begin(core, fetch_request(1, acks={(T1, 0): [AckBatch(0, 9, (1,))]}, member="member-2"))
    assert other.acks[0].refused_by_model and other.acks[0].change is None
    assert other.acks[0].code == ErrorCode.INVALID_RECORD_STATE
    mine = begin(core, fetch_request(1, acks={(T1, 0): [AckBatch(0, 9, (1,))]}))
    assert mine.acks[0].code == ErrorCode.NONE and not mine.acks[0].refused_by_model


def test_persist_failure_maps_to_the_partitions_ack_error() -> None:
    core, log = make_core(), FakeLog()
    log.produce((T1, 0), 10)
    log.produce((T2, 0), 10)
    acquire_first(core, log, [(T1, 0), (T2, 0)])
    acks = {(T1, 0): [AckBatch(0, 9, (1,))], (T2, 0): [AckBatch(0, 9, (1,))]}
    op = begin(core, fetch_request(1, [(T1, 0), (T2, 0)], acks, max_records=0))
    assert op.action is FetchAction.ACKS_ONLY and len(op.ack_changes) == 2
    op.persisted({(G, T2, 0): ErrorCode.NOT_LEADER_OR_FOLLOWER})
    answer = op.answer()
    assert one(answer, (T1, 0)).ack_code == ErrorCode.NONE  # type: ignore[attr-defined]
    assert one(answer, (T2, 0)).ack_code == ErrorCode.NOT_LEADER_OR_FOLLOWER  # type: ignore[attr-defined]
    ack = core.share_acknowledge(
        ShareAcknowledgeRequest(G, M, 2, (((T1, 0), (AckBatch(10, 10, (1,)),)),)),
        node_id=NODE,
        now_ms=0,
        topic_names=NAMES,
    )
    assert isinstance(ack, ShareAcknowledge)
    lost = ack.answer({(G, T1, 0): ErrorCode.UNKNOWN_SERVER_ERROR}).partitions[0]
    assert lost.ack_code == ErrorCode.UNKNOWN_SERVER_ERROR
    assert lost.ack_message == "the acknowledgement could not be persisted"


def test_well_formed_acks_give_every_request_partition_an_ack_result() -> None:
    core, log = make_core(), FakeLog()
    log.produce((T1, 0), 10)
    acquire_first(core, log, [(T1, 0), (T2, 0)])
    op = begin(core, fetch_request(1, [(T1, 0), (T2, 0)], {(T1, 0): [AckBatch(0, 9, (1,))]}))
    op.prepare(NAMES)
    op.plan()
    answer = op.answer()
    assert listed(answer) == [(T1, 0), (T2, 0)]
    assert one(answer, (T2, 0)).ack_code == ErrorCode.NONE  # type: ignore[attr-defined]


def test_malformed_acks_give_no_ack_result_to_other_partitions() -> None:
    core, log = make_core(), FakeLog()
    acquire_first(core, log, [(T1, 0), (T2, 0)])
    op = begin(core, fetch_request(1, [(T1, 0), (T2, 0)], {(T1, 0): [AckBatch(5, 2, (1,))]}))
    assert listed(op.answer()) == [(T1, 0)]


# ---------------------------------------------------------------------- closing
def test_final_epoch_closes_the_session_and_releases() -> None:
    core, log = make_core(), FakeLog()
    log.produce((T1, 0), 10)
    acquire_first(core, log, [(T1, 0)])
    op = begin(core, fetch_request(-1, acks={(T1, 0): [AckBatch(0, 4, (1,))]}))
    assert op.action is FetchAction.CLOSE
    released = op.close()
    assert [c.cause for c in released] == ["session-close"]
    assert core.engine.session_cache(NODE).get(G, M) is None
    assert listed(op.answer()) == [(T1, 0)]


def test_a_closed_session_releases_after_the_redelivery_back_off() -> None:
    """Records released by a session close wait the group's back-off, counted from the
    closing request, like released and expired records."""
    core, log = make_core(), FakeLog()
    core.engine.set_group_configs(G, {"sharegroup.share.record.redelivery.backoff.ms": "500"})
    log.produce((T1, 0), 10)
    acquire_first(core, log, [(T1, 0)])
    op = begin(core, fetch_request(-1), now=1000)
    op.close()
    sp = core.engine.share_partition((G, T1, 0))
    assert sp is not None and sp.next_deadline_ms() == 1500
    assert sp.acquire("other", 0, log.batches[(T1, 0)], now_ms=1499, max_records=10).count == 0
    core.engine.tick(1500, {})
    assert sp.acquire("other", 0, log.batches[(T1, 0)], now_ms=1500, max_records=10).count == 10


def test_share_acknowledge_final_epoch_closes_only_when_asked() -> None:
    core, log = make_core(), FakeLog()
    log.produce((T1, 0), 10)
    acquire_first(core, log, [(T1, 0)])
    ack = core.share_acknowledge(
        ShareAcknowledgeRequest(G, M, -1, ()), node_id=NODE, now_ms=0, topic_names=NAMES
    )
    assert isinstance(ack, ShareAcknowledge) and ack.final
    assert core.engine.session_cache(NODE).get(G, M) is not None
    assert [c.cause for c in ack.close()] == ["session-close"]
    assert core.engine.session_cache(NODE).get(G, M) is None


# ---------------------------------------------------------------------- partitions
def test_unknown_topic_id_is_answered_unknown_topic_id() -> None:
    core, log = make_core(), FakeLog()
    op = begin(core, fetch_request(0, [(T1, 0), (GONE, 3)]))
    assert op.unknown_topic_ids(NAMES) == [GONE]
    init_all(core, op, log)
    answer = op.answer()
    assert one(answer, (GONE, 3)).code == ErrorCode.UNKNOWN_TOPIC_ID  # type: ignore[attr-defined]
    assert [tp for tp, _ in op.parts] == [(T1, 0)]


def test_fenced_instance_answers_not_leader_for_every_partition() -> None:
    core = make_core()
    op = begin(core, fetch_request(0, [(T1, 0), (T2, 1)]))
    assert op.prepare(NAMES, fenced=True) == []
    op.plan()
    codes = [p.code for p in op.answer().partitions]
    assert codes == [ErrorCode.NOT_LEADER_OR_FOLLOWER] * 2


def test_missing_share_partitions_need_initialization_at_the_reset() -> None:
    core = make_core(**{"share.auto.offset.reset": "latest"})
    op = begin(core, fetch_request(0, [(T1, 0)]))
    needs = op.prepare(NAMES)
    assert [(n.key, n.topic, n.reset) for n in needs] == [((G, T1, 0), "t1", "latest")]


def test_a_new_partition_of_a_consumed_topic_starts_at_the_earliest_offset() -> None:
    core = make_core(**{"share.auto.offset.reset": "latest"})
    core.engine.new_partition((G, T1, 0), 0)
    op = begin(core, fetch_request(0, [(T1, 0), (T1, 1)]))
    assert [(n.key, n.reset) for n in op.prepare(NAMES)] == [((G, T1, 1), "earliest")]
    assignment = core.partitions_to_initialize(G, {"t1": (0, 1, 2)}, {"t1": T1})
    assert [(n.key[2], n.reset) for n in assignment] == [(1, "earliest"), (2, "earliest")]


def test_a_partition_that_could_not_be_initialized_is_unknown_topic_or_partition() -> None:
    core = make_core()
    op = begin(core, fetch_request(0, [(T1, 0)]))
    op.prepare(NAMES)
    op.plan()  # the driver created nothing
    assert op.parts == []
    answer = op.answer()
    assert one(answer, (T1, 0)).code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION  # type: ignore[attr-defined]


# ---------------------------------------------------------------------- rounds
def test_rotation_starts_at_the_partition_the_session_epoch_names() -> None:
    core, log = make_core(), FakeLog()
    parts = [(T1, 0), (T1, 1), (T1, 2)]
    epoch = acquire_first(core, log, parts)  # nothing produced: nothing acquired
    orders = []
    for e in range(epoch, epoch + 3):
        op = begin(core, fetch_request(e, parts))
        init_all(core, op, log)
        orders.append(serve_round(op, log)[1])
    assert orders == [parts[1:] + parts[:1], parts[2:] + parts[:2], parts]


def test_busy_partition_is_passed_over_and_skipped_when_another_gave_records() -> None:
    core, log = make_core(), FakeLog()
    log.produce((T1, 0), 10)
    log.produce((T1, 1), 10)
    op = begin(core, fetch_request(0, [(T1, 0), (T1, 1)]))
    init_all(core, op, log)
    done, served, _ = serve_round(op, log, busy=frozenset({(T1, 0)}))
    assert done and served == [(T1, 1)]


def test_busy_partition_is_waited_for_when_no_other_gave_records() -> None:
    core, log = make_core(), FakeLog()
    log.produce((T1, 0), 10)
    op = begin(core, fetch_request(0, [(T1, 0), (T1, 1)]))
    init_all(core, op, log)
    done, served, _ = serve_round(op, log, busy=frozenset({(T1, 0)}))
    assert done and served == [(T1, 1), (T1, 0)]


def test_one_record_budget_spans_the_partitions() -> None:
    core, log = make_core(), FakeLog()
    for p in range(3):
        log.produce((T1, p), 10)
    parts = [(T1, 0), (T1, 1), (T1, 2)]
    op = begin(core, fetch_request(0, parts, max_records=15, mode=AcquireMode.RECORD_LIMIT))
    init_all(core, op, log)
    done, served, _ = serve_round(op, log)
    assert done and served == [(T1, 0), (T1, 1)]  # the budget is spent after the second
    counts = [sum(b - a + 1 for a, b, _ in p.acquired) for p in op.answer().partitions]
    assert counts == [10, 5, 0]


def test_max_bytes_is_split_evenly_and_capped_at_one_mib() -> None:
    core, log = make_core(), FakeLog()
    op = begin(core, fetch_request(0, [(T1, 0), (T1, 1)], max_bytes=3000))
    init_all(core, op, log)
    assert op.partition_bytes == 1500
    big = begin(core, fetch_request(0, [(T1, 0)], member="m2", max_bytes=50 << 20))
    init_all(core, big, log)
    assert big.partition_bytes == 1 << 20


def test_in_flight_limit_stops_without_reading() -> None:
    core, log = make_core(**{"share.partition.max.record.locks": "100"}), FakeLog()
    log.produce((T1, 0), 300, batch=100)
    acquire_first(core, log, [(T1, 0)])
    reads = len(log.reads)
    op = begin(core, fetch_request(1))
    init_all(core, op, log)
    done, served, _ = serve_round(op, log)
    assert served == [(T1, 0)] and len(log.reads) == reads  # at the limit: no read
    assert done and op.answer().partitions == []  # MaxWaitMs 0: answers without records


def test_high_watermark_shortcut_only_in_a_repeated_round() -> None:
    core, log = make_core(), FakeLog()
    op = begin(core, fetch_request(0, max_wait_ms=500))
    init_all(core, op, log)
    done, _, _ = serve_round(op, log, now=0, hwm={(T1, 0): 0})
    assert not done and len(log.reads) == 1  # first round: read although the hwm says 0
    done, _, _ = serve_round(op, log, now=100, hwm={(T1, 0): 0})
    assert not done and len(log.reads) == 1  # repeated round: trusted, no read
    log.produce((T1, 0), 5)
    done, _, _ = serve_round(op, log, now=200, hwm={(T1, 0): -1})  # the driver saw new data
    assert done and len(log.reads) == 2


def test_a_share_partition_that_left_while_the_fetch_waited_is_not_leader() -> None:
    """A fleet instance lets a state partition go while a ShareFetch that planned one of
    its share partitions waits: that partition is answered NOT_LEADER_OR_FOLLOWER (the
    client asks for the metadata again), the other one is served."""
    core, log = make_core(), FakeLog()
    log.produce((T1, 0), 3)
    log.produce((T1, 1), 3)
    op = begin(core, fetch_request(0, parts=((T1, 0), (T1, 1))))
    init_all(core, op, log)
    rnd = op.new_round()
    first, second = rnd.next_turn(), rnd.next_turn()
    assert first is not None and second is not None
    assert op.vanished(first) is None and op.vanished(second) is None
    del core.engine.partitions[first.key]  # forgotten: its state partition moved
    gone = op.vanished(first)
    assert isinstance(gone, PartitionFailed)
    assert gone.code == ErrorCode.NOT_LEADER_OR_FOLLOWER
    assert op.vanished(second) is None
    core.leads = lambda key: key != second.key  # led elsewhere, not yet forgotten here
    led_elsewhere = op.vanished(second)
    assert isinstance(led_elsewhere, PartitionFailed)
    assert led_elsewhere.code == ErrorCode.NOT_LEADER_OR_FOLLOWER


def test_a_round_without_records_answers_once_max_wait_is_over() -> None:
    core, log = make_core(), FakeLog()
    op = begin(core, fetch_request(0, max_wait_ms=500), now=1000)
    init_all(core, op, log)
    rnd_done, _, _ = serve_round(op, log, now=1000)
    assert not rnd_done
    assert serve_round(op, log, now=1500)[0]


def test_nothing_new_in_the_log_waits_for_the_log() -> None:
    core, log = make_core(), FakeLog()
    op = begin(core, fetch_request(0, max_wait_ms=500))
    init_all(core, op, log)
    rnd = op.new_round()
    turn = rnd.next_turn()
    assert turn is not None
    pr = op.read(turn, 0)
    read = pr.log_read()
    rnd.took(turn, pr.on_read(log.read(turn.tp, read.offset, read.max_bytes)))  # type: ignore[arg-type]
    assert rnd.waiting_for_log == [(T1, 0)]


def test_out_of_range_moves_the_log_start() -> None:
    core, log = make_core(), FakeLog()
    log.produce((T1, 0), 30)
    op = begin(core, fetch_request(0))
    init_all(core, op, log)
    log.log_start[(T1, 0)] = 20
    rnd = op.new_round()
    turn = rnd.next_turn()
    assert turn is not None
    pr = op.read(turn, 0)
    read = pr.log_read()
    outcome = pr.on_read(log.read(turn.tp, read.offset, read.max_bytes))
    assert outcome == NoRecords(log_start_moved=True)
    assert [c.cause for c in pr.changes] == ["log-start"]
    assert pr.sp.start_offset == 20


def test_out_of_range_without_a_log_start_asks_for_it() -> None:
    core, log = make_core(), FakeLog()
    op = begin(core, fetch_request(0))
    init_all(core, op, log)
    rnd = op.new_round()
    turn = rnd.next_turn()
    assert turn is not None
    pr = op.read(turn, 0)
    pr.log_read()
    assert pr.on_read(OutOfRange(-1)) == LogStartNeeded((G, T1, 0), "t1")
    assert pr.on_log_start(None) == NoRecords(wait_for_log=True)
    assert pr.on_log_start(0) == NoRecords(wait_for_log=True)  # not past the start offset
    assert not pr.changes


def test_a_failed_read_is_the_partitions_error() -> None:
    core, log = make_core(), FakeLog()
    log.failing[(T1, 0)] = ReadFailed(ErrorCode.NOT_LEADER_OR_FOLLOWER, "broker down")
    op = begin(core, fetch_request(0, [(T1, 0), (T1, 1)]))
    init_all(core, op, log)
    serve_round(op, log)
    answer = op.answer()
    assert one(answer, (T1, 0)).code == ErrorCode.NOT_LEADER_OR_FOLLOWER  # type: ignore[attr-defined]
    assert one(answer, (T1, 0)).message == "broker down"  # type: ignore[attr-defined]


def test_a_read_without_the_partition_waits_for_the_log() -> None:
    core, log = make_core(), FakeLog()
    log.failing[(T1, 0)] = NoAnswer()
    op = begin(core, fetch_request(0))
    init_all(core, op, log)
    rnd = op.new_round()
    turn = rnd.next_turn()
    assert turn is not None
    pr = op.read(turn, 0)
    pr.log_read()
    assert pr.on_read(NoAnswer()) == NoRecords(wait_for_log=True)


def test_a_share_partition_replaced_during_the_read_gives_nothing() -> None:
    core, log = make_core(), FakeLog()
    log.produce((T1, 0), 10)
    op = begin(core, fetch_request(0))
    init_all(core, op, log)
    rnd = op.new_round()
    turn = rnd.next_turn()
    assert turn is not None
    pr = op.read(turn, 0)
    read = pr.log_read()
    core.engine.new_partition((G, T1, 0), 0)  # e.g. AlterShareGroupOffsets meanwhile
    assert not pr.current
    assert pr.on_read(log.read(turn.tp, read.offset, read.max_bytes)) == NoRecords()


def test_acquired_records_return_their_batches_but_not_aborted_ones() -> None:
    core, log = make_core(**{"share.isolation.level": "read_committed"}), FakeLog()
    log.produce((T1, 0), 10)
    log.produce((T1, 0), 10, aborted=True)
    log.produce((T1, 0), 10)
    op = begin(core, fetch_request(0))
    init_all(core, op, log)
    serve_round(op, log)
    p = op.answer().partitions[0]
    assert p.payloads == ("0:0", "0:20")
    assert [(a, b) for a, b, _ in p.acquired] == [(0, 9), (20, 29)]


def test_expired_locks_are_changes_before_the_read() -> None:
    core, log = make_core(**{"share.record.lock.duration.ms": "15000"}), FakeLog()
    log.produce((T1, 0), 10)
    acquire_first(core, log, [(T1, 0)])
    op = begin(core, fetch_request(1), now=20000)
    init_all(core, op, log)
    _, _, changes = serve_round(op, log, now=20000)
    assert [c.cause for c in changes] == ["expiry"]
    assert op.answer().partitions[0].acquired[0].delivery_count == 2


# ---------------------------------------------------------------------- which partitions
def test_a_full_session_lists_every_partition() -> None:
    core, log = make_core(), FakeLog()
    log.produce((T1, 1), 10)
    op = begin(core, fetch_request(0, [(T1, 0), (T1, 1)]))
    init_all(core, op, log)
    serve_round(op, log)
    assert listed(op.answer()) == [(T1, 0), (T1, 1)]


def test_an_incremental_session_lists_records_errors_and_added_partitions_only() -> None:
    core, log = make_core(), FakeLog()
    epoch = acquire_first(core, log, [(T1, 0), (T1, 1)])
    log.produce((T1, 1), 10)
    op = begin(core, fetch_request(epoch, [(T2, 0)]))
    init_all(core, op, log)
    serve_round(op, log)
    assert listed(op.answer()) == [(T1, 1), (T2, 0)]  # records; newly added
    nothing = begin(core, fetch_request(epoch + 1, []))
    init_all(core, nothing, log)
    serve_round(nothing, log)
    assert listed(nothing.answer()) == []


@pytest.mark.parametrize("mode", [AcquireMode.BATCH_OPTIMIZED, AcquireMode.RECORD_LIMIT])
def test_acquire_mode_reaches_the_model(mode: AcquireMode) -> None:
    core, log = make_core(), FakeLog()
    log.produce((T1, 0), 10)
    op = begin(core, fetch_request(0, max_records=3, mode=mode))
    init_all(core, op, log)
    serve_round(op, log)
    count = sum(b - a + 1 for a, b, _ in op.answer().partitions[0].acquired)
    assert count == (3 if mode is AcquireMode.RECORD_LIMIT else 10)


def test_outcome_of_a_round_keeps_acquisitions() -> None:
    core, log = make_core(), FakeLog()
    log.produce((T1, 0), 10)
    op = begin(core, fetch_request(0))
    init_all(core, op, log)
    serve_round(op, log)
    assert isinstance(op.results[(T1, 0)], Acquired)
    assert not isinstance(op.results[(T1, 0)], PartitionFailed)


def test_only_the_batches_holding_acquired_records_are_returned() -> None:
    core, log = make_core(), FakeLog()
    log.produce((T1, 0), 30)
    op = begin(core, fetch_request(0, max_records=5, mode=AcquireMode.RECORD_LIMIT))
    init_all(core, op, log)
    serve_round(op, log)
    p = op.answer().partitions[0]
    assert [(a, b) for a, b, _ in p.acquired] == [(0, 4)]
    assert p.payloads == ("0:0",)  # the batches read were 0-9, 10-19 and 20-29


# ---------------------------------------------------------------------- membership
def join(core: ShareCore, member: str = "", topics: tuple[str, ...] = ("t1",)) -> HeartbeatAnswer:
    return core.heartbeat(
        HeartbeatRequest(G, member or M, 0, topics, client_id="c1", client_host="10.0.0.1"),
        now_ms=0,
        partition_counts={"t1": 2, "t2": 1},
        topic_ids={"t1": T1, "t2": T2},
    )


def test_heartbeat_when_fenced_is_not_coordinator() -> None:
    answer = make_core().heartbeat(
        HeartbeatRequest(G, M, 0, ("t1",)),
        now_ms=0,
        partition_counts={"t1": 1},
        topic_ids={"t1": T1},
        fenced=True,
    )
    assert answer.result is None and answer.error is not None
    assert answer.error.code == ErrorCode.NOT_COORDINATOR


def test_a_join_names_the_share_partitions_to_create() -> None:
    answer = join(make_core(**{"share.auto.offset.reset": "earliest"}))
    assert answer.result is not None and answer.result.assignment == {"t1": (0, 1)}
    needs = [(n.key, n.reset) for n in answer.initialize]
    assert needs == [((G, T1, 0), "earliest"), ((G, T1, 1), "earliest")]


def test_a_refused_heartbeat_carries_the_models_error() -> None:
    core = make_core()
    answer = core.heartbeat(
        HeartbeatRequest(G, M, 5, ("t1",)), now_ms=0, partition_counts={}, topic_ids={}
    )
    assert answer.result is None and answer.error is not None
    assert answer.error.code == ErrorCode.GROUP_ID_NOT_FOUND


def test_topics_to_know_include_the_groups_subscriptions() -> None:
    core = make_core()
    join(core, topics=("t2",))
    assert core.topics_to_know(G, ["t1"]) == ["t1", "t2"]
    assert core.topics_to_know("other", None) == []


def test_describe_lists_members_and_leaves_unknown_topics_out() -> None:
    core = make_core()
    join(core, topics=("t1", "t2"))
    unknown, group = core.describe(["nope", G], {"t1": T1})
    assert unknown.error == ErrorCode.GROUP_ID_NOT_FOUND and unknown.state == "Dead"
    assert group.error == ErrorCode.NONE and group.assignor == "simple"
    (member,) = group.members
    assert (member.client_id, member.client_host) == ("c1", "10.0.0.1")
    assert member.assignment == ((T1, "t1", (0, 1)),)


def test_a_share_partition_that_left_while_the_fetch_waited_is_answered_not_leader() -> None:
    """A fleet instance losing a state partition drops its share partitions from the engine
    (SharePersistence.forget); a fetch that planned them and waits for records must not read
    them again but answer NOT_LEADER_OR_FOLLOWER, so the client asks the new leader."""
    core, log = make_core(), FakeLog()
    log.produce((T1, 1), 10)
    op = begin(core, fetch_request(0, parts=((T1, 0), (T1, 1)), max_wait_ms=500))
    init_all(core, op, log)
    del core.engine.partitions[(G, T1, 1)]  # its state partition moved to another instance
    done, served, _ = serve_round(op, log, now=0)
    assert served == [(T1, 0)] and not done
    assert serve_round(op, log, now=500)[0]
    answer = op.answer()
    codes = {(p.topic_id, p.partition): p.code for p in answer.partitions}
    assert codes == {(T1, 0): ErrorCode.NONE, (T1, 1): ErrorCode.NOT_LEADER_OR_FOLLOWER}


def test_a_heartbeat_for_a_group_lost_from_memory_is_told_to_rejoin() -> None:
    """Membership is not durable here: after a restart or a fleet's coordinator move, a
    member's heartbeat (epoch > 0) for a group that may exist gets UNKNOWN_MEMBER_ID (rejoin),
    not GROUP_ID_NOT_FOUND, which is fatal to a share consumer; a group that cannot exist
    still gets Kafka's GROUP_ID_NOT_FOUND, and a join (epoch 0) creates the group as ever."""
    core = make_core()
    req = HeartbeatRequest(G, M, 5, ("t1",))
    lost = core.heartbeat(
        req, now_ms=0, partition_counts={}, topic_ids={}, may_exist=lambda g: g == G
    )
    assert lost.error is not None and lost.error.code == ErrorCode.UNKNOWN_MEMBER_ID
    never = core.heartbeat(
        req, now_ms=0, partition_counts={}, topic_ids={}, may_exist=lambda g: False
    )
    assert never.error is not None and never.error.code == ErrorCode.GROUP_ID_NOT_FOUND
    joined = core.heartbeat(
        HeartbeatRequest(G, M, 0, ("t1",)),
        now_ms=0,
        partition_counts={"t1": 2},
        topic_ids={"t1": T1},
        may_exist=lambda g: True,
    )
    assert joined.error is None and joined.result is not None
