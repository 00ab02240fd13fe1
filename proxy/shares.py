"""The share-group APIs, answered by the proxy: the Trio driver of ``sharegroup.core``.

The core decides; ``ShareService`` decodes each request into the core's typed values, does
the I/O it asks for and encodes its answers. ShareFetch: the core's log reads are served from
the share partition's read-ahead window (``proxy.read_ahead``) or by one upstream Fetch
(``proxy.log_reads``) under the partition's fetch lock; the upstream batches go back to the
client untouched with the AcquiredRecords ranges. Acknowledgements (ShareAcknowledge, or
piggy-backed on ShareFetch) are persisted before their answer goes (``_persist``), with no lock.
Lock expiry and member session timeouts run on one timer task that sleeps until the engine's
next deadline.

Long polling: a ShareFetch that acquires nothing waits, up to MaxWaitMs, for new records in the
log (an upstream Fetch that itself long-polls) or for records of its partitions becoming
available again (released, expired, acknowledged), then runs another round.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol
from uuid import UUID

import trio

from model import (
    AckBatch,
    AcquireMode,
    ArchivingRange,
    BrokerConfig,
    ConfigError,
    ErrorCode,
    RecordState,
    SharePartition,
)
from proxy import messages, wire
from proxy.connection import ClientConnection
from proxy.dlq import DlqWriter
from proxy.log_reads import UpstreamBatches, UpstreamLog, first_partition, log_batches
from proxy.read_ahead import (
    READ_AHEAD_BYTES,
    READ_AHEAD_MAX_BYTES,
    READ_AHEAD_TOTAL_BYTES,
    PartitionWatch,
    ReadAheadHeld,
)
from proxy.server import Proxy
from proxy.state_partitions import PartitionedStateStore
from proxy.state_store import StateWriteError
from proxy.upstream import BrokerConnection, UpstreamError
from sharegroup.core import (
    AckOutcome,
    Acquired,
    Batches,
    FetchAction,
    HeartbeatRequest,
    InitNeed,
    LogStartNeeded,
    NoRecords,
    Outcome,
    OutOfRange,
    PartitionFailed,
    PartitionRead,
    Refused,
    ShareAcknowledgeRequest,
    ShareCore,
    ShareFetch,
    ShareFetchRequest,
    Turn,
)
from sharegroup.engine import Change, PartitionKey, ShareEngine
from sharegroup.persist.policy import PersistPolicy, initial_snapshot, recovery_snapshots
from sharegroup.persist.records import Record, TopicIdAssigned

log = logging.getLogger("sharegroup.shares")


class ApiHandler(Protocol):
    """Answers some API keys for a client connection (the offsets APIs 90-92 here)."""

    async def handle(self, conn: ClientConnection, request: Any, head: wire.RequestHead) -> Any: ...


SHARE_API_VERSIONS = {
    76: (1, 1),  # ShareGroupHeartbeat
    77: (1, 1),  # ShareGroupDescribe
    78: (1, 2),  # ShareFetch
    79: (1, 2),  # ShareAcknowledge
    90: (0, 1),  # DescribeShareGroupOffsets
    91: (0, 0),  # AlterShareGroupOffsets
    92: (0, 0),  # DeleteShareGroupOffsets
}


def now_ms() -> int:
    return int(trio.current_time() * 1000)


def wall_clock_ms() -> int:
    """Wall-clock time, for the timestamps of state records (Kafka's are wall-clock too)."""
    return int(time.time() * 1000)


class ShareService:
    api_keys = SHARE_API_VERSIONS

    def __init__(
        self,
        proxy: Proxy,
        broker_config: BrokerConfig,
        store: PartitionedStateStore | None = None,
    ) -> None:
        self.proxy = proxy
        self.engine = ShareEngine(broker_config)
        self.engine.dead_letter_queues = True  # _dead_letter ends every ARCHIVING
        self.core = ShareCore(self.engine)
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
        # Observers of each share-partition initialization, given the seconds it took.
        self.on_partition_loaded: list[Callable[[float], None]] = []
        self.persist_policy = PersistPolicy()
        self.upstream = UpstreamLog(proxy)
        self.offsets: ApiHandler | None = None  # APIs 90-92, set by proxy.app.attach
        self._background: trio.Nursery | None = None  # the proxy's, for read-ahead tasks
        self.dlq: DlqWriter | None = None  # set by proxy.app: writes DLQ records (KIP-1191)

    @property
    def updates_per_snapshot(self) -> int:
        return self.persist_policy.updates_per_snapshot

    @updates_per_snapshot.setter
    def updates_per_snapshot(self, value: int) -> None:
        self.persist_policy = PersistPolicy(value)

    # ------------------------------------------------------------------ durability
    async def start(self, nursery: trio.Nursery) -> None:
        """Recover from the state topic (fencing any older instance) before serving."""
        self._background = nursery
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
        snapshots = recovery_snapshots(replay, wall_clock_ms())
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
        return list(
            self.persist_policy.records(
                changes, self.store.replay.partitions, self.engine.partitions, wall_clock_ms()
            )
        )

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
        self._dead_letter(changes)
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
            self._dead_letter_partition(key)
        watch = self.watches.get(key)
        if watch is not None:
            watch.notify()

    @property
    def fenced(self) -> bool:
        return self.store is not None and self.store.fenced

    # ------------------------------------------------------------------ plumbing
    async def run_timers(self) -> None:
        """Runs while the proxy runs; when it stops, the read-ahead windows and the DLQ
        writer's producer are let go."""
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
            if self.dlq is not None:
                self.dlq.close()

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
            self._dead_letter(changes)
        for change in changes:
            watch = self.watches.get(change.key)
            if watch is not None:
                watch.notify()
            for callback in self.on_change:
                callback(change)

    # ------------------------------------------------------------------ dead-letter queue
    def _dead_letter(self, changes: Sequence[Change]) -> None:
        """Phase 2 of Kafka's DLQ flow for changes that moved records to ARCHIVING: write
        their DLQ records, then archive them (SharePartition.initiateDLQAndArchive)."""
        for change in changes:
            if any(b.state is RecordState.ARCHIVING for b in change.delta.batches):
                self._dead_letter_partition(change.key)

    def _dead_letter_partition(self, key: PartitionKey) -> None:
        sp = self.engine.share_partition(key)
        if sp is None or self._background is None:
            return
        for work in sp.take_archiving():
            self._background.start_soon(self._write_dlq, key, sp, work)

    async def _write_dlq(self, key: PartitionKey, sp: SharePartition, work: ArchivingRange) -> None:
        if self.store is not None:
            await self.store.durable()  # ARCHIVING is persisted before the DLQ write
        group_id, topic_id, partition = key
        config = self.engine.group_config(group_id)
        if self.dlq is not None:
            await self.dlq.write(
                group=group_id,
                dlq_topic=config.dlq_topic_name,
                copy_records=config.dlq_copy_record_enable,
                topic=self.proxy.cluster.topic_names.get(topic_id, str(topic_id)),
                partition=partition,
                work=work,
            )
        if self.engine.share_partition(key) is not sp:
            return  # rebuilt from the store meanwhile: it hands the range out again
        delta = sp.complete_archiving(work.first_offset, work.last_offset)
        if not delta.empty:
            self._publish([Change(key, delta, "dlq")])

    def _partition_counts(self) -> dict[str, int]:
        return {name: len(t.partitions) for name, t in self.proxy.cluster.topics.items()}

    async def connection_closed(self, conn: ClientConnection) -> None:
        self._publish(self.engine.connection_closed(conn.node_id, conn.id, now_ms=now_ms()))
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
        assert self.offsets is not None, "proxy.app.attach sets the offsets handler"
        return await self.offsets.handle(conn, request, head)

    # ------------------------------------------------------------------ membership
    async def ensure_topics(self, names: Sequence[str]) -> None:
        missing = [n for n in names if n not in self.proxy.cluster.topics]
        if missing:
            try:
                await self.proxy.cluster.refresh(missing)
            except UpstreamError as e:
                log.warning("metadata refresh for %s failed: %s", missing, e)

    async def heartbeat(self, conn: ClientConnection, req: Any, head: wire.RequestHead) -> Any:
        resp_cls = messages.ShareGroupHeartbeatResponse
        subscribed = req.subscribed_topic_names
        if not self.fenced:
            await self.ensure_topics(self.core.topics_to_know(req.group_id, subscribed))
        answer = self.core.heartbeat(
            HeartbeatRequest(
                req.group_id,
                req.member_id,
                req.member_epoch,
                None if subscribed is None else tuple(subscribed),
                req.rack_id,
                conn.client_id,
                "/" + conn.peer.rsplit(":", 1)[0],  # as Kafka: InetAddress.toString()
            ),
            now_ms=now_ms(),
            partition_counts=self._partition_counts(),
            topic_ids=self._topic_ids(),
            fenced=self.fenced,
        )
        result = answer.result
        if result is None:
            assert answer.error is not None
            return resp_cls(
                version=head.api_version,
                throttle_time_ms=0,
                error_code=int(answer.error.code),
                error_message=answer.error.message,
                member_id=None,
                member_epoch=0,
                heartbeat_interval_ms=0,
                assignment=None,
            )
        self._kick_timers()
        assignment = None
        if answer.initialize:
            async with trio.open_nursery() as nursery:
                for need in answer.initialize:
                    nursery.start_soon(self._init_partition, need)
        if result.assignment is not None:
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

    def _topic_ids(self) -> dict[str, UUID]:
        return {name: info.topic_id for name, info in self.proxy.cluster.topics.items()}

    async def _init_partition(self, need: InitNeed) -> None:
        started = time.perf_counter()
        try:
            await self._load_partition(need)
        finally:
            elapsed = time.perf_counter() - started
            for callback in self.on_partition_loaded:
                callback(elapsed)

    async def _load_partition(self, need: InitNeed) -> None:
        key, topic, reset = need.key, need.topic, need.reset
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
                self._dead_letter_partition(key)  # ARCHIVING found at recovery resumes
                log.info(
                    "share partition %s %s-%s recovered at %d",
                    key[0],
                    topic,
                    key[2],
                    durable.start_offset,
                )
                return
            try:
                start = await self.upstream.start_offset(topic, key[2], reset)
            except UpstreamError as e:
                log.warning("cannot initialize share partition %s-%s: %s", topic, key[2], e)
                return
            sp = SharePartition(start)
            if self.store is not None:
                try:
                    await self.store.write([initial_snapshot(key, start, wall_clock_ms())])
                except StateWriteError as e:
                    log.warning("cannot initialize share partition %s-%s: %s", topic, key[2], e)
                    return
            self.engine.add_partition(key, sp)
            log.info(
                "share partition %s %s-%s starts at %d (%s)", key[0], topic, key[2], start, reset
            )

    def describe(self, req: Any, head: wire.RequestHead) -> Any:
        resp_cls = messages.ShareGroupDescribeResponse
        group_cls = resp_cls.DescribedGroup
        member_cls = group_cls.Member
        topics_cls = member_cls.Assignment.TopicPartitions
        # A null GroupIds array (malformed) names no group.
        described = self.core.describe(list(req.group_ids or ()), self._topic_ids())
        groups = [
            group_cls(
                error_code=int(g.error),
                error_message=g.message,
                group_id=g.group_id,
                group_state=g.state,
                group_epoch=g.group_epoch,
                assignment_epoch=g.assignment_epoch,
                assignor_name=g.assignor,
                members=[
                    member_cls(
                        member_id=m.member_id,
                        rack_id=m.rack_id,
                        member_epoch=m.member_epoch,
                        client_id=m.client_id,
                        client_host=m.client_host,
                        subscribed_topic_names=list(m.subscribed_topic_names),
                        assignment=member_cls.Assignment(
                            topic_partitions=[
                                topics_cls(topic_id=tid, topic_name=name, partitions=list(ps))
                                for tid, name, ps in m.assignment
                            ]
                        ),
                    )
                    for m in g.members
                ],
                authorized_operations=-(2**31),
            )
            for g in described
        ]
        return resp_cls(version=head.api_version, throttle_time_ms=0, groups=groups)

    # ------------------------------------------------------------------ acknowledgements
    def _announce_acks(self, outcomes: Sequence[AckOutcome]) -> None:
        """Wake the fetches waiting on acknowledged partitions (the write follows), and log
        what the model refused."""
        for o in outcomes:
            if o.refused_by_model:
                log.info(
                    "acknowledgement for %s-%d refused: %s (batches %s)",
                    self.proxy.cluster.topic_names.get(o.tp[0], o.tp[0]),
                    o.tp[1],
                    o.message,
                    [(b.first_offset, b.last_offset, list(b.ack_types)) for b in o.batches],
                )
        changes = [o.change for o in outcomes if o.change is not None]
        if changes:
            self._publish(changes, persist=False)
            self._kick_timers()

    async def share_acknowledge(
        self, conn: ClientConnection, req: Any, head: wire.RequestHead
    ) -> Any:
        resp_cls = messages.ShareAcknowledgeResponse
        topic_cls = resp_cls.ShareAcknowledgeTopicResponse
        part_cls = topic_cls.PartitionData
        is_renew = getattr(req, "is_renew_ack", False)
        request = ShareAcknowledgeRequest(
            group_id=req.group_id,
            member_id=req.member_id,
            epoch=req.share_session_epoch,
            partitions=tuple(
                ((t.topic_id, p.partition_index), _ack_batches(p.acknowledgement_batches))
                for t in req.topics or ()  # null arrays (malformed) hold nothing
                for p in t.partitions or ()
            ),
            renew=None if is_renew is None else head.api_version >= 2 and bool(is_renew),
        )
        op = self.core.share_acknowledge(
            request,
            node_id=conn.node_id,
            now_ms=now_ms(),
            topic_names=self.proxy.cluster.topic_names,
            fenced=self.fenced,
        )
        if isinstance(op, Refused):
            return resp_cls(
                version=head.api_version,
                throttle_time_ms=0,
                error_code=int(op.code),
                error_message=op.message,
                acquisition_lock_timeout_ms=0,
                responses=[],
                node_endpoints=[],
            )
        self._announce_acks(op.outcomes)
        # The answer goes out only once the acknowledgements are durable.
        answer = op.answer(await self._persist(op.changes))
        self._publish(op.close())
        return resp_cls(
            version=head.api_version,
            throttle_time_ms=0,
            error_code=0,
            error_message=None,
            acquisition_lock_timeout_ms=answer.lock_timeout_ms,
            responses=[
                topic_cls(
                    topic_id=topic_id,
                    partitions=[
                        part_cls(
                            partition_index=p.partition,
                            error_code=int(p.ack_code or 0),
                            error_message=p.ack_message,
                            current_leader=part_cls.LeaderIdAndEpoch(leader_id=-1, leader_epoch=-1),
                        )
                        for p in parts
                    ],
                )
                for topic_id, parts in answer.by_topic().items()
            ],
            node_endpoints=[],
        )

    # ------------------------------------------------------------------ fetch
    async def share_fetch(self, conn: ClientConnection, req: Any, head: wire.RequestHead) -> Any:
        resp_cls = messages.ShareFetchResponse
        topic_cls = resp_cls.ShareFetchableTopicResponse
        part_cls = topic_cls.PartitionData
        version = head.api_version
        request = ShareFetchRequest(
            group_id=req.group_id,
            member_id=req.member_id,
            epoch=req.share_session_epoch,
            partitions=tuple(
                ((t.topic_id, p.partition_index), _ack_batches(p.acknowledgement_batches))
                for t in req.topics or ()  # null arrays (malformed) hold nothing
                for p in t.partitions or ()
            ),
            forget=tuple(
                (t.topic_id, p) for t in req.forgotten_topics_data or () for p in t.partitions or ()
            ),
            max_wait_ms=req.max_wait_ms,
            min_bytes=req.min_bytes,
            max_bytes=req.max_bytes,
            max_records=req.max_records,
            batch_size=req.batch_size,
            mode=_acquire_mode(req.share_acquire_mode)
            if version >= 2
            else AcquireMode.BATCH_OPTIMIZED,
            renew=version >= 2 and bool(req.is_renew_ack),
        )
        op: ShareFetch[memoryview] | Refused = self.core.share_fetch(
            request,
            node_id=conn.node_id,
            connection_id=conn.id,
            now_ms=now_ms(),
            topic_names=self.proxy.cluster.topic_names,
            fenced=self.fenced,
        )
        if isinstance(op, Refused):
            if op.delay_ms:
                await trio.sleep(op.delay_ms / 1000)
            return resp_cls(
                version=version,
                throttle_time_ms=0,
                error_code=int(op.code),
                error_message=op.message,
                acquisition_lock_timeout_ms=0,
                responses=[],
                node_endpoints=[],
            )
        self._announce_acks(op.acks)
        fetch_op = op
        changes = op.ack_changes

        async def persist() -> None:
            fetch_op.persisted(await self._persist(changes))

        if op.action is FetchAction.CLOSE:
            await persist()
            self._publish(op.close())
        elif op.action is FetchAction.ACKS_ONLY:
            await persist()
        elif not changes:
            await self._fetch_records(conn, op)
        else:
            # The acknowledgements are applied already: records are acquired while their
            # write is out, and the answer goes once both are done (it carries the outcome).
            async with trio.open_nursery() as nursery:
                nursery.start_soon(persist)
                nursery.start_soon(self._fetch_records, conn, op)
        answer = op.answer()
        return resp_cls(
            version=version,
            throttle_time_ms=0,
            error_code=0,
            error_message=None,
            acquisition_lock_timeout_ms=answer.lock_timeout_ms,
            responses=[
                topic_cls(
                    topic_id=topic_id,
                    partitions=[
                        part_cls(
                            partition_index=p.partition,
                            error_code=int(p.code),
                            error_message=p.message,
                            acknowledge_error_code=int(p.ack_code or 0),
                            acknowledge_error_message=p.ack_message,
                            current_leader=part_cls.LeaderIdAndEpoch(leader_id=-1, leader_epoch=-1),
                            records=b"".join(p.payloads),
                            acquired_records=[
                                part_cls.AcquiredRecords(
                                    first_offset=a.first_offset,
                                    last_offset=a.last_offset,
                                    delivery_count=a.delivery_count,
                                )
                                for a in p.acquired
                            ],
                        )
                        for p in parts
                    ],
                )
                for topic_id, parts in answer.by_topic().items()
            ],
            node_endpoints=[],
        )

    async def _fetch_conn(
        self, conn: ClientConnection, node_id: int, purpose: int = 0
    ) -> BrokerConnection:
        """A connection of this client's own to the leader: long polls never block others.
        ``purpose`` 0 is for acquiring fetches, 1 for long polls that wait for new records
        (kept apart so that a pending long poll never delays an acquisition)."""
        return await self.upstream.pooled(
            self._fetch_conns, (conn.id, node_id * 2 + purpose), node_id
        )

    async def _fetch_records(self, conn: ClientConnection, op: ShareFetch[memoryview]) -> None:
        """Acquire records for a ShareFetch: rounds over its session's partitions until one
        gives records or MaxWaitMs is over (the decisions are ``op``'s)."""
        cluster = self.proxy.cluster
        if op.unknown_topic_ids(cluster.topic_names) and not self.fenced:
            await self.ensure_topics([])
        for need in op.prepare(cluster.topic_names, fenced=self.fenced):
            await self._init_partition(need)
        op.plan()
        if not op.parts:
            return
        while True:
            rnd = op.new_round()
            while (turn := rnd.next_turn()) is not None:
                watch = self.watches.setdefault(turn.key, PartitionWatch())
                if turn.may_pass and watch.lock.locked():
                    rnd.passed(turn)
                    continue
                rnd.took(turn, await self._acquire_from(conn, op, turn, watch))
            if op.round_done(rnd, now_ms()):
                return
            await self._wait_for_records(
                conn,
                op.group_id,
                [tp for tp, _ in op.parts],
                rnd.waiting_for_log,
                (op.deadline_ms - now_ms()) / 1000,
                op.isolation,
            )

    async def _acquire_from(
        self,
        conn: ClientConnection,
        op: ShareFetch[memoryview],
        turn: Turn,
        watch: PartitionWatch,
    ) -> Outcome[memoryview]:
        """Serve one partition's turn: its log read from the read-ahead or the upstream
        leader; ``PartitionRead`` decides."""
        name, partition = turn.topic, turn.tp[1]
        leader = self.proxy.cluster.leader_of(name, partition)
        if leader is None:
            return PartitionFailed(ErrorCode.NOT_LEADER_OR_FOLLOWER, "no leader")
        async with watch.lock:
            pr = op.read(turn, now_ms())
            self._publish(pr.changes)
            pr.changes.clear()
            if pr.outcome is not None:
                return pr.outcome
            outcome = await self._read_and_acquire(conn, pr, watch, leader)
            watch.trim(pr.sp.start_offset)
            self._maybe_read_ahead(pr.sp, watch, (leader, name, partition, op.isolation))
        self._publish(pr.changes)
        if isinstance(outcome, Acquired):
            self._kick_timers()
        return outcome

    async def _read_and_acquire(
        self,
        conn: ClientConnection,
        pr: PartitionRead[memoryview],
        watch: PartitionWatch,
        leader: int,
    ) -> Outcome[memoryview]:
        sp, isolation = pr.sp, pr.isolation
        read = pr.log_read()
        batches = watch.cached(sp, isolation, read.offset, read.max_bytes)
        pending = watch.ra_pending
        if (
            batches is None
            and pending is not None
            and watch.ra_owner is sp
            and watch.ra_start <= read.offset <= watch.ra_end
        ):
            await pending.wait()  # the read-ahead in flight reads what this needs
            if not pr.current:
                return NoRecords()
            read = pr.log_read()
            batches = watch.cached(sp, isolation, read.offset, read.max_bytes)
        if batches is not None:
            self.fetch_counts["from_read_ahead"] += 1
            return _settled(pr.on_read(Batches(tuple(batches))))
        if pr.nothing_new(watch.high_watermark):
            return NoRecords(wait_for_log=True)  # nothing new since we looked a moment ago
        generation = self.log_generation
        try:
            bc = await self._fetch_conn(conn, leader)
        except UpstreamError as e:
            log.warning("fetch %s-%s from broker %s failed: %s", read.topic, read.key[2], leader, e)
            return PartitionFailed(ErrorCode.NOT_LEADER_OR_FOLLOWER, str(e))
        result = await self.upstream.read(bc, read, generation)
        if isinstance(result, UpstreamBatches) and pr.current:
            watch.high_watermark = result.high_watermark
            if result.batches:
                self.fetch_counts["on_demand"] += 1
                if result.generation == self.log_generation:
                    watch.keep(sp, isolation, read.offset, list(result.batches))
        outcome = pr.on_read(result)
        if isinstance(outcome, LogStartNeeded):
            start: int | None = None
            try:
                conn0 = await self.proxy.cluster.connection(leader)
                start = await self.upstream.log_start(conn0, read.topic, read.key[2])
            except UpstreamError as e:
                log.warning("log start of %s-%s: %s", read.topic, read.key[2], e)
            outcome = pr.on_log_start(start)
        if isinstance(outcome, NoRecords):
            if outcome.log_start_moved:
                watch.forget_read_ahead()
            elif isinstance(result, OutOfRange):
                watch.high_watermark = result.high_watermark
        return outcome

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
            bc = await self.upstream.pooled(self._ra_conns, (leader, partition % 4), leader)
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
                    resp = await self.upstream.fetch(
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


def _settled(outcome: Outcome[memoryview] | LogStartNeeded) -> Outcome[memoryview]:
    """A read from memory is never out of range, so it never needs the log start."""
    assert not isinstance(outcome, LogStartNeeded)
    return outcome


def _acquire_mode(value: int) -> AcquireMode | None:
    """ShareAcquireMode, or None for a value Kafka does not know (refused by the core)."""
    try:
        return AcquireMode(value)
    except ValueError:
        return None


def _ack_batches(batches: Sequence[Any] | None) -> tuple[AckBatch, ...]:
    return tuple(
        AckBatch(b.first_offset, b.last_offset, tuple(b.acknowledge_types or ()))
        for b in batches or ()
    )


for _key, _request_cls in messages.SHARE_REQUESTS.items():
    wire.register(_request_cls, messages.SHARE_RESPONSES[_key])
