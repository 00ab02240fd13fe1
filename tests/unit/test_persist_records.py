"""State-topic records round-trip, and replay merges like Kafka's share coordinator."""

from __future__ import annotations

from uuid import UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model import RecordState, StateBatch
from sharegroup.persist.records import (
    GroupConfigs,
    Snapshot,
    Tombstone,
    TopicIdAssigned,
    Update,
    WriterClaim,
    coalesce,
    decode,
    encode,
    encode_generic,
    read_writer_header,
    type_of_key,
    writer_header,
)
from sharegroup.persist.recovery import DurableState, Replay

KEY = ("g", UUID(int=7), 2)
A, ACK, ARC = RecordState.AVAILABLE, RecordState.ACKNOWLEDGED, RecordState.ARCHIVED


def test_every_record_kind_round_trips() -> None:
    batches = (StateBatch(10, 12, ACK, 1), StateBatch(13, 20, A, 3))
    for record in (
        Snapshot(KEY, 1, 2, 3, 10, 1000, 2000, batches),
        Update(KEY, 1, 3, 11, batches[1:]),
        Tombstone(KEY),
        GroupConfigs("g", {"share.auto.offset.reset": "earliest"}),
        GroupConfigs("g", None),
        TopicIdAssigned("orders", UUID(int=99)),
        WriterClaim(UUID(int=5), 1700000000000, "host-a", 4242),
    ):
        key, value = encode(record)
        assert decode(key, value) == record


def test_key_framing_is_record_type_then_struct() -> None:
    key, value = encode(Update(KEY, 0, 0, 0, ()))
    assert key[:2] == b"\x00\x01"  # record type 1: ShareUpdate
    assert value is not None and value[:2] == b"\x00\x00"  # value version 0


def test_writer_header_and_claim_key() -> None:
    writer = UUID(int=12345)
    assert read_writer_header(writer_header(writer, 2**40 + 3)) == (writer, 2**40 + 3)
    assert read_writer_header(b"short") is None and read_writer_header(None) is None
    key, _ = encode(WriterClaim(writer))
    assert type_of_key(key) == 4 and type_of_key(b"") is None


def test_replay_ignores_a_writer_after_another_claims_the_topic() -> None:
    """Log-based single writer: after B's claim, A's records (a fenced instance still writing)
    count for nobody, while A's records before the claim and B's after it do."""
    a, b = UUID(int=1), UUID(int=2)
    replay = Replay()
    assert replay.apply_logged(Snapshot(KEY, 0, 0, 0, 0, 0, 0, ()), None)  # no header: counts
    assert replay.apply_logged(WriterClaim(a), a)
    assert replay.apply_logged(Update(KEY, 0, 0, 0, (StateBatch(0, 4, ACK, 1),)), a)
    assert replay.apply_logged(WriterClaim(b), b)
    assert not replay.apply_logged(Update(KEY, 0, 0, 0, (StateBatch(5, 9, ACK, 1),)), a)
    assert not replay.apply_logged(GroupConfigs("g", {"share.auto.offset.reset": "latest"}), a)
    assert replay.apply_logged(Update(KEY, 0, 0, 0, (StateBatch(10, 10, ARC, 5),)), b)
    assert replay.owner == b and replay.ignored == 2
    assert replay.partitions[KEY].batches() == (
        StateBatch(0, 4, ACK, 1),
        StateBatch(10, 10, ARC, 5),
    )
    assert "g" not in replay.group_configs


def test_higher_delivery_count_wins_then_higher_state() -> None:
    s = DurableState(0)
    s.merge(0, [StateBatch(0, 9, ACK, 2)])
    s.merge(0, [StateBatch(5, 14, A, 1)])  # lower count: loses on 5-9, new on 10-14
    assert s.batches() == (StateBatch(0, 9, ACK, 2), StateBatch(10, 14, A, 1))
    s.merge(0, [StateBatch(10, 10, ARC, 1)])  # same count, higher state
    assert s.batches()[1] == StateBatch(10, 10, ARC, 1)


def test_start_offset_never_goes_back_and_drops_below() -> None:
    s = DurableState(5)
    s.merge(8, [StateBatch(5, 12, ACK, 1)])
    assert s.start_offset == 8 and s.batches() == (StateBatch(8, 12, ACK, 1),)
    s.merge(3, [])
    assert s.start_offset == 8


def test_replay_snapshot_replaces_update_merges_tombstone_deletes() -> None:
    r = Replay()
    r.apply(Snapshot(KEY, 0, 0, 0, 0, 0, 0, (StateBatch(0, 4, ACK, 1),)))
    r.apply(Update(KEY, 0, 0, 5, (StateBatch(5, 6, A, 2),)))
    assert r.partitions[KEY].batches() == (StateBatch(5, 6, A, 2),)
    r.apply(Update(KEY, 9, 0, 100, ()))  # belongs to another snapshot: ignored
    assert r.partitions[KEY].start_offset == 5
    r.apply(Snapshot(KEY, 1, 1, 0, 50, 0, 0, ()))
    assert r.partitions[KEY].start_offset == 50 and r.partitions[KEY].batches() == ()
    r.apply(Tombstone(KEY))
    assert KEY not in r.partitions


