"""The read-ahead window of a share partition, and the event that wakes its waiting fetches.

Kafka serves a share fetch from its local log; the proxy needs a round trip to the upstream
broker for every read. So each share partition keeps the batches of its last upstream Fetch
(``PartitionWatch.ra_*``), and ``ReadAheadFetcher`` extends them ahead of its consumers (see
docs/architecture.md, "Reading the log"). No I/O here: the window only holds what the driver
read.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import trio

from model import LogBatch

# Read-ahead (``ReadAheadFetcher``): how much is fetched ahead of the consumers of a share
# partition in one upstream request, and how much of the log a share partition keeps at most.
READ_AHEAD_BYTES = 2 << 20
READ_AHEAD_MAX_BYTES = 8 << 20
# No new read-ahead starts while the windows of all share partitions together hold this much.
READ_AHEAD_TOTAL_BYTES = 256 << 20


class ReadAheadHeld:
    """Bytes held by every read-ahead window in this process."""

    bytes = 0


@dataclass(slots=True)
class PartitionWatch:
    """Wakes long-polling fetches when records of a share partition may have become available."""

    event: trio.Event = field(default_factory=trio.Event)
    high_watermark: int = -1
    lock: trio.Lock = field(default_factory=trio.Lock)
    # Read-ahead: record batches of the log from ``ra_start`` to ``ra_end`` (exclusive) as the
    # upstream returned them (any gap between them is a gap of the log), read for the share
    # partition object ``ra_owner`` at isolation level ``ra_isolation``.
    ra_batches: deque[tuple[LogBatch, memoryview]] = field(default_factory=deque)
    ra_start: int = 0
    ra_end: int = 0
    ra_bytes: int = 0
    ra_owner: object = None
    ra_isolation: int = -1
    ra_pending: trio.Event | None = None  # set when the read-ahead in flight is done

    def notify(self) -> None:
        self.event.set()
        self.event = trio.Event()

    def _hold(self, delta: int) -> None:
        """Count ``delta`` bytes more (or fewer) in this window and in the process total."""
        self.ra_bytes += delta
        ReadAheadHeld.bytes += delta

    def forget_read_ahead(self) -> None:
        self._hold(-self.ra_bytes)
        self.ra_batches.clear()
        self.ra_owner = None

    def cached(
        self, owner: object, isolation: int, offset: int, max_bytes: int
    ) -> list[tuple[LogBatch, memoryview]] | None:
        """The read-ahead batches from the one holding ``offset``, up to ``max_bytes`` (at
        least one): what a Fetch at ``offset`` would return. None when the window does not
        hold ``offset`` or holds less than ``max_bytes`` from it: the log may have grown past
        the window since, and a Fetch would return more."""
        if (
            self.ra_owner is not owner
            or self.ra_isolation != isolation
            or not self.ra_start <= offset < self.ra_end
        ):
            return None
        out: list[tuple[LogBatch, memoryview]] = []
        size = 0
        for batch, data in self.ra_batches:
            if batch.last_offset < offset:
                continue
            if out and size + len(data) > max_bytes:
                return out
            out.append((batch, data))
            size += len(data)
        return out if size >= max_bytes else None

    def keep(
        self, owner: object, isolation: int, start: int, batches: list[tuple[LogBatch, memoryview]]
    ) -> None:
        """Replace the read-ahead with what one fetch at ``start`` returned."""
        self.forget_read_ahead()
        self.ra_owner, self.ra_isolation, self.ra_start = owner, isolation, start
        self.ra_end = start
        self.extend(batches)

    def extend(self, batches: list[tuple[LogBatch, memoryview]]) -> None:
        for batch, data in batches:
            if batch.last_offset < self.ra_end:
                continue
            self.ra_batches.append((batch, data))
            self._hold(len(data))
            self.ra_end = batch.last_offset + 1

    def trim(self, below: int) -> None:
        """Drop batches wholly below ``below`` (SPSO), then the oldest beyond the size cap."""
        batches = self.ra_batches
        while batches and (
            batches[0][0].last_offset < below or self.ra_bytes > READ_AHEAD_MAX_BYTES
        ):
            batch, data = batches.popleft()
            self._hold(-len(data))
            self.ra_start = batch.last_offset + 1
        if not batches:
            self.ra_owner = None
