"""One share partition: the per-record state machine of KIP-932, as Kafka's
``SharePartition.java`` implements it.

Theory of operation
-------------------
A share partition is (group, topic-partition). It tracks the *in-flight window*
``[SPSO, SPEO]``: every offset in it is in exactly one of the states AVAILABLE, ACQUIRED,
ACKNOWLEDGED, ARCHIVING or ARCHIVED, with a delivery count. Everything below SPSO is done
(terminal); nothing above SPEO has been handed out yet.

The window is stored as *ranges*, not records: a ``SortedDict`` maps each range's first offset
to a ``_Range`` that holds one state, one delivery count, one owner and one lock deadline for
all its offsets. Ranges tile ``[SPSO, _next)`` exactly, with no holes: offsets that never held a
record (log gaps, compacted or aborted data) are stored as ARCHIVED, which is what Kafka does with
them in the end. An operation that touches part of a range splits it first (Kafka "explodes" a
batch into per-offset state the same way, ``SharePartition.java``); cost follows the number of
distinct ranges, not of records.

Rules carried over from Kafka's ``SharePartition`` (its method names in brackets):

* Delivery count counts acquisitions: 1 on the first, +1 per re-acquisition; release, session
  close and lock expiry leave it alone (``acquire``). A record that would become AVAILABLE again
  with ``delivery_count >= limit`` is ARCHIVED instead (``RecordState.validateTransition``), or
  ARCHIVING when the group has a dead-letter queue.
* Dead-letter queue (KIP-1191, Kafka 4.4 ``SharePartition`` / ``InFlightState.tryUpdateState``):
  with ``dlq_enabled``, REJECT and a release / lock expiry / member loss at the delivery limit
  move records to ARCHIVING instead of ARCHIVED. ARCHIVING is persisted, is not terminal (SPSO
  stops at it) and is never acquired. ``take_archiving()`` hands each such range out once, with
  its cause, for the caller to write to the DLQ topic once the ARCHIVING state is durable; then
  ``complete_archiving(first, last)`` moves it to ARCHIVED, whether or not the write succeeded.
  ARCHIVING read back by ``from_state`` is handed out again, the cause inferred from the
  delivery count as ``SharePartition.maybeResumeDlqArchiving`` does. GAP acknowledgements and
  aborted batches are always ARCHIVED directly.
* Redelivery back-off (this project's own, no Kafka counterpart): with
  ``redelivery_backoff_ms > 0`` a record released or expired with delivery count ``n`` stays
  AVAILABLE but is not acquirable until ``now + min(backoff * 2**(n-1), backoff_max)``; its
  range holds that time in its ``deadline`` and the same timer heap as the locks wakes it
  (``next_deadline_ms`` / ``expire_locks``). The delay is not persisted: after recovery the
  record is available at once. ``release_member`` applies it only when given ``now_ms``.
* SPSO is the lowest non-terminal offset: after every change the terminal prefix is dropped
  (``maybeUpdateCachedStateAndOffsets``). A release never moves SPSO.
* New records are acquired only while ``SPEO - SPSO + 1 < max record locks``; at the limit,
  records inside the window can still be re-delivered (``acquire``). In ``batch_optimized`` mode
  an acquisition runs to the end of the log batch it stops in, so the limit and MaxRecords are
  soft by at most one log batch (``acquire`` with ``ShareAcquireMode``).
* One acknowledgement request is validated completely before anything changes
  (``acknowledge``).

Time is an argument (``now_ms``); the caller asks ``next_deadline_ms()`` and calls
``expire_locks(now_ms)`` when it is due. Operations treat a lock whose deadline has passed as
expired even before ``expire_locks`` ran, so the answer never depends on when the timer fired.

Deliberate simplifications (observable behaviour is Kafka's; see docs/conformance.md):
* ACQUIRED records below a new log start offset are archived at once rather than when their lock
  ends; acknowledgements below SPSO are skipped silently either way.
* There is no "pending persister write" state: the engine holds the reply until the write of the
  returned delta is acknowledged.
"""

from __future__ import annotations

import heapq
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple

from sortedcontainers import SortedDict, SortedSet

from model.errors import ErrorCode, ShareApiError


class RecordState(IntEnum):
    AVAILABLE = 0
    ACQUIRED = 1
    ACKNOWLEDGED = 2
    ARCHIVING = 3
    ARCHIVED = 4

    @property
    def terminal(self) -> bool:
        return self is RecordState.ACKNOWLEDGED or self is RecordState.ARCHIVED


class AckType(IntEnum):
    GAP = 0
    ACCEPT = 1
    RELEASE = 2
    REJECT = 3
    RENEW = 4


class DlqCause(IntEnum):
    """Why a record went to the dead-letter queue (``ShareGroupDLQManager``'s two causes)."""

    CLIENT_REJECT = 1
    DELIVERY_COUNT_EXCEEDED = 2

    @property
    def message(self) -> str:
        """The text of the ``__dlq.errors.message`` header, as Kafka writes it."""
        if self is DlqCause.CLIENT_REJECT:
            return "Offset rejected by client."
        return "Offset delivery count exceeded the threshold."


