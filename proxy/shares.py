"""The share-group APIs, answered by the proxy: the Trio driver of ``sharegroup.core``.

The core decides; ``ShareService`` decodes each request into the core's typed values, does
the I/O it asks for and encodes its answers. ShareFetch: the core's log reads are served from
the share partition's read-ahead window (``proxy.read_ahead``, extended ahead of the consumers
by ``proxy.read_ahead_fetch``) or by one upstream Fetch (``proxy.log_reads``) under the
partition's fetch lock; the upstream batches go back to the client untouched with the
AcquiredRecords ranges. Acknowledgements (ShareAcknowledge, or piggy-backed on ShareFetch) are
persisted before their answer goes (``SharePersistence.persist``), with no lock.

The rest of the share service lives beside it, wired by ``proxy.app``: heartbeats and
ShareGroupDescribe (``proxy.membership``), lock expiry and member session timeouts
(``proxy.lock_timer``), recovery, writes and the DLQ flow (``proxy.share_persist``), and the
offsets APIs 90-92 (``proxy.share_offsets``).

Long polling: a ShareFetch that acquires nothing waits, up to MaxWaitMs, for new records in the
log (an upstream Fetch that itself long-polls) or for records of its partitions becoming
available again (released, expired, acknowledged), then runs another round.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, cast
from uuid import UUID

import trio

from model import AckBatch, AcquireMode, ErrorCode
from proxy import messages, wire
from proxy.connection import ClientConnection
from proxy.dlq import DlqWriter
from proxy.fetch_answer import RecordParts
from proxy.lock_timer import LockTimer, now_ms
from proxy.log_reads import UpstreamBatches, UpstreamLog
from proxy.membership import Membership, ensure_topics
from proxy.read_ahead import PartitionWatch
from proxy.read_ahead_fetch import ReadAheadFetcher
from proxy.server import Proxy
from proxy.share_persist import SharePersistence
from proxy.state_partitions import PartitionedStateStore
from proxy.upstream import BrokerConnection, UpstreamError
from sharegroup.core import (
    AckOutcome,
    Acquired,
    Batches,
    FetchAction,
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


class ShareService:
    api_keys = SHARE_API_VERSIONS

    def __init__(
        self,
        proxy: Proxy,
        core: ShareCore,
        persistence: SharePersistence,
        timer: LockTimer,
        membership: Membership,
        read_ahead: ReadAheadFetcher,
    ) -> None:
        self.proxy = proxy
        self.core = core
        self.engine: ShareEngine = core.engine
        self.persistence = persistence
        self.timer = timer
        self.membership = membership
        self.read_ahead = read_ahead
        self.upstream: UpstreamLog = persistence.upstream
        self.watches: dict[PartitionKey, PartitionWatch] = persistence.watches
        self._fetch_conns: dict[tuple[int, int], BrokerConnection] = {}
        # Where acquisitions got their records: an upstream fetch on demand, or the read-ahead
        # (and how many read-ahead fetches were made).
        self.fetch_counts = read_ahead.fetch_counts
        self.on_change: list[Callable[[Change], None]] = persistence.on_change
        self.offsets: ApiHandler | None = None  # APIs 90-92, set by proxy.app.attach
        # Observers of every request answered here or by the admin handlers (proxy.admin):
        # given its header, the answer and the seconds the handler took.
        self.on_answered: list[Callable[[wire.RequestHead, Any, float], None]] = []
        # Awaited once the state is recovered, before the proxy listens: given the proxy's
        # nursery, for tasks that run beside the service (the metrics endpoint).
        self.on_started: list[Callable[[trio.Nursery], Awaitable[None]]] = []
        # Every share partition's durable start offset, whichever instance owns it (fleet
        # mode); None: this instance's own store says.
        self.durable_start_offsets: Callable[[], dict[PartitionKey, int]] | None = None
        # Fleet mode: the change of a GROUP resource's configs (an IncrementalAlterConfigs
        # resource, validate_only, the request's version) sent to the instance coordinating
        # the group, and its answer (error code, message); None: every group is written here.
        self.forward_group_configs: (
            Callable[[Any, bool, int], Awaitable[tuple[int, str | None]]] | None
        ) = None
        # Fleet mode: which instance owns a share partition's state (topic id, topic name,
        # partition), and a request sent to an instance's listener, its answer back
        # (UpstreamError when it cannot be had); None: one instance owns everything.
        self.share_owner: Callable[[UUID | None, str, int], int] | None = None
        self.instance_id = 0
        self.forward_request: Callable[[int, Any, int, int], Awaitable[Any]] | None = None
        # Fleet mode: where a share partition is served (node id, leader epoch, host, port),
        # for the CurrentLeader and NodeEndpoints of a NOT_LEADER_OR_FOLLOWER answer, as
        # Kafka gives them (KIP-951); None when not known.
        self.leader_hint: Callable[[UUID, int], tuple[int, int, str, int] | None] | None = None
        if persistence.store is not None:
            core.leads = persistence.leads  # a share partition not owned here: not led here

    @property
    def store(self) -> PartitionedStateStore | None:
        return self.persistence.store

    @property
    def dlq(self) -> DlqWriter | None:
        return self.persistence.dlq

    @property
    def fenced(self) -> bool:
        return self.persistence.fenced

    # ------------------------------------------------------------------ fleet hooks
    @property
    def fleet_mode(self) -> bool:
        return self.persistence.fleet_mode

    def leads(self, key: PartitionKey) -> bool:
        return self.persistence.leads(key)

    def coordinates(self, group_id: str | None) -> bool:
        return self.persistence.coordinates(group_id)

    def set_stored_configs(self, group_id: str, configs: dict[str, str] | None) -> None:
        if self.persistence.set_stored_configs(group_id, configs):
            self.group_configs_changed(group_id)

    def forget_state_partitions(self, partitions: Sequence[int]) -> None:
        self.persistence.forget(partitions)
        self.timer.kick()

    # ------------------------------------------------------------------ plumbing
    async def start(self, nursery: trio.Nursery) -> None:
        """Recover from the state topic (fencing any older instance) before serving."""
        self.read_ahead.start(nursery)
        await self.persistence.start(nursery)
        for started in self.on_started:
            await started(nursery)

    async def run_timers(self) -> None:
        """Runs while the proxy runs; when it stops, the read-ahead windows and the DLQ
        writer's producer are let go."""
        try:
            await self.timer.run()
        finally:
            self.read_ahead.forget_all()
            if self.persistence.dlq is not None:
                self.persistence.dlq.close()

    def group_configs_changed(self, group_id: str) -> None:
        """Limits or lock durations changed: let waiting fetches look again."""
        for key, watch in self.watches.items():
            if key[0] == group_id:
                watch.notify()
        self.timer.kick()

    def log_deleted(self) -> None:
        """Records were deleted (a DeleteRecords went through): see ``ReadAheadFetcher``."""
        self.read_ahead.log_deleted()

    async def ensure_topics(self, names: Sequence[str]) -> None:
        await ensure_topics(self.proxy, names)

    async def connection_closed(self, conn: ClientConnection) -> None:
        self.persistence.publish(
            self.engine.connection_closed(conn.node_id, conn.id, now_ms=now_ms())
        )
        for key in [k for k in self._fetch_conns if k[0] == conn.id]:
            await self._fetch_conns.pop(key).aclose()

    async def handle(self, conn: ClientConnection, request: Any, head: wire.RequestHead) -> Any:
        started = time.perf_counter()
        response = await self._answer(conn, request, head)
        self.answered(head, response, time.perf_counter() - started)
        return response

    def answered(self, head: wire.RequestHead, response: Any, seconds: float) -> None:
        for observe in self.on_answered:
            observe(head, response, seconds)

    async def _answer(self, conn: ClientConnection, request: Any, head: wire.RequestHead) -> Any:
        if head.api_key == 76:
            return await self.membership.heartbeat(conn, request, head)
        if head.api_key == 77:
            return self.membership.describe(request, head)
        if head.api_key == 78:
            return await self.share_fetch(conn, request, head)
        if head.api_key == 79:
            return await self.share_acknowledge(conn, request, head)
        assert self.offsets is not None, "proxy.app.attach sets the offsets handler"
        return await self.offsets.handle(conn, request, head)

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
            self.persistence.publish(changes, persist=False)
            self.timer.kick()

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
        answer = op.answer(await self.persistence.persist(op.changes))
        self.persistence.publish(op.close())
        hints = _LeaderHints(self.leader_hint, part_cls.LeaderIdAndEpoch, resp_cls.NodeEndpoint)
        responses = [
            topic_cls(
                topic_id=topic_id,
                partitions=[
                    part_cls(
                        partition_index=p.partition,
                        error_code=int(p.ack_code or 0),
                        error_message=p.ack_message,
                        current_leader=hints.current_leader(
                            topic_id, p.partition, int(p.ack_code or 0)
                        ),
                    )
                    for p in parts
                ],
            )
            for topic_id, parts in answer.by_topic().items()
        ]
        return resp_cls(
            version=head.api_version,
            throttle_time_ms=0,
            error_code=0,
            error_message=None,
            acquisition_lock_timeout_ms=answer.lock_timeout_ms,
            responses=responses,
            node_endpoints=hints.endpoints(),
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
            fetch_op.persisted(await self.persistence.persist(changes))

        if op.action is FetchAction.CLOSE:
            await persist()
            self.persistence.publish(op.close())
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
        hints = _LeaderHints(self.leader_hint, part_cls.LeaderIdAndEpoch, resp_cls.NodeEndpoint)
        responses = [
            topic_cls(
                topic_id=topic_id,
                partitions=[
                    part_cls(
                        partition_index=p.partition,
                        error_code=int(p.code),
                        error_message=p.message,
                        acknowledge_error_code=int(p.ack_code or 0),
                        acknowledge_error_message=p.ack_message,
                        current_leader=hints.current_leader(
                            topic_id,
                            p.partition,
                            int(p.code) or int(p.ack_code or 0),
                        ),
                        # The slices, not joined: fetch_answer.encode_parts writes them.
                        records=cast(Any, RecordParts(p.payloads)),
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
        ]
        return resp_cls(
            version=version,
            throttle_time_ms=0,
            error_code=0,
            error_message=None,
            acquisition_lock_timeout_ms=answer.lock_timeout_ms,
            responses=responses,
            node_endpoints=hints.endpoints(),
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
            await self.persistence.init_partition(need)
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
            gone = op.vanished(turn)
            if gone is not None:
                return gone
            pr = op.read(turn, now_ms())
            self.persistence.publish(pr.changes)
            pr.changes.clear()
            if pr.outcome is not None:
                return pr.outcome
            outcome = await self._read_and_acquire(conn, pr, watch, leader)
            watch.trim(pr.sp.start_offset)
            self.read_ahead.maybe_start(pr.sp, watch, (leader, name, partition, op.isolation))
        self.persistence.publish(pr.changes)
        if isinstance(outcome, Acquired):
            self.timer.kick()
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
        generation = self.read_ahead.log_generation
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
                if result.generation == self.read_ahead.log_generation:
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


class _LeaderHints:
    """The CurrentLeader of an answer's partitions, and the NodeEndpoints they name: a
    partition answered NOT_LEADER_OR_FOLLOWER names the node that serves it (in a fleet, when
    known), as Kafka does (KIP-951), so that the client goes there without waiting for a
    metadata refresh; every other partition gets -1/-1."""

    def __init__(
        self,
        hint: Callable[[UUID, int], tuple[int, int, str, int] | None] | None,
        leader_cls: Any,
        endpoint_cls: Any,
    ) -> None:
        self._hint = hint
        self._leader_cls = leader_cls
        self._endpoint_cls = endpoint_cls
        self._endpoints: dict[int, Any] = {}

    def current_leader(self, topic_id: UUID, partition: int, code: int) -> Any:
        if code == ErrorCode.NOT_LEADER_OR_FOLLOWER and self._hint is not None:
            found = self._hint(topic_id, partition)
            if found is not None:
                node, epoch, host, port = found
                self._endpoints[node] = self._endpoint_cls(
                    node_id=node, host=host, port=port, rack=None
                )
                return self._leader_cls(leader_id=node, leader_epoch=epoch)
        return self._leader_cls(leader_id=-1, leader_epoch=-1)

    def endpoints(self) -> list[Any]:
        return [self._endpoints[n] for n in sorted(self._endpoints)]
