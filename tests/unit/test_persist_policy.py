"""The persistence policy (sharegroup/persist/policy.py): which state records a change becomes,
and that those records, encoded and replayed, give back the share partition's state."""

from __future__ import annotations

import ast
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model import (
    AckBatch,
    AcquireMode,
    LogBatch,
    RecordState,
    ShareApiError,
    SharePartition,
    StateBatch,
    StateDelta,
)
from sharegroup.persist.policy import (
    PersistPolicy,
    initial_snapshot,
    recovery_snapshots,
    reset_snapshot,
)
from sharegroup.persist.records import (
    GroupConfigs,
    PartitionKey,
    Record,
    Snapshot,
    TopicIdAssigned,
    Update,
    decode,
    encode,
)
from sharegroup.persist.recovery import DurableState, Replay

KEY: PartitionKey = ("g", UUID(int=7), 0)
A, ACK, ARC = RecordState.AVAILABLE, RecordState.ACKNOWLEDGED, RecordState.ARCHIVED
NOW = 1_700_000_000_000


@dataclass(frozen=True)
class Change:
    key: PartitionKey
    delta: StateDelta


def durable(snapshot_epoch: int = 3, updates: int = 0, start: int = 10) -> DurableState:
    return DurableState(
        start_offset=start,
        state_epoch=2,
        snapshot_epoch=snapshot_epoch,
        updates_since_snapshot=updates,
    )


def acked_partition() -> tuple[SharePartition, StateDelta]:
    """A share partition at 10 whose member acquired 10..14 and accepted 12..13."""
    sp = SharePartition(10)
    sp.acquire("m", 10, [LogBatch(10, 14)], now_ms=0, max_records=5)
    delta = sp.acknowledge("m", [AckBatch(12, 13, (1,))], now_ms=1)
    return sp, delta


# ---------------------------------------------------------------- the branches, one each


def test_first_write_of_a_partition_is_a_snapshot_at_epoch_0() -> None:
    sp, delta = acked_partition()
    out = PersistPolicy().records([Change(KEY, delta)], {}, {KEY: sp}, NOW)
    assert out == [Snapshot(KEY, 0, 0, 0, 10, NOW, NOW, sp.state_batches())]
    # The whole state, acquisitions as AVAILABLE with the count before them.
    assert sp.state_batches() == (
        StateBatch(10, 11, A, 0),
        StateBatch(12, 13, ACK, 1),
        StateBatch(14, 14, A, 0),
    )


def test_first_write_of_a_partition_no_longer_live_writes_nothing() -> None:
    _sp, delta = acked_partition()
    assert PersistPolicy().records([Change(KEY, delta)], {}, {}, NOW) == []


def test_an_update_carries_the_known_snapshot_epoch_and_only_the_delta() -> None:
    sp, delta = acked_partition()
    out = PersistPolicy().records([Change(KEY, delta)], {KEY: durable(3, 7)}, {KEY: sp}, NOW)
    assert out == [Update(KEY, 3, 0, 10, (StateBatch(12, 13, ACK, 1),))]


def test_the_nth_update_becomes_a_snapshot_with_epoch_plus_one() -> None:
    sp, delta = acked_partition()
    policy = PersistPolicy(updates_per_snapshot=5)
    below = policy.records([Change(KEY, delta)], {KEY: durable(3, 3)}, {KEY: sp}, NOW)
    assert [type(r) for r in below] == [Update]  # the 4th update
    out = policy.records([Change(KEY, delta)], {KEY: durable(3, 4)}, {KEY: sp}, NOW)
    # The 5th: a snapshot of the whole state, next snapshot epoch, same state epoch.
    assert out == [Snapshot(KEY, 4, 2, 0, 10, NOW, NOW, sp.state_batches())]


def test_an_empty_delta_with_an_unchanged_start_writes_nothing() -> None:
    sp, _ = acked_partition()
    nothing = StateDelta(10, ())
    assert PersistPolicy().records([Change(KEY, nothing)], {KEY: durable()}, {KEY: sp}, NOW) == []


def test_a_moved_start_alone_writes_an_update() -> None:
    sp, _ = acked_partition()
    moved = StateDelta(12, ())
    out = PersistPolicy().records([Change(KEY, moved)], {KEY: durable()}, {KEY: sp}, NOW)
    assert out == [Update(KEY, 3, 0, 12, ())]


def test_an_update_of_a_partition_no_longer_live_is_still_written() -> None:
    # Changes applied to a share partition that has since gone (deleted offsets, say) are
    # written as they are: the replay decides what they still mean.
    _sp, delta = acked_partition()
    out = PersistPolicy().records([Change(KEY, delta)], {KEY: durable(3, 499)}, {}, NOW)
    assert out == [Update(KEY, 3, 0, 10, delta.batches)]


