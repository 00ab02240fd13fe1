"""Read-ahead: the background upstream Fetches that extend a share partition's read-ahead
window (``proxy.read_ahead.PartitionWatch``) before its consumers ask for the records.

Kafka reads share fetches from its local log; here every read is a round trip to the upstream
broker, and without read-ahead the members sharing a partition wait for those one after the
other (docs/architecture.md, "Reading the log"). Read-ahead Fetches go over connections of
their own, at most four per broker.
"""

from __future__ import annotations

import logging

import trio

from model import SharePartition
from proxy.log_reads import UpstreamLog, first_partition, log_batches
from proxy.read_ahead import (
    READ_AHEAD_BYTES,
    READ_AHEAD_MAX_BYTES,
    READ_AHEAD_TOTAL_BYTES,
    PartitionWatch,
    ReadAheadHeld,
)
from proxy.upstream import BrokerConnection, UpstreamError
from sharegroup.engine import PartitionKey

log = logging.getLogger("sharegroup.shares")


class ReadAheadFetcher:
    def __init__(
        self,
        upstream: UpstreamLog,
        watches: dict[PartitionKey, PartitionWatch],
        fetch_counts: dict[str, int],
    ) -> None:
        self.upstream = upstream
        self.watches = watches
        self.fetch_counts = fetch_counts  # counts "read_ahead_fetches"
        self.log_generation = 0  # counts DeleteRecords seen: read-ahead from before is stale
        self._conns: dict[tuple[int, int], BrokerConnection] = {}
        self._background: trio.Nursery | None = None  # the proxy's, for read-ahead tasks

    def start(self, nursery: trio.Nursery) -> None:
        self._background = nursery

    def maybe_start(
        self, sp: SharePartition, watch: PartitionWatch, source: tuple[int, str, int, int]
    ) -> None:
        """Start reading the next part of the log before the consumers ask for it, when the
        read-ahead of this share partition holds less than READ_AHEAD_BYTES past what is
        handed out and the log is known to have more."""
        if (
            watch.ra_pending is not None
            or watch.ra_owner is not sp
            or watch.high_watermark < 0
            or watch.ra_end >= watch.high_watermark
            or watch.ra_bytes >= READ_AHEAD_MAX_BYTES - READ_AHEAD_BYTES
            or ReadAheadHeld.bytes >= READ_AHEAD_TOTAL_BYTES
        ):
            return
        offset, ahead = sp.next_fetch_offset(), 0
        for batch, data in reversed(watch.ra_batches):
            if batch.last_offset < offset or ahead >= READ_AHEAD_BYTES:
                break
            ahead += len(data)
        if ahead >= READ_AHEAD_BYTES:
            return
        if self._background is None:
            return  # not serving yet
        watch.ra_pending = trio.Event()
        self._background.start_soon(self._read_ahead, sp, watch, source)

    async def _read_ahead(
        self, sp: SharePartition, watch: PartitionWatch, source: tuple[int, str, int, int]
    ) -> None:
        """Extend the read-ahead window by one upstream Fetch; ``source`` is the leader,
        topic name, partition and isolation level."""
        leader, name, partition, isolation = source
        start, generation = watch.ra_end, self.log_generation
        try:
            bc = await self.upstream.pooled(self._conns, (leader, partition % 4), leader)
            self.fetch_counts["read_ahead_fetches"] += 1
            resp = await self.upstream.fetch(
                bc, [(name, partition, start, READ_AHEAD_BYTES)], 1, isolation
            )
            p = first_partition(resp)
            if p is None or p.error_code:
                return  # the next fetch on demand sees the error and deals with it
            watch.high_watermark = int(p.high_watermark)
            if (
                watch.ra_owner is sp
                and watch.ra_isolation == isolation
                and watch.ra_end == start
                and generation == self.log_generation
            ):
                watch.extend(log_batches(p, isolation))
        except UpstreamError as e:
            log.info("read-ahead of %s-%s at %d failed: %s", name, partition, start, e)
        except Exception:  # it runs in the proxy's own nursery: never fatal
            # Read-ahead only saves round trips; the fetch on demand reads the same records
            # and reports any error to its client. A bug here must not stop the proxy.
            log.exception("read-ahead of %s-%s at %d failed", name, partition, start)
            watch.forget_read_ahead()
        finally:
            done, watch.ra_pending = watch.ra_pending, None
            if done is not None:
                done.set()

    def log_deleted(self) -> None:
        """Records were deleted (a DeleteRecords went through): read-ahead may hold records
        below the new log start, which must not be handed out."""
        self.log_generation += 1
        self.forget_all()

    def forget_all(self) -> None:
        for watch in self.watches.values():
            watch.forget_read_ahead()
