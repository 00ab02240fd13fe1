"""The upstream log as the share APIs read it: the proxy's own Fetch and ListOffsets requests,
and the record batches of a Fetch answer as the core's ``LogRead`` results.

The decisions (where to read, what an out-of-range answer means) are the core's
(``sharegroup.core``); this module only turns them into requests and answers into values.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kafka.record.default_records import DefaultRecordBase

from model import ErrorCode, LogBatch
from model.config import parse_by_duration_ms
from proxy import wire
from proxy.server import Proxy
from proxy.upstream import BrokerConnection, UpstreamError
from sharegroup.core import Batches, LogRead, NoAnswer, OutOfRange, ReadFailed, ReadResult

log = logging.getLogger("sharegroup.shares")

_HEADER = DefaultRecordBase.HEADER_STRUCT


@dataclass(frozen=True, slots=True)
class UpstreamBatches(Batches[memoryview]):
    """Batches of an upstream Fetch, with the DeleteRecords count when it was sent (a window
    kept from a Fetch older than a DeleteRecords could hold deleted records)."""

    generation: int = 0


class UpstreamLog:
    """Reads of the upstream cluster's log on the proxy's own connections."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy

    async def pooled(
        self, pool: dict[tuple[int, int], BrokerConnection], key: tuple[int, int], node_id: int
    ) -> BrokerConnection:
        """The connection of ``pool`` under ``key`` to broker ``node_id``, opened if needed."""
        bc = pool.get(key)
        if bc is None or bc.closed:
            bc = await self.proxy.cluster.open_connection(node_id)
            pool[key] = bc
        return bc

    async def read(
        self, bc: BrokerConnection, read: LogRead, generation: int
    ) -> ReadResult[memoryview]:
        """One Fetch for a LogRead on ``bc``; ``generation`` marks the batches (see
        ``ReadAheadFetcher.log_deleted``)."""
        try:
            resp = await self.fetch(
                bc, [(read.topic, read.key[2], read.offset, read.max_bytes)], 1, read.isolation
            )
        except UpstreamError as e:
            log.warning("fetch %s-%s failed: %s", read.topic, read.key[2], e)
            return ReadFailed(ErrorCode.NOT_LEADER_OR_FOLLOWER, str(e))
        p = first_partition(resp)
        if p is None:
            return NoAnswer()
        if p.error_code == 1:  # OFFSET_OUT_OF_RANGE: the log start moved past us
            return OutOfRange(int(getattr(p, "log_start_offset", -1)), int(p.high_watermark))
        if p.error_code:
            return ReadFailed(int(p.error_code), "upstream fetch error")
        return UpstreamBatches(
            tuple(log_batches(p, read.isolation)), int(p.high_watermark), generation
        )

    async def start_offset(self, topic: str, partition: int, reset: str) -> int:
        leader = self.proxy.cluster.leader_of(topic, partition)
        conn = await self.proxy.cluster.connection(leader)
        if reset.startswith("by_duration:"):
            wall_ms = int(time.time() * 1000)  # record timestamps are wall-clock time
            ts = wall_ms - parse_by_duration_ms(reset.removeprefix("by_duration:"))
            return await self.offset_for_timestamp(conn, topic, partition, ts)
        # Log start and high watermark from a Fetch answer: correct on every broker (Tansu's
        # ListOffsets(LATEST) is not, docs/brokers.md).
        if reset == "earliest":
            return await self.log_start(conn, topic, partition)
        part = await self.fetch_one(conn, topic, partition, 0, max_bytes=1, max_wait_ms=1)
        return int(part.high_watermark)

    async def log_start(self, conn: BrokerConnection, topic: str, partition: int) -> int:
        """The partition's log start offset. A Fetch at offset 0 tells it while 0 is still in the
        log; once the log start has moved, Kafka answers OFFSET_OUT_OF_RANGE with log start -1,
        so ListOffsets(EARLIEST) is asked then."""
        part = await self.fetch_one(conn, topic, partition, 0, max_bytes=1, max_wait_ms=1)
        start = int(getattr(part, "log_start_offset", -1))
        if part.error_code == 0 and start >= 0:
            return start
        return max(await self.offset_for_timestamp(conn, topic, partition, -2), 0)

    async def offset_for_timestamp(
        self, conn: BrokerConnection, topic: str, partition: int, ts: int
    ) -> int:
        version = conn.version_for(wire.LIST_OFFSETS, 7)
        req_cls = wire.request_class(wire.LIST_OFFSETS)
        req = req_cls(
            version=version,
            replica_id=-1,
            isolation_level=0,
            topics=[
                req_cls.ListOffsetsTopic(
                    name=topic,
                    partitions=[
                        req_cls.ListOffsetsTopic.ListOffsetsPartition(
                            partition_index=partition,
                            current_leader_epoch=-1,
                            timestamp=ts,
                            max_num_offsets=1,
                        )
                    ],
                )
            ],
        )
        resp = await conn.request(req, version)
        p = resp.topics[0].partitions[0]
        if p.error_code:
            raise UpstreamError(f"ListOffsets {topic}-{partition}: error {p.error_code}")
        if p.offset < 0:  # no record that new: start at the end
            conn_part = await self.fetch_one(conn, topic, partition, 0, max_bytes=1, max_wait_ms=1)
            return int(conn_part.high_watermark)
        return int(p.offset)

    async def fetch_one(
        self,
        conn: BrokerConnection,
        topic: str,
        partition: int,
        offset: int,
        *,
        max_bytes: int,
        max_wait_ms: int,
    ) -> Any:
        resp = await self.fetch(conn, [(topic, partition, offset, max_bytes)], max_wait_ms, 0)
        for t in resp.responses:
            for p in t.partitions:
                if p.error_code not in (0, 1):
                    raise UpstreamError(f"Fetch {topic}-{partition}: error {p.error_code}")
                return p
        raise UpstreamError(f"Fetch {topic}-{partition}: empty answer")

    async def fetch(
        self,
        conn: BrokerConnection,
        parts: Sequence[tuple[str, int, int, int]],
        max_wait_ms: int,
        isolation_level: int,
        min_bytes: int = 1,
    ) -> Any:
        version = conn.version_for(wire.FETCH, 12)
        req = wire.fetch_request(
            version,
            parts,
            max_wait_ms=max(1, max_wait_ms),  # Tansu answers nothing at all to max_wait_ms=0
            min_bytes=min_bytes,
            isolation_level=isolation_level,
        )
        return await conn.request(req, version, timeout_s=max_wait_ms / 1000 + 30)


