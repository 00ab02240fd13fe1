"""The share-group APIs, answered by the proxy: the Trio driver of ``sharegroup.engine``.

ShareGroupHeartbeat and ShareGroupDescribe go to the engine's groups. ShareFetch reads record
batches from the upstream partition leaders with the proxy's own Fetch requests, lets the model
decide what the member acquires, and returns the upstream batches untouched with the
AcquiredRecords ranges. ShareAcknowledge (and acknowledgements piggy-backed on ShareFetch) go to
the model per partition, all or nothing. Lock expiry and member session timeouts run on one
timer task that sleeps until the engine's next deadline.

Long polling: a ShareFetch that acquires nothing waits, up to MaxWaitMs, for new records in the
log (an upstream Fetch that itself long-polls) or for records of its partitions becoming
available again (released, expired, acknowledged), then tries again.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from uuid import UUID

import trio
from kafka.record.default_records import DefaultRecordBase

from model import (
    AckBatch,
    AcquireMode,
    BrokerConfig,
    ConfigError,
    ErrorCode,
    LogBatch,
    ShareApiError,
    SharePartition,
    ack_shape_error,
)
from proxy import messages, wire
from proxy.state_store import StateStore, StateWriteError
from proxy.upstream import BrokerConnection, UpstreamError
from sharegroup.engine import Change, PartitionKey, ShareEngine
from sharegroup.persist.records import GroupConfigs, Record, Snapshot, TopicIdAssigned, Update

if TYPE_CHECKING:
    from proxy.connection import ClientConnection
    from proxy.server import Proxy

log = logging.getLogger("sharegroup.shares")

SHARE_API_VERSIONS = {
    76: (1, 1),  # ShareGroupHeartbeat
    77: (1, 1),  # ShareGroupDescribe
    78: (1, 2),  # ShareFetch
    79: (1, 2),  # ShareAcknowledge
    90: (0, 1),  # DescribeShareGroupOffsets
    91: (0, 0),  # AlterShareGroupOffsets
    92: (0, 0),  # DeleteShareGroupOffsets
}
_HEADER = DefaultRecordBase.HEADER_STRUCT
PARTITION_FETCH_BYTES = 1 << 20
# Read-ahead (ShareService._read_ahead): how much is fetched ahead of the consumers of a share
# partition in one upstream request, and how much of the log a share partition keeps at most.
READ_AHEAD_BYTES = 2 << 20
READ_AHEAD_MAX_BYTES = 8 << 20
# No new read-ahead starts while the windows of all share partitions together hold this much.
READ_AHEAD_TOTAL_BYTES = 256 << 20


class ReadAheadHeld:
    """Bytes held by every read-ahead window in this process."""

    bytes = 0


def now_ms() -> int:
    return int(trio.current_time() * 1000)


def scan_batches(records: bytes | None) -> list[tuple[int, int, int, int, bool]]:
    """(start, end, first offset, last offset, is control) of every whole v2 record batch."""
    out: list[tuple[int, int, int, int, bool]] = []
    if not records:
        return out
    view = memoryview(records)
    pos = 0
    size = len(view)
    while pos + _HEADER.size <= size:
        (base, length, _epoch, magic, _crc, attributes, last_delta, *_rest) = _HEADER.unpack_from(
            view, pos
        )
        end = pos + 12 + length
        if end > size or length < _HEADER.size - 12:
            break  # a partial batch at the end of the fetch
        if magic != 2:
            break  # legacy message sets are not supported for share fetches
        out.append((pos, end, base, base + last_delta, bool(attributes & 0x20)))
        pos = end
    return out


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


class ShareService:
    api_keys = SHARE_API_VERSIONS

    def __init__(
        self, proxy: Proxy, broker_config: BrokerConfig, store: StateStore | None = None
    ) -> None:
        self.proxy = proxy
        self.engine = ShareEngine(broker_config)
        self.store = store
        self.watches: dict[PartitionKey, PartitionWatch] = {}
        self._timer_wakeup = trio.Event()
        self._fetch_conns: dict[tuple[int, int], BrokerConnection] = {}
        self._ra_conns: dict[tuple[int, int], BrokerConnection] = {}
        self.log_generation = 0  # counts DeleteRecords seen: read-ahead from before is stale
        # Where acquisitions got their records: an upstream fetch on demand, or the read-ahead
        # (and how many read-ahead fetches were made).
        self.fetch_counts = {"on_demand": 0, "from_read_ahead": 0, "read_ahead_fetches": 0}
        self.on_change: list[Any] = []  # observers of every change (tests, reports)
        self.updates_per_snapshot = 500
        self.offsets: Any = None  # proxy.share_offsets.ShareOffsets, set by attach()

    # ------------------------------------------------------------------ durability
    async def start(self, nursery: trio.Nursery) -> None:
        """Recover from the state topic (fencing any older instance) before serving."""
        if self.store is None:
            return
        replay = await self.store.start(nursery)
        for group_id, configs in replay.group_configs.items():
            try:
                self.engine.set_group_configs(group_id, dict(configs))
            except ConfigError as e:
                log.warning("ignoring stored configs of group %s: %s", group_id, e)
        self.proxy.cluster.restore_topic_ids(replay.topic_ids)
        # Fresh snapshots of everything, then drop what they supersede (see state_store).
        now = int(time.time() * 1000)
        snapshots: list[Record] = [
            Snapshot(
                key,
                d.snapshot_epoch + 1,
                d.state_epoch,
                d.leader_epoch,
                d.start_offset,
                d.create_timestamp,
                now,
                d.batches(),
            )
            for key, d in replay.partitions.items()
        ]
        snapshots += [GroupConfigs(g, dict(c)) for g, c in replay.group_configs.items()]
        snapshots += [TopicIdAssigned(name, tid) for name, tid in replay.topic_ids.items()]
        try:
            await self.store.prune(snapshots)
        except StateWriteError as e:
            log.warning("state topic pruning skipped: %s", e)
        self.proxy.cluster.on_topic_id_assigned = self._topic_id_assigned

    def _topic_id_assigned(self, name: str, topic_id: UUID) -> None:
        if self.store is not None:
            self.store.write_nowait([TopicIdAssigned(name, topic_id)])

    def _records(self, changes: Sequence[Change]) -> list[Record]:
        assert self.store is not None
        durable = self.store.replay.partitions
        out: list[Record] = []
        for change in changes:
            known = durable.get(change.key)
            sp = self.engine.share_partition(change.key)
            if known is None or (
                sp is not None and known.updates_since_snapshot + 1 >= self.updates_per_snapshot
            ):
                if sp is None:
                    continue
                epoch = 0 if known is None else known.snapshot_epoch + 1
                state_epoch = 0 if known is None else known.state_epoch
                now = int(time.time() * 1000)
                out.append(
                    Snapshot(
                        change.key,
                        epoch,
                        state_epoch,
                        0,
                        sp.start_offset,
                        now,
                        now,
                        sp.state_batches(),
                    )
                )
            elif not change.delta.empty or change.delta.start_offset != known.start_offset:
                out.append(
                    Update(
                        change.key,
                        known.snapshot_epoch,
                        0,
                        change.delta.start_offset,
                        change.delta.batches,
                    )
                )
        return out

    async def _persist(self, changes: Sequence[Change]) -> dict[PartitionKey, ErrorCode]:
        """Write changes and wait until they are durable. On failure the partitions go back
        to their durable state (the client is told its acknowledgement failed).

        No lock is held: acknowledgements of one partition are applied and written in the
        same order, each without a checkpoint in between, and are confirmed in that order.
        A write refused before it leaves fails at once, before any other acknowledgement can
        be applied, so rebuilding the partition throws nothing else away; any later failure
        stops this instance's share-group service as a whole (StateStore._fail)."""
        if self.store is None or not changes:
            return {}
        try:
            await self.store.write(self._records(changes))
        except StateWriteError as e:
            code = ErrorCode.NOT_LEADER_OR_FOLLOWER if e.fenced else ErrorCode.UNKNOWN_SERVER_ERROR
            failed = {c.key: code for c in changes}
            for key in failed:
                self._reload(key)
            return failed
        return {}

    def _persist_later(self, changes: Sequence[Change]) -> None:
        if self.store is not None and changes:
            self.store.write_nowait(self._records(changes))

    def _reload(self, key: PartitionKey) -> None:
        """Throw away the in-memory state of a share partition and rebuild it from the store."""
        assert self.store is not None
        durable = self.store.replay.partitions.get(key)
        if durable is None or self.store.fenced:
            self.engine.partitions.pop(key, None)
        else:
            self.engine.add_partition(
                key, SharePartition.from_state(durable.start_offset, durable.batches())
            )
        watch = self.watches.get(key)
        if watch is not None:
            watch.notify()

    @property
    def fenced(self) -> bool:
        return self.store is not None and self.store.fenced

    # ------------------------------------------------------------------ plumbing
    async def run_timers(self) -> None:
        """Runs while the proxy runs; when it stops, the read-ahead windows are let go."""
        try:
            while True:
                deadline = self.engine.next_deadline_ms()
                now = now_ms()
                wait_s = 1.0 if deadline is None else max(0.0, (deadline - now) / 1000)
                with trio.move_on_after(min(wait_s, 1.0)):
                    await self._timer_wakeup.wait()
                self._timer_wakeup = trio.Event()
                changes, fenced = self.engine.tick(now_ms(), self._partition_counts())
                for member in fenced:
                    log.info("share group member %s fenced: session timeout", member)
                self._publish(changes)
        finally:
            for watch in self.watches.values():
                watch.forget_read_ahead()

    def group_configs_changed(self, group_id: str) -> None:
        """Limits or lock durations changed: let waiting fetches look again."""
        for key, watch in self.watches.items():
            if key[0] == group_id:
                watch.notify()
        self._kick_timers()

    def _kick_timers(self) -> None:
        self._timer_wakeup.set()

    def _publish(self, changes: Sequence[Change], *, persist: bool = True) -> None:
        if persist:
            self._persist_later(changes)
        for change in changes:
            watch = self.watches.get(change.key)
            if watch is not None:
                watch.notify()
            for callback in self.on_change:
                callback(change)

    def _partition_counts(self) -> dict[str, int]:
        return {name: len(t.partitions) for name, t in self.proxy.cluster.topics.items()}

    async def connection_closed(self, conn: ClientConnection) -> None:
        self._publish(self.engine.connection_closed(conn.node_id, conn.id))
        for key in [k for k in self._fetch_conns if k[0] == conn.id]:
            await self._fetch_conns.pop(key).aclose()

    async def handle(self, conn: ClientConnection, request: Any, head: wire.RequestHead) -> Any:
        if head.api_key == 76:
            return await self.heartbeat(conn, request, head)
        if head.api_key == 77:
            return self.describe(request, head)
        if head.api_key == 78:
            return await self.share_fetch(conn, request, head)
        if head.api_key == 79:
            return await self.share_acknowledge(conn, request, head)
        return await self.offsets.handle(conn, request, head)

    # ------------------------------------------------------------------ membership
    async def _ensure_topics(self, names: Sequence[str]) -> None:
        missing = [n for n in names if n not in self.proxy.cluster.topics]
        if missing:
            try:
                await self.proxy.cluster.refresh(missing)
            except UpstreamError as e:
                log.warning("metadata refresh for %s failed: %s", missing, e)

    async def heartbeat(self, conn: ClientConnection, req: Any, head: wire.RequestHead) -> Any:
        resp_cls = messages.ShareGroupHeartbeatResponse
        if self.fenced:
            return resp_cls(
                version=head.api_version,
                throttle_time_ms=0,
                error_code=int(ErrorCode.NOT_COORDINATOR),
                error_message="this proxy instance was fenced by a newer one",
                member_id=None,
                member_epoch=0,
                heartbeat_interval_ms=0,
                assignment=None,
            )
        group = self.engine.group(req.group_id)
        topics: list[str] = list(req.subscribed_topic_names or [])
        if group is not None:
            topics += list(group.group.subscribed_topics())
        await self._ensure_topics(sorted(set(topics)))
        try:
            result = self.engine.heartbeat(
                req.group_id,
                req.member_id,
                req.member_epoch,
                now_ms=now_ms(),
                partition_counts=self._partition_counts(),
                subscribed_topic_names=req.subscribed_topic_names,
                rack_id=req.rack_id,
                client_id=conn.client_id,
                client_host=conn.peer.rsplit(":", 1)[0],
            )
        except ShareApiError as e:
            return resp_cls(
                version=head.api_version,
                throttle_time_ms=0,
                error_code=int(e.code),
                error_message=e.message,
                member_id=None,
                member_epoch=0,
                heartbeat_interval_ms=0,
                assignment=None,
            )
        self._kick_timers()
        assignment = None
        if result.assignment is not None:
            await self._initialize(req.group_id, result.assignment)
            cluster = self.proxy.cluster
            assignment = resp_cls.Assignment(
                topic_partitions=[
                    resp_cls.Assignment.TopicPartitions(
                        topic_id=cluster.topics[name].topic_id, partitions=list(parts)
                    )
                    for name, parts in sorted(result.assignment.items())
                    if name in cluster.topics
                ]
            )
        return resp_cls(
            version=head.api_version,
            throttle_time_ms=0,
            error_code=0,
            error_message=None,
            member_id=result.member_id,
            member_epoch=result.member_epoch,
            heartbeat_interval_ms=result.heartbeat_interval_ms,
            assignment=assignment,
        )

    async def _initialize(self, group_id: str, assignment: dict[str, tuple[int, ...]]) -> None:
        """Create the share partitions of newly assigned topic-partitions, at the start offset
        ``share.auto.offset.reset`` gives (digest 3.3): before the member can fetch them."""
        entry = self.engine.group(group_id)
        assert entry is not None
        cluster = self.proxy.cluster
        todo: list[tuple[PartitionKey, str, bool]] = []
        for name, parts in assignment.items():
            info = cluster.topics.get(name)
            if info is None:
                continue
            known_topic = any(t == info.topic_id for t, _ in entry.partitions)
            for p in parts:
                key = (group_id, info.topic_id, p)
                if self.engine.share_partition(key) is None:
                    todo.append((key, name, known_topic))
        if not todo:
            return
        async with trio.open_nursery() as nursery:
            for key, name, known_topic in todo:
                nursery.start_soon(self._init_partition, key, name, known_topic)

    async def _init_partition(self, key: PartitionKey, topic: str, known_topic: bool) -> None:
        watch = self.watches.setdefault(key, PartitionWatch())
        async with watch.lock:
            if self.engine.share_partition(key) is not None:
                return
            if self.fenced:
                return
            durable = self.store.replay.partitions.get(key) if self.store is not None else None
            if durable is not None:
                self.engine.add_partition(
                    key, SharePartition.from_state(durable.start_offset, durable.batches())
                )
                log.info(
                    "share partition %s %s-%s recovered at %d",
                    key[0],
                    topic,
                    key[2],
                    durable.start_offset,
                )
                return
            config = self.engine.group_config(key[0])
            # New partitions of a topic the group already consumes start at 0 so that nothing
            # produced before they were initialized is lost (digest 3.3, Appendix A.10).
            reset = "earliest" if known_topic else config.auto_offset_reset
            try:
                start = await self._start_offset(topic, key[2], reset)
            except UpstreamError as e:
                log.warning("cannot initialize share partition %s-%s: %s", topic, key[2], e)
                return
            sp = SharePartition(start)
            if self.store is not None:
                now = int(time.time() * 1000)
                try:
                    await self.store.write([Snapshot(key, 0, 0, 0, start, now, now, ())])
                except StateWriteError as e:
                    log.warning("cannot initialize share partition %s-%s: %s", topic, key[2], e)
                    return
            self.engine.add_partition(key, sp)
            log.info(
                "share partition %s %s-%s starts at %d (%s)", key[0], topic, key[2], start, reset
            )

    async def _start_offset(self, topic: str, partition: int, reset: str) -> int:
        leader = self.proxy.cluster.leader_of(topic, partition)
        conn = await self.proxy.cluster.connection(leader)
        if reset.startswith("by_duration:"):
            from model.config import parse_by_duration_ms

            wall_ms = int(time.time() * 1000)  # record timestamps are wall-clock time
            ts = wall_ms - parse_by_duration_ms(reset.removeprefix("by_duration:"))
            return await self._offset_for_timestamp(conn, topic, partition, ts)
        # Log start and high watermark from a Fetch answer: correct on every broker (Tansu's
        # ListOffsets(LATEST) is not, see env-notes).
        if reset == "earliest":
            return await self._log_start(conn, topic, partition)
        part = await self._fetch_one(conn, topic, partition, 0, max_bytes=1, max_wait_ms=1)
        return int(part.high_watermark)

    async def _log_start(self, conn: BrokerConnection, topic: str, partition: int) -> int:
        """The partition's log start offset. A Fetch at offset 0 tells it while 0 is still in the
        log; once the log start has moved, Kafka answers OFFSET_OUT_OF_RANGE with log start -1,
        so ListOffsets(EARLIEST) is asked then."""
        part = await self._fetch_one(conn, topic, partition, 0, max_bytes=1, max_wait_ms=1)
        start = int(getattr(part, "log_start_offset", -1))
        if part.error_code == 0 and start >= 0:
            return start
        return max(await self._offset_for_timestamp(conn, topic, partition, -2), 0)

    async def _offset_for_timestamp(
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
            conn_part = await self._fetch_one(conn, topic, partition, 0, max_bytes=1, max_wait_ms=1)
            return int(conn_part.high_watermark)
        return int(p.offset)

    async def _fetch_one(
        self,
        conn: BrokerConnection,
        topic: str,
        partition: int,
        offset: int,
        *,
        max_bytes: int,
        max_wait_ms: int,
    ) -> Any:
        resp = await self._upstream_fetch(
            conn, [(topic, partition, offset, max_bytes)], max_wait_ms, 0
        )
        for t in resp.responses:
            for p in t.partitions:
                if p.error_code not in (0, 1):
                    raise UpstreamError(f"Fetch {topic}-{partition}: error {p.error_code}")
                return p
        raise UpstreamError(f"Fetch {topic}-{partition}: empty answer")

    async def _upstream_fetch(
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

    def describe(self, req: Any, head: wire.RequestHead) -> Any:
        resp_cls = messages.ShareGroupDescribeResponse
        group_cls = resp_cls.DescribedGroup
        member_cls = group_cls.Member
        cluster = self.proxy.cluster
        groups = []
        for group_id in req.group_ids:
            entry = self.engine.group(group_id)
            if entry is None:
                groups.append(
                    group_cls(
                        error_code=int(ErrorCode.GROUP_ID_NOT_FOUND),
                        error_message=f"group {group_id} is not a share group",
                        group_id=group_id,
                        group_state="Dead",
                        group_epoch=-1,
                        assignment_epoch=-1,
                        assignor_name="",
                        members=[],
                        authorized_operations=-(2**31),
                    )
                )
                continue
            g = entry.group
            members = []
            for m in g.members.values():
                parts = [
                    member_cls.Assignment.TopicPartitions(
                        topic_id=cluster.topics[name].topic_id, topic_name=name, partitions=list(ps)
                    )
                    for name, ps in sorted(m.assignment.items())
                    if name in cluster.topics
                ]
                members.append(
                    member_cls(
                        member_id=m.member_id,
                        rack_id=m.rack_id,
                        member_epoch=m.member_epoch,
                        client_id=m.client_id,
                        client_host=m.client_host,
                        subscribed_topic_names=list(m.subscribed_topic_names),
                        assignment=member_cls.Assignment(topic_partitions=parts),
                    )
                )
            groups.append(
                group_cls(
                    error_code=0,
                    error_message=None,
                    group_id=group_id,
                    group_state=g.state,
                    group_epoch=g.group_epoch,
                    assignment_epoch=g.assignment_epoch,
                    assignor_name="simple",
                    members=members,
                    authorized_operations=-(2**31),
                )
            )
        return resp_cls(version=head.api_version, throttle_time_ms=0, groups=groups)

    # ------------------------------------------------------------------ acknowledgements
    def _ack_batches(self, batches: Sequence[Any]) -> list[AckBatch]:
        return [
            AckBatch(b.first_offset, b.last_offset, tuple(b.acknowledge_types)) for b in batches
        ]

    def _apply_acks(
        self,
        group_id: str,
        member_id: str,
        topic_id: UUID,
        partition: int,
        batches: Sequence[Any],
        now: int,
        renew: bool,
    ) -> tuple[ErrorCode, str | None, Change | None]:
        key = (group_id, topic_id, partition)
        if not renew and any(4 in b.acknowledge_types for b in batches):
            # Kafka: acknowledge type 4 (RENEW) only in a request with IsRenewAck set.
            return ErrorCode.INVALID_REQUEST, "RENEW acknowledgement without IsRenewAck", None
        if self.fenced:
            return ErrorCode.NOT_LEADER_OR_FOLLOWER, "this proxy instance was fenced", None
        if topic_id not in self.proxy.cluster.topic_names:
            return ErrorCode.UNKNOWN_TOPIC_ID, f"unknown topic id {topic_id}", None
        try:
            change = self.engine.acknowledge(key, member_id, self._ack_batches(batches), now)
        except ShareApiError as e:
            log.info(
                "acknowledgement of %s for %s-%d refused: %s (batches %s)",
                member_id,
                self.proxy.cluster.topic_names.get(topic_id, topic_id),
                partition,
                e,
                [(b.first_offset, b.last_offset, list(b.acknowledge_types)) for b in batches],
            )
            return e.code, e.message, None
        self._publish([change], persist=False)
        self._kick_timers()
        return ErrorCode.NONE, None, change

    async def share_acknowledge(
        self, conn: ClientConnection, req: Any, head: wire.RequestHead
    ) -> Any:
        resp_cls = messages.ShareAcknowledgeResponse
        topic_cls = resp_cls.ShareAcknowledgeTopicResponse
        part_cls = topic_cls.PartitionData
        lock_ms = self.engine.group_config(req.group_id or "").record_lock_duration_ms

        def top_error(code: ErrorCode, message: str) -> Any:
            return resp_cls(
                version=head.api_version,
                throttle_time_ms=0,
                error_code=int(code),
                error_message=message,
                acquisition_lock_timeout_ms=0,
                responses=[],
                node_endpoints=[],
            )

        if req.group_id is None:
            return top_error(ErrorCode.INVALID_REQUEST, "group id must not be null")
        if getattr(req, "is_renew_ack", False) is None:
            return top_error(ErrorCode.INVALID_REQUEST, "bad IsRenewAck")
        renew = head.api_version >= 2 and bool(req.is_renew_ack)
        cache = self.engine.session_cache(conn.node_id)
        try:
            ctx = cache.acknowledge_context(req.group_id, req.member_id, req.share_session_epoch)
        except ShareApiError as e:
            return top_error(e.code, e.message)
        now = now_ms()
        outcomes: list[tuple[UUID, int, ErrorCode, str | None]] = []
        changes: list[Change] = []
        for t in req.topics:
            for p in t.partitions:
                code, message, change = self._apply_acks(
                    req.group_id,
                    req.member_id,
                    t.topic_id,
                    p.partition_index,
                    p.acknowledgement_batches,
                    now,
                    renew,
                )
                outcomes.append((t.topic_id, p.partition_index, code, message))
                if change is not None:
                    changes.append(change)
        # The answer goes out only once the acknowledgements are durable.
        failed = await self._persist(changes)
        by_topic: dict[UUID, list[Any]] = {}
        for topic_id, partition, code, message in outcomes:
            lost = failed.get((req.group_id, topic_id, partition))
            if lost is not None:
                code, message = lost, "the acknowledgement could not be persisted"
            by_topic.setdefault(topic_id, []).append(
                part_cls(
                    partition_index=partition,
                    error_code=int(code),
                    error_message=message,
                    current_leader=part_cls.LeaderIdAndEpoch(leader_id=-1, leader_epoch=-1),
                )
            )
        topics = [topic_cls(topic_id=t, partitions=ps) for t, ps in by_topic.items()]
        if ctx.final:
            self._publish(self.engine.close_session(conn.node_id, req.group_id, req.member_id))
        return resp_cls(
            version=head.api_version,
            throttle_time_ms=0,
            error_code=0,
            error_message=None,
            acquisition_lock_timeout_ms=lock_ms,
            responses=topics,
            node_endpoints=[],
        )

    # ------------------------------------------------------------------ fetch
    async def share_fetch(self, conn: ClientConnection, req: Any, head: wire.RequestHead) -> Any:
        resp_cls = messages.ShareFetchResponse
        topic_cls = resp_cls.ShareFetchableTopicResponse
        part_cls = topic_cls.PartitionData
        version = head.api_version

        def top_error(code: ErrorCode, message: str) -> Any:
            return resp_cls(
                version=version,
                throttle_time_ms=0,
                error_code=int(code),
                error_message=message,
                acquisition_lock_timeout_ms=0,
                responses=[],
                node_endpoints=[],
            )

        if req.group_id is None:
            return top_error(ErrorCode.INVALID_REQUEST, "group id must not be null")
        renew = version >= 2 and bool(req.is_renew_ack)
        if renew and (req.max_bytes or req.min_bytes or req.max_records or req.max_wait_ms):
            return top_error(
                ErrorCode.INVALID_REQUEST, "a renew-only ShareFetch must have zero fetch parameters"
            )
        add: list[tuple[UUID, int]] = []
        acks: list[tuple[UUID, int, Sequence[Any]]] = []
        for t in req.topics:
            for p in t.partitions:
                add.append((t.topic_id, p.partition_index))
                if p.acknowledgement_batches:
                    acks.append((t.topic_id, p.partition_index, p.acknowledgement_batches))
        forget = [(t.topic_id, p) for t in req.forgotten_topics_data for p in t.partitions]
        cache = self.engine.session_cache(conn.node_id)
        try:
            ctx = cache.fetch_context(
                req.group_id,
                req.member_id,
                req.share_session_epoch,
                connection_id=conn.id,
                add=add,
                forget=forget,
                has_acknowledgements=bool(acks),
            )
        except ShareApiError as e:
            if e.code == ErrorCode.SHARE_SESSION_LIMIT_REACHED:
                await trio.sleep(req.max_wait_ms / 1000)
            return top_error(e.code, e.message)
        group_id, member_id = req.group_id, req.member_id
        config = self.engine.group_config(group_id)
        now = now_ms()
        results: dict[tuple[UUID, int], dict[str, Any]] = {}
        changes: list[Change] = []
        for topic_id, partition, batches in acks:
            code, message, change = self._apply_acks(
                group_id, member_id, topic_id, partition, batches, now, renew
            )
            results[(topic_id, partition)] = {
                "acknowledge_error_code": int(code),
                "acknowledge_error_message": message,
            }
            if change is not None:
                changes.append(change)
        if any(
            ack_shape_error(self._ack_batches(batches), renew=renew) is None
            for _, _, batches in acks
        ):
            # Kafka takes the acknowledgements of every partition in Topics once one carries
            # well-formed ones: a partition without batches gets an acknowledgement result
            # too (NONE), and so is listed.
            for tp in add:
                results.setdefault(tp, {"acknowledge_error_code": 0})
        failed: dict[PartitionKey, ErrorCode] = {}
        fetched: dict[tuple[UUID, int], dict[str, Any]] = {}

        async def persist() -> None:
            failed.update(await self._persist(changes))

        async def fetch() -> None:
            parts = list(ctx.session.partitions)
            fetched.update(
                await self._fetch_records(conn, group_id, member_id, parts, req, version)
            )

        if ctx.final:
            await persist()
            self._publish(self.engine.close_session(conn.node_id, group_id, member_id))
        elif renew or req.max_records == 0 or req.max_bytes == 0:
            await persist()
        elif not changes:
            await fetch()
        else:
            # The acknowledgements are applied already: records are acquired while their
            # write is out, and the answer goes once both are done (it carries the outcome).
            async with trio.open_nursery() as nursery:
                nursery.start_soon(persist)
                nursery.start_soon(fetch)
        for (_, topic_id, partition), code in failed.items():
            results[(topic_id, partition)] = {
                "acknowledge_error_code": int(code),
                "acknowledge_error_message": "the acknowledgement could not be persisted",
            }
        for tp, data in fetched.items():
            results.setdefault(tp, {}).update(data)
        # Which partitions the answer lists (digest 2.3): all of a new session's; otherwise those
        # with records, errors or acknowledgement results, and the newly added ones (once).
        report: list[Any] = list(ctx.session.partitions) if ctx.full else []
        candidate: Any
        for candidate in [*results, *ctx.added]:
            if candidate not in report:  # once each: a repeat would deliver records twice
                report.append(candidate)
        topics: dict[UUID, list[Any]] = {}
        for tp in report:
            topic_id, partition = tp
            data = results.get(tp, {})
            if not ctx.full and not data and tp not in ctx.added:
                continue
            topics.setdefault(topic_id, []).append(
                part_cls(
                    partition_index=partition,
                    error_code=data.get("error_code", 0),
                    error_message=data.get("error_message"),
                    acknowledge_error_code=data.get("acknowledge_error_code", 0),
                    acknowledge_error_message=data.get("acknowledge_error_message"),
                    current_leader=part_cls.LeaderIdAndEpoch(leader_id=-1, leader_epoch=-1),
                    records=data.get("records", b""),
                    acquired_records=[
                        part_cls.AcquiredRecords(first_offset=a, last_offset=b, delivery_count=c)
                        for a, b, c in data.get("acquired", [])
                    ],
                )
            )
        return resp_cls(
            version=version,
            throttle_time_ms=0,
            error_code=0,
            error_message=None,
            acquisition_lock_timeout_ms=config.record_lock_duration_ms,
            responses=[topic_cls(topic_id=t, partitions=ps) for t, ps in topics.items()],
            node_endpoints=[],
        )

    async def _fetch_conn(
        self, conn: ClientConnection, node_id: int, purpose: int = 0
    ) -> BrokerConnection:
        """A connection of this client's own to the leader: long polls never block others.
        ``purpose`` 0 is for acquiring fetches, 1 for long polls that wait for new records
        (kept apart so that a pending long poll never delays an acquisition)."""
        return await self._pooled_conn(self._fetch_conns, (conn.id, node_id * 2 + purpose), node_id)

    async def _pooled_conn(
        self, pool: dict[tuple[int, int], BrokerConnection], key: tuple[int, int], node_id: int
    ) -> BrokerConnection:
        """The connection of ``pool`` under ``key`` to broker ``node_id``, opened if needed."""
        bc = pool.get(key)
        if bc is None or bc.closed:
            info = self.proxy.cluster.brokers.get(node_id)
            if info is None:
                raise UpstreamError(f"unknown broker {node_id}")
            bc = BrokerConnection(
                info.host, info.port, self.proxy.config.max_frame_bytes, self.proxy.config.upstream
            )
            await bc.start(self.proxy.cluster._nursery)
            pool[key] = bc
        return bc

    async def _fetch_records(
        self,
        conn: ClientConnection,
        group_id: str,
        member_id: str,
        session_parts: Sequence[Any],
        req: Any,
        version: int,
    ) -> dict[tuple[UUID, int], dict[str, Any]]:
        cluster = self.proxy.cluster
        if self.fenced:
            return {
                tuple(tp): {
                    "error_code": int(ErrorCode.NOT_LEADER_OR_FOLLOWER),
                    "error_message": "this proxy instance was fenced by a newer one",
                }
                for tp in session_parts
            }
        config = self.engine.group_config(group_id)
        isolation = 1 if config.isolation_level == "read_committed" else 0
        mode = AcquireMode(req.share_acquire_mode) if version >= 2 else AcquireMode.BATCH_OPTIMIZED
        max_records = req.max_records if req.max_records > 0 else 500
        batch_size = req.batch_size if req.batch_size > 0 else max_records
        deadline = trio.current_time() + max(req.max_wait_ms, 0) / 1000
        results: dict[tuple[UUID, int], dict[str, Any]] = {}
        parts: list[tuple[UUID, int]] = []
        for topic_id, partition in session_parts:
            if topic_id not in cluster.topic_names:
                await self._ensure_topics([])
            name = cluster.topic_names.get(topic_id)
            if name is None:
                results[(topic_id, partition)] = {
                    "error_code": int(ErrorCode.UNKNOWN_TOPIC_ID),
                    "error_message": "unknown topic id",
                }
                continue
            key = (group_id, topic_id, partition)
            if self.engine.share_partition(key) is None:
                entry = self.engine.group(group_id, create=True)
                assert entry is not None
                known = any(t == topic_id for t, _ in entry.partitions)
                await self._init_partition(key, name, known)
            if self.engine.share_partition(key) is None:
                results[(topic_id, partition)] = {
                    "error_code": int(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION),
                    "error_message": "share partition could not be initialized",
                }
                continue
            parts.append((topic_id, partition))
        if not parts:
            return results
        # MaxBytes is split evenly over the partitions (Kafka's UNIFORM strategy), at most
        # 1 MiB each; as in Kafka, a first batch larger than that still comes whole.
        per_partition_bytes = max(1, min(PARTITION_FETCH_BYTES, req.max_bytes // len(parts)))
        # As Kafka does (round robin by session epoch), each request starts at another
        # partition, so that members sharing partitions do not all queue on the first one. A
        # partition another request is fetching (its lock is held) is passed over, and waited
        # for only when no other partition gave records.
        shift = max(req.share_session_epoch, 0) % len(parts)
        parts = parts[shift:] + parts[:shift]
        first_attempt = True
        while True:
            budget = max_records
            acquired_any = False
            waiting_for_data: list[tuple[UUID, int]] = []
            todo, blocking = list(parts), False
            busy: list[tuple[UUID, int]] = []
            while budget > 0 and (todo or (busy and not acquired_any)):
                if not todo:
                    todo, busy, blocking = busy, [], True
                topic_id, partition = todo.pop(0)
                watch = self.watches.setdefault((group_id, topic_id, partition), PartitionWatch())
                if not blocking and watch.lock.locked():
                    busy.append((topic_id, partition))
                    continue
                got = await self._acquire_from(
                    conn,
                    group_id,
                    member_id,
                    topic_id,
                    partition,
                    budget,
                    batch_size,
                    mode,
                    isolation,
                    not first_attempt,
                    per_partition_bytes,
                )
                if got is None:
                    waiting_for_data.append((topic_id, partition))
                    continue
                data, count = got
                if "error_code" in data or count:
                    results[(topic_id, partition)] = data
                if count:
                    acquired_any = True
                    budget -= count
            remaining = deadline - trio.current_time()
            if acquired_any or remaining <= 0:
                return results
            first_attempt = False
            await self._wait_for_records(
                conn, group_id, parts, waiting_for_data, remaining, isolation
            )

    async def _acquire_from(
        self,
        conn: ClientConnection,
        group_id: str,
        member_id: str,
        topic_id: UUID,
        partition: int,
        budget: int,
        batch_size: int,
        mode: AcquireMode,
        isolation: int,
        trust_hwm: bool,
        max_bytes: int = PARTITION_FETCH_BYTES,
    ) -> tuple[dict[str, Any], int] | None:
        """Fetch and acquire from one partition. None when there is nothing new in the log."""
        key = (group_id, topic_id, partition)
        sp = self.engine.share_partition(key)
        assert sp is not None
        watch = self.watches.setdefault(key, PartitionWatch())
        name = self.proxy.cluster.topic_names[topic_id]
        leader = self.proxy.cluster.leader_of(name, partition)
        if leader is None:
            return {
                "error_code": int(ErrorCode.NOT_LEADER_OR_FOLLOWER),
                "error_message": "no leader",
            }, 0
        async with watch.lock:
            now = now_ms()
            expired = sp.expire_locks(now)
            if not expired.empty:
                self._publish([Change(key, expired, "expiry")])
            if not sp.has_available() and sp.in_flight_count >= sp.max_in_flight:
                return {}, 0  # at the in-flight limit: wait for acknowledgements
            fetch_offset = sp.next_fetch_offset()
            batches = watch.cached(sp, isolation, fetch_offset, max_bytes)
            pending = watch.ra_pending
            if (
                batches is None
                and pending is not None
                and watch.ra_owner is sp
                and watch.ra_start <= fetch_offset <= watch.ra_end
            ):
                await pending.wait()  # the read-ahead in flight reads what this needs
                if self.engine.share_partition(key) is not sp:
                    return {}, 0
                fetch_offset = sp.next_fetch_offset()
                batches = watch.cached(sp, isolation, fetch_offset, max_bytes)
            if batches is None:
                if (
                    trust_hwm
                    and watch.high_watermark >= 0
                    and fetch_offset >= watch.high_watermark
                    and not sp.has_available()
                ):
                    return None  # nothing new since we looked a moment ago
                generation = self.log_generation
                try:
                    bc = await self._fetch_conn(conn, leader)
                    resp = await self._upstream_fetch(
                        bc, [(name, partition, fetch_offset, max_bytes)], 1, isolation
                    )
                except UpstreamError as e:
                    log.warning("fetch %s-%s from broker %s failed: %s", name, partition, leader, e)
                    return {
                        "error_code": int(ErrorCode.NOT_LEADER_OR_FOLLOWER),
                        "error_message": str(e),
                    }, 0
                if self.engine.share_partition(key) is not sp:
                    return {}, 0  # rebuilt or reset while the fetch was out: look again later
                p = _first_partition(resp)
                if p is None:
                    return None
                if p.error_code == 1:  # OFFSET_OUT_OF_RANGE: the log start moved past us
                    start = int(getattr(p, "log_start_offset", -1))
                    if start <= sp.start_offset:  # Kafka answers -1 here: ask for it
                        try:
                            conn0 = await self.proxy.cluster.connection(leader)
                            start = await self._log_start(conn0, name, partition)
                        except UpstreamError as e:
                            log.warning("log start of %s-%s: %s", name, partition, e)
                    if start > sp.start_offset:
                        watch.forget_read_ahead()
                        self._publish([Change(key, sp.move_log_start(start), "log-start")])
                        return {}, 0
                    watch.high_watermark = int(p.high_watermark)
                    return None
                if p.error_code:
                    return {
                        "error_code": int(p.error_code),
                        "error_message": "upstream fetch error",
                    }, 0
                watch.high_watermark = int(p.high_watermark)
                batches = _log_batches(p, isolation)
                if not batches:
                    return None
                self.fetch_counts["on_demand"] += 1
                if generation == self.log_generation:
                    watch.keep(sp, isolation, fetch_offset, batches)
            else:
                self.fetch_counts["from_read_ahead"] += 1
            acq = sp.acquire(
                member_id,
                fetch_offset,
                [batch for batch, _ in batches],
                now_ms=now,
                max_records=budget,
                batch_size=batch_size,
                mode=mode,
            )
            watch.trim(sp.start_offset)
            self._maybe_read_ahead(sp, watch, (leader, name, partition, isolation))
        if not acq.delta.empty:
            self._publish([Change(key, acq.delta, "acquire")])
        if not acq.records:
            return {}, 0
        self._kick_timers()
        chosen = [
            data
            for batch, data in batches
            if not batch.aborted
            and any(
                r.first_offset <= batch.last_offset and batch.first_offset <= r.last_offset
                for r in acq.records
            )
        ]
        return (
            {
                "records": b"".join(chosen),
                "acquired": [
                    (r.first_offset, r.last_offset, r.delivery_count) for r in acq.records
                ],
            },
            acq.count,
        )

    # ------------------------------------------------------------------ read-ahead
    def _maybe_read_ahead(
        self, sp: SharePartition, watch: PartitionWatch, source: tuple[int, str, int, int]
    ) -> None:
        """Start reading the next part of the log before the consumers ask for it, when the
        read-ahead of this share partition holds less than READ_AHEAD_BYTES past what is
        handed out and the log is known to have more. Kafka reads share fetches from its local
        log; here every read is a round trip to the upstream broker, and without read-ahead
        the members sharing a partition wait for those one after the other."""
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
        watch.ra_pending = trio.Event()
        self.proxy.cluster._nursery.start_soon(self._read_ahead, sp, watch, source)

    async def _read_ahead(
        self, sp: SharePartition, watch: PartitionWatch, source: tuple[int, str, int, int]
    ) -> None:
        """Extend the read-ahead window by one upstream Fetch; ``source`` is the leader,
        topic name, partition and isolation level."""
        leader, name, partition, isolation = source
        start, generation = watch.ra_end, self.log_generation
        try:
            bc = await self._pooled_conn(self._ra_conns, (leader, partition % 4), leader)
            self.fetch_counts["read_ahead_fetches"] += 1
            resp = await self._upstream_fetch(
                bc, [(name, partition, start, READ_AHEAD_BYTES)], 1, isolation
            )
            p = _first_partition(resp)
            if p is None or p.error_code:
                return  # the next fetch on demand sees the error and deals with it
            watch.high_watermark = int(p.high_watermark)
            if (
                watch.ra_owner is sp
                and watch.ra_isolation == isolation
                and watch.ra_end == start
                and generation == self.log_generation
            ):
                watch.extend(_log_batches(p, isolation))
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
        for watch in self.watches.values():
            watch.forget_read_ahead()

    async def _wait_for_records(
        self,
        conn: ClientConnection,
        group_id: str,
        parts: Sequence[tuple[UUID, int]],
        waiting_for_data: Sequence[tuple[UUID, int]],
        remaining_s: float,
        isolation: int,
    ) -> None:
        """Sleep until a partition's records may be acquirable, or the time is up."""
        async with trio.open_nursery() as nursery:
            done = nursery.cancel_scope

            async def on_event(event: trio.Event) -> None:
                await event.wait()
                done.cancel()

            async def on_new_data(tp: tuple[UUID, int]) -> None:
                name = self.proxy.cluster.topic_names[tp[0]]
                leader = self.proxy.cluster.leader_of(name, tp[1])
                watch = self.watches[(group_id, *tp)]
                if leader is None:
                    return
                bc = None
                finished = False
                try:
                    bc = await self._fetch_conn(conn, leader, 1)
                    wait_ms = int(min(remaining_s, 5.0) * 1000)
                    resp = await self._upstream_fetch(
                        bc, [(name, tp[1], max(watch.high_watermark, 0), 1)], wait_ms, isolation
                    )
                    finished = True
                except UpstreamError:
                    await trio.sleep(min(remaining_s, 0.5))
                    done.cancel()
                    return
                finally:
                    if not finished and bc is not None:
                        # Cancelled while the broker still holds the long poll: drop that
                        # connection rather than queue the next request behind it.
                        with trio.CancelScope(shield=True):
                            await bc.aclose()
                for t in resp.responses:
                    for p in t.partitions:
                        if p.high_watermark > watch.high_watermark:
                            watch.high_watermark = -1  # new data: look again
                done.cancel()

            for tp in parts:
                watch = self.watches.setdefault((group_id, *tp), PartitionWatch())
                nursery.start_soon(on_event, watch.event)
            for tp in waiting_for_data:
                nursery.start_soon(on_new_data, tp)
            await trio.sleep(remaining_s)
            done.cancel()


def _first_partition(resp: Any) -> Any:
    """The one partition of a Fetch answer for one partition, or None when it has none."""
    return (
        resp.responses[0].partitions[0] if resp.responses and resp.responses[0].partitions else None
    )


def _log_batches(p: Any, isolation: int) -> list[tuple[LogBatch, memoryview]]:
    """The whole record batches of an upstream Fetch answer's partition, each with its bytes
    (slices of the answer, not copies) and whether read_committed skips it."""
    records = p.records if isinstance(p.records, (bytes, bytearray, memoryview)) else b""
    raw = records if isinstance(records, bytes) else bytes(records)
    spans = scan_batches(raw)
    aborted = _aborted_batches(p, spans) if isolation else set()
    view = memoryview(raw)
    return [
        (LogBatch(first, last, i in aborted), view[start:end])
        for i, (start, end, first, last, _control) in enumerate(spans)
    ]


def _aborted_batches(p: Any, batches: Sequence[tuple[int, int, int, int, bool]]) -> set[int]:
    """Indexes of data batches of aborted transactions (read_committed, digest 3.12).

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


def attach(proxy: Proxy, store: StateStore | None = None) -> ShareService:
    """Give a proxy the share-group APIs (durable when given a state store)."""
    broker_config = BrokerConfig.from_mapping(
        {k: v for k, v in proxy.config.share_configs.items() if k.startswith("group.share.")}
    )
    service = ShareService(proxy, broker_config, store)
    from proxy.share_offsets import ShareOffsets

    service.offsets = ShareOffsets(service)
    proxy.share_handler = service
    from proxy.admin import AdminHandlers

    AdminHandlers(proxy, service)
    return service


for _key, _request_cls in messages.SHARE_REQUESTS.items():
    wire.register(_request_cls, messages.SHARE_RESPONSES[_key])
