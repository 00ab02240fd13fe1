"""The prediction side of the conformance test: what a KIP-932 broker must answer, per the model.

``Oracle`` holds the model's view of one share group on one broker: a ``SharePartition`` per
topic-partition (``model.partition``), the share sessions (``model.session``) and the record
batches of each partition's log (known exactly, because the test produces one batch per
Produce request). For every request the test sends it computes the answer the model predicts:
top-level error, which partitions the response lists, and per partition the error, the
acknowledgement error and the AcquiredRecords ranges. It composes the model's pieces the way
Kafka's request handlers do (``KafkaApis.handleShareFetchRequest``,
``SharePartitionManager``, ``SharePartition``).

Some things a broker may legitimately do in either of several ways, and the oracle returns
every candidate outcome, each with the oracle state that follows it:

* the order in which a ShareFetch visits the session's partitions (Kafka rotates it by session
  epoch; MaxRecords is a budget shared in that order);
* whether piggy-backed acknowledgements are applied before or after the fetch acquires (Kafka
  runs them in parallel, ``KafkaApis.handleShareFetchRequest``).

The caller keeps the candidate that matches what the target answered.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from uuid import UUID

from model import (
    AckBatch,
    AcquiredRecords,
    AcquireMode,
    ArchivingRange,
    ErrorCode,
    LogBatch,
    ShareApiError,
    SharePartition,
    ShareSessionCache,
    ack_shape_error,
)
from model.session import FINAL_EPOCH, MAX_MEMBER_ID_LENGTH

TP = tuple[UUID, int]
AckRanges = Sequence[tuple[int, int, Sequence[int]]]

RENEW = 4


@dataclass(frozen=True, slots=True)
class PartitionOutcome:
    error: int = 0
    ack_error: int = 0
    acquired: tuple[AcquiredRecords, ...] = ()


@dataclass(slots=True)
class Outcome:
    """One predicted answer: top-level error and the listed partitions (in no order)."""

    error: int
    partitions: dict[TP, PartitionOutcome] = field(default_factory=dict)
    note: str = ""


@dataclass(frozen=True, slots=True)
class FetchParams:
    max_records: int = 500
    batch_size: int = 500
    max_bytes: int = 1 << 20
    min_bytes: int = 1
    max_wait_ms: int = 0
    mode: AcquireMode = AcquireMode.BATCH_OPTIMIZED
    renew: bool = False


def well_formed(ranges: AckRanges, renew: bool) -> bool:
    """Do a partition's acknowledgement batches pass Kafka's request validation?"""
    batches = [AckBatch(f, la, tuple(types)) for f, la, types in ranges]
    return bool(batches) and ack_shape_error(batches, renew=renew) is None


class Oracle:
    """The model's view of one share group on one broker (see the module docstring)."""

    def __init__(
        self,
        group: str,
        partitions: Iterable[TP],
        *,
        lock_ms: int,
        delivery_count_limit: int,
        max_in_flight: int,
        start_offsets: Mapping[TP, int] | None = None,
        dlq: bool = False,
    ) -> None:
        self.group = group
        self.lock_ms = lock_ms
        self.delivery_count_limit = delivery_count_limit
        self.max_in_flight = max_in_flight
        starts = dict(start_offsets or {})
        self.parts: dict[TP, SharePartition] = {
            tp: SharePartition(
                starts.get(tp, 0),
                delivery_count_limit=delivery_count_limit,
                max_in_flight=max_in_flight,
                lock_duration_ms=lock_ms,
                dlq_enabled=dlq,
            )
            for tp in partitions
        }
        self.log: dict[TP, list[LogBatch]] = {tp: [] for tp in self.parts}
        self.log_start: dict[TP, int] = dict.fromkeys(self.parts, 0)
        self.sessions = ShareSessionCache(max_sessions=1 << 30)

    def clone(self) -> Oracle:
        return copy.deepcopy(self)

    def dead_letters(self) -> list[tuple[TP, ArchivingRange]]:
        """The records the model moved to ARCHIVING since the last call, each range once; the
        model then archives them (the target writes its DLQ records and archives them)."""
        out: list[tuple[TP, ArchivingRange]] = []
        for tp, sp in self.parts.items():
            for work in sp.take_archiving():
                sp.complete_archiving(work.first_offset, work.last_offset)
                out.append((tp, work))
        return out

    # ------------------------------------------------------------------ the log and configs

    def append(self, tp: TP, first: int, last: int) -> None:
        self.log[tp].append(LogBatch(first, last))

    def high_watermark(self, tp: TP) -> int:
        batches = self.log[tp]
        return batches[-1].last_offset + 1 if batches else 0

    def reconfigure(
        self, *, delivery_count_limit: int | None = None, max_in_flight: int | None = None
    ) -> None:
        if delivery_count_limit is not None:
            self.delivery_count_limit = delivery_count_limit
        if max_in_flight is not None:
            self.max_in_flight = max_in_flight
        for sp in self.parts.values():
            sp.reconfigure(delivery_count_limit=delivery_count_limit, max_in_flight=max_in_flight)

    # ------------------------------------------------------------------ time and connections

    def expire(self, now_ms: int) -> None:
        for sp in self.parts.values():
            sp.expire_locks(now_ms)

    def connection_closed(self, connection_id: int) -> None:
        for closed in self.sessions.connection_closed(connection_id):
            self._release(closed.member_id, closed.partitions)

    def _release(self, member: str, partitions: Iterable[object]) -> None:
        for tp in partitions:
            sp = self.parts.get(tp)  # type: ignore[call-overload]
            if sp is not None:
                sp.release_member(member)

    def session_epoch(self, member: str) -> int | None:
        s = self.sessions.get(self.group, member)
        return None if s is None else s.epoch

    def session_partitions(self, member: str) -> tuple[TP, ...]:
        s = self.sessions.get(self.group, member)
        return () if s is None else tuple(s.partitions)  # type: ignore[arg-type]

    def held_by(self, member: str) -> dict[TP, list[tuple[int, int, int]]]:
        """ACQUIRED ranges of ``member``: tp -> [(first, last, lock deadline)]."""
        out: dict[TP, list[tuple[int, int, int]]] = {}
        for tp, sp in self.parts.items():
            for first, last, state, _count, owner, deadline in sp.ranges():
                if state.name == "ACQUIRED" and owner == member:
                    out.setdefault(tp, []).append((first, last, deadline))
        return out

    def lock_deadlines(self) -> set[int]:
        out: set[int] = set()
        for sp in self.parts.values():
            for _f, _l, state, _c, _o, deadline in sp.ranges():
                if state.name == "ACQUIRED":
                    out.add(deadline)
        return out

    # ------------------------------------------------------------------ requests

    def share_fetch(
        self,
        member: str,
        connection_id: int,
        epoch: int,
        *,
        add: Sequence[TP],
        forget: Sequence[TP],
        acks: Mapping[TP, AckRanges],
        params: FetchParams,
        now_ms: int,
    ) -> list[tuple[Outcome, Oracle]]:
        """Every acceptable answer to a ShareFetch, each with the oracle state after it."""
        base = self.clone()
        early = base._fetch_session(member, connection_id, epoch, add, forget, acks, params)
        if isinstance(early, Outcome):
            return [(early, base)]
        ctx_full, ctx_final, added = early
        if any(well_formed(ranges, params.renew) for ranges in acks.values()):
            # Kafka takes the acknowledgements of every partition in Topics once a partition
            # carries well-formed ones (KafkaApis.getAcknowledgeBatchesFromShareFetchRequest):
            # a partition without batches gets an acknowledgement result too (NONE) and so is
            # listed. Seen against Kafka 4.4 with epoch -1 too, and not when every partition's
            # batches fail the request validation.
            acks = {**dict.fromkeys(add, ()), **acks}
        out: list[tuple[Outcome, Oracle]] = []
        fetching = not ctx_final and not params.renew and params.max_records > 0
        fetching = fetching and params.max_bytes > 0
        session_parts = base.session_partitions(member) if not ctx_final else ()
        orders = list(itertools.permutations(session_parts)) if fetching else [()]
        ack_orders = [True, False] if fetching and acks else [True]
        # A share partition behind the log start is moved to it; Kafka 4.4 then answers that
        # partition with nothing or already with records from the new start (both seen).
        behind = fetching and any(
            (sp := base.parts.get(tp)) is not None and sp.next_fetch_offset() < base.log_start[tp]
            for tp in session_parts
        )
        refetch_modes = [False, True] if behind else [False]
        for order, acks_first, refetch in itertools.product(orders, ack_orders, refetch_modes):
            o = base.clone()
            outcome = Outcome(0)
            results: dict[TP, PartitionOutcome] = {}
            if acks_first:
                o._apply_acks(member, acks, params.renew, now_ms, results)
            if ctx_final:
                o._close(member)
            elif fetching:
                o._acquire(member, order, params, now_ms, results, refetch=refetch)
            if not acks_first:
                o._apply_acks(member, acks, params.renew, now_ms, results)
            listed: list[TP] = list(o.session_partitions(member)) if ctx_full else []
            listed += [tp for tp in [*results, *added] if tp not in listed]
            outcome.partitions = {tp: results.get(tp, PartitionOutcome()) for tp in listed}
            outcome.note = (
                f"order={[p for _, p in order]} acks_first={acks_first} refetch={refetch}"
            )
            out.append((outcome, o))
        return out

    def _fetch_session(
        self,
        member: str,
        connection_id: int,
        epoch: int,
        add: Sequence[TP],
        forget: Sequence[TP],
        acks: Mapping[TP, AckRanges],
        params: FetchParams,
    ) -> Outcome | tuple[bool, bool, tuple[TP, ...]]:
        if not member or len(member) > MAX_MEMBER_ID_LENGTH:
            return Outcome(int(ErrorCode.INVALID_REQUEST), note="member id")
        if params.renew and (
            params.max_bytes or params.min_bytes or params.max_records or params.max_wait_ms
        ):
            return Outcome(int(ErrorCode.INVALID_REQUEST), note="renew with fetch parameters")
        adding = list(dict.fromkeys([*add, *acks]))
        try:
            ctx = self.sessions.fetch_context(
                self.group,
                member,
                epoch,
                connection_id=connection_id,
                add=adding,
                forget=forget,
                has_acknowledgements=bool(acks),
            )
        except ShareApiError as e:
            return Outcome(int(e.code), note=e.message)
        added: tuple[TP, ...] = ctx.added  # type: ignore[assignment]
        return ctx.full, ctx.final, added

    def _apply_acks(
        self,
        member: str,
        acks: Mapping[TP, AckRanges],
        renew: bool,
        now_ms: int,
        results: dict[TP, PartitionOutcome],
    ) -> None:
        for tp, ranges in acks.items():
            code = self._ack_partition(member, tp, ranges, renew, now_ms)
            prev = results.get(tp, PartitionOutcome())
            results[tp] = PartitionOutcome(prev.error, code, prev.acquired)

    def _ack_partition(
        self, member: str, tp: TP, ranges: AckRanges, renew: bool, now_ms: int
    ) -> int:
        sp = self.parts.get(tp)
        if sp is None:
            return int(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
        for _f, _l, types in ranges:
            if not types:
                return int(ErrorCode.INVALID_REQUEST)
            if not renew and any(t == RENEW for t in types):
                return int(ErrorCode.INVALID_REQUEST)
        try:
            sp.acknowledge(
                member, [AckBatch(f, la, tuple(types)) for f, la, types in ranges], now_ms=now_ms
            )
        except ShareApiError as e:
            return int(e.code)
        return 0

    def _close(self, member: str) -> None:
        closed = self.sessions.close(self.group, member)
        if closed is not None:
            self._release(member, closed.partitions)

    def _acquire(
        self,
        member: str,
        order: Sequence[TP],
        params: FetchParams,
        now_ms: int,
        results: dict[TP, PartitionOutcome],
        *,
        refetch: bool = False,
    ) -> None:
        budget = params.max_records
        for tp in order:
            if budget <= 0:
                break
            sp = self.parts.get(tp)
            if sp is None:
                results[tp] = PartitionOutcome(int(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION))
                continue
            offset = sp.next_fetch_offset()
            if offset < self.log_start[tp]:
                # The log read fails with OFFSET_OUT_OF_RANGE: Kafka moves the share partition
                # to the log start and answers this partition with nothing (ShareFetchUtils),
                # or (``refetch``) reads again from there.
                sp.move_log_start(self.log_start[tp])
                if not refetch:
                    continue
                offset = sp.next_fetch_offset()
            batches = [b for b in self.log[tp] if b.last_offset >= offset]
            if not batches:
                continue
            acq = sp.acquire(
                member,
                offset,
                batches,
                now_ms=now_ms,
                max_records=budget,
                batch_size=params.batch_size,
                mode=params.mode,
            )
            if acq.records:
                prev = results.get(tp, PartitionOutcome())
                results[tp] = PartitionOutcome(prev.error, prev.ack_error, acq.records)
                budget -= acq.count

    def share_acknowledge(
        self,
        member: str,
        epoch: int,
        *,
        acks: Mapping[TP, AckRanges],
        renew: bool,
        now_ms: int,
    ) -> list[tuple[Outcome, Oracle]]:
        o = self.clone()
        if not member or len(member) > MAX_MEMBER_ID_LENGTH:
            return [(Outcome(int(ErrorCode.INVALID_REQUEST), note="member id"), o)]
        try:
            ctx = o.sessions.acknowledge_context(o.group, member, epoch)
        except ShareApiError as e:
            return [(Outcome(int(e.code), note=e.message), o)]
        results: dict[TP, PartitionOutcome] = {}
        for tp, ranges in acks.items():
            results[tp] = PartitionOutcome(
                error=o._ack_partition(member, tp, ranges, renew, now_ms)
            )
        if ctx.final or epoch == FINAL_EPOCH:
            o._close(member)
        return [(Outcome(0, results), o)]

    def replay_acquire(
        self,
        member: str,
        tp: TP,
        ranges: Sequence[tuple[int, int, int]],
        *,
        now_ms: int,
        batch_size: int,
        unthrottled: bool = False,
    ) -> bool:
        """Make the model acquire exactly ``ranges`` (first, last, count) for ``member``, one
        record_limit acquisition each; False if the model would not give exactly those.
        ``unthrottled`` replays without the model's poison-record throttling (Kafka throttled
        by its cached batches)."""
        sp = self.parts[tp]
        if unthrottled:
            limit = sp.delivery_count_limit
            sp.delivery_count_limit = 1 << 15
            try:
                return self.replay_acquire(member, tp, ranges, now_ms=now_ms, batch_size=batch_size)
            finally:
                sp.delivery_count_limit = limit
        for first, last, count in ranges:
            batches = [b for b in self.log[tp] if b.last_offset >= first]
            if not batches:
                return False
            acq = sp.acquire(
                member,
                first,
                batches,
                now_ms=now_ms,
                max_records=last - first + 1,
                batch_size=batch_size,
                mode=AcquireMode.RECORD_LIMIT,
            )
            got = {
                o: r.delivery_count
                for r in acq.records
                for o in range(r.first_offset, r.last_offset + 1)
            }
            if got != dict.fromkeys(range(first, last + 1), count):
                return False
        return True