def first_partition(resp: Any) -> Any:
    """The one partition of a Fetch answer for one partition, or None when it has none."""
    return (
        resp.responses[0].partitions[0] if resp.responses and resp.responses[0].partitions else None
    )


def log_batches(p: Any, isolation: int) -> list[tuple[LogBatch, memoryview]]:
    """The whole record batches of an upstream Fetch answer's partition, each with its bytes
    (slices of the answer, not copies) and whether read_committed skips it."""
    records = p.records if isinstance(p.records, (bytes, bytearray, memoryview)) else b""
    raw = records if isinstance(records, bytes) else bytes(records)
    spans = wire.scan_batches(raw)
    aborted = aborted_batches(p, spans) if isolation else set()
    view = memoryview(raw)
    return [
        (LogBatch(first, last, i in aborted), view[start:end])
        for i, (start, end, first, last, _control) in enumerate(spans)
    ]


def aborted_batches(p: Any, batches: Sequence[tuple[int, int, int, int, bool]]) -> set[int]:
    """Indexes of data batches of aborted transactions (read_committed, as a Kafka consumer skips them).

    As a Kafka consumer does: a producer's transaction counts as aborted from the first offset
    the fetch answer lists for it until that producer's next control batch (the abort marker)."""
    listed = sorted(
        (int(a.first_offset), int(a.producer_id))
        for a in (getattr(p, "aborted_transactions", None) or [])
    )
    if not listed:
        return set()
    records = p.records
    active: set[int] = set()
    out: set[int] = set()
    cursor = 0
    for i, (start, _end, first, _last, control) in enumerate(batches):
        while cursor < len(listed) and listed[cursor][0] <= first:
            active.add(listed[cursor][1])
            cursor += 1
        header = _HEADER.unpack_from(records, start)
        producer_id, attributes = header[9], header[5]
        if control:
            active.discard(producer_id)
        elif attributes & 0x10 and producer_id in active:
            out.add(i)
    return out
