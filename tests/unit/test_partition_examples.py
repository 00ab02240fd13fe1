"""Named examples: worked examples after Kafka's ``SharePartitionTest``, and the model-level
items of the minimal conformance list in docs/conformance.md (``test_list_N_...``)."""

from __future__ import annotations

import pytest

from model import (
    AckBatch,
    AckType,
    AcquiredRecords,
    AcquireMode,
    ErrorCode,
    LogBatch,
    RecordState,
    ShareApiError,
    SharePartition,
    ShareSessionCache,
    StateBatch,
)

A, B = "member-a", "member-b"


def ack(first: int, last: int, t: AckType) -> AckBatch:
    return AckBatch(first, last, (int(t),))


def acquire(
    sp: SharePartition, member: str, batches: list[LogBatch], **kw: int
) -> list[AcquiredRecords]:
    now = kw.pop("now_ms", 0)
    max_records = kw.pop("max_records", 500)
    batch_size = kw.pop("batch_size", 500)
    mode = AcquireMode(kw.pop("mode", 0))
    got = sp.acquire(
        member,
        sp.next_fetch_offset(),
        batches,
        now_ms=now,
        max_records=max_records,
        batch_size=batch_size,
        mode=mode,
    )
    return list(got.records)


# ---------------------------------------------------------------- SharePartitionTest examples


def test_release_twice_at_limit_two_archives_and_empties_the_cache() -> None:
    sp = SharePartition(5, delivery_count_limit=2)
    assert acquire(sp, A, [LogBatch(5, 14)]) == [AcquiredRecords(5, 14, 1)]
    sp.acknowledge(A, [ack(5, 14, AckType.RELEASE)], now_ms=1)
    assert sp.state_of(5) == (RecordState.AVAILABLE, 1, None, 0)
    assert acquire(sp, A, [LogBatch(5, 14)], now_ms=2) == [AcquiredRecords(5, 14, 2)]
    delta = sp.acknowledge(A, [ack(5, 14, AckType.RELEASE)], now_ms=3)
    assert delta.batches == (StateBatch(5, 14, RecordState.ARCHIVED, 2),)
    assert sp.start_offset == sp.end_offset == sp.next_fetch_offset() == 15
    assert sp.range_count() == 0


def test_in_flight_limit_stops_new_acquisition_after_a_batch_overshoot() -> None:
    sp = SharePartition(0, max_in_flight=20)
    assert acquire(sp, A, [LogBatch(0, 9)]) == [AcquiredRecords(0, 9, 1)]
    log = [LogBatch(10, 14), LogBatch(15, 24), LogBatch(25, 29), LogBatch(30, 31)]
    assert acquire(sp, B, log) == [AcquiredRecords(10, 24, 1)]
    assert acquire(sp, B, log[2:]) == []
    assert sp.in_flight_count == 25


def test_batch_size_cuts_acquired_records_at_log_batch_bases() -> None:
    sp = SharePartition(2)
    log = [LogBatch(2, 6), LogBatch(10, 14), LogBatch(15, 21), LogBatch(22, 27)]
    assert acquire(sp, A, log, batch_size=5) == [
        AcquiredRecords(2, 9, 1),
        AcquiredRecords(10, 14, 1),
        AcquiredRecords(15, 21, 1),
        AcquiredRecords(22, 27, 1),
    ]


def test_record_limit_splits_one_log_batch_between_two_members() -> None:
    sp = SharePartition(0)
    log = [LogBatch(0, 9)]
    assert acquire(sp, A, log, max_records=5, mode=1) == [AcquiredRecords(0, 4, 1)]
    assert sp.state_of(7) == (RecordState.AVAILABLE, 0, None, 0)
    assert acquire(sp, B, log, max_records=5, mode=1) == [AcquiredRecords(5, 9, 1)]