def test_recovery_snapshots_bump_the_snapshot_epoch_and_keep_configs_and_topic_ids() -> None:
    replay = Replay()
    replay.apply(Snapshot(KEY, 4, 2, 1, 10, 111, 222, (StateBatch(10, 12, ACK, 1),)))
    replay.apply(Update(KEY, 4, 1, 11, (StateBatch(13, 13, A, 2),)))
    replay.apply(GroupConfigs("g", {"share.auto.offset.reset": "earliest"}))
    replay.apply(TopicIdAssigned("orders", UUID(int=9)))
    out = recovery_snapshots(replay, NOW)
    assert out == [
        # SPSO 11 from the update: offset 10 is below it and gone.
        Snapshot(
            KEY, 5, 2, 1, 11, 111, NOW, (StateBatch(11, 12, ACK, 1), StateBatch(13, 13, A, 2))
        ),
        GroupConfigs("g", {"share.auto.offset.reset": "earliest"}),
        TopicIdAssigned("orders", UUID(int=9)),
    ]


def test_an_initial_snapshot_is_epoch_0_with_nothing_in_flight() -> None:
    assert initial_snapshot(KEY, 42, NOW) == Snapshot(KEY, 0, 0, 0, 42, NOW, NOW, ())


def test_a_reset_starts_a_new_state_epoch_past_every_old_update() -> None:
    assert reset_snapshot(KEY, 5, None, NOW) == Snapshot(KEY, 0, 0, 0, 5, NOW, NOW, ())
    assert reset_snapshot(KEY, 5, durable(3), NOW) == Snapshot(KEY, 4, 3, 0, 5, NOW, NOW, ())
    # An update written for the old state no longer counts after the reset.
    replay = Replay()
    replay.apply(Snapshot(KEY, 3, 2, 0, 0, 0, 0, ()))
    replay.apply(reset_snapshot(KEY, 5, replay.partitions[KEY], NOW))
    replay.apply(Update(KEY, 3, 0, 0, (StateBatch(5, 9, ACK, 1),)))
    assert replay.partitions[KEY].batches() == ()


def test_updates_per_snapshot_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        PersistPolicy(updates_per_snapshot=0)


def test_the_policy_module_is_pure() -> None:
    path = Path(__file__).resolve().parents[2] / "sharegroup" / "persist" / "policy.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    allowed = {"__future__", "collections.abc", "dataclasses", "typing", "model"}
    extra = {m for m in found if m not in allowed and not m.startswith("sharegroup.persist.")}
    assert not extra, f"policy.py imports {sorted(extra)}"


# ---------------------------------------------------------------- through the real replay


class Writer:
    """A state topic in memory, written as the proxy writes it: records go through the policy,
    are encoded, and are applied to the writer's own view as they are written."""

    def __init__(self, policy: PersistPolicy) -> None:
        self.policy = policy
        self.view = Replay()
        self.log: list[tuple[bytes, bytes | None]] = []

    def write(self, records: Sequence[Record]) -> None:
        for r in records:
            self.log.append(encode(r))
            self.view.apply(r)

    def change(self, sp: SharePartition, delta: StateDelta, now: int) -> None:
        self.write(self.policy.records([Change(KEY, delta)], self.view.partitions, {KEY: sp}, now))

    def replayed(self) -> Replay:
        replay = Replay()
        for key, value in self.log:
            replay.apply(decode(key, value))
        return replay

    def restart(self, now: int) -> DurableState:
        """A new instance: replay the log, write the start-up snapshots, drop what they
        supersede (the claim and writer fencing are the state store's, not tested here)."""
        replay = self.replayed()
        self.view = replay
        self.log = []
        self.write(recovery_snapshots(replay, now))
        return replay.partitions[KEY]


def persisted_view(
    start: int, batches: tuple[StateBatch, ...]
) -> dict[int, tuple[RecordState, int]]:
    """Offset by offset from ``start`` on; AVAILABLE never delivered is the same as no record
    (the gap window of a rebuilt share partition)."""
    out: dict[int, tuple[RecordState, int]] = {}
    for b in batches:
        for o in range(max(b.first_offset, start), b.last_offset + 1):
            if (b.state, b.delivery_count) != (A, 0):
                out[o] = (b.state, b.delivery_count)
    return out


LOG_END = 40
LOG = [LogBatch(o, min(o + 2, LOG_END - 1)) for o in range(0, LOG_END, 3)]