class ArchivingRange(NamedTuple):
    """Records that went to ARCHIVING: what the caller writes to the dead-letter queue."""

    first_offset: int
    last_offset: int
    delivery_count: int
    cause: DlqCause


def redelivery_delay_ms(delivery_count: int, backoff_ms: int, backoff_max_ms: int) -> int:
    """The back-off before a record delivered ``delivery_count`` times is acquirable again:
    ``backoff_ms`` doubled per earlier delivery, at most ``backoff_max_ms`` (0 = no back-off)."""
    if backoff_ms <= 0 or delivery_count <= 0:
        return 0
    return min(backoff_ms << min(delivery_count - 1, 32), max(backoff_ms, backoff_max_ms))


class AcquireMode(IntEnum):
    BATCH_OPTIMIZED = 0
    RECORD_LIMIT = 1


class LogBatch(NamedTuple):
    """One record batch as read from the log: its offset span, and whether it is to be skipped
    (an aborted transaction under read_committed)."""

    first_offset: int
    last_offset: int
    aborted: bool = False


class AcquiredRecords(NamedTuple):
    """One entry of ShareFetchResponse.AcquiredRecords."""

    first_offset: int
    last_offset: int
    delivery_count: int


class AckBatch(NamedTuple):
    """One ShareAcknowledge AcknowledgementBatch: one type for the whole range, or one per offset."""

    first_offset: int
    last_offset: int
    ack_types: tuple[int, ...]


class StateBatch(NamedTuple):
    """A persisted range (ShareUpdateValue.StateBatches): never ACQUIRED."""

    first_offset: int
    last_offset: int
    state: RecordState
    delivery_count: int


class StateDelta(NamedTuple):
    """What an operation changed that must be persisted: the new SPSO and the changed ranges.

    Empty ``batches`` with an unchanged start offset means nothing to write."""

    start_offset: int
    batches: tuple[StateBatch, ...]

    @property
    def empty(self) -> bool:
        return not self.batches


@dataclass(frozen=True, slots=True)
class Acquisition:
    """The result of ``SharePartition.acquire``."""

    records: tuple[AcquiredRecords, ...]
    delta: StateDelta
    lock_deadline_ms: int

    @property
    def count(self) -> int:
        return sum(r.last_offset - r.first_offset + 1 for r in self.records)


class _Range:
    __slots__ = ("count", "deadline", "first", "last", "member", "state")

    def __init__(
        self,
        first: int,
        last: int,
        state: RecordState,
        count: int,
        member: str | None = None,
        deadline: int = 0,
    ) -> None:
        self.first = first
        self.last = last
        self.state = state
        self.count = count
        self.member = member
        self.deadline = deadline


_AVAILABLE = RecordState.AVAILABLE
_ACQUIRED = RecordState.ACQUIRED
_ACKNOWLEDGED = RecordState.ACKNOWLEDGED
_ARCHIVING = RecordState.ARCHIVING
_ARCHIVED = RecordState.ARCHIVED