def test_reload_with_persisted_batches_starts_at_the_gap() -> None:
    sp = SharePartition.from_state(
        10,
        [
            StateBatch(15, 20, RecordState.ACKNOWLEDGED, 1),
            StateBatch(21, 30, RecordState.ARCHIVED, 1),
        ],
    )
    assert sp.next_fetch_offset() == 10
    assert sp.end_offset == 30
    assert sp.start_offset == 10
    # The gap window 10-14 is acquired like new records.
    assert acquire(sp, A, [LogBatch(10, 14), LogBatch(15, 30)]) == [AcquiredRecords(10, 14, 1)]


# ---------------------------------------------------------------- minimal conformance list


def test_list_1_epoch_zero_opens_a_session_and_rejects_acks() -> None:
    cache = ShareSessionCache()
    with pytest.raises(ShareApiError) as e:
        cache.fetch_context("g", A, 0, connection_id=1, has_acknowledgements=True)
    assert e.value.code == ErrorCode.INVALID_REQUEST
    ctx = cache.fetch_context("g", A, 0, connection_id=1, add=[("t", 0)])
    assert ctx.session.epoch == 1 and ctx.full
    with pytest.raises(ShareApiError) as e:
        cache.acknowledge_context("g", A, 0)
    assert e.value.code == ErrorCode.INVALID_SHARE_SESSION_EPOCH


def test_list_2_incremental_session_adds_forgets_and_wraps() -> None:
    cache = ShareSessionCache()
    cache.fetch_context("g", A, 0, connection_id=1, add=[("t", 0)])
    ctx = cache.fetch_context("g", A, 1, connection_id=1, add=[("t", 1)], forget=[("t", 0)])
    assert list(ctx.session.partitions) == [("t", 1)] and ctx.added == (("t", 1),)
    assert ctx.session.epoch == 2
    ctx.session.epoch = 2**31 - 1
    cache.fetch_context("g", A, 2**31 - 1, connection_id=1)
    assert ctx.session.epoch == 1
    with pytest.raises(ShareApiError) as e:
        cache.fetch_context("g", A, 5, connection_id=1)
    assert e.value.code == ErrorCode.INVALID_SHARE_SESSION_EPOCH
    with pytest.raises(ShareApiError) as e:
        cache.fetch_context("g", B, 3, connection_id=1)
    assert e.value.code == ErrorCode.SHARE_SESSION_NOT_FOUND


def test_list_3_final_epoch_closes_and_releases_the_members_records() -> None:
    cache = ShareSessionCache()
    cache.fetch_context("g", A, 0, connection_id=1, add=[("t", 0)])
    sp = SharePartition(0)
    acquire(sp, A, [LogBatch(0, 4)])
    ctx = cache.acknowledge_context("g", A, -1)
    assert ctx.final
    closed = cache.close("g", A)
    assert closed is not None and closed.partitions == (("t", 0),)
    delta = sp.release_member(A)
    assert delta.batches == (StateBatch(0, 4, RecordState.AVAILABLE, 1),)
    assert cache.get("g", A) is None


def test_list_4_delivery_count_counts_acquisitions_only() -> None:
    sp = SharePartition(0, delivery_count_limit=3, lock_duration_ms=100)
    assert acquire(sp, A, [LogBatch(0, 0)])[0].delivery_count == 1
    sp.release_member(A)  # session close: count unchanged
    assert sp.state_of(0) == (RecordState.AVAILABLE, 1, None, 0)
    assert acquire(sp, A, [LogBatch(0, 0)], now_ms=10)[0].delivery_count == 2
    sp.expire_locks(110)  # lock expiry: count unchanged
    assert sp.state_of(0) == (RecordState.AVAILABLE, 2, None, 0)
    assert acquire(sp, B, [LogBatch(0, 0)], now_ms=200)[0].delivery_count == 3
    sp.acknowledge(B, [ack(0, 0, AckType.RELEASE)], now_ms=201)
    assert sp.start_offset == 1  # archived at the limit, so SPSO moved past it


