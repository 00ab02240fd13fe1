"""A deliberately naive share partition: one dict entry per offset, loops everywhere.

It restates the rules of ``model.partition`` as plainly as possible, without ranges, splits or
indexes, so the property tests can run it op by op beside the real model and compare what a
client could observe. It is slow on purpose; never use it outside tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from model import (
    AckBatch,
    AcquiredRecords,
    AcquireMode,
    DlqCause,
    ErrorCode,
    LogBatch,
    ShareApiError,
)
from model import RecordState as S

TERMINAL = (S.ACKNOWLEDGED, S.ARCHIVED)


@dataclass
class Slot:
    state: S
    count: int
    member: str | None = None
    deadline: int = 0  # the lock's when ACQUIRED; the end of the back-off when AVAILABLE


class NaivePartition:
    def __init__(
        self,
        start: int,
        *,
        limit: int,
        max_in_flight: int,
        lock_ms: int,
        renew: bool = True,
        dlq: bool = False,
        backoff_ms: int = 0,
        backoff_max_ms: int = 0,
    ) -> None:
        self.start = start
        self.next = start
        self.slots: dict[int, Slot] = {}
        self.limit = limit
        self.max_in_flight = max_in_flight
        self.lock_ms = lock_ms
        self.renew = renew
        self.dlq = dlq
        self.backoff_ms = backoff_ms
        self.backoff_max_ms = backoff_max_ms
        self.archiving: list[tuple[int, int, DlqCause]] = []  # (offset, count, cause) not taken

    # observables -------------------------------------------------------------
    def next_fetch_offset(self) -> int:
        for o in range(self.start, self.next):
            if self._acquirable(self.slots[o]):
                return o
        return self.next

    @staticmethod
    def _acquirable(slot: Slot) -> bool:
        return slot.state is S.AVAILABLE and slot.deadline == 0

    def delayed(self) -> dict[int, int]:
        """AVAILABLE offsets still in their back-off, with its end."""
        return {
            o: s.deadline
            for o, s in self.slots.items()
            if s.state is S.AVAILABLE and s.deadline and self.start <= o < self.next
        }

    def take_archiving(self) -> list[tuple[int, int, DlqCause]]:
        out = self.archiving
        self.archiving = []
        return out

    def end_offset(self) -> int:
        return self.next - 1 if self.next > self.start else self.start

    def states(self) -> list[tuple[int, S, int, str | None]]:
        return [
            (o, s.state, s.count, s.member)
            for o, s in sorted(self.slots.items())
            if self.start <= o < self.next
        ]

    # operations ---------------------------------------------------------------
    def _back(self, o: int, slot: Slot, now: int | None) -> tuple[S, int]:
        slot.member = None
        slot.deadline = 0
        if slot.count >= self.limit:
            slot.state = S.ARCHIVING if self.dlq else S.ARCHIVED
            if self.dlq:
                self.archiving.append((o, slot.count, DlqCause.DELIVERY_COUNT_EXCEEDED))
        else:
            slot.state = S.AVAILABLE
            if now is not None and self.backoff_ms > 0:
                # Doubling per earlier delivery, written as a loop on purpose.
                delay = self.backoff_ms
                for _ in range(slot.count - 1):
                    delay *= 2
                slot.deadline = now + min(delay, max(self.backoff_ms, self.backoff_max_ms))
        return slot.state, slot.count

    def complete_archiving(self, first: int, last: int) -> dict[int, tuple[S, int]]:
        changed: dict[int, tuple[S, int]] = {}
        for o in range(max(first, self.start), min(last, self.next - 1) + 1):
            s = self.slots[o]
            if s.state is S.ARCHIVING:
                s.state = S.ARCHIVED
                changed[o] = (S.ARCHIVED, s.count)
        self._advance()
        return changed

    def _advance(self) -> None:
        while self.start < self.next and self.slots[self.start].state in TERMINAL:
            del self.slots[self.start]
            self.start += 1
        if self.start == self.next:
            self.slots.clear()

    def acquire(
        self,
        member: str,
        fetch: int,
        batches: Sequence[LogBatch],
        now: int,
        max_records: int,
        batch_size: int | None,
        mode: AcquireMode,
    ) -> tuple[list[AcquiredRecords], dict[int, tuple[S, int]]]:
        changed: dict[int, tuple[S, int]] = {}
        if max_records <= 0 or not batches:
            return [], changed
        deadline = now + self.lock_ms
        rl = mode is AcquireMode.RECORD_LIMIT
        budget = min(max_records, self.max_in_flight - (self.next - self.start))
        allow_new = budget > 0
        if not allow_new:
            if not self.start <= fetch < self.next:
                return [], changed
            budget = min(max_records, self.next - fetch)
        throttle = max(2, -(-self.limit // 2))
        for o in range(max(fetch, self.start), min(batches[0].first_offset, self.next)):
            if self.slots[o].state is S.AVAILABLE:
                self.slots[o].state = S.ARCHIVED
                self.slots[o].deadline = 0
                changed[o] = (S.ARCHIVED, self.slots[o].count)
        got: list[tuple[int, int]] = []  # (offset, count)
        bases: list[int] = []
        prev_last = -1
        stop = False
        for b in batches:
            lo = b.first_offset if prev_last < 0 else prev_last + 1
            prev_last = b.last_offset
            lo = max(lo, self.start)
            hi = b.last_offset
            if hi < lo:
                continue
            if len(got) >= budget:
                break
            bases.append(b.first_offset)
            if b.aborted:
                for o in range(lo, hi + 1):
                    if o < self.next:
                        if self.slots[o].state is S.AVAILABLE:
                            self.slots[o].state = S.ARCHIVED
                            self.slots[o].deadline = 0
                            changed[o] = (S.ARCHIVED, self.slots[o].count)
                    else:
                        for g in range(self.next, o + 1):
                            self.slots[g] = Slot(S.ARCHIVED, 0)
                            changed[g] = (S.ARCHIVED, 0)
                        self.next = o + 1
                continue
            o = lo
            while o <= hi and o < self.next:
                slot = self.slots[o]
                if not self._acquirable(slot):
                    o += 1
                    continue
                if rl and len(got) >= budget:
                    stop = True
                    break
                if slot.count >= throttle:
                    if got:
                        stop = True
                        break
                    run = 0
                    while (
                        o + run < self.next
                        and o + run <= batches[-1].last_offset
                        and self._acquirable(self.slots[o + run])
                        and self.slots[o + run].count == slot.count
                    ):
                        run += 1
                    n = max(1, run >> (slot.count - throttle + 1))
                    if self.limit > 2 and slot.count == self.limit - 1:
                        n = 1
                    if rl:
                        n = min(n, budget - len(got))
                    for p in range(o, o + n):
                        s = self.slots[p]
                        s.state, s.count, s.member, s.deadline = (
                            S.ACQUIRED,
                            s.count + 1,
                            member,
                            deadline,
                        )
                        got.append((p, s.count))
                    stop = True
                    break
                slot.state, slot.count, slot.member, slot.deadline = (
                    S.ACQUIRED,
                    slot.count + 1,
                    member,
                    deadline,
                )
                got.append((o, slot.count))
                o += 1
            if stop:
                break
            lo = max(lo, self.next)
            if lo > hi:
                continue
            if not allow_new:
                break
            for g in range(self.next, lo):
                self.slots[g] = Slot(S.ARCHIVED, 0)
                changed[g] = (S.ARCHIVED, 0)
            self.next = max(self.next, lo)
            for o in range(lo, hi + 1):
                if rl and len(got) >= budget:
                    self.slots[o] = Slot(S.AVAILABLE, 0)
                else:
                    self.slots[o] = Slot(S.ACQUIRED, 1, member, deadline)
                    got.append((o, 1))
            self.next = hi + 1
            if rl and len(got) >= budget:
                break
        # contiguous, equal-count offsets form ranges; batch_optimized cuts at bases.
        out: list[AcquiredRecords] = []
        for o, c in got:
            if out and out[-1].last_offset + 1 == o and out[-1].delivery_count == c:
                cut = (
                    not rl
                    and batch_size is not None
                    and batch_size > 0
                    and o in bases
                    and o - out[-1].first_offset >= batch_size
                )
                if not cut:
                    out[-1] = AcquiredRecords(out[-1].first_offset, o, c)
                    continue
            out.append(AcquiredRecords(o, o, c))
        self._advance()
        return out, changed

    def acknowledge(
        self, member: str, batches: Sequence[AckBatch], now: int
    ) -> dict[int, tuple[S, int]]:
        prev = -1
        for b in batches:  # the request's shape first, for the whole partition
            if b.last_offset < b.first_offset or b.first_offset < 0 or b.first_offset < prev:
                raise ShareApiError(ErrorCode.INVALID_REQUEST, "bad batch")
            prev = b.last_offset
            width = b.last_offset - b.first_offset + 1
            if len(b.ack_types) not in (1, width) or any(not 0 <= t <= 4 for t in b.ack_types):
                raise ShareApiError(ErrorCode.INVALID_REQUEST, "bad types")
        plan: list[tuple[int, int]] = []
        done: set[int] = set()  # offsets an earlier batch moved out of ACQUIRED
        for b in batches:  # then batch by batch, offset by offset
            if b.last_offset < self.start:
                continue
            if self.next == self.start:
                raise ShareApiError(ErrorCode.INVALID_RECORD_STATE, "nothing in flight")
            if b.last_offset >= self.next:
                raise ShareApiError(ErrorCode.INVALID_REQUEST, "beyond end")
            for i, o in enumerate(range(b.first_offset, b.last_offset + 1)):
                if o < self.start:
                    continue
                t = b.ack_types[0 if len(b.ack_types) == 1 else i]
                s = self.slots[o]
                if o in done:
                    raise ShareApiError(ErrorCode.INVALID_RECORD_STATE, "acknowledged twice")
                if t == 4 and not self.renew:
                    raise ShareApiError(ErrorCode.INVALID_RECORD_STATE, "renew off")
                if s.state is not S.ACQUIRED or s.member != member or s.deadline <= now:
                    raise ShareApiError(ErrorCode.INVALID_RECORD_STATE, "not owned")
                plan.append((o, t))
                if t != 4:
                    done.add(o)
        changed: dict[int, tuple[S, int]] = {}
        for o, t in plan:
            s = self.slots[o]
            if t == 4:
                s.deadline = now + self.lock_ms
                continue
            if t == 1:
                s.state, s.member, s.deadline = S.ACKNOWLEDGED, None, 0
                changed[o] = (s.state, s.count)
            elif t == 2:
                changed[o] = self._back(o, s, now)
            elif t == 3 and self.dlq:
                s.state, s.member, s.deadline = S.ARCHIVING, None, 0
                self.archiving.append((o, s.count, DlqCause.CLIENT_REJECT))
                changed[o] = (s.state, s.count)
            else:
                s.state, s.member, s.deadline = S.ARCHIVED, None, 0
                changed[o] = (s.state, s.count)
        self._advance()
        return changed

    def expire(self, now: int) -> dict[int, tuple[S, int]]:
        due = [o for o, s in self.slots.items() if s.state is S.AVAILABLE and 0 < s.deadline <= now]
        for o in due:
            self.slots[o].deadline = 0
        changed = {
            o: self._back(o, s, now)
            for o, s in sorted(self.slots.items())
            if s.state is S.ACQUIRED and s.deadline <= now
        }
        self._advance()
        return changed

    def release_member(self, member: str, now: int | None = None) -> dict[int, tuple[S, int]]:
        changed = {
            o: self._back(o, s, now)
            for o, s in sorted(self.slots.items())
            if s.state is S.ACQUIRED and s.member == member
        }
        self._advance()
        return changed

    def move_log_start(self, lso: int) -> dict[int, tuple[S, int]]:
        changed: dict[int, tuple[S, int]] = {}
        if lso <= self.start:
            return changed
        for o in range(self.start, min(lso, self.next)):
            s = self.slots[o]
            if s.state not in TERMINAL:
                s.state, s.member, s.deadline = S.ARCHIVED, None, 0
                changed[o] = (S.ARCHIVED, s.count)
        if lso >= self.next:
            self.slots.clear()
            self.start = self.next = lso
        else:
            self._advance()
        return changed