states = st.sampled_from([A, ACK, ARC])
batch = st.builds(
    lambda f, n, s, c: StateBatch(f, f + n, s, c),
    st.integers(0, 40),
    st.integers(0, 6),
    states,
    st.integers(0, 5),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 20), st.lists(batch, max_size=4)), max_size=8))
def test_merge_matches_a_per_offset_reference(updates: list[tuple[int, list[StateBatch]]]) -> None:
    s = DurableState(0)
    ref: dict[int, tuple[int, int]] = {}  # offset -> (count, state)
    spso = 0
    for start, batches in updates:
        s.merge(start, batches)
        spso = max(spso, start)
        for b in batches:
            for o in range(b.first_offset, b.last_offset + 1):
                cand = (b.delivery_count, int(b.state))
                if o not in ref or cand > ref[o]:
                    ref[o] = cand
        ref = {o: v for o, v in ref.items() if o >= spso}
    got = {
        o: (b.delivery_count, int(b.state))
        for b in s.batches()
        for o in range(b.first_offset, b.last_offset + 1)
    }
    assert got == ref
    assert s.start_offset == spso


# The struct encoder of ShareSnapshot / ShareUpdate records against kafka-python's generic one.
int32 = st.integers(-(2**31), 2**31 - 1)
int64 = st.integers(-(2**63), 2**63 - 1)
any_batch = st.builds(
    StateBatch,
    int64,
    int64,
    st.sampled_from(list(RecordState)),
    st.integers(-(2**15), 2**15 - 1),
)
partition_key = st.tuples(st.text(max_size=40), st.uuids(), int32)
batch_lists = st.one_of(
    st.lists(any_batch, max_size=5), st.lists(any_batch, min_size=126, max_size=300)
).map(tuple)
share_records = st.one_of(
    st.builds(Update, partition_key, int32, int32, int64, batch_lists),
    st.builds(Snapshot, partition_key, int32, int32, int32, int64, int64, int64, batch_lists),
    st.builds(Tombstone, partition_key),
)


@settings(max_examples=300, deadline=None)
@given(share_records)
def test_share_records_encode_to_kafka_pythons_bytes(
    record: Snapshot | Update | Tombstone,
) -> None:
    """Byte for byte, including the multi-byte array length of 127+ batches and non-ASCII
    group ids; the bytes decode back to the record."""
    assert encode(record) == encode_generic(record)
    key, value = encode(record)
    assert decode(key, value) == record


def test_share_key_of_an_oversized_group_id_is_refused() -> None:
    record = Update(("g" * 40_000, UUID(int=1), 0), 0, 0, 0, ())
    with pytest.raises(ValueError, match="too long"):
        encode(record)


def test_coalesce_joins_adjacent_equal_ranges_only() -> None:
    batches = (
        StateBatch(0, 3, ACK, 1),
        StateBatch(4, 7, ACK, 1),
        StateBatch(8, 9, ACK, 2),  # another count
        StateBatch(10, 10, ARC, 2),  # another state
        StateBatch(12, 13, ARC, 2),  # a gap before it
        StateBatch(14, 20, ARC, 2),
    )
    assert coalesce(batches) == (
        StateBatch(0, 7, ACK, 1),
        StateBatch(8, 9, ACK, 2),
        StateBatch(10, 10, ARC, 2),
        StateBatch(12, 20, ARC, 2),
    )
    assert coalesce(batches[2:4]) == batches[2:4]
    assert coalesce(()) == ()


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 20), st.lists(batch, max_size=4)), max_size=4),
    st.integers(0, 20),
    st.lists(st.tuples(st.integers(1, 4), states, st.integers(0, 3)), min_size=1, max_size=12),
)
def test_a_coalesced_update_replays_to_the_same_state(
    before: list[tuple[int, list[StateBatch]]],
    start: int,
    runs: list[tuple[int, RecordState, int]],
) -> None:
    """Over any durable state, an update with joined ranges leaves what the original leaves."""
    batches, offset = [], start
    for length, state, count in runs:
        batches.append(StateBatch(offset, offset + length - 1, state, count))
        offset += length
    joined = coalesce(tuple(batches))
    assert len(joined) <= len(batches)
    original, compact = DurableState(0), DurableState(0)
    for s in (original, compact):
        for spso, bs in before:
            s.merge(spso, bs)
    original.merge(start, batches)
    compact.merge(start, joined)
    assert compact.batches() == original.batches()
    assert compact.start_offset == original.start_offset


def test_state_writers_write_updates_and_snapshots_with_joined_ranges() -> None:
    # proxy/state_store.py and the simulator's sharegroup/sim/state_log.py write through this.
    from sharegroup.persist.records import joined as _joined

    split = (StateBatch(0, 3, ACK, 1), StateBatch(4, 7, ACK, 1))
    assert _joined(Update(KEY, 1, 0, 0, split)) == Update(KEY, 1, 0, 0, (StateBatch(0, 7, ACK, 1),))
    snapshot = Snapshot(KEY, 1, 2, 0, 0, 5, 6, split)
    assert _joined(snapshot) == Snapshot(KEY, 1, 2, 0, 0, 5, 6, (StateBatch(0, 7, ACK, 1),))
    apart = Update(KEY, 1, 0, 0, (StateBatch(0, 3, ACK, 1), StateBatch(5, 7, ACK, 1)))
    assert _joined(apart) is apart
    other = GroupConfigs("g", None)
    assert _joined(other) is other