def test_list_5_terminal_acks_and_spso_over_the_terminal_prefix_only() -> None:
    sp = SharePartition(0)
    acquire(sp, A, [LogBatch(0, 5)])
    sp.acknowledge(
        A, [ack(1, 1, AckType.ACCEPT), ack(2, 2, AckType.REJECT), ack(3, 3, AckType.GAP)], now_ms=1
    )
    assert sp.start_offset == 0  # offset 0 is still ACQUIRED
    sp.acknowledge(A, [ack(0, 0, AckType.RELEASE)], now_ms=2)
    assert sp.start_offset == 0  # a release never moves SPSO
    assert [sp.state_of(o) for o in (1, 2, 3)] == [
        (RecordState.ACKNOWLEDGED, 1, None, 0),
        (RecordState.ARCHIVED, 1, None, 0),
        (RecordState.ARCHIVED, 1, None, 0),
    ]
    acquire(sp, B, [LogBatch(0, 5)], now_ms=3)
    sp.acknowledge(B, [ack(0, 0, AckType.ACCEPT)], now_ms=4)
    assert sp.start_offset == 4


def test_list_6_lock_expiry_makes_records_available_and_late_acks_fail() -> None:
    sp = SharePartition(0, lock_duration_ms=1000)
    acquire(sp, A, [LogBatch(0, 2)], now_ms=0)
    assert sp.next_deadline_ms() == 1000
    with pytest.raises(ShareApiError) as e:
        sp.acknowledge(A, [ack(0, 2, AckType.ACCEPT)], now_ms=1000)
    assert e.value.code == ErrorCode.INVALID_RECORD_STATE
    delta = sp.expire_locks(1000)
    assert delta.batches == (StateBatch(0, 2, RecordState.AVAILABLE, 1),)
    assert sp.next_fetch_offset() == 0 and sp.next_deadline_ms() is None


def test_list_7_ownership_and_all_or_nothing_per_partition() -> None:
    sp = SharePartition(0)
    acquire(sp, A, [LogBatch(0, 4)])
    acquire(sp, B, [LogBatch(5, 9)])
    with pytest.raises(ShareApiError) as e:
        sp.acknowledge(A, [ack(0, 4, AckType.ACCEPT), ack(5, 5, AckType.ACCEPT)], now_ms=1)
    assert e.value.code == ErrorCode.INVALID_RECORD_STATE
    assert sp.state_of(0) == (RecordState.ACQUIRED, 1, A, 30000)  # rolled back: nothing applied
    assert sp.start_offset == 0


def test_list_8_batch_optimized_overshoots_and_record_limit_does_not() -> None:
    sp = SharePartition(0)
    assert acquire(sp, A, [LogBatch(0, 24)], max_records=10) == [AcquiredRecords(0, 24, 1)]
    sp2 = SharePartition(0)
    got = acquire(sp2, A, [LogBatch(0, 24)], max_records=10, mode=1)
    assert got == [AcquiredRecords(0, 9, 1)]


def test_list_9_in_flight_limit_blocks_new_records_but_not_redelivery() -> None:
    sp = SharePartition(0, max_in_flight=10)
    acquire(sp, A, [LogBatch(0, 9)])
    assert acquire(sp, B, [LogBatch(10, 19)]) == []
    sp.acknowledge(A, [ack(3, 5, AckType.RELEASE)], now_ms=1)
    assert acquire(sp, B, [LogBatch(0, 9), LogBatch(10, 19)], now_ms=2) == [
        AcquiredRecords(3, 5, 2)
    ]


def test_list_10_log_gaps_inside_a_fetch_are_acquired_and_acked_as_gap() -> None:
    sp = SharePartition(0)
    assert acquire(sp, A, [LogBatch(0, 2), LogBatch(5, 6)]) == [AcquiredRecords(0, 6, 1)]
    sp.acknowledge(
        A, [ack(0, 2, AckType.ACCEPT), ack(3, 4, AckType.GAP), ack(5, 6, AckType.ACCEPT)], now_ms=1
    )
    assert sp.start_offset == 7 and sp.in_flight_count == 0