step = st.one_of(
    st.tuples(st.just("acquire"), st.sampled_from("ab"), st.integers(1, 8), st.booleans()),
    st.tuples(
        st.just("ack"), st.sampled_from("ab"), st.sampled_from([0, 1, 2, 3]), st.integers(0, 9)
    ),
    st.tuples(st.just("expire"), st.integers(0, 2000)),
    st.tuples(st.just("release"), st.sampled_from("ab")),
    st.tuples(st.just("log-start"), st.integers(0, LOG_END)),
    st.tuples(st.just("restart")),
)


def run_history(
    history: list[tuple[object, ...]], updates_per_snapshot: int
) -> tuple[SharePartition, Writer]:
    sp = SharePartition(0, delivery_count_limit=3, lock_duration_ms=1000)
    writer = Writer(PersistPolicy(updates_per_snapshot))
    writer.write([initial_snapshot(KEY, 0, 0)])
    now = 0
    for s in history:
        now += 1
        delta: StateDelta | None = None
        if s[0] == "acquire":
            member, limit, record_limit = str(s[1]), int(str(s[2])), bool(s[3])
            fetch = sp.next_fetch_offset()
            batches = [b for b in LOG if b.last_offset >= fetch]
            mode = AcquireMode.RECORD_LIMIT if record_limit else AcquireMode.BATCH_OPTIMIZED
            delta = sp.acquire(
                member, fetch, batches, now_ms=now, max_records=limit, mode=mode
            ).delta
        elif s[0] == "ack":
            member, kind, pick = str(s[1]), int(str(s[2])), int(str(s[3]))
            held = [
                (f, la)
                for f, la, st_, _c, m, _d in sp.ranges()
                if st_ is RecordState.ACQUIRED and m == member
            ]
            if not held:
                continue
            first, last = held[pick % len(held)]
            try:
                delta = sp.acknowledge(member, [AckBatch(first, last, (kind,))], now_ms=now)
            except ShareApiError:
                continue
        elif s[0] == "expire":
            now += int(str(s[1]))
            delta = sp.expire_locks(now)
        elif s[0] == "release":
            delta = sp.release_member(str(s[1]))
        elif s[0] == "restart":
            before = (sp.start_offset, persisted_view(sp.start_offset, sp.state_batches()))
            d = writer.restart(now)
            sp = SharePartition.from_state(
                d.start_offset, d.batches(), delivery_count_limit=3, lock_duration_ms=1000
            )
            # Everything persisted comes back; only acquisitions are lost.
            assert (sp.start_offset, persisted_view(sp.start_offset, sp.state_batches())) == before
            continue
        else:
            delta = sp.move_log_start(int(str(s[1])))
        writer.change(sp, delta, now)
    return sp, writer


@settings(max_examples=300, deadline=None)
@given(st.lists(step, max_size=60), st.integers(1, 6))
def test_the_policys_records_replayed_give_back_the_partition(
    history: list[tuple[object, ...]], updates_per_snapshot: int
) -> None:
    sp, writer = run_history(history, updates_per_snapshot)
    replay = writer.replayed()
    got = replay.partitions[KEY]
    assert got.start_offset == sp.start_offset
    assert persisted_view(got.start_offset, got.batches()) == persisted_view(
        sp.start_offset, sp.state_batches()
    )
    # The writer's own view (what the proxy decides the next write against) is the replay's.
    mine = writer.view.partitions[KEY]
    assert (mine.snapshot_epoch, mine.updates_since_snapshot, mine.batches()) == (
        got.snapshot_epoch,
        got.updates_since_snapshot,
        got.batches(),
    )
    assert got.updates_since_snapshot < updates_per_snapshot
    # A share partition rebuilt from the replay holds the same persisted state.
    rebuilt = SharePartition.from_state(got.start_offset, got.batches())
    assert persisted_view(rebuilt.start_offset, rebuilt.state_batches()) == persisted_view(
        sp.start_offset, sp.state_batches()
    )


def test_a_long_history_snapshots_every_n_updates_and_replays_to_the_same_state() -> None:
    history: list[tuple[object, ...]] = []
    for _ in range(12):
        history += [
            ("acquire", "a", 3, True),
            ("ack", "a", 1, 0),
            ("ack", "a", 2, 0),
            ("expire", 1500),
        ]
    sp, writer = run_history(history, 4)
    kinds = [type(decode(k, v)).__name__ for k, v in writer.log]
    assert kinds.count("Snapshot") >= 3, kinds
    # Never more than 3 updates in a row before a snapshot replaces them.
    assert "Update" * 4 not in "".join(kinds)
    got = writer.replayed().partitions[KEY]
    assert got.snapshot_epoch == kinds.count("Snapshot") - 1
    assert persisted_view(got.start_offset, got.batches()) == persisted_view(
        sp.start_offset, sp.state_batches()
    )