class SharePartition:
    """The in-flight state of one share partition. See the module docstring."""

    def __init__(
        self,
        start_offset: int,
        *,
        delivery_count_limit: int = 5,
        max_in_flight: int = 2000,
        lock_duration_ms: int = 30000,
        renew_enabled: bool = True,
        dlq_enabled: bool = False,
        redelivery_backoff_ms: int = 0,
        redelivery_backoff_max_ms: int = 0,
    ) -> None:
        if start_offset < 0:
            raise ValueError(f"start offset must be >= 0, got {start_offset}")
        self._start = start_offset
        self._next = start_offset  # one past the last cached offset
        self._ranges: SortedDict[int, _Range] = SortedDict()
        self._available: SortedSet[int] = SortedSet()  # first offsets of AVAILABLE ranges
        # (deadline, first, last) wake-ups: lock deadlines and the end of redelivery back-offs
        self._timers: list[tuple[int, int, int]] = []
        # ARCHIVING not yet handed out: (first, last, count, cause; None = infer when taken)
        self._archiving: list[tuple[int, int, int, DlqCause | None]] = []
        self.delivery_count_limit = delivery_count_limit
        self.max_in_flight = max_in_flight
        self.lock_duration_ms = lock_duration_ms
        self.renew_enabled = renew_enabled
        self.dlq_enabled = dlq_enabled
        self.redelivery_backoff_ms = redelivery_backoff_ms
        self.redelivery_backoff_max_ms = redelivery_backoff_max_ms

    # ------------------------------------------------------------------ queries

    @property
    def start_offset(self) -> int:
        """SPSO: the lowest offset not known to be terminal."""
        return self._start

    @property
    def end_offset(self) -> int:
        """SPEO as Kafka reports it: the last cached offset, or SPSO when nothing is cached."""
        return self._next - 1 if self._ranges else self._start

    @property
    def in_flight_count(self) -> int:
        return self._next - self._start

    def next_fetch_offset(self) -> int:
        """Where the next fetch from the log should start."""
        if self._available:
            return int(self._available[0])
        return self._next

    def has_available(self) -> bool:
        return bool(self._available)

    def next_deadline_ms(self) -> int | None:
        """The earliest lock deadline or end of a redelivery back-off still pending, or None."""
        timers = self._timers
        while timers:
            deadline, first, last = timers[0]
            if self._has_lock_at(deadline, first, last):
                return deadline
            heapq.heappop(timers)
        return None

    def state_of(self, offset: int) -> tuple[RecordState, int, str | None, int] | None:
        """(state, delivery count, owner, deadline) of one offset, or None outside the window.
        The deadline is the lock's for ACQUIRED, the end of the back-off for a delayed AVAILABLE
        record, otherwise 0."""
        if not self._start <= offset < self._next:
            return None
        r = self._range_at(offset)
        return r.state, r.count, r.member, r.deadline

    def ranges(self) -> Iterator[tuple[int, int, RecordState, int, str | None, int]]:
        """Every range of the window in order: (first, last, state, count, owner, deadline)."""
        for r in self._ranges.values():
            yield r.first, r.last, r.state, r.count, r.member, r.deadline

    def range_count(self) -> int:
        return len(self._ranges)

    def state_batches(self) -> tuple[StateBatch, ...]:
        """The whole persistable state (a snapshot): ACQUIRED is persisted as AVAILABLE with
        the count it had before the acquisition (Kafka never persists acquisitions)."""
        out: list[StateBatch] = []
        for r in self._ranges.values():
            if r.state is _ACQUIRED:
                out.append(StateBatch(r.first, r.last, _AVAILABLE, r.count - 1))
            else:
                out.append(StateBatch(r.first, r.last, r.state, r.count))
        return tuple(out)

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_state(
        cls,
        start_offset: int,
        batches: Sequence[StateBatch],
        *,
        delivery_count_limit: int = 5,
        max_in_flight: int = 2000,
        lock_duration_ms: int = 30000,
        renew_enabled: bool = True,
        dlq_enabled: bool = False,
        redelivery_backoff_ms: int = 0,
        redelivery_backoff_max_ms: int = 0,
    ) -> SharePartition:
        """Rebuild from persisted state (Kafka's ``SharePartition.maybeInitialize``). Offsets between SPSO and the last persisted
        batch that no batch covers form the gap window: they are AVAILABLE with delivery count 0,
        so the next fetch starts there and acquires them as new records. ARCHIVING ranges are
        handed out again by ``take_archiving`` (their DLQ write may not have happened)."""
        sp = cls(
            start_offset,
            delivery_count_limit=delivery_count_limit,
            max_in_flight=max_in_flight,
            lock_duration_ms=lock_duration_ms,
            renew_enabled=renew_enabled,
            dlq_enabled=dlq_enabled,
            redelivery_backoff_ms=redelivery_backoff_ms,
            redelivery_backoff_max_ms=redelivery_backoff_max_ms,
        )
        cursor = start_offset
        for b in sorted(batches, key=lambda b: b.first_offset):
            if b.last_offset < b.first_offset:
                raise ValueError(f"persisted batch {b} ends before it starts")
            if b.state is _ACQUIRED:
                raise ValueError(f"persisted batch {b} is ACQUIRED, which is never persisted")
            first = max(b.first_offset, cursor)
            if b.last_offset < first:
                continue
            if first > cursor:
                sp._insert(_Range(cursor, first - 1, _AVAILABLE, 0))
            restored = _Range(first, b.last_offset, b.state, b.delivery_count)
            sp._insert(restored)
            if b.state is _ARCHIVING:
                sp._queue_archiving(restored, None)
            cursor = b.last_offset + 1
        sp._next = cursor
        sp._advance_start()
        return sp

    # ------------------------------------------------------------------ acquisition

    def acquire(
        self,
        member_id: str,
        fetch_offset: int,
        batches: Sequence[LogBatch],
        *,
        now_ms: int,
        max_records: int,
        batch_size: int | None = None,
        mode: AcquireMode = AcquireMode.BATCH_OPTIMIZED,
    ) -> Acquisition:
        """Acquire records for ``member_id`` from log batches read at ``fetch_offset`` (``SharePartition.acquire``).

        ``batches`` are the record batches the log returned, in offset order. Returns the
        AcquiredRecords ranges, the persistable changes (offsets archived on the way: log gaps,
        vanished or aborted batches) and the lock deadline of what was acquired."""
        if not member_id:
            raise ShareApiError(ErrorCode.INVALID_REQUEST, "member id must not be empty")
        deadline = now_ms + self.lock_duration_ms
        if max_records <= 0 or not batches:
            return Acquisition((), StateDelta(self._start, ()), deadline)
        record_limit = mode is AcquireMode.RECORD_LIMIT
        in_flight = self._next - self._start
        budget = min(max_records, self.max_in_flight - in_flight)
        allow_new = budget > 0
        if not allow_new:
            if fetch_offset >= self._next or fetch_offset < self._start:
                return Acquisition((), StateDelta(self._start, ()), deadline)
            budget = min(max_records, self._next - fetch_offset)
        changed: list[_Range] = []
        pieces: list[tuple[int, int, int]] = []  # acquired (first, last, count) in order
        bases: list[int] = []  # log batch base offsets: where AcquiredRecords may be cut
        taken = 0
        stop = False
        # Cached AVAILABLE offsets between the fetch offset and the first returned batch are
        # gone from the log (compaction, retention): archive them, as Kafka does.
        lead_first = max(fetch_offset, self._start)
        lead_last = min(batches[0].first_offset - 1, self._next - 1)
        if lead_first <= lead_last:
            self._archive_available(lead_first, lead_last, changed)
        prev_last = -1
        for b in batches:
            if b.last_offset < b.first_offset:
                raise ValueError(f"log batch {b} ends before it starts")
            if b.first_offset <= prev_last:
                raise ValueError("log batches must be in offset order and must not overlap")
            # A batch owns the gap before it only from the second batch on; the first batch's
            # leading gap was handled above (cached) or is filled as ARCHIVED below (new).
            lo = b.first_offset if prev_last < 0 else prev_last + 1
            prev_last = b.last_offset
            lo = max(lo, self._start)
            hi = b.last_offset
            if hi < lo:
                continue
            if taken >= budget:
                break
            bases.append(b.first_offset)
            if b.aborted:
                self._archive_region(lo, hi, changed)
                continue
            # Part inside the window: re-acquire AVAILABLE offsets.
            if lo < self._next:
                cached_hi = min(hi, self._next - 1)
                stop = self._reacquire(
                    member_id,
                    lo,
                    cached_hi,
                    deadline,
                    budget,
                    taken,
                    record_limit,
                    pieces,
                    min(self._next - 1, batches[-1].last_offset),
                )
                taken = sum(p[1] - p[0] + 1 for p in pieces)
                if stop:
                    break
                lo = cached_hi + 1
                if lo > hi:
                    continue
            if not allow_new:
                break
            # Beyond the window: new records, delivery count 1.
            if lo > self._next:
                gap = _Range(self._next, lo - 1, _ARCHIVED, 0)
                self._insert(gap)
                changed.append(gap)
                self._next = lo
            if record_limit:
                n = min(hi - lo + 1, budget - taken)
                if n <= 0:
                    break
                self._insert(_Range(lo, lo + n - 1, _ACQUIRED, 1, member_id, deadline))
                if lo + n <= hi:
                    # The rest of the log batch is cached AVAILABLE with count 0 (KIP-1206).
                    rest = _Range(lo + n, hi, _AVAILABLE, 0)
                    self._insert(rest)
                self._next = hi + 1
                _append_piece(pieces, lo, lo + n - 1, 1)
                taken += n
                if taken >= budget:
                    break
            else:
                self._insert(_Range(lo, hi, _ACQUIRED, 1, member_id, deadline))
                self._next = hi + 1
                _append_piece(pieces, lo, hi, 1)
                taken += hi - lo + 1
        if pieces:
            heapq.heappush(self._timers, (deadline, pieces[0][0], pieces[-1][1]))
        records = _shape(pieces, bases, batch_size, record_limit)
        self._advance_start()
        return Acquisition(records, self._delta(changed), deadline)

    def _reacquire(
        self,
        member_id: str,
        lo: int,
        hi: int,
        deadline: int,
        budget: int,
        taken: int,
        record_limit: bool,
        pieces: list[tuple[int, int, int]],
        read_hi: int,
    ) -> bool:
        """Re-acquire AVAILABLE offsets in [lo, hi]; True when the acquisition must stop here.
        ``read_hi`` is the last cached offset whose records were read (throttling may go past
        ``hi``, the end of the current log batch, up to it)."""
        limit = self.delivery_count_limit
        throttle = max(2, -(-limit // 2))
        for first in list(self._available.irange(self._floor_key(lo), hi)):
            r = self._ranges[first]
            start = max(r.first, lo)
            end = min(r.last, hi)
            if start > end:
                continue
            if record_limit:
                if taken >= budget:
                    return True
                end = min(end, start + (budget - taken) - 1)
            if r.count >= throttle:
                # Poison-record isolation (KAFKA-17541): hand out fewer records per attempt, alone.
                if pieces:
                    return True
                # Kafka halves the in-flight batch the record is cached in, which may span
                # several log batches: the whole AVAILABLE run of equal count here.
                run_end = self._available_run_end(r, read_hi)
                n = max(1, (run_end - start + 1) >> (r.count - throttle + 1))
                if limit > 2 and r.count == limit - 1:
                    n = 1
                if record_limit:
                    n = min(n, budget - taken)
                for piece in self._carve_all(start, start + n - 1):
                    self._acquire_range(piece, member_id, deadline)
                    _append_piece(pieces, piece.first, piece.last, piece.count)
                return True
            piece = self._carve(start, end)
            self._acquire_range(piece, member_id, deadline)
            _append_piece(pieces, piece.first, piece.last, piece.count)
            taken += piece.last - piece.first + 1
            if record_limit and taken >= budget:
                return True
        return False

    def _available_run_end(self, r: _Range, hi: int) -> int:
        """Last offset (<= hi) of the contiguous AVAILABLE run with r's count that r starts."""
        end = r.last
        ranges = self._ranges
        while end < hi and end + 1 in ranges:
            nxt: _Range = ranges[end + 1]
            if nxt.state is not _AVAILABLE or nxt.deadline or nxt.count != r.count:
                break
            end = nxt.last
        return min(end, hi)

    def _acquire_range(self, r: _Range, member_id: str, deadline: int) -> None:
        self._available.discard(r.first)
        r.state = _ACQUIRED
        r.count += 1
        r.member = member_id
        r.deadline = deadline

    # ------------------------------------------------------------------ acknowledgement

    def acknowledge(
        self, member_id: str, batches: Sequence[AckBatch], *, now_ms: int
    ) -> StateDelta:
        """Apply one partition's acknowledgement batches atomically (``SharePartition.acknowledge``).

        Raises ShareApiError (INVALID_REQUEST, INVALID_RECORD_STATE) with nothing changed."""
        if len(batches) == 1:
            fast = self._acknowledge_fast(member_id, batches[0], now_ms)
            if fast is not None:
                return fast
        # The shape of the request, for the whole partition (Kafka's request validation).
        shape_error = ack_shape_error(batches)
        if shape_error is not None:
            raise ShareApiError(ErrorCode.INVALID_REQUEST, shape_error)
        # Then batch by batch, in order, as Kafka's share partition does: the first batch that
        # fails decides the error, and nothing is applied.
        plan: list[tuple[int, int, AckType]] = []
        moved = -1  # an offset an earlier batch already took out of ACQUIRED
        for b in batches:
            if b.last_offset < self._start:
                continue  # below SPSO: already done, skipped silently
            if not self._ranges:
                raise ShareApiError(
                    ErrorCode.INVALID_RECORD_STATE, "no records are in flight to acknowledge"
                )
            if b.last_offset >= self._next:
                raise ShareApiError(
                    ErrorCode.INVALID_REQUEST,
                    f"offsets {b.first_offset}-{b.last_offset} beyond the last fetched offset "
                    f"{self.end_offset}",
                )
            skip = max(0, self._start - b.first_offset)
            width = b.last_offset - b.first_offset + 1
            runs: list[tuple[int, int, AckType]] = []
            if len(b.ack_types) == 1:
                runs.append((b.first_offset + skip, b.last_offset, AckType(b.ack_types[0])))
            else:
                run_first = b.first_offset + skip
                types = b.ack_types
                for i in range(skip + 1, width + 1):
                    if i == width or types[i] != types[i - 1]:
                        runs.append((run_first, b.first_offset + i - 1, AckType(types[i - 1])))
                        run_first = b.first_offset + i
            for first, last, ack in runs:
                if first <= moved:
                    raise ShareApiError(
                        ErrorCode.INVALID_RECORD_STATE,
                        f"offset {moved} was acknowledged by the previous batch",
                    )
                if ack is AckType.RENEW and not self.renew_enabled:
                    raise ShareApiError(
                        ErrorCode.INVALID_RECORD_STATE, "share.renew.acknowledge.enable is false"
                    )
                self._check_owned(member_id, first, last, now_ms)
            plan.extend(runs)
            moved = b.last_offset if runs[-1][2] is not AckType.RENEW else -1
        changed: list[_Range] = []
        for first, last, ack in plan:
            if ack is AckType.RENEW:
                deadline = now_ms + self.lock_duration_ms
                for r in self._carve_all(first, last):
                    r.deadline = deadline
                heapq.heappush(self._timers, (deadline, first, last))
                continue
            for r in self._carve_all(first, last):
                if ack is AckType.RELEASE:
                    self._make_available(r, now_ms)
                else:
                    r.member = None
                    r.deadline = 0
                    if ack is AckType.ACCEPT:
                        r.state = _ACKNOWLEDGED
                    elif ack is AckType.REJECT and self.dlq_enabled:
                        r.state = _ARCHIVING
                        self._queue_archiving(r, DlqCause.CLIENT_REJECT)
                    else:  # REJECT without a DLQ, GAP
                        r.state = _ARCHIVED
                changed.append(r)
        self._advance_start()
        return self._delta(changed)

    def _acknowledge_fast(self, member_id: str, b: AckBatch, now_ms: int) -> StateDelta | None:
        """The common case, without the general machinery: one batch, one ACCEPT / RELEASE /
        REJECT / GAP type, starting where a range starts and ending inside it, validly owned.
        Returns None to fall back to the general path (which also reports every error)."""
        first, last, types = b
        if len(types) != 1 or not 0 <= types[0] <= 3 or first < self._start or first > last:
            return None
        r: _Range | None = self._ranges.get(first)
        if (
            r is None
            or last > r.last
            or r.state is not _ACQUIRED
            or r.member != member_id
            or r.deadline <= now_ms
        ):
            return None
        if last < r.last:
            self._insert(_Range(last + 1, r.last, _ACQUIRED, r.count, r.member, r.deadline))
            r.last = last
        t = types[0]
        if t == 2:
            self._make_available(r, now_ms)
        else:
            r.member = None
            r.deadline = 0
            if t == 1:
                r.state = _ACKNOWLEDGED
            elif t == 3 and self.dlq_enabled:
                r.state = _ARCHIVING
                self._queue_archiving(r, DlqCause.CLIENT_REJECT)
            else:
                r.state = _ARCHIVED
        if first == self._start and r.state is not _AVAILABLE:
            self._advance_start()
        return StateDelta(self._start, (StateBatch(first, last, r.state, r.count),))

    def _check_owned(self, member_id: str, first: int, last: int, now_ms: int) -> None:
        for r in self._overlapping(first, last):
            if r.state is not _ACQUIRED:
                raise ShareApiError(
                    ErrorCode.INVALID_RECORD_STATE,
                    f"offsets {max(r.first, first)}-{min(r.last, last)} are {r.state.name}, "
                    "not ACQUIRED",
                )
            if r.member != member_id:
                raise ShareApiError(
                    ErrorCode.INVALID_RECORD_STATE,
                    f"offsets {max(r.first, first)}-{min(r.last, last)} are acquired by "
                    "another member",
                )
            if r.deadline <= now_ms:
                raise ShareApiError(
                    ErrorCode.INVALID_RECORD_STATE,
                    f"the acquisition lock of offsets {max(r.first, first)}-"
                    f"{min(r.last, last)} has expired",
                )

    # ------------------------------------------------------------------ releases and time

    def expire_locks(self, now_ms: int) -> StateDelta:
        """Return every ACQUIRED record whose lock deadline is <= now to AVAILABLE (Kafka's
        acquisition lock timeout), and make every record whose redelivery back-off ended by now
        acquirable again."""
        changed: list[_Range] = []
        timers = self._timers
        while timers and timers[0][0] <= now_ms:
            _, first, last = heapq.heappop(timers)
            first = max(first, self._start)
            if first > last:
                continue
            for r in list(self._overlapping(first, last)):
                if r.state is _ACQUIRED and r.deadline <= now_ms:
                    self._make_available(r, now_ms)
                    changed.append(r)
                elif r.state is _AVAILABLE and 0 < r.deadline <= now_ms:
                    r.deadline = 0  # the back-off is over; nothing to persist
                    self._available.add(r.first)
        if changed:
            self._advance_start()
        return self._delta(changed)

    def release_member(self, member_id: str, *, now_ms: int | None = None) -> StateDelta:
        """Release everything ``member_id`` holds: its share session closed or its connection
        dropped (``SharePartition.releaseAcquiredRecords``). Delivery counts stay; records at the
        limit are archived (or ARCHIVING with a DLQ). The redelivery back-off applies only when
        ``now_ms`` is given."""
        changed: list[_Range] = []
        for r in list(self._ranges.values()):
            if r.state is _ACQUIRED and r.member == member_id:
                self._make_available(r, now_ms)
                changed.append(r)
        if changed:
            self._advance_start()
        return self._delta(changed)

    def move_log_start(self, log_start_offset: int) -> StateDelta:
        """The log start moved (retention, DeleteRecords): everything below it is archived and
        SPSO moves up to it."""
        if log_start_offset <= self._start:
            return StateDelta(self._start, ())
        changed: list[_Range] = []
        if self._ranges:
            hi = min(log_start_offset, self._next) - 1
            for r in self._carve_all(self._start, hi):
                if not r.state.terminal:
                    self._available.discard(r.first)
                    r.state = _ARCHIVED
                    r.member = None
                    r.deadline = 0
                    changed.append(r)
        delta_batches = tuple(StateBatch(r.first, r.last, r.state, r.count) for r in changed)
        if log_start_offset >= self._next:
            self._ranges.clear()
            self._available.clear()
            self._timers.clear()
            self._start = self._next = log_start_offset
        else:
            self._advance_start()
            if self._start < log_start_offset:  # cannot happen: all below is terminal now
                raise AssertionError("SPSO did not reach the log start")
        return StateDelta(self._start, delta_batches)

    def reconfigure(
        self,
        *,
        delivery_count_limit: int | None = None,
        max_in_flight: int | None = None,
        lock_duration_ms: int | None = None,
        renew_enabled: bool | None = None,
        dlq_enabled: bool | None = None,
        redelivery_backoff_ms: int | None = None,
        redelivery_backoff_max_ms: int | None = None,
    ) -> None:
        """Dynamic group configs (Kafka's ``GroupConfig``): apply to the next operation. Records
        already ARCHIVING stay so until ``complete_archiving``, whatever ``dlq_enabled`` becomes."""
        if delivery_count_limit is not None:
            self.delivery_count_limit = delivery_count_limit
        if max_in_flight is not None:
            self.max_in_flight = max_in_flight
        if lock_duration_ms is not None:
            self.lock_duration_ms = lock_duration_ms
        if renew_enabled is not None:
            self.renew_enabled = renew_enabled
        if dlq_enabled is not None:
            self.dlq_enabled = dlq_enabled
        if redelivery_backoff_ms is not None:
            self.redelivery_backoff_ms = redelivery_backoff_ms
        if redelivery_backoff_max_ms is not None:
            self.redelivery_backoff_max_ms = redelivery_backoff_max_ms

    # ------------------------------------------------------------------ dead-letter queue

    def take_archiving(self) -> tuple[ArchivingRange, ...]:
        """The ARCHIVING ranges not handed out before, each exactly once, in the order they
        went to ARCHIVING. Call it once the delta that made them ARCHIVING is persisted."""
        out = tuple(
            ArchivingRange(first, last, count, cause or self._inferred_cause(count))
            for first, last, count, cause in self._archiving
        )
        self._archiving.clear()
        return out

    def _inferred_cause(self, delivery_count: int) -> DlqCause:
        """The cause of ARCHIVING read back from the store, which does not hold it: inferred
        from the delivery count and the limit in force when it is handed out, as
        ``SharePartition.maybeResumeDlqArchiving`` does."""
        if delivery_count >= self.delivery_count_limit:
            return DlqCause.DELIVERY_COUNT_EXCEEDED
        return DlqCause.CLIENT_REJECT

    def complete_archiving(self, first_offset: int, last_offset: int) -> StateDelta:
        """The DLQ write of [first, last] is over (written or given up): its ARCHIVING
        records become ARCHIVED. Offsets in any other state are left alone."""
        changed: list[_Range] = []
        first = max(first_offset, self._start)
        last = min(last_offset, self._next - 1)
        if first <= last:
            for r in list(self._overlapping(first, last)):
                if r.state is _ARCHIVING:
                    piece = self._carve(max(r.first, first), min(r.last, last))
                    piece.state = _ARCHIVED
                    changed.append(piece)
        if changed:
            self._advance_start()
        return self._delta(changed)

    # ------------------------------------------------------------------ invariants

    def check_invariants(self) -> None:
        """Raise AssertionError if the internal structure is inconsistent (for tests)."""
        cursor = self._start
        first_seen = True
        for key, r in self._ranges.items():
            if key != r.first or r.first != cursor or r.last < r.first:
                raise AssertionError(
                    f"ranges do not tile the window at {cursor}: {r.first}-{r.last}"
                )
            if first_seen and r.state.terminal:
                raise AssertionError(f"SPSO {self._start} sits on a terminal range")
            first_seen = False
            if (r.state is _AVAILABLE and r.deadline == 0) != (r.first in self._available):
                raise AssertionError(f"available index wrong at {r.first}")
            if r.state not in (_AVAILABLE, _ACQUIRED) and r.deadline != 0:
                raise AssertionError(f"{r.state.name} range at {r.first} has a deadline")
            if (r.state is _ACQUIRED) != (r.member is not None):
                raise AssertionError(f"owner wrong at {r.first}: {r.state.name} {r.member}")
            if r.count < 0 or (r.state is _ACQUIRED and r.count == 0):
                raise AssertionError(f"delivery count {r.count} out of range at {r.first}")
            cursor = r.last + 1
        if cursor != self._next:
            raise AssertionError(f"window ends at {cursor}, expected {self._next}")
        if len(self._available) > len(self._ranges):
            raise AssertionError("available index has stale entries")

    # ------------------------------------------------------------------ internals

    def _make_available(self, r: _Range, now_ms: int | None) -> None:
        """ACQUIRED -> AVAILABLE (after the redelivery back-off, when there is one and the time
        is known), or ARCHIVED / ARCHIVING at the delivery-count limit (``RecordState.validateTransition``)."""
        r.member = None
        r.deadline = 0
        if r.count >= self.delivery_count_limit:
            if self.dlq_enabled:
                r.state = _ARCHIVING
                self._queue_archiving(r, DlqCause.DELIVERY_COUNT_EXCEEDED)
            else:
                r.state = _ARCHIVED
            return
        r.state = _AVAILABLE
        delay = (
            0
            if now_ms is None
            else redelivery_delay_ms(
                r.count, self.redelivery_backoff_ms, self.redelivery_backoff_max_ms
            )
        )
        if delay > 0:
            r.deadline = now_ms + delay if now_ms is not None else 0
            heapq.heappush(self._timers, (r.deadline, r.first, r.last))
        else:
            self._available.add(r.first)

    def _queue_archiving(self, r: _Range, cause: DlqCause | None) -> None:
        queue = self._archiving
        if queue:
            first, last, count, prev_cause = queue[-1]
            if last + 1 == r.first and count == r.count and prev_cause is cause:
                queue[-1] = (first, r.last, r.count, cause)
                return
        queue.append((r.first, r.last, r.count, cause))

    def _archive_available(self, first: int, last: int, changed: list[_Range]) -> None:
        for r in self._carve_all(first, last):
            if r.state is _AVAILABLE:
                self._available.discard(r.first)
                r.state = _ARCHIVED
                r.deadline = 0
                changed.append(r)

    def _archive_region(self, lo: int, hi: int, changed: list[_Range]) -> None:
        """An aborted batch: archive what is cached and AVAILABLE, and new offsets outright."""
        if lo < self._next:
            self._archive_available(lo, min(hi, self._next - 1), changed)
        if hi >= self._next:
            start = max(lo, self._next)
            if start > self._next:
                gap = _Range(self._next, start - 1, _ARCHIVED, 0)
                self._insert(gap)
                changed.append(gap)
            r = _Range(start, hi, _ARCHIVED, 0)
            self._insert(r)
            changed.append(r)
            self._next = hi + 1

    def _insert(self, r: _Range) -> None:
        self._ranges[r.first] = r
        if r.state is _AVAILABLE and r.deadline == 0:
            self._available.add(r.first)

    def _floor_key(self, offset: int) -> int:
        ranges = self._ranges
        i = ranges.bisect_right(offset) - 1
        return int(ranges.keys()[i]) if i >= 0 else offset

    def _range_at(self, offset: int) -> _Range:
        ranges = self._ranges
        i = ranges.bisect_right(offset) - 1
        r: _Range = ranges.peekitem(i)[1]
        return r

    def _split(self, offset: int) -> None:
        """Make ``offset`` the first offset of a range (if it is inside the window)."""
        if offset <= self._start or offset >= self._next or offset in self._ranges:
            return
        r = self._range_at(offset)
        tail = _Range(offset, r.last, r.state, r.count, r.member, r.deadline)
        r.last = offset - 1
        self._insert(tail)

    def _carve(self, first: int, last: int) -> _Range:
        """Split so that [first, last] (inside one range) is a range of its own; return it."""
        self._split(first)
        self._split(last + 1)
        r: _Range = self._ranges[first]
        return r

    def _carve_all(self, first: int, last: int) -> list[_Range]:
        """Split at both ends and return the ranges exactly covering [first, last]."""
        self._split(first)
        self._split(last + 1)
        return list(
            self._ranges.values()[self._ranges.bisect_left(first) : self._ranges.bisect_right(last)]
        )

    def _overlapping(self, first: int, last: int) -> Iterator[_Range]:
        ranges = self._ranges
        i = max(0, ranges.bisect_right(first) - 1)
        values = ranges.values()
        n = len(values)
        while i < n:
            r: _Range = values[i]
            if r.first > last:
                break
            if r.last >= first:
                yield r
            i += 1

    def _has_lock_at(self, deadline: int, first: int, last: int) -> bool:
        first = max(first, self._start)
        if first > last:
            return False
        return any(
            (r.state is _ACQUIRED or r.state is _AVAILABLE) and r.deadline == deadline
            for r in self._overlapping(first, last)
        )

    def _advance_start(self) -> None:
        """Drop the terminal prefix: SPSO becomes the first non-terminal offset
        (``maybeUpdateCachedStateAndOffsets``)."""
        ranges = self._ranges
        while ranges:
            r: _Range = ranges.peekitem(0)[1]
            if not r.state.terminal:
                self._start = r.first
                return
            ranges.popitem(0)
        self._start = self._next

    def _delta(self, changed: list[_Range]) -> StateDelta:
        return StateDelta(
            self._start,
            tuple(
                StateBatch(r.first, r.last, r.state, r.count)
                for r in changed
                if r.state is not _ACQUIRED
            ),
        )


def _append_piece(pieces: list[tuple[int, int, int]], first: int, last: int, count: int) -> None:
    if pieces and pieces[-1][1] + 1 == first and pieces[-1][2] == count:
        pieces[-1] = (pieces[-1][0], last, count)
    else:
        pieces.append((first, last, count))


def ack_shape_error(batches: Sequence[AckBatch], *, renew: bool = True) -> str | None:
    """What is wrong with one partition's acknowledgement batches as a request (Kafka answers
    INVALID_REQUEST), or None. Batches must be in order and may touch at one offset (Kafka
    checks first >= previous last); one type, or one per offset; types 0-4, RENEW (4) only
    with ``renew`` (IsRenewAck)."""
    prev_last = -1
    for b in batches:
        if b.last_offset < b.first_offset or b.first_offset < 0:
            return f"bad acknowledgement range {b}"
        if b.first_offset < prev_last:
            return "acknowledgement batches overlap or are unordered"
        prev_last = b.last_offset
        width = b.last_offset - b.first_offset + 1
        if len(b.ack_types) not in (1, width):
            return f"{len(b.ack_types)} acknowledge types for {width} offsets"
        for t in b.ack_types:
            if not 0 <= t <= (4 if renew else 3):
                return f"unknown acknowledge type {t}"
    return None


def _shape(
    pieces: list[tuple[int, int, int]],
    bases: list[int],
    batch_size: int | None,
    record_limit: bool,
) -> tuple[AcquiredRecords, ...]:
    """Cut acquired pieces into AcquiredRecords of about ``batch_size`` offsets, cutting only at
    log-batch base offsets (``SharePartition.acquire``). record_limit mode returns its pieces as they are."""
    if record_limit or not batch_size or batch_size <= 0:
        return tuple(AcquiredRecords(f, last, c) for f, last, c in pieces)
    out: list[AcquiredRecords] = []
    for first, last, count in pieces:
        start = first
        for base in bases[bisect_right(bases, first) : bisect_right(bases, last)]:
            if base - start >= batch_size:
                out.append(AcquiredRecords(start, base - 1, count))
                start = base
        out.append(AcquiredRecords(start, last, count))
    return tuple(out)