def test_list_11_only_acks_releases_and_expiry_are_persisted_and_reload_redelivers() -> None:
    sp = SharePartition(0, lock_duration_ms=100)
    got = sp.acquire(A, 0, [LogBatch(0, 9)], now_ms=0, max_records=500)
    assert got.delta.empty  # acquisition is never persisted
    delta = sp.acknowledge(A, [ack(0, 3, AckType.ACCEPT)], now_ms=1)
    assert delta.start_offset == 4 and delta.batches == (
        StateBatch(0, 3, RecordState.ACKNOWLEDGED, 1),
    )
    # A crash now: 4-9 were acquired, never persisted. Reload from what was persisted.
    reloaded = SharePartition.from_state(delta.start_offset, [])
    assert acquire(reloaded, B, [LogBatch(0, 9)]) == [AcquiredRecords(4, 9, 1)]


def test_delivery_throttling_halves_the_batch_and_isolates_the_last_attempt() -> None:
    sp = SharePartition(0, delivery_count_limit=7, lock_duration_ms=10)
    now = 0
    sizes = []
    for _ in range(4):
        got = acquire(sp, A, [LogBatch(0, 19)], now_ms=now)
        sizes.append(sum(r.last_offset - r.first_offset + 1 for r in got))
        now += 10
        sp.expire_locks(now)
    assert sizes == [20, 20, 20, 20]
    got = acquire(sp, A, [LogBatch(0, 19)], now_ms=now)
    assert got == [AcquiredRecords(0, 9, 5)]  # count 4 >= throttle limit 4: 20 >> 1


def test_renew_extends_the_lock_and_can_be_disabled() -> None:
    sp = SharePartition(0, lock_duration_ms=100)
    acquire(sp, A, [LogBatch(0, 1)], now_ms=0)
    assert sp.acknowledge(A, [ack(0, 1, AckType.RENEW)], now_ms=90).empty
    assert sp.expire_locks(150).empty
    assert sp.next_deadline_ms() == 190
    sp.reconfigure(renew_enabled=False)
    with pytest.raises(ShareApiError) as e:
        sp.acknowledge(A, [ack(0, 1, AckType.RENEW)], now_ms=160)
    assert e.value.code == ErrorCode.INVALID_RECORD_STATE


def test_acks_beyond_the_window_and_malformed_batches_are_invalid_requests() -> None:
    sp = SharePartition(0)
    acquire(sp, A, [LogBatch(0, 4)])
    for batches in (
        [ack(3, 7, AckType.ACCEPT)],
        [AckBatch(2, 1, (1,))],
        [AckBatch(0, 2, (1, 1))],
        [AckBatch(0, 0, (9,))],
        [ack(2, 3, AckType.ACCEPT), ack(1, 1, AckType.ACCEPT)],
    ):
        with pytest.raises(ShareApiError) as e:
            sp.acknowledge(A, batches, now_ms=1)
        assert e.value.code == ErrorCode.INVALID_REQUEST, batches


def test_log_start_movement_archives_below_it() -> None:
    sp = SharePartition(0)
    acquire(sp, A, [LogBatch(0, 9)])
    sp.acknowledge(A, [ack(0, 9, AckType.RELEASE)], now_ms=1)
    delta = sp.move_log_start(6)
    assert delta.start_offset == 6
    assert delta.batches == (StateBatch(0, 5, RecordState.ARCHIVED, 1),)
    assert sp.next_fetch_offset() == 6
    assert sp.move_log_start(50).start_offset == 50 and sp.in_flight_count == 0


def test_read_committed_aborted_batches_are_archived_not_delivered() -> None:
    sp = SharePartition(0)
    got = sp.acquire(
        A,
        0,
        [LogBatch(0, 2), LogBatch(3, 5, aborted=True), LogBatch(6, 8)],
        now_ms=0,
        max_records=500,
    )
    assert got.records == (AcquiredRecords(0, 2, 1), AcquiredRecords(6, 8, 1))
    assert got.delta.batches == (StateBatch(3, 5, RecordState.ARCHIVED, 0),)
