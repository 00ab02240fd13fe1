"""What happened in one scenario run, range by range: events, a record ledger, counters.

Role: the common account of a run, filled by the simulator (``sharegroup/sim/node.py``) or the
live runner, and read by ``expect.py`` and ``report.py``. It keeps its own ledger of every
produced record — state, times delivered, last delivery count, owner, why it was archived —
updated from what the broker side reports (acquired ranges, persisted state changes), so it can
check the broker independently: a record delivered again after a confirmed ACCEPT, two owners
at once, a delivery count that disagrees with the deliveries seen.

The ledger stores ranges, not records, as ``model/partition.py`` does: a range splits only where an operation
touches part of it, so a million records acknowledged in batches of 500 cost a few thousand
entries.

Archive reasons are told apart here: ``rejected`` (a REJECT), ``delivery-limit`` (a RELEASE,
lock expiry or session close of a record at ``share.delivery.count.limit``), ``gap`` (an offset
with no record, acknowledged as GAP), ``compacted`` (a record compaction removed), ``aborted``
(read_committed, an aborted transaction), ``log-start`` (below a new log start offset).

Pure: values in, values out; no clock (times are arguments).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

from sortedcontainers import SortedDict

UNDELIVERED: Final = "UNDELIVERED"
AVAILABLE: Final = "AVAILABLE"
ACQUIRED: Final = "ACQUIRED"
ACKNOWLEDGED: Final = "ACKNOWLEDGED"
ARCHIVED: Final = "ARCHIVED"
SKIPPED: Final = "SKIPPED"  # below a share-group offsets reset: never to be delivered
TERMINAL: Final = frozenset({ACKNOWLEDGED, ARCHIVED, SKIPPED})

ARCHIVE_REASONS: Final = ("rejected", "delivery-limit", "gap", "compacted", "aborted", "log-start")

# Event kinds on consumer lanes, and their meaning in the report.
ACQUIRE: Final = "acquire"
ACCEPT: Final = "accept"
RELEASE: Final = "release"
REJECT: Final = "reject"
GAP: Final = "gap"
RENEW: Final = "renew"
ACK_ERROR: Final = "ack-error"
EXPIRE: Final = "expire"  # a lock ran out
CLOSE_RELEASE: Final = "close-release"  # released by session close or connection loss
ARCHIVE: Final = "archive"
PRODUCE: Final = "produce"


class Event(tuple[int, str, str, str, int, int, int, object]):
    """(time_ms, kind, actor, topic, partition, first, last, info). A plain tuple for speed."""

    __slots__ = ()


@dataclass(slots=True)
class ConsumerStats:
    received: int = 0
    accepted: int = 0
    released: int = 0
    rejected: int = 0
    gaps: int = 0
    lock_lost: int = 0
    released_on_close: int = 0
    ack_errors: int = 0
    fetches: int = 0
    max_per_fetch: int = 0

    def get(self, name: str) -> int:
        value: int = getattr(self, name.replace("-", "_"))
        return value


class _Seg:
    __slots__ = (
        "accepted",
        "count",
        "delivered",
        "last",
        "owner",
        "produced_ms",
        "reason",
        "state",
    )

    def __init__(self, last: int, produced_ms: int) -> None:
        self.last = last
        self.state = UNDELIVERED
        self.delivered = 0
        self.count = 0
        self.owner = ""
        self.reason = ""
        self.produced_ms = produced_ms
        self.accepted = False

    def copy(self, last: int) -> _Seg:
        s = _Seg(last, self.produced_ms)
        s.state = self.state
        s.delivered = self.delivered
        s.count = self.count
        s.owner = self.owner
        s.reason = self.reason
        s.accepted = self.accepted
        return s


@dataclass(frozen=True, slots=True)
class RecordView:
    """One record (or a run of records alike) as the ledger sees it at the end."""

    topic: str
    partition: int
    first: int
    last: int
    state: str
    delivered: int
    delivery_count: int
    reason: str
    owner: str


class _Ledger:
    """One partition's produced records: first offset -> ``_Seg`` (holes are offsets with no
    data record: transaction markers, gaps)."""

    __slots__ = ("_d",)

    def __init__(self) -> None:
        self._d: SortedDict[int, _Seg] = SortedDict()

    def add(self, first: int, last: int, produced_ms: int) -> None:
        self._d[first] = _Seg(last, produced_ms)

    def _split(self, offset: int) -> None:
        d = self._d
        i = d.bisect_right(offset) - 1
        if i < 0:
            return
        key, seg = d.peekitem(i)
        if key < offset <= seg.last:
            d[offset] = seg.copy(seg.last)
            seg.last = offset - 1

    def segments(self, first: int, last: int) -> list[tuple[int, _Seg]]:
        """The ledger ranges exactly inside [first, last] (split at both ends)."""
        self._split(first)
        self._split(last + 1)
        d = self._d
        return [(k, d[k]) for k in d.irange(first, last)]

    def has(self, offset: int) -> bool:
        d = self._d
        i = d.bisect_right(offset) - 1
        return i >= 0 and d.peekitem(i)[1].last >= offset

    def items(self) -> Iterator[tuple[int, _Seg]]:
        return iter(self._d.items())


@dataclass(frozen=True, slots=True)
class DlqEntry:
    """One record of a dead-letter queue topic (KIP-1191), as its headers describe it."""

    dlq_topic: str
    dlq_partition: int
    source_topic: str
    source_partition: int
    source_offset: int
    group: str
    delivery_count: int | None
    cause: str  # "rejected" or "delivery-limit" (from __dlq.errors.message), or ""
    key: bytes | None
    value: bytes | None


@dataclass(slots=True)
class Violation:
    time_ms: int
    invariant: str
    message: str


@dataclass
class Trace:
    """The account of one run. ``topic_partitions`` lists every partition of the scenario."""

    topic_partitions: list[tuple[str, int]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    consumers: dict[str, ConsumerStats] = field(default_factory=dict)
    violations: list[Violation] = field(default_factory=list)
    responses: dict[str, tuple[str, str]] = field(default_factory=dict)  # send step -> codes
    samples: list[tuple[int, int, int, int]] = field(
        default_factory=list
    )  # t, in-flight, acked, delivered
    latency: list[tuple[int, int]] = field(default_factory=list)  # (ms, records)
    keys: dict[tuple[str, int], dict[int, str]] = field(default_factory=dict)
    partition_stats: dict[tuple[str, int], dict[str, int]] = field(default_factory=dict)
    group: dict[str, object] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    dlq: list[DlqEntry] = field(default_factory=list)  # the DLQ topics' records, in write order
    end_ms: int = 0
    in_flight: int = 0
    _ledgers: dict[tuple[str, int], _Ledger] = field(default_factory=dict)

    # ------------------------------------------------------------------ setup
    def add_partition(self, topic: str, partition: int) -> None:
        self.topic_partitions.append((topic, partition))
        self._ledgers[(topic, partition)] = _Ledger()

    def consumer(self, consumer_id: str) -> ConsumerStats:
        stats = self.consumers.get(consumer_id)
        if stats is None:
            stats = self.consumers[consumer_id] = ConsumerStats()
        return stats

    def _event(
        self,
        time_ms: int,
        kind: str,
        actor: str,
        topic: str = "",
        partition: int = -1,
        first: int = -1,
        last: int = -1,
        info: object = "",
    ) -> None:
        self.events.append(Event((time_ms, kind, actor, topic, partition, first, last, info)))

    # ------------------------------------------------------------------ what happened
    def lifecycle(self, time_ms: int, kind: str, actor: str, detail: object = "") -> None:
        """start, stop, kill, hang, join, fenced, restart-proxy, alter-config, ... ."""
        self._event(time_ms, kind, actor, info=detail)

    def produce(
        self,
        time_ms: int,
        producer: str,
        topic: str,
        partition: int,
        first: int,
        last: int,
        keys: tuple[str, ...] | None = None,
    ) -> None:
        self._ledgers[(topic, partition)].add(first, last, time_ms)
        self.counts["produced"] += last - first + 1
        if keys is not None:
            table = self.keys.setdefault((topic, partition), {})
            for i, k in enumerate(keys):
                table[first + i] = k
        self._event(time_ms, PRODUCE, producer, topic, partition, first, last, last - first + 1)

    def fetched(self, time_ms: int, consumer: str, records: int) -> None:
        """One ShareFetch answered to ``consumer`` with ``records`` records."""
        stats = self.consumer(consumer)
        stats.fetches += 1
        stats.max_per_fetch = max(stats.max_per_fetch, records)

    def acquire(
        self,
        time_ms: int,
        consumer: str,
        topic: str,
        partition: int,
        first: int,
        last: int,
        count: int,
    ) -> None:
        """Records [first, last] (all holding data) delivered to ``consumer`` with the broker's
        delivery count ``count``."""
        self._event(time_ms, ACQUIRE, consumer, topic, partition, first, last, count)
        n = last - first + 1
        self.consumer(consumer).received += n
        self.counts["delivered"] += n
        self.in_flight += n
        if self.in_flight > self.counts["in-flight-max"]:
            self.counts["in-flight-max"] = self.in_flight
        for start, seg in self._ledgers[(topic, partition)].segments(first, last):
            if seg.accepted:
                self._violate(
                    time_ms,
                    "no-redelivery-after-ack",
                    f"{topic}-{partition} offsets {start}-{seg.last} delivered to {consumer} "
                    "after an acknowledged ACCEPT",
                )
            if seg.state == ACQUIRED and seg.owner != consumer:
                self._violate(
                    time_ms,
                    "single-owner",
                    f"{topic}-{partition} offsets {start}-{seg.last} delivered to {consumer} "
                    f"while {seg.owner} holds them",
                )
            if seg.state == ACQUIRED:
                self.in_flight -= seg.last - start + 1  # re-acquired by its owner
            if count != seg.count + 1:
                self._violate(
                    time_ms,
                    "delivery-counts-agree",
                    f"{topic}-{partition} offsets {start}-{seg.last}: delivery count {count}, "
                    f"but delivered {seg.count} time(s) before",
                )
            if seg.delivered == 0:
                self.counts["distinct-delivered"] += seg.last - start + 1
            seg.delivered += 1
            seg.count = count
            seg.state = ACQUIRED
            seg.owner = consumer

    def ack(
        self,
        time_ms: int,
        consumer: str,
        topic: str,
        partition: int,
        first: int,
        last: int,
        kind: str,
        new_state: str,
        *,
        confirmed: bool = True,
    ) -> None:
        """An acknowledgement of [first, last] the broker applied (``kind`` accept, release,
        reject or gap) and the state it left the records in (a RELEASE at the limit leaves them
        ARCHIVED). ``confirmed`` False: the client has not been told yet (``confirm`` follows);
        only a confirmed ACCEPT makes a later delivery a violation."""
        ledger = self._ledgers[(topic, partition)]
        segs = ledger.segments(first, last)
        n = sum(seg.last - start + 1 for start, seg in segs)
        stats = self.consumer(consumer)
        if kind == GAP:
            stats.gaps += last - first + 1 - n
            self.counts["gap-acks"] += last - first + 1 - n
        if segs or kind != GAP:
            self._event(time_ms, kind, consumer, topic, partition, first, last, n)
        if kind == ACCEPT:
            stats.accepted += n
            self.counts["accepted"] += n
        elif kind == RELEASE:
            stats.released += n
        elif kind == REJECT:
            stats.rejected += n
        for start, seg in segs:
            if seg.state == ACQUIRED:
                self.in_flight -= seg.last - start + 1
            seg.owner = ""
            seg.state = new_state
            if kind == ACCEPT:
                seg.accepted = confirmed
                self.latency.append((time_ms - seg.produced_ms, seg.last - start + 1))
            if new_state == ARCHIVED:
                seg.reason = {REJECT: "rejected", RELEASE: "delivery-limit"}.get(kind, "compacted")
        if new_state == ARCHIVED and segs and kind in (REJECT, RELEASE):
            reason = "rejected" if kind == REJECT else "delivery-limit"
            self._event(time_ms, ARCHIVE, consumer, topic, partition, first, last, reason)

    def confirm(self, topic: str, partition: int, first: int, last: int) -> None:
        """The client was told its ACCEPT of [first, last] succeeded."""
        for _, seg in self._ledgers[(topic, partition)].segments(first, last):
            if seg.state == ACKNOWLEDGED:
                seg.accepted = True

    def renew(
        self, time_ms: int, consumer: str, topic: str, partition: int, first: int, last: int
    ) -> None:
        """A member renewed its locks on [first, last] (acknowledgement type RENEW)."""
        self._event(time_ms, RENEW, consumer, topic, partition, first, last, "")

    def ack_error(
        self,
        time_ms: int,
        consumer: str,
        topic: str,
        partition: int,
        first: int,
        last: int,
        code: str,
    ) -> None:
        n = sum(s.last - f + 1 for f, s in self._ledgers[(topic, partition)].segments(first, last))
        self.consumer(consumer).ack_errors += n
        self.counts["ack-errors"] += n
        self._event(time_ms, ACK_ERROR, consumer, topic, partition, first, last, code)

    def unlock(
        self,
        time_ms: int,
        cause: str,
        topic: str,
        partition: int,
        first: int,
        last: int,
        new_state: str,
    ) -> None:
        """Records whose acquisition ended without an acknowledgement: ``cause`` is expiry,
        session-close or connection-close; ``new_state`` AVAILABLE, or ARCHIVED at the limit."""
        by_owner: dict[str, list[tuple[int, int]]] = {}
        for start, seg in self._ledgers[(topic, partition)].segments(first, last):
            if seg.state != ACQUIRED:
                continue
            by_owner.setdefault(seg.owner, []).append((start, seg.last))
            self.in_flight -= seg.last - start + 1
            seg.state = new_state
            seg.owner = ""
            if new_state == ARCHIVED:
                seg.reason = "delivery-limit"
        kind = EXPIRE if cause == "expiry" else CLOSE_RELEASE
        for owner, runs in by_owner.items():
            n = sum(b - a + 1 for a, b in runs)
            stats = self.consumer(owner)
            if kind == EXPIRE:
                stats.lock_lost += n
                self.counts["lock-expiries"] += n
            else:
                stats.released_on_close += n
                self.counts["released-on-close"] += n
            for a, b in _merge(runs):
                self._event(time_ms, kind, owner, topic, partition, a, b, cause)
                if new_state == ARCHIVED:
                    self._event(time_ms, ARCHIVE, owner, topic, partition, a, b, "delivery-limit")

    def written(self, topic: str, partition: int, first: int, last: int, time_ms: int) -> None:
        """Records the proxy itself wrote (DLQ records) to a partition of the scenario: a
        consumer may read them, but they are not counted as produced."""
        ledger = self._ledgers.get((topic, partition))
        if ledger is not None:
            ledger.add(first, last, time_ms)

    def dead_letter(self, entry: DlqEntry) -> None:
        """A record written to a dead-letter queue topic."""
        self.dlq.append(entry)
        self.counts["dead-lettered"] += 1

    def dlq_write_failed(self, records: int) -> None:
        """A DLQ write that failed (the records were archived all the same, as in Kafka)."""
        self.counts["dlq-write-failures"] += records

    def archive(
        self, time_ms: int, topic: str, partition: int, first: int, last: int, reason: str
    ) -> None:
        """The broker archived [first, last] on its own (aborted, compacted, gap, log-start)."""
        runs: list[tuple[int, int]] = []
        for start, seg in self._ledgers[(topic, partition)].segments(first, last):
            if seg.state in TERMINAL:
                continue
            if seg.state == ACQUIRED:
                self.in_flight -= seg.last - start + 1
            seg.state = ARCHIVED
            seg.owner = ""
            seg.reason = reason
            runs.append((start, seg.last))
        for a, b in _merge(runs):
            self._event(time_ms, ARCHIVE, "", topic, partition, a, b, reason)

    def reset(self, time_ms: int, topic: str, partition: int, start_offset: int) -> None:
        """The share group's start offset was set (offsets reset or copied): records below it
        are never to be delivered, records from it on are fresh again."""
        ledger = self._ledgers[(topic, partition)]
        ledger.segments(start_offset, start_offset)  # split at the new start
        for first, seg in list(ledger.items()):
            if seg.state == ACQUIRED:
                self.in_flight -= seg.last - first + 1
            if first >= start_offset:
                seg.state = AVAILABLE if seg.delivered else UNDELIVERED
                seg.reason = ""
                seg.accepted = False
                seg.count = 0
            elif seg.state not in TERMINAL:
                seg.state = SKIPPED
            seg.owner = ""
        self._event(time_ms, "reset", "", topic, partition, start_offset, start_offset, "")

    def response(self, step: str, error: str, ack_error: str) -> None:
        self.responses[step] = (error, ack_error)

    def sample(self, time_ms: int) -> None:
        self.samples.append(
            (time_ms, self.in_flight, self.counts["accepted"], self.counts["delivered"])
        )

    def _violate(self, time_ms: int, invariant: str, message: str) -> None:
        self.counts[f"violations:{invariant}"] += 1
        if self.counts[f"violations:{invariant}"] <= 20:
            self.violations.append(Violation(time_ms, invariant, message))

    # ------------------------------------------------------------------ reading
    def records(self, topic: str, partition: int) -> Iterator[RecordView]:
        for start, seg in self._ledgers[(topic, partition)].items():
            yield RecordView(
                topic,
                partition,
                start,
                seg.last,
                seg.state,
                seg.delivered,
                seg.count,
                seg.reason,
                seg.owner,
            )

    def record_at(self, topic: str, partition: int, offset: int) -> RecordView | None:
        ledger = self._ledgers[(topic, partition)]
        if not ledger.has(offset):
            return None
        for start, seg in ledger.segments(offset, offset):
            return RecordView(
                topic,
                partition,
                start,
                seg.last,
                seg.state,
                seg.delivered,
                seg.count,
                seg.reason,
                seg.owner,
            )
        return None

    def totals(self) -> dict[str, int]:
        """Counts over the whole run and the final state of every record."""
        out = {
            k: self.counts[k]
            for k in (
                "produced",
                "delivered",
                "distinct-delivered",
                "gap-acks",
                "lock-expiries",
                "released-on-close",
                "ack-errors",
                "in-flight-max",
                "dead-lettered",
                "dlq-write-failures",
            )
        }
        out["redelivered"] = out["delivered"] - out["distinct-delivered"]
        final: Counter[str] = Counter()
        for topic, partition in self.topic_partitions:
            for _, seg in self._ledgers[(topic, partition)].items():
                n = seg.last - _ + 1
                final[seg.state] += n
                if seg.state == ARCHIVED:
                    final[f"archived-{seg.reason}"] += n
        out["acknowledged"] = final[ACKNOWLEDGED]
        out["archived"] = final[ARCHIVED]
        out["archived-rejected"] = final["archived-rejected"]
        out["archived-delivery-limit"] = final["archived-delivery-limit"]
        out["archived-other"] = (
            out["archived"] - out["archived-rejected"] - out["archived-delivery-limit"]
        )
        for reason in ARCHIVE_REASONS:
            out[f"archived-{reason}"] = final[f"archived-{reason}"]
        out["skipped"] = final[SKIPPED]
        out["unfinished"] = sum(final[s] for s in (UNDELIVERED, AVAILABLE, ACQUIRED))
        out["undelivered"] = final[UNDELIVERED]
        return out

    def delivery_histogram(self) -> dict[int, int]:
        """How many records were delivered 0, 1, 2, ... times."""
        hist: Counter[int] = Counter()
        for topic, partition in self.topic_partitions:
            for start, seg in self._ledgers[(topic, partition)].items():
                hist[seg.delivered] += seg.last - start + 1
        return dict(sorted(hist.items()))

    def digest(self) -> str:
        """A hash of everything that happened, to compare two runs."""
        h = hashlib.sha256()
        for e in self.events:
            h.update(repr(e).encode())
        h.update(repr(self.samples).encode())
        return h.hexdigest()


def _merge(runs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(runs):
        if out and out[-1][1] + 1 >= a:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out
