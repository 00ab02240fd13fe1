"""Named examples: worked examples after Kafka's ``SharePartitionTest``, and the model-level
items of the minimal conformance list in docs/conformance.md (``test_list_N_...``)."""

from __future__ import annotations

import pytest

from model import (
    AckBatch,
    AckType,
    AcquiredRecords,
    AcquireMode,
    ArchivingRange,
    DlqCause,
    ErrorCode,
    LogBatch,
    RecordState,
    ShareApiError,
    SharePartition,
    ShareSessionCache,
    StateBatch,
    redelivery_delay_ms,
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


# ---------------------------------------------------------------- dead-letter queue (KIP-1191)

ARCHIVING, ARCHIVED = RecordState.ARCHIVING, RecordState.ARCHIVED


def test_reject_with_a_dlq_is_archiving_until_the_write_completes() -> None:
    sp = SharePartition(0, dlq_enabled=True)
    acquire(sp, A, [LogBatch(0, 9)])
    delta = sp.acknowledge(A, [ack(0, 3, AckType.REJECT)], now_ms=1)
    assert delta.batches == (StateBatch(0, 3, ARCHIVING, 1),)
    # ARCHIVING is not terminal: SPSO stays on it, and it is never acquired again.
    assert delta.start_offset == sp.start_offset == 0
    assert sp.take_archiving() == (ArchivingRange(0, 3, 1, DlqCause.CLIENT_REJECT),)
    assert sp.take_archiving() == ()  # handed out once
    sp.acknowledge(A, [ack(4, 9, AckType.ACCEPT)], now_ms=2)
    assert sp.start_offset == 0
    done = sp.complete_archiving(0, 3)
    assert done.batches == (StateBatch(0, 3, ARCHIVED, 1),)
    assert done.start_offset == sp.start_offset == 10
    assert sp.complete_archiving(0, 3).empty  # nothing left to complete


def test_without_a_dlq_reject_goes_straight_to_archived() -> None:
    sp = SharePartition(0)
    acquire(sp, A, [LogBatch(0, 3)])
    delta = sp.acknowledge(A, [ack(0, 3, AckType.REJECT)], now_ms=1)
    assert delta.batches == (StateBatch(0, 3, ARCHIVED, 1),)
    assert sp.take_archiving() == ()


def test_gap_and_aborted_records_are_archived_never_dead_lettered() -> None:
    sp = SharePartition(0, dlq_enabled=True)
    got = sp.acquire(
        A, 0, [LogBatch(0, 2), LogBatch(3, 5, aborted=True)], now_ms=0, max_records=500
    )
    assert got.delta.batches == (StateBatch(3, 5, ARCHIVED, 0),)
    delta = sp.acknowledge(A, [ack(0, 2, AckType.GAP)], now_ms=1)
    assert delta.batches == (StateBatch(0, 2, ARCHIVED, 1),)
    assert sp.take_archiving() == ()


@pytest.mark.parametrize("how", ["release", "expiry", "member-loss"])
def test_delivery_limit_with_a_dlq_goes_to_archiving_with_its_cause(how: str) -> None:
    sp = SharePartition(0, delivery_count_limit=2, dlq_enabled=True, lock_duration_ms=1000)
    acquire(sp, A, [LogBatch(0, 4)])
    sp.acknowledge(A, [ack(0, 4, AckType.RELEASE)], now_ms=1)
    acquire(sp, A, [LogBatch(0, 4)], now_ms=2)
    if how == "release":
        delta = sp.acknowledge(A, [ack(0, 4, AckType.RELEASE)], now_ms=3)
    elif how == "expiry":
        delta = sp.expire_locks(2000)
    else:
        delta = sp.release_member(A)
    assert delta.batches == (StateBatch(0, 4, ARCHIVING, 2),)
    assert sp.take_archiving() == (ArchivingRange(0, 4, 2, DlqCause.DELIVERY_COUNT_EXCEEDED),)
    assert sp.start_offset == 0 and sp.next_fetch_offset() == 5


def test_a_reject_at_the_last_delivery_is_a_client_reject() -> None:
    # SharePartition: the REJECT decides the cause, whatever the delivery count.
    sp = SharePartition(0, delivery_count_limit=2, dlq_enabled=True)
    acquire(sp, A, [LogBatch(0, 0)])
    sp.acknowledge(A, [ack(0, 0, AckType.RELEASE)], now_ms=1)
    acquire(sp, A, [LogBatch(0, 0)], now_ms=2)
    sp.acknowledge(A, [ack(0, 0, AckType.REJECT)], now_ms=3)
    assert sp.take_archiving() == (ArchivingRange(0, 0, 2, DlqCause.CLIENT_REJECT),)


def test_archiving_read_back_is_resumed_with_the_cause_inferred_from_the_count() -> None:
    # maybeResumeDlqArchiving: count >= limit means the limit, otherwise a reject.
    sp = SharePartition.from_state(
        10,
        [
            StateBatch(10, 12, ARCHIVING, 1),
            StateBatch(13, 14, RecordState.ACKNOWLEDGED, 1),
            StateBatch(15, 15, ARCHIVING, 3),
        ],
        delivery_count_limit=3,
    )
    assert sp.state_batches()[0] == StateBatch(10, 12, ARCHIVING, 1)
    assert sp.take_archiving() == (
        ArchivingRange(10, 12, 1, DlqCause.CLIENT_REJECT),
        ArchivingRange(15, 15, 3, DlqCause.DELIVERY_COUNT_EXCEEDED),
    )
    sp.complete_archiving(10, 12)
    assert sp.start_offset == 15
    # The limit in force when the range is handed out decides (the engine sets the group's).
    again = SharePartition.from_state(15, [StateBatch(15, 15, ARCHIVING, 3)])
    again.reconfigure(delivery_count_limit=4)
    assert again.take_archiving() == (ArchivingRange(15, 15, 3, DlqCause.CLIENT_REJECT),)
    sp.complete_archiving(15, 15)
    assert sp.start_offset == 16 and sp.in_flight_count == 0


def test_log_start_movement_archives_archiving_records() -> None:
    sp = SharePartition(0, dlq_enabled=True)
    acquire(sp, A, [LogBatch(0, 4)])
    sp.acknowledge(A, [ack(0, 4, AckType.REJECT)], now_ms=1)
    delta = sp.move_log_start(3)
    assert delta.batches == (StateBatch(0, 2, ARCHIVED, 1),)
    assert sp.complete_archiving(0, 4).batches == (StateBatch(3, 4, ARCHIVED, 1),)


# ---------------------------------------------------------------- redelivery back-off


def test_redelivery_delay_doubles_per_delivery_up_to_the_maximum() -> None:
    assert [redelivery_delay_ms(n, 100, 1000) for n in range(1, 7)] == [
        100,
        200,
        400,
        800,
        1000,
        1000,
    ]
    assert redelivery_delay_ms(3, 0, 1000) == 0  # no back-off configured
    assert redelivery_delay_ms(1, 500, 0) == 500  # a maximum below the base is the base


def test_a_released_record_waits_out_its_back_off() -> None:
    sp = SharePartition(
        0, redelivery_backoff_ms=100, redelivery_backoff_max_ms=1000, lock_duration_ms=30000
    )
    acquire(sp, A, [LogBatch(0, 4)], now_ms=0)
    delta = sp.acknowledge(A, [ack(0, 1, AckType.RELEASE)], now_ms=10)
    assert delta.batches == (StateBatch(0, 1, RecordState.AVAILABLE, 1),)  # persisted as usual
    assert sp.state_of(0) == (RecordState.AVAILABLE, 1, None, 110)
    assert not sp.has_available() and sp.next_fetch_offset() == 5
    assert sp.next_deadline_ms() == 110
    assert acquire(sp, B, [LogBatch(0, 4)], now_ms=50) == []
    assert sp.expire_locks(109).empty and not sp.has_available()
    assert sp.expire_locks(110).empty  # the end of a back-off changes nothing durable
    assert sp.next_fetch_offset() == 0
    assert acquire(sp, B, [LogBatch(0, 4)], now_ms=111) == [AcquiredRecords(0, 1, 2)]
    # The second release waits twice as long.
    sp.acknowledge(B, [ack(0, 1, AckType.RELEASE)], now_ms=200)
    assert sp.state_of(0) == (RecordState.AVAILABLE, 2, None, 400)


def test_an_expired_lock_starts_the_back_off_at_its_deadline() -> None:
    sp = SharePartition(0, redelivery_backoff_ms=500, lock_duration_ms=1000)
    acquire(sp, A, [LogBatch(0, 0)], now_ms=0)
    sp.expire_locks(1000)
    assert sp.state_of(0) == (RecordState.AVAILABLE, 1, None, 1500)
    assert sp.next_deadline_ms() == 1500
    sp.expire_locks(1500)
    assert sp.has_available()


def test_member_loss_delays_only_when_the_time_is_given() -> None:
    sp = SharePartition(0, redelivery_backoff_ms=500, redelivery_backoff_max_ms=10_000)
    acquire(sp, A, [LogBatch(0, 0)], now_ms=0)
    sp.release_member(A)
    assert sp.has_available()
    acquire(sp, A, [LogBatch(0, 0)], now_ms=1)
    sp.release_member(A, now_ms=7)
    assert not sp.has_available() and sp.state_of(0) == (RecordState.AVAILABLE, 2, None, 1007)


def test_poison_record_throttling_does_not_take_a_delayed_neighbour() -> None:
    # Limit 4: records delivered twice are handed out half a run of equal count at a time. A
    # run that continues into records still in their back-off ends where they start.
    sp = SharePartition(0, delivery_count_limit=4)
    for now in (0, 1):
        acquire(sp, A, [LogBatch(0, 9)], now_ms=now)
        if now == 0:
            sp.acknowledge(A, [ack(0, 9, AckType.RELEASE)], now_ms=now)
    sp.acknowledge(A, [ack(0, 1, AckType.RELEASE)], now_ms=2)
    sp.reconfigure(redelivery_backoff_ms=10_000, redelivery_backoff_max_ms=60_000)
    sp.acknowledge(A, [ack(2, 9, AckType.RELEASE)], now_ms=2)
    assert sp.state_of(2) == (RecordState.AVAILABLE, 2, None, 20_002)
    # The available run is 0-1 alone: half of it, one record (all ten would give five).
    assert acquire(sp, B, [LogBatch(0, 9)], now_ms=3) == [AcquiredRecords(0, 0, 3)]
