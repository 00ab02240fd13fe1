"""The simulator's upstream log: topics of partitions of record batches, in memory.

Role: what the proxy reads from a real broker with Fetch, minus the bytes. A partition is a list
of ``Batch`` values in offset order: data batches (optionally part of an aborted transaction),
and one-offset control batches (transaction markers), as Kafka's log holds them. It answers what
the proxy's share-fetch path asks: the batches from an offset (whole batches, up to a byte
budget), the log start offset and high watermark, the offset for a timestamp
(``share.auto.offset.reset=by_duration``), and which offsets of a span hold a record a client
would see (the rest it acknowledges as GAP, as with Kafka's share consumer).

Compaction keeps each batch's offset span (Kafka's cleaner keeps the base offset and last offset
delta of a v2 batch) and drops superseded records from it; a batch left empty vanishes.
``delete_records`` moves the log start (DeleteRecords / retention).

No clock: timestamps are passed in.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass

BATCH_OVERHEAD_BYTES = 61  # v2 record batch header


@dataclass(slots=True)
class Batch:
    """One record batch. ``keys`` is None for a batch without keys; ``present`` is None when
    every offset still holds its record, else the offsets compaction kept."""

    base_offset: int
    last_offset: int
    timestamp_ms: int
    size_bytes: int
    producer_id: int = -1
    aborted: bool = False  # data of an aborted transaction
    control: bool = False  # a transaction marker (commit/abort)
    keys: tuple[str, ...] | None = None
    present: frozenset[int] | None = None


class PartitionLog:
    """One partition's batches. Offsets start at 0 and never repeat."""

    __slots__ = ("_bases", "batches", "high_watermark", "log_start_offset")

    def __init__(self) -> None:
        self.batches: list[Batch] = []
        self._bases: list[int] = []
        self.log_start_offset = 0
        self.high_watermark = 0  # the next offset to be written

    def append(
        self,
        count: int,
        timestamp_ms: int,
        *,
        record_bytes: int = 100,
        keys: tuple[str, ...] | None = None,
        producer_id: int = -1,
        aborted: bool = False,
    ) -> tuple[int, int]:
        """Append one data batch of ``count`` records; returns its (first, last) offsets."""
        first = self.high_watermark
        last = first + count - 1
        self._add(
            Batch(
                first,
                last,
                timestamp_ms,
                count * record_bytes + BATCH_OVERHEAD_BYTES,
                producer_id,
                aborted,
                False,
                keys,
            )
        )
        return first, last

    def append_marker(self, timestamp_ms: int, producer_id: int, *, abort: bool) -> int:
        """Append a transaction marker (a one-record control batch); returns its offset."""
        offset = self.high_watermark
        self._add(
            Batch(offset, offset, timestamp_ms, BATCH_OVERHEAD_BYTES + 10, producer_id, False, True)
        )
        return offset

    def _add(self, batch: Batch) -> None:
        self.batches.append(batch)
        self._bases.append(batch.base_offset)
        self.high_watermark = batch.last_offset + 1

    def _index(self, offset: int) -> int:
        """Index of the first batch whose last offset is >= offset."""
        i = bisect_right(self._bases, offset) - 1
        if i < 0:
            return 0
        if self.batches[i].last_offset < offset:
            return i + 1
        return i

    def read(self, offset: int, max_bytes: int) -> list[Batch]:
        """Whole batches from the one holding ``offset`` on, up to about ``max_bytes`` (always at
        least one batch, as Kafka returns at least one whole batch)."""
        out: list[Batch] = []
        total = 0
        batches = self.batches
        for i in range(self._index(offset), len(batches)):
            b = batches[i]
            out.append(b)
            total += b.size_bytes
            if total >= max_bytes:
                break
        return out

    def overlapping(self, first: int, last: int) -> list[Batch]:
        """The batches with an offset in [first, last]."""
        out: list[Batch] = []
        batches = self.batches
        for i in range(self._index(first), len(batches)):
            b = batches[i]
            if b.base_offset > last:
                break
            out.append(b)
        return out

    def data_runs(self, first: int, last: int) -> list[tuple[int, int]]:
        """The offsets in [first, last] that hold a data record a consumer receives."""
        runs: list[tuple[int, int]] = []
        batches = self.batches
        for i in range(self._index(first), len(batches)):
            b = batches[i]
            if b.base_offset > last:
                break
            if b.control:
                continue
            lo = max(b.base_offset, first)
            hi = min(b.last_offset, last)
            if b.present is None:
                if runs and runs[-1][1] + 1 == lo:
                    runs[-1] = (runs[-1][0], hi)
                else:
                    runs.append((lo, hi))
            else:
                for o in sorted(x for x in b.present if lo <= x <= hi):
                    if runs and runs[-1][1] + 1 == o:
                        runs[-1] = (runs[-1][0], o)
                    else:
                        runs.append((o, o))
        return runs

    def batch_at(self, offset: int) -> Batch | None:
        i = self._index(offset)
        if i < len(self.batches) and self.batches[i].base_offset <= offset:
            return self.batches[i]
        return None

    def key_of(self, offset: int) -> str | None:
        b = self.batch_at(offset)
        if b is None or b.keys is None:
            return None
        return b.keys[offset - b.base_offset]

    def offset_for_timestamp(self, timestamp_ms: int) -> int | None:
        """The first offset with a timestamp >= the given one, or None (ListOffsets)."""
        for b in self.batches[self._index(self.log_start_offset) :]:
            if b.timestamp_ms >= timestamp_ms:
                return max(b.base_offset, self.log_start_offset)
        return None

    def compact(self) -> list[tuple[int, int]]:
        """Keep only the newest record of each key (records without a key are kept). Returns
        the offset runs removed. Aborted and control batches are left alone."""
        newest: dict[str, int] = {}
        for b in self.batches:
            if b.keys is None or b.control or b.aborted:
                continue
            for i, k in enumerate(b.keys):
                newest[k] = b.base_offset + i
        removed: list[tuple[int, int]] = []
        kept: list[Batch] = []
        for b in self.batches:
            if b.keys is None or b.control or b.aborted:
                kept.append(b)
                continue
            alive = b.present if b.present is not None else range(b.base_offset, b.last_offset + 1)
            keep = frozenset(o for o in alive if newest[b.keys[o - b.base_offset]] == o)
            for o in sorted(set(alive) - keep):
                if removed and removed[-1][1] + 1 == o:
                    removed[-1] = (removed[-1][0], o)
                else:
                    removed.append((o, o))
            if keep:
                full = len(keep) == b.last_offset - b.base_offset + 1
                b.present = None if full else keep
                kept.append(b)
        self.batches = kept
        self._bases = [b.base_offset for b in kept]
        return removed

    def delete_records(self, before: int) -> int:
        """Move the log start offset up to ``before`` (never past the high watermark)."""
        start = min(max(before, self.log_start_offset), self.high_watermark)
        self.log_start_offset = start
        cut = bisect_left(self._bases, start)
        # Batches wholly below the new start go; the one containing it stays (Kafka deletes
        # whole segments; reads below the log start fail with OFFSET_OUT_OF_RANGE anyway).
        while cut > 0 and self.batches[cut - 1].last_offset >= start:
            cut -= 1
        del self.batches[:cut]
        del self._bases[:cut]
        return start


class MemLog:
    """Every topic's partitions."""

    def __init__(self) -> None:
        self.topics: dict[str, list[PartitionLog]] = {}

    def create_topic(self, name: str, partitions: int) -> None:
        self.topics[name] = [PartitionLog() for _ in range(partitions)]

    def partition(self, topic: str, partition: int) -> PartitionLog:
        return self.topics[topic][partition]

    def partition_counts(self) -> dict[str, int]:
        return {name: len(parts) for name, parts in self.topics.items()}
