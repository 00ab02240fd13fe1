"""Random histories against one share partition, checked after every step.

The range-based ``model.SharePartition`` runs beside ``tests.naive.NaivePartition`` (one dict
entry per offset). Every step must give both the same observable result (acquired ranges,
persisted changes, error codes, SPSO, SPEO, next fetch offset, per-offset states), and the model
must keep the invariants of KIP-932 listed in ``check`` below. ``teardown`` then checks liveness:
with a fair consumer, every record ends ACKNOWLEDGED or ARCHIVED.

Histories switch the dead-letter queue on and off (REJECT and the delivery limit then lead to
ARCHIVING, handed out once by ``take_archiving`` and finished by ``complete_archiving``) and
change the redelivery back-off (released and expired records wait before they are acquirable).
"""

from __future__ import annotations

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from model import (
    AckBatch,
    AcquireMode,
    ArchivingRange,
    DlqCause,
    LogBatch,
    RecordState,
    ShareApiError,
    SharePartition,
    StateDelta,
)
from tests.naive import NaivePartition

MEMBERS = ("m1", "m2", "m3")
LOCK_MS = 100
TERMINAL = (RecordState.ACKNOWLEDGED, RecordState.ARCHIVED)


def flatten(delta: StateDelta) -> dict[int, tuple[RecordState, int]]:
    out: dict[int, tuple[RecordState, int]] = {}
    for b in delta.batches:
        for o in range(b.first_offset, b.last_offset + 1):
            out[o] = (b.state, b.delivery_count)
    return out


def archiving_per_offset(ranges: tuple[ArchivingRange, ...]) -> list[tuple[int, int, DlqCause]]:
    return sorted(
        (o, r.delivery_count, r.cause)
        for r in ranges
        for o in range(r.first_offset, r.last_offset + 1)
    )


def delayed(sp: SharePartition) -> dict[int, int]:
    return {
        o: deadline
        for first, last, state, _, _, deadline in sp.ranges()
        if state is RecordState.AVAILABLE and deadline
        for o in range(first, last + 1)
    }


def per_offset(sp: SharePartition) -> list[tuple[int, RecordState, int, str | None]]:
    return [
        (o, state, count, member)
        for first, last, state, count, member, _ in sp.ranges()
        for o in range(first, last + 1)
    ]


class SharePartitionMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 0
        self.limit = 3
        self.max_limit = 3
        self.max_in_flight = 40
        self.sp = SharePartition(
            0, delivery_count_limit=3, max_in_flight=40, lock_duration_ms=LOCK_MS
        )
        self.naive = NaivePartition(0, limit=3, max_in_flight=40, lock_ms=LOCK_MS)
        self.log: list[LogBatch] = []
        self.log_end = 0
        self.log_start = 0
        self.max_count: dict[int, int] = {}
        self.terminal: set[int] = set()
        self.dlq_ever = False
        self.handed_out: set[int] = set()  # offsets take_archiving returned
        self.pending: list[tuple[int, int]] = []  # taken, not yet completed

    @initialize(
        dlq=st.booleans(), backoff=st.sampled_from([0, 0, 30]), limit=st.sampled_from([2, 3])
    )
    def start(self, dlq: bool, backoff: int, limit: int) -> None:
        # Half the histories start with a DLQ, a third with a back-off, half with the lowest
        # delivery limit, so archiving at the limit and delayed redeliveries are common.
        self.set_dlq(dlq)
        self.set_backoff(backoff, LOCK_MS)
        self.limit = limit
        self.sp.reconfigure(delivery_count_limit=limit)
        self.naive.limit = limit

    # ---------------------------------------------------------------- the log
    @rule(
        size=st.integers(1, 8),
        gap=st.sampled_from([0, 0, 0, 1, 3]),
        aborted=st.sampled_from([False, False, False, False, True]),
    )
    def produce(self, size: int, gap: int, aborted: bool) -> None:
        first = self.log_end + gap
        self.log.append(LogBatch(first, first + size - 1, aborted))
        self.log_end = first + size

    @rule(size=st.integers(1, 8))
    def produce_more(self, size: int) -> None:
        self.produce(size, 0, False)

    def read(self, fetch: int, max_batches: int) -> list[LogBatch]:
        out = [b for b in self.log if b.last_offset >= fetch and b.last_offset >= self.log_start]
        return out[:max_batches]

    # ---------------------------------------------------------------- operations
    @rule(
        member=st.sampled_from(MEMBERS),
        max_records=st.integers(0, 12),
        batch_size=st.sampled_from([None, 1, 3, 5]),
        mode=st.sampled_from(list(AcquireMode)),
        max_batches=st.integers(1, 4),
    )
    def acquire(
        self,
        member: str,
        max_records: int,
        batch_size: int | None,
        mode: AcquireMode,
        max_batches: int,
    ) -> None:
        fetch = self.sp.next_fetch_offset()
        assert fetch == self.naive.next_fetch_offset()
        batches = self.read(fetch, max_batches)
        in_flight_before = self.sp.in_flight_count
        end_before = self.sp._next
        got = self.sp.acquire(
            member,
            fetch,
            batches,
            now_ms=self.now,
            max_records=max_records,
            batch_size=batch_size,
            mode=mode,
        )
        expected, changed = self.naive.acquire(
            member, fetch, batches, self.now, max_records, batch_size, mode
        )
        assert list(got.records) == expected
        event(f"acquired {len(got.records)} ranges" if got.records else "acquired nothing")
        assert flatten(got.delta) == changed
        acquired_new = any(r.last_offset >= end_before for r in got.records)
        if acquired_new:
            # New records only while the window is below the limit; the overshoot is at most
            # one log batch in batch_optimized mode (SharePartition.acquire).
            assert in_flight_before < self.max_in_flight
        if mode is AcquireMode.RECORD_LIMIT:
            assert got.count <= max_records  # never more, over however many ranges (KIP-1206)
        for r in got.records:
            assert r.first_offset >= fetch
            for o in range(r.first_offset, r.last_offset + 1):
                state = self.sp.state_of(o)
                assert state is not None
                assert state[0] is RecordState.ACQUIRED and state[2] == member
                assert state[3] > self.now

    def _ack_batches(self, data: st.DataObject, valid_bias: bool) -> tuple[str, list[AckBatch]]:
        member = data.draw(st.sampled_from(MEMBERS))
        if valid_bias:
            held = [
                (f, la, m)
                for f, la, s, _, m, _ in self.sp.ranges()
                if s is RecordState.ACQUIRED and m is not None
            ]
            if held:
                first, last, owner = data.draw(st.sampled_from(held))
                if data.draw(st.integers(0, 9)):
                    member = owner
                a = data.draw(st.integers(first, last))
                b = data.draw(st.integers(a, last))
                per = data.draw(st.booleans())
                types = (
                    tuple(
                        data.draw(
                            st.lists(st.integers(0, 4), min_size=b - a + 1, max_size=b - a + 1)
                        )
                    )
                    if per
                    else (data.draw(st.integers(0, 4)),)
                )
                return member, [AckBatch(a, b, types)]
        lo = max(0, self.sp.start_offset - 3)
        hi = self.sp.end_offset + 3
        batches: list[AckBatch] = []
        cursor = lo
        for _ in range(data.draw(st.integers(1, 3))):
            if cursor > hi + 2:
                break
            a = data.draw(st.integers(cursor, hi + 2))
            b = data.draw(st.integers(a - 1, a + 6))
            t = data.draw(st.integers(-1, 5))
            batches.append(AckBatch(a, b, (t,)))
            cursor = b + 1
        return member, batches

    def _acknowledge(self, member: str, batches: list[AckBatch]) -> None:
        before = per_offset(self.sp)
        start_before = self.sp.start_offset
        try:
            delta = self.sp.acknowledge(member, batches, now_ms=self.now)
        except ShareApiError as e:
            try:
                self.naive.acknowledge(member, batches, self.now)
            except ShareApiError as n:
                assert n.code == e.code, (e, n)
            else:
                raise AssertionError(f"model refused ({e}) what the naive model accepted") from e
            event(f"ack refused: {e.code.name}")
            # A refused request changes nothing.
            assert per_offset(self.sp) == before
            assert self.sp.start_offset == start_before
            return
        changed = self.naive.acknowledge(member, batches, self.now)
        assert flatten(delta) == changed
        event("ack applied" if changed else "ack applied: nothing changed")

    @rule(data=st.data())
    def acknowledge_held(self, data: st.DataObject) -> None:
        member, batches = self._ack_batches(data, valid_bias=True)
        self._acknowledge(member, batches)

    @rule(data=st.data())
    def acknowledge_held_too(self, data: st.DataObject) -> None:
        # A second rule of the same kind: valid acknowledgements should be common.
        self.acknowledge_held(data)

    @rule(data=st.data())
    def acknowledge_anything(self, data: st.DataObject) -> None:
        member, batches = self._ack_batches(data, valid_bias=False)
        self._acknowledge(member, batches)

    @rule(dt=st.sampled_from([1, 10, 50, LOCK_MS, LOCK_MS * 2]))
    def advance_time(self, dt: int) -> None:
        self.now += dt
        due = self.sp.next_deadline_ms()
        if due is not None and due > self.now:
            assert self.sp.expire_locks(self.now).empty
        assert flatten(self.sp.expire_locks(self.now)) == self.naive.expire(self.now)

    @rule(member=st.sampled_from(MEMBERS), timed=st.booleans())
    def release_member(self, member: str, timed: bool) -> None:
        now = self.now if timed else None
        delta = self.sp.release_member(member, now_ms=now)
        assert flatten(delta) == self.naive.release_member(member, now)

    # ---------------------------------------------------------------- dead-letter queue
    @rule(enabled=st.booleans())
    def set_dlq(self, enabled: bool) -> None:
        self.dlq_ever |= enabled
        self.sp.reconfigure(dlq_enabled=enabled)
        self.naive.dlq = enabled

    @rule()
    def take_archiving(self) -> None:
        taken = self.sp.take_archiving()
        expected = sorted(self.naive.take_archiving())
        assert archiving_per_offset(taken) == expected
        for o, _, _ in expected:
            assert o not in self.handed_out, f"offset {o} handed out twice"
            self.handed_out.add(o)
        self.pending.extend((r.first_offset, r.last_offset) for r in taken)
        event(f"archiving handed out: {len(taken)} ranges")

    @precondition(lambda self: bool(self.pending))
    @rule(data=st.data())
    def complete_archiving(self, data: st.DataObject) -> None:
        first, last = self.pending.pop(data.draw(st.integers(0, len(self.pending) - 1)))
        delta = self.sp.complete_archiving(first, last)
        assert flatten(delta) == self.naive.complete_archiving(first, last)
        assert all(state is RecordState.ARCHIVED for state, _ in flatten(delta).values())

    # ---------------------------------------------------------------- redelivery back-off
    @rule(
        backoff=st.sampled_from([0, 0, 5, 30, LOCK_MS]),
        backoff_max=st.sampled_from([0, 20, 60, LOCK_MS * 3]),
    )
    def set_backoff(self, backoff: int, backoff_max: int) -> None:
        self.sp.reconfigure(redelivery_backoff_ms=backoff, redelivery_backoff_max_ms=backoff_max)
        self.naive.backoff_ms = backoff
        self.naive.backoff_max_ms = backoff_max

    @precondition(lambda self: self.log_end > self.log_start)
    @rule(data=st.data())
    def move_log_start(self, data: st.DataObject) -> None:
        lso = data.draw(st.integers(self.log_start, self.log_end))
        self.log_start = lso
        delta = self.sp.move_log_start(lso)
        assert flatten(delta) == self.naive.move_log_start(lso)
        assert self.sp.start_offset >= lso

    @rule(limit=st.integers(2, 5), max_in_flight=st.sampled_from([5, 20, 40]))
    def reconfigure(self, limit: int, max_in_flight: int) -> None:
        self.limit = limit
        self.max_limit = max(self.max_limit, limit)
        self.max_in_flight = max_in_flight
        self.sp.reconfigure(delivery_count_limit=limit, max_in_flight=max_in_flight)
        self.naive.limit = limit
        self.naive.max_in_flight = max_in_flight

    # ---------------------------------------------------------------- invariants
    @invariant()
    def check(self) -> None:
        sp = self.sp
        sp.check_invariants()
        states = per_offset(sp)
        assert states == self.naive.states()
        assert sp.start_offset == self.naive.start
        assert sp.end_offset == self.naive.end_offset()
        assert sp.next_fetch_offset() == self.naive.next_fetch_offset()
        assert delayed(sp) == self.naive.delayed()
        if delayed(sp):
            event("some record is in its redelivery back-off")
        # A delayed record is never past its back-off, and the timer knows when it ends.
        due = sp.next_deadline_ms()
        for deadline in delayed(sp).values():
            assert due is not None and due <= deadline
        # SPSO is the lowest non-terminal offset.
        assert not states or states[0][1] not in TERMINAL
        for o, state, count, member in states:
            # Delivery counts never decrease; they exceed the limit only after it was lowered.
            assert count >= self.max_count.get(o, 0)
            self.max_count[o] = count
            assert count <= self.max_limit
            # Terminal states are final.
            if o in self.terminal:
                assert state in TERMINAL
            if state in TERMINAL:
                self.terminal.add(o)
            # ACQUIRED has exactly one owner.
            assert (state is RecordState.ACQUIRED) == (member is not None)
            # ARCHIVING only exists when the group had a dead-letter queue.
            if state is RecordState.ARCHIVING:
                assert self.dlq_ever
                event("some record is ARCHIVING")
        # Nothing below SPSO can come back.
        assert all(o >= sp.start_offset for o, *_ in states)

    def teardown(self) -> None:
        # Liveness: a fair consumer that acknowledges everything empties the window.
        sp = self.sp
        self.take_archiving()  # what is still to be handed out agrees with the naive model
        sp.reconfigure(max_in_flight=max(self.max_in_flight, 1))
        for _ in range(2000):
            self.now += LOCK_MS + 1
            sp.expire_locks(self.now)
            for r in sp.take_archiving():  # the DLQ writer finishes what it was given
                sp.complete_archiving(r.first_offset, r.last_offset)
            for first, last in self.pending:
                sp.complete_archiving(first, last)
            self.pending.clear()
            fetch = sp.next_fetch_offset()
            if fetch >= self.log_end and not sp.in_flight_count:
                break
            got = sp.acquire("fair", fetch, self.read(fetch, 100), now_ms=self.now, max_records=50)
            if got.records:
                sp.acknowledge(
                    "fair",
                    [AckBatch(r.first_offset, r.last_offset, (1,)) for r in got.records],
                    now_ms=self.now,
                )
        assert sp.in_flight_count == 0, list(sp.ranges())
        assert sp.start_offset >= self.log_end


SharePartitionMachine.TestCase.settings = settings(
    max_examples=500, stateful_step_count=40, deadline=None
)
TestSharePartition = SharePartitionMachine.TestCase
