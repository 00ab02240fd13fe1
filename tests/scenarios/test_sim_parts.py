"""The simulator's parts on their own: the in-memory log, the event loop, the trace ledger."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

from model import RecordState, StateBatch
from sharegroup.persist.partitioning import state_partition_for_group, state_partition_for_share
from sharegroup.persist.records import (
    GroupConfigs,
    Snapshot,
    TopicIdAssigned,
    Update,
    WriterClaim,
    coalesce,
    decode,
    encode,
    writer_header,
)
from sharegroup.scenario import trace as tr
from sharegroup.scenario.load import load, loads
from sharegroup.scenario.run_sim import SimRun
from sharegroup.scenario.trace import Trace
from sharegroup.sim.actors import _ack_batches, partition_for_key
from sharegroup.sim.loop import EventLoop
from sharegroup.sim.memlog import PartitionLog
from sharegroup.sim.state_log import LoggedRecord

ROOT = Path(__file__).resolve().parents[2]
AVAILABLE, ACKNOWLEDGED, ARCHIVED = (
    RecordState.AVAILABLE,
    RecordState.ACKNOWLEDGED,
    RecordState.ARCHIVED,
)


def test_the_log_reads_whole_batches_from_the_one_holding_the_offset() -> None:
    log = PartitionLog()
    for _ in range(5):
        log.append(10, 0, record_bytes=100)
    got = log.read(15, 2500)
    assert [(b.base_offset, b.last_offset) for b in got] == [(10, 19), (20, 29), (30, 39)]
    assert log.read(50, 1 << 20) == []
    assert [b.base_offset for b in log.read(0, 1)] == [0]  # at least one batch


def test_markers_and_compaction_leave_holes_that_hold_no_record() -> None:
    log = PartitionLog()
    log.append(4, 0, keys=("a", "b", "a", "b"))
    log.append_marker(0, 7, abort=False)
    log.append(2, 0, keys=("a", "c"))
    assert log.data_runs(0, 6) == [(0, 3), (5, 6)]
    removed = log.compact()
    assert removed == [(0, 2)]  # a@0 and a@2 are superseded by a@5, b@1 by b@3
    assert log.data_runs(0, 6) == [(3, 3), (5, 6)]
    first = log.batches[0]
    assert (first.base_offset, first.last_offset) == (0, 3), "compaction keeps the batch span"
    assert log.key_of(3) == "b"


def test_a_batch_compaction_empties_vanishes() -> None:
    log = PartitionLog()
    log.append(2, 0, keys=("a", "a"))
    log.append(2, 0, keys=("a", "b"))
    log.compact()
    assert [(b.base_offset, b.last_offset) for b in log.batches] == [(2, 3)]
    assert log.data_runs(0, 3) == [(2, 3)]


def test_delete_records_and_timestamps() -> None:
    log = PartitionLog()
    for t in (100, 200, 300):
        log.append(10, t)
    assert log.offset_for_timestamp(150) == 10
    assert log.offset_for_timestamp(301) is None
    assert log.delete_records(15) == 15
    assert log.log_start_offset == 15
    assert log.batches[0].base_offset == 10, "the batch holding the new start stays"
    assert log.delete_records(99) == 30, "never past the high watermark"


def test_the_loop_runs_in_time_order_timers_first_then_in_scheduling_order() -> None:
    loop = EventLoop()
    seen: list[str] = []
    loop.at(10, seen.append, "b")
    loop.at(5, seen.append, "a")
    loop.at(10, seen.append, "c")
    loop.timer(10, seen.append, "timer")
    loop.at(11, seen.append, "late")
    loop.run_until(10)
    assert seen == ["a", "timer", "b", "c"]
    assert loop.now_ms == 10
    loop.run_until(20)
    assert seen[-1] == "late"


def test_acknowledgement_batches_join_adjacent_runs_of_one_type() -> None:
    batches = _ack_batches([(5, 9, 1), (0, 4, 1), (10, 10, 0), (11, 12, 1)])
    assert [(b.first_offset, b.last_offset, b.ack_types) for b in batches] == [
        (0, 9, (1,)),
        (10, 10, (0,)),
        (11, 12, (1,)),
    ]


def test_keyed_records_go_where_librdkafka_puts_them() -> None:
    # consistent_random: CRC32 of the key modulo the partition count.
    assert [partition_for_key(k, 8) for k in ("a", "b", "order-17")] == [3, 1, 4]


def _trace() -> Trace:
    t = Trace()
    t.add_partition("t", 0)
    t.produce(0, "p", "t", 0, 0, 9)
    return t


def test_the_ledger_tells_rejected_from_delivery_limit() -> None:
    t = _trace()
    t.acquire(1, "c1", "t", 0, 0, 9, 1)
    t.ack(2, "c1", "t", 0, 0, 4, tr.REJECT, tr.ARCHIVED)
    t.ack(2, "c1", "t", 0, 5, 9, tr.RELEASE, tr.ARCHIVED)
    totals = t.totals()
    assert totals["archived-rejected"] == 5
    assert totals["archived-delivery-limit"] == 5
    view = t.record_at("t", 0, 7)
    assert view is not None and view.reason == "delivery-limit"


def test_the_ledger_flags_a_redelivery_after_an_accept_and_a_second_owner() -> None:
    t = _trace()
    t.acquire(1, "c1", "t", 0, 0, 9, 1)
    t.ack(2, "c1", "t", 0, 0, 4, tr.ACCEPT, tr.ACKNOWLEDGED)
    assert not t.violations
    t.acquire(3, "c2", "t", 0, 3, 6, 3)  # count 3 after one delivery: also wrong
    kinds = sorted({v.invariant for v in t.violations})
    assert kinds == ["delivery-counts-agree", "no-redelivery-after-ack", "single-owner"]


def test_lock_expiry_is_charged_to_the_owner() -> None:
    t = _trace()
    t.acquire(1, "c1", "t", 0, 0, 4, 1)
    t.acquire(1, "c2", "t", 0, 5, 9, 1)
    t.unlock(30_001, "expiry", "t", 0, 0, 9, tr.AVAILABLE)
    assert t.consumer("c1").lock_lost == 5
    assert t.consumer("c2").lock_lost == 5
    assert t.in_flight == 0
    assert [(e[2], e[5], e[6]) for e in t.events if e[1] == tr.EXPIRE] == [
        ("c1", 0, 4),
        ("c2", 5, 9),
    ]


def test_only_a_confirmed_accept_makes_a_redelivery_a_violation() -> None:
    t = _trace()
    t.acquire(1, "c1", "t", 0, 0, 9, 1)
    t.ack(2, "c1", "t", 0, 0, 9, tr.ACCEPT, tr.ACKNOWLEDGED, confirmed=False)
    t.reset(3, "t", 0, 0)  # as if the state were lost: the records come again
    t.acquire(4, "c2", "t", 0, 0, 4, 1)
    assert not [v for v in t.violations if v.invariant == "no-redelivery-after-ack"]
    t.ack(5, "c2", "t", 0, 0, 4, tr.ACCEPT, tr.ACKNOWLEDGED, confirmed=False)
    t.confirm("t", 0, 0, 4)
    t.acquire(6, "c1", "t", 0, 2, 2, 2)
    assert [v.invariant for v in t.violations] == ["no-redelivery-after-ack"]


# ---------------------------------------------------------------- the state log and its replay


def _gap_window_run() -> SimRun:
    return SimRun(load(ROOT / "scenarios" / "restart-rebuilds-the-gap-window.yaml"))


def test_the_sim_keeps_the_encoded_state_records_and_prunes_them_on_restart() -> None:
    run = _gap_window_run()
    run.run()
    proxy = run.proxy
    records = [decode(r.key, r.value) for r in proxy.state_log.records]
    assert proxy.instances == 2
    # The second instance claimed the log and deleted everything below its claim; the first
    # records after the claim are its pruning snapshots.
    claim = records[0]
    assert isinstance(claim, WriterClaim) and claim.writer_id == proxy.store.writer_id
    assert proxy.state_log.start_offset == proxy.store.claim_offset > 0
    key = ("rebuilt", proxy.topic_ids["durable"], 0)
    snapshot = records[1]
    assert isinstance(snapshot, Snapshot) and snapshot.key == key
    assert snapshot.snapshot_epoch == 1  # the first instance's snapshot was epoch 0
    assert isinstance(records[2], GroupConfigs) and isinstance(records[3], TopicIdAssigned)
    assert any(isinstance(r, Update) for r in records[4:])


def test_the_sim_writes_state_batches_joined_as_the_proxys_store_does() -> None:
    run = SimRun(load(ROOT / "scenarios" / "proxy-restart-mid-stream.yaml"))
    run.run()
    decoded = [decode(r.key, r.value) for r in run.proxy.state_log.records]
    shares = [r for r in decoded if isinstance(r, (Snapshot, Update))]
    # Written without joining, 25 of these hold adjacent equal ranges (acks of several
    # producer batches).
    assert len(shares) > 20
    for r in shares:
        assert coalesce(r.batches) == r.batches, r


def test_a_restart_in_the_sim_rebuilds_state_through_the_real_replay() -> None:
    """Records put into the state log while the proxy is down: the replay must apply an update
    of the current snapshot, keep the higher delivery count where ranges overlap, and ignore an
    update of a snapshot epoch it does not hold and a record of a writer that does not own the
    topic. Keeping the old state, or the last write of each range, gets each of these wrong."""
    run = _gap_window_run()
    proxy = run.proxy
    seen: dict[str, object] = {}

    def inject() -> None:
        assert not proxy.up
        key = ("rebuilt", proxy.topic_ids["durable"], 0)
        durable = proxy.store.replay.partitions[key]
        assert persisted(durable.batches()).get(10) == (AVAILABLE, 1)  # released once
        epoch, me, other = durable.snapshot_epoch, proxy.store.writer_id, UUID(int=99)
        for record, writer in [
            (Update(key, epoch, 0, 0, (StateBatch(0, 9, ACKNOWLEDGED, 1),)), me),
            (Update(key, epoch, 0, 0, (StateBatch(10, 19, AVAILABLE, 0),)), me),
            (Update(key, epoch + 7, 0, 0, (StateBatch(10, 19, ARCHIVED, 5),)), me),
            (Update(key, epoch, 0, 0, (StateBatch(15, 19, ARCHIVED, 5),)), other),
        ]:
            k, v = encode(record)
            proxy.state_log.append(LoggedRecord(k, v, writer_header(writer, 1000)))
        seen["key"] = key

    run.loop.at(4500, inject)  # the restart is at 4 s with 1 s of downtime
    run.run()
    # What the second instance replayed is what its pruning snapshot, right after its claim,
    # says.
    assert proxy.instances == 2
    claim, snapshot = (decode(r.key, r.value) for r in proxy.state_log.records[:2])
    assert isinstance(claim, WriterClaim) and isinstance(snapshot, Snapshot)
    assert snapshot.key == seen["key"]
    got = persisted(snapshot.batches)
    assert {o: got.get(o) for o in (0, 9, 10, 15, 19)} == {
        0: (ACKNOWLEDGED, 1),  # the update of the current snapshot is applied
        9: (ACKNOWLEDGED, 1),
        10: (AVAILABLE, 1),  # count 0 loses to the persisted count 1; epoch + 7 is ignored
        15: (AVAILABLE, 1),  # and the other writer's record too
        19: (AVAILABLE, 1),
    }
    # The consumer came back to a share partition rebuilt from that state: 0-9 are done and
    # were never delivered again; 10-19 went out again with delivery count 2.
    first, released = run.trace.record_at("durable", 0, 0), run.trace.record_at("durable", 0, 10)
    assert first is not None and released is not None
    assert first.delivered == 1
    assert (released.delivered, released.delivery_count, released.state) == (3, 2, "ACKNOWLEDGED")


def persisted(batches: tuple[StateBatch, ...]) -> dict[int, tuple[RecordState, int]]:
    return {
        o: (b.state, b.delivery_count)
        for b in batches
        for o in range(b.first_offset, b.last_offset + 1)
    }


# ---------------------------------------------------------------- the dead-letter queue


def _dlq_run(**changes: str) -> SimRun:
    text = (ROOT / "scenarios" / "dead-letter-queue.yaml").read_text(encoding="utf-8")
    for old, new in changes.items():
        assert old in text
        text = text.replace(old, new)
    return SimRun(loads(text, "dead-letter-queue (changed)"))


def test_the_sim_writes_dlq_records_with_kafkas_headers_and_the_state_ends_archived() -> None:
    run = _dlq_run()
    run.run()
    entries = run.trace.dlq
    assert len(entries) == 16
    first = entries[0]
    assert (first.source_topic, first.group, first.cause, first.delivery_count) == (
        "orders",
        "orders-dlq",
        "rejected",
        1,
    )
    assert first.value == b"orders-0@0"  # copied: the sim names the source record
    # The state topic went through ARCHIVING (persisted before the DLQ write) to ARCHIVED.
    decoded = [decode(r.key, r.value) for r in run.proxy.state_log.records]
    states = {b.state for r in decoded if isinstance(r, (Snapshot, Update)) for b in r.batches}
    assert RecordState.ARCHIVING in states and ARCHIVED in states
    assert all(
        sp.range_count() == 0 or sp.start_offset > 7 for sp in run.proxy.engine.partitions.values()
    )


def test_a_missing_dlq_topic_is_created_only_with_auto_create() -> None:
    missing = {"    dlq.orders: {partitions: 1}\n": ""}
    run = _dlq_run(**missing)
    run.run()
    assert run.trace.dlq == []
    assert run.trace.totals()["dlq-write-failures"] == 16
    assert run.trace.totals()["archived-rejected"] == 8  # archived all the same, as in Kafka
    run = _dlq_run(
        **missing,
        **{
            "given:\n": "given:\n  broker: {errors.deadletterqueue.auto.create.topics.enable: true}\n"
        },
    )
    run.run()
    assert len(run.trace.dlq) == 16 and "dlq.orders" in run.proxy.log.topics


def test_below_share_version_2_the_sim_archives_without_dlq_records() -> None:
    run = _dlq_run(**{"given:\n": "given:\n  broker: {sharegroup.share.version: 1}\n"})
    run.run()
    assert run.trace.dlq == [] and run.trace.totals()["dlq-write-failures"] == 0
    assert run.trace.totals()["archived-rejected"] == 8


# ---------------------------------------------------------------- a fleet


def test_a_fleets_survivor_claims_the_dead_instances_state_partitions_and_replays_them() -> None:
    """Each instance writes only its own state partitions (sharegroup.persist.partitioning);
    after the kill and the session timeout the survivor claims the dead one's, prunes them,
    and the share partitions it then serves come from that replay: what was acknowledged
    through the dead instance stays acknowledged, what it had handed out comes back."""
    run = SimRun(load(ROOT / "scenarios" / "fleet-instance-killed.yaml"))
    proxy = run.proxy
    seen: dict[str, object] = {}

    def before_the_kill() -> None:
        seen["owner"] = dict(proxy.owner)
        seen["writers"] = dict(proxy.writer_ids)

    def before_the_take_over() -> None:
        seen["served"] = sorted(k[2] for k in proxy.engine.partitions)

    run.loop.at(2999, before_the_kill)
    run.loop.at(8999, before_the_take_over)
    result = run.run()
    owner, writers = seen["owner"], seen["writers"]
    assert isinstance(owner, dict) and isinstance(writers, dict)
    assert sorted(set(owner.values())) == [0, 1]
    assert proxy.leader_of("stream", 0) == 0 and proxy.alive == [0]
    moved = sorted(p for p, i in owner.items() if i == 1)
    assert moved and all(proxy.owner[p] == 0 for p in moved)
    pruned: list[int] = []
    for p in range(proxy.state.partitions):
        log = proxy.state.logs[p]
        records = [decode(r.key, r.value) for r in log.records]
        claims = [r.writer_id for r in records if isinstance(r, WriterClaim)]
        shares = [r for r in records if isinstance(r, (Snapshot, Update))]
        assert all(state_partition_for_share(r.key[1], r.key[2], 8) == p for r in shares)
        # Every partition was claimed by instance 0 at last; the moved ones that hold share
        # state were pruned below that claim (the dead instance's records are gone).
        assert claims[-1] == writers[0], p
        if p in moved and shares:
            assert log.start_offset > 0 and claims == [writers[0]], p
            pruned.append(p)
    assert pruned
    # Between the kill and the take-over only the survivor's share partitions were served.
    tid = proxy.topic_ids["stream"]
    led = sorted(q for q in range(4) if state_partition_for_share(tid, q, 8) not in moved)
    assert seen["served"] == led
    assert 0 not in led
    totals = result.trace.totals()
    assert totals["redelivered"] > 0 and totals["acknowledged"] == totals["produced"]


def test_when_the_coordinating_instance_dies_members_wait_then_rejoin_at_the_survivor() -> None:
    """Heartbeats get NOT_COORDINATOR while nobody owns the group's state partition; after
    the take-over the survivor knows no member (membership is not persisted) and the members
    rejoin (UNKNOWN_MEMBER_ID, then epoch 0). The story's expectations hold all the same."""
    text = (ROOT / "scenarios" / "fleet-instance-killed.yaml").read_text(encoding="utf-8")
    old = "{leader-of: {topic: stream, partition: 0}}"
    assert old in text
    run = SimRun(loads(text.replace(old, "{instance: 0}"), "coordinator killed"))
    coordinator = run.proxy.owner[state_partition_for_group("failover", 8)]
    assert coordinator == 0
    result = run.run()
    assert [v.detail for v in result.verdicts if v.passed is False] == []
    events = result.trace.events
    refused = [e[0] for e in events if e[7] == "ShareGroupHeartbeat NOT_COORDINATOR"]
    rejoined = [e[0] for e in events if e[1] == "rejoin" and e[7] == "UNKNOWN_MEMBER_ID"]
    assert refused and min(refused) >= 3000 and max(refused) < 9000 + 200
    assert len(rejoined) == 2 and all(9000 <= t < 9500 for t in rejoined)
