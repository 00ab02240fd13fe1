"""The proxy's side of a simulated run: the sans-I/O core (``sharegroup.core``) that the live
proxy runs, driven on the in-memory log, minus sockets.

Role: the driver of ``ShareCore`` in virtual time, as ``proxy/shares.py`` is its driver in Trio.
The core does the share-session step, the acknowledgements, the choice of partitions (round
robin by session epoch), the record budget, lock expiry, the in-flight limit, out-of-range
reads and log-start movement, and which partitions the answer lists; this driver reads the
log it asks for from ``MemLog`` (whole batches from the fetch offset, aborted transactions
marked under read_committed), creates the share partitions it names, persists and traces the
changes it returns, and parks a fetch that acquired nothing (long polling) until records are
produced to, or change state in, one of its partitions, or MaxWaitMs passes. Nothing runs
concurrently here, so no partition is ever busy. Lock expiry and member session timeouts run
from the engine's ``next_deadline_ms``/``tick``.

What the simulator adds around the engine, because a real deployment has it elsewhere:
the durable store (``state_log``: the state topic in memory, holding the encoded records that
``sharegroup.persist.policy`` decides on, exactly as the proxy writes them; a ``restart`` claims
it anew and rebuilds share partitions, group configs and topic ids with the real replay of
``sharegroup.persist.recovery``, then prunes it, as ``proxy/state_store.py`` and
``SharePersistence.start`` do), and AlterShareGroupOffsets (a fresh share partition at the new start
offset, refused while the group has members, as Kafka does).

A fleet (``given.fleet``, docs/persistence.md, A fleet of instances) is modelled in the same
engine: the state topic has several partitions, each owned by one instance (claimed, replayed
and written by it); a share partition is served only while the instance owning its state
partition lives (``ShareCore.leads``), the group's membership only while the owner of the
group's state partition does (otherwise NOT_COORDINATOR). A client talks to the fleet through
the instance it connected to, and its share sessions live on that instance's node
(``instance * 100000``, as ``proxy/fleet.py`` numbers nodes). A killed instance answers
nothing more: its connections drop, and the share partitions and group membership it held
leave memory, acquisitions included (never persisted, as in Kafka). After the fleet's session
timeout the survivors claim its state partitions, replay them with the real replay and serve
them: acquired-but-unpersisted records form the gap window and are delivered again, members
rejoin (UNKNOWN_MEMBER_ID, then epoch 0).

Everything it learns goes into the run's ``Trace``. Deterministic: no clock but the loop's,
no randomness of its own.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol
from uuid import UUID

from model import (
    AckBatch,
    AcquiredRecords,
    AcquireMode,
    ArchivingRange,
    BrokerConfig,
    ConfigError,
    DlqCause,
    ErrorCode,
    HeartbeatResult,
    LogBatch,
    RecordState,
    SharePartition,
)
from model.config import parse_by_duration_ms
from model.session import next_epoch
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
    ReadResult,
    Refused,
    ShareAcknowledgeRequest,
    ShareCore,
    ShareFetch,
    ShareFetchRequest,
    Turn,
)
from sharegroup.core.configs import DELETE, SET, ConfigsCore
from sharegroup.core.offsets import OffsetsCore
from sharegroup.dlq_format import dlq_partition, validate_dlq_topic
from sharegroup.engine import Change, PartitionKey, ShareEngine
from sharegroup.persist.partitioning import state_partition_for_group, state_partition_for_share
from sharegroup.persist.policy import (
    DEFAULT_UPDATES_PER_SNAPSHOT,
    PersistPolicy,
    initial_snapshot,
    reset_snapshot,
)
from sharegroup.persist.records import GroupConfigs, TopicIdAssigned
from sharegroup.scenario import trace as tr
from sharegroup.scenario.spec import FleetSpec
from sharegroup.scenario.trace import Trace
from sharegroup.sim.loop import EventLoop
from sharegroup.sim.memlog import Batch, MemLog, PartitionLog
from sharegroup.sim.state_log import StateLog, StateTopic, StateWriter

NODE_ID: Final = 0
NODE_ID_STRIDE: Final = 100_000  # a fleet instance's node id: instance * stride (+ broker id 0)

TopicPartition = tuple[UUID, int]
_KIND_OF_ACK: Final = {0: tr.GAP, 1: tr.ACCEPT, 2: tr.RELEASE, 3: tr.REJECT, 4: tr.RENEW}


@dataclass(slots=True)
class FetchRequest:
    """A ShareFetch as the simulated client sends it (decoded)."""

    member_id: str
    epoch: int
    topics: dict[TopicPartition, list[AckBatch]]  # partitions in the request, with their acks
    forget: list[TopicPartition]
    max_records: int
    batch_size: int
    mode: AcquireMode
    max_wait_ms: int
    max_bytes: int = 52_428_800  # fetch.max.bytes, librdkafka's and Java's default
    renew: bool = False  # IsRenewAck


@dataclass(slots=True)
class Delivered:
    """One partition's records in a ShareFetch response: the AcquiredRecords ranges and the
    offsets in them that hold data records (the client acknowledges the rest as GAP)."""

    tp: TopicPartition
    topic: str
    partition: int
    acquired: tuple[AcquiredRecords, ...]
    runs: list[tuple[int, int]]


@dataclass(slots=True)
class FetchResponse:
    error: ErrorCode = ErrorCode.NONE
    ack_errors: dict[TopicPartition, ErrorCode] = field(default_factory=dict)
    errors: dict[TopicPartition, ErrorCode] = field(default_factory=dict)  # partition errors
    delivered: list[Delivered] = field(default_factory=list)
    lock_timeout_ms: int = 0

    @property
    def record_count(self) -> int:
        return sum(b - a + 1 for d in self.delivered for a, b in d.runs)


class Client(Protocol):
    """What the proxy needs of a connected simulated client."""

    consumer_id: str
    instance: int  # in a fleet: the instance it connects to first

    def on_disconnect(self, conn: int) -> None: ...


@dataclass(slots=True)
class _Pending:
    """A ShareFetch being served, waiting in the purgatory for records (long polling)."""

    consumer_id: str
    conn: int
    op: ShareFetch[Batch]
    reply: Callable[[FetchResponse], None]
    delivered: list[Delivered] = field(default_factory=list)
    done: bool = False
    wake_scheduled: bool = False
    deadline_scheduled: bool = False


class SimProxy:
    """One proxy node in front of the in-memory log."""

    def __init__(
        self,
        loop: EventLoop,
        log: MemLog,
        trace: Trace,
        *,
        group_id: str,
        broker_configs: dict[str, str],
        group_configs: dict[str, str],
        latency_ms: int,
        rng: random.Random,
        updates_per_snapshot: int = DEFAULT_UPDATES_PER_SNAPSHOT,
        fleet: FleetSpec | None = None,
    ) -> None:
        self.loop = loop
        self.log = log
        self.trace = trace
        self.group_id = group_id
        self.broker_config = BrokerConfig.from_mapping(broker_configs)
        self.latency_ms = latency_ms
        self.topic_ids = {
            name: UUID(int=rng.getrandbits(128), version=4) for name in sorted(log.topics)
        }
        self.topic_names = {tid: name for name, tid in self.topic_ids.items()}
        self.policy = PersistPolicy(updates_per_snapshot)
        self.fleet = fleet
        self.state = StateTopic(fleet.state_partitions if fleet is not None else 1)
        self.instances = 0  # proxy processes started so far
        self.alive: list[int] = list(range(fleet.instances if fleet is not None else 1))
        self.owner: dict[int, int] = {}  # state partition -> the live instance that owns it
        self.writer_ids: dict[int, UUID] = {}
        for i in self.alive:
            self._start_instance(i, range(i, self.state.partitions, len(self.alive)))
        self.engine = self._recover()
        # Topic ids are assigned by the proxy (as for an upstream without them) and the scenario's
        # group configs set through it: both are written to the state topic.
        self.state.write([TopicIdAssigned(name, tid) for name, tid in self.topic_ids.items()])
        if group_configs:
            self._set_group_configs(dict(group_configs))
        self.up = True
        self.connections: dict[int, Client] = {}
        self.members: dict[str, str] = {}  # member id -> consumer id
        self.window_max: dict[PartitionKey, int] = {}
        self._parked: dict[PartitionKey, list[_Pending]] = {}
        self.conn_instance: dict[int, int] = {}  # connection -> the instance it reached
        self._next_conn = 0
        self._tick_at: int | None = None
        self._core = ShareCore(self.engine)
        if fleet is not None:
            self._core.leads = self.leads

    @property
    def core(self) -> ShareCore:
        """The share-group core over the current engine (a restart replaces the engine)."""
        if self._core.engine is not self.engine:
            self._core = ShareCore(self.engine)
            if self.fleet is not None:
                self._core.leads = self.leads
        return self._core

    # ------------------------------------------------------------------ the durable store
    @property
    def state_log(self) -> StateLog:
        """State partition 0 (the whole state topic of a single proxy)."""
        return self.state.logs[0]

    @property
    def store(self) -> StateWriter:
        """The writer of state partition 0 (of a single proxy: its only one), or while the
        proxy is down its last one."""
        return self.state.writers.get(0) or self.state.former[0]

    def _start_instance(self, instance: int, partitions: Iterable[int]) -> None:
        """A proxy process starts: it claims its state partitions and replays them."""
        self.instances += 1
        self.writer_ids[instance] = UUID(int=self.instances)
        parts = list(partitions)
        self.state.claim(parts, self.writer_ids[instance], self.loop.now_ms)
        for p in parts:
            self.owner[p] = instance

    def leads(self, key: PartitionKey) -> bool:
        """Does a live instance own the state partition of this share partition?"""
        return state_partition_for_share(key[1], key[2], self.state.partitions) in self.owner

    def coordinates(self, group_id: str) -> bool:
        """Does a live instance own the state partition of this group's coordination?"""
        return state_partition_for_group(group_id, self.state.partitions) in self.owner

    def leader_of(self, topic: str, partition: int) -> int | None:
        """The live instance leading the share partitions of ``topic``-``partition``."""
        p = state_partition_for_share(self.topic_ids[topic], partition, self.state.partitions)
        return self.owner.get(p)

    def _recover(self) -> ShareEngine:
        """A new engine with what the replay holds, as ``SharePersistence.start`` sets it up: group
        configs and topic ids now; share partitions when first used (``_init_partition``)."""
        replay = self.state.replay
        engine = ShareEngine(self.broker_config)
        engine.dead_letter_queues = True  # _dead_letter writes the simulated DLQ topics
        for group_id, configs in replay.group_configs.items():
            engine.set_group_configs(group_id, dict(configs))
        if replay.topic_ids:
            self.topic_ids = {n: replay.topic_ids.get(n, t) for n, t in self.topic_ids.items()}
            self.topic_names = {tid: name for name, tid in self.topic_ids.items()}
        return engine

    def _persist(self, changes: Sequence[Change]) -> None:
        """Write what the engine changed, through the persistence policy the proxy uses."""
        if changes:
            self.state.write(
                self.policy.records(
                    changes, self.state.replay.partitions, self.engine.partitions, self.loop.now_ms
                )
            )

    def _set_group_configs(self, configs: dict[str, str | None]) -> None:
        """IncrementalAlterConfigs of the group, decided as the proxy decides it
        (``ConfigsCore``) and persisted before it applies."""
        core = ConfigsCore(self.engine)
        change = core.plan(
            self.group_id,
            [(k, SET, v) if v is not None else (k, DELETE, None) for k, v in configs.items()],
        )
        if isinstance(change, Refused):
            raise ConfigError(change.message)  # the scenario's configs were checked on load
        self.state.write([GroupConfigs(self.group_id, dict(change.after))])
        core.apply(change)

    # ------------------------------------------------------------------ connections
    def connect(self, client: Client) -> int | None:
        """A new client connection, or None while the proxy (every instance) is down. In a
        fleet it reaches the client's own instance, or while that is dead the next live one
        (the next address a client's bootstrap list and metadata give it)."""
        if not self.up or not self.alive:
            return None
        size = self.fleet.instances if self.fleet is not None else 1
        instance = min(self.alive, key=lambda i: (i - client.instance) % size)
        self._next_conn += 1
        self.connections[self._next_conn] = client
        self.conn_instance[self._next_conn] = instance
        if self.fleet is not None:
            self.trace.lifecycle(
                self.loop.now_ms, "connect", client.consumer_id, f"instance {instance}"
            )
        return self._next_conn

    def node(self, conn: int) -> int:
        """The node id of the instance a connection reached (its share sessions live there)."""
        return self.conn_instance.get(conn, 0) * NODE_ID_STRIDE + NODE_ID

    def connection_closed(self, conn: int) -> None:
        client = self.connections.pop(conn, None)
        if client is None:
            return
        node = self.node(conn)
        del self.conn_instance[conn]
        self._publish(self.engine.connection_closed(node, conn, now_ms=self.loop.now_ms))

    def topic_partitions(self, topic: str) -> list[TopicPartition]:
        tid = self.topic_ids[topic]
        return [(tid, p) for p in range(len(self.log.topics[topic]))]

    # ------------------------------------------------------------------ membership
    def heartbeat(
        self, conn: int, member_id: str, member_epoch: int, subscribed: Sequence[str] | None
    ) -> HeartbeatResult | ErrorCode | None:
        """ShareGroupHeartbeat. None: the connection is gone."""
        client = self.connections.get(conn)
        if client is None:
            return None
        answer = self.core.heartbeat(
            HeartbeatRequest(
                self.group_id,
                member_id,
                member_epoch,
                None if subscribed is None else tuple(subscribed),
                client_id=client.consumer_id,
            ),
            now_ms=self.loop.now_ms,
            partition_counts=self.log.partition_counts(),
            topic_ids=self.topic_ids,
            fenced=not self.coordinates(self.group_id),
            may_exist=lambda group_id: (
                self.fleet is not None
                or group_id in self.state.replay.group_configs
                or any(k[0] == group_id for k in self.state.replay.partitions)
            ),
        )
        if answer.result is None:
            assert answer.error is not None
            return answer.error.code
        self.members[member_id] = client.consumer_id
        self._schedule_tick(self.engine.next_deadline_ms())
        for need in answer.initialize:
            if self.leads(need.key):
                self._init_partition(need)
        return answer.result

    def _init_partition(self, need: InitNeed) -> SharePartition:
        key = need.key
        durable = self.state.replay.partitions.get(key)
        if durable is not None:
            # Recovery (docs/persistence.md, Recovery): persisted ranges keep their state and
            # delivery count; acquired-but-unpersisted offsets form the gap window and are
            # fetched again.
            sp = self.engine.add_partition(
                key, SharePartition.from_state(durable.start_offset, durable.batches())
            )
            self._dead_letter(key)  # ARCHIVING found at recovery is written again
            return sp
        start = self._start_offset(self.log.partition(need.topic, key[2]), need.reset)
        self.state.write([initial_snapshot(key, start, self.loop.now_ms)])
        return self.engine.new_partition(key, start)

    def _start_offset(self, plog: PartitionLog, reset: str | int) -> int:
        if isinstance(reset, int):
            return min(max(reset, plog.log_start_offset), plog.high_watermark)
        if reset.startswith("by_duration:"):
            ts = self.loop.now_ms - parse_by_duration_ms(reset.removeprefix("by_duration:"))
            found = plog.offset_for_timestamp(ts)
            return plog.high_watermark if found is None else found
        if reset == "earliest":
            return plog.log_start_offset
        return plog.high_watermark

    # ------------------------------------------------------------------ acknowledgements
    def _applied(self, consumer_id: str, outcomes: Sequence[AckOutcome]) -> None:
        """Persist and trace what the core did with acknowledgements, and wake the fetches
        waiting on those partitions."""
        now = self.loop.now_ms
        for o in outcomes:
            topic = self.topic_names.get(o.tp[0])
            if topic is None:
                continue
            if o.refused_by_model:
                for b in o.batches:
                    self.trace.ack_error(
                        now, consumer_id, topic, o.tp[1], b.first_offset, b.last_offset, o.code.name
                    )
            if o.change is None:
                continue
            key = o.change.key
            self._persist([o.change])
            self._dead_letter(key)
            runs = _type_runs(o.batches)
            for sb in o.change.delta.batches:
                kind = _KIND_OF_ACK[_type_at(runs, sb.first_offset)]
                self.trace.ack(
                    now,
                    consumer_id,
                    topic,
                    o.tp[1],
                    sb.first_offset,
                    sb.last_offset,
                    kind,
                    _traced(sb.state),
                )
            if any(t == 4 for _, _, t in runs):
                for first, last, t in runs:
                    if t == 4:
                        self.trace.renew(now, consumer_id, topic, o.tp[1], first, last)
                self._schedule_tick(self.engine.next_deadline_ms())
            self._wake(key)

    def share_acknowledge(
        self,
        conn: int,
        member_id: str,
        epoch: int,
        acks: dict[TopicPartition, list[AckBatch]],
        *,
        renew: bool = False,
    ) -> FetchResponse | None:
        """ShareAcknowledge. None: the connection is gone (no answer)."""
        client = self.connections.get(conn)
        if client is None:
            return None
        op = self.core.share_acknowledge(
            ShareAcknowledgeRequest(
                self.group_id,
                member_id,
                epoch,
                tuple((tp, tuple(b)) for tp, b in acks.items()),
                renew,
            ),
            node_id=self.node(conn),
            now_ms=self.loop.now_ms,
            topic_names=self.topic_names,
        )
        if isinstance(op, Refused):
            return FetchResponse(error=op.code)
        self._applied(client.consumer_id, op.outcomes)
        answer = op.answer()
        self._publish(op.close())
        return FetchResponse(
            ack_errors={
                (p.topic_id, p.partition): p.ack_code or ErrorCode.NONE for p in answer.partitions
            },
            lock_timeout_ms=answer.lock_timeout_ms,
        )

    # ------------------------------------------------------------------ fetch
    def share_fetch(
        self, conn: int, req: FetchRequest, reply: Callable[[FetchResponse], None]
    ) -> None:
        """ShareFetch: ``reply`` gets the response now or, after a long poll, later."""
        client = self.connections.get(conn)
        if client is None:
            return  # the connection is gone: no answer
        op: Refused | ShareFetch[Batch] = self.core.share_fetch(
            ShareFetchRequest(
                self.group_id,
                req.member_id,
                req.epoch,
                tuple((tp, tuple(b)) for tp, b in req.topics.items()),
                tuple(req.forget),
                max_wait_ms=req.max_wait_ms,
                max_bytes=req.max_bytes,
                max_records=req.max_records,
                batch_size=req.batch_size,
                mode=req.mode,
                renew=req.renew,
            ),
            node_id=self.node(conn),
            connection_id=conn,
            now_ms=self.loop.now_ms,
            topic_names=self.topic_names,
        )
        if isinstance(op, Refused):
            refusal = FetchResponse(error=op.code)
            if op.delay_ms:
                self.loop.after(op.delay_ms, reply, refusal)
            else:
                reply(refusal)
            return
        self._applied(client.consumer_id, op.acks)
        pending = _Pending(client.consumer_id, conn, op, reply)
        if op.action is FetchAction.CLOSE:
            self._publish(op.close())
            self._finish(pending)
            return
        if op.action is FetchAction.ACKS_ONLY:
            self._finish(pending)
            return
        for need in op.prepare(self.topic_names):
            self._init_partition(need)
        op.plan()
        self._try_fetch(pending)

    def _try_fetch(self, pending: _Pending) -> None:
        pending.wake_scheduled = False
        if pending.done:
            return
        op = pending.op
        if pending.conn not in self.connections or (
            self.engine.session_cache(self.node(pending.conn)).get(self.group_id, op.member_id)
            is None
        ):
            pending.done = True  # the connection or the share session is gone: no answer
            return
        rnd = op.new_round()
        while (turn := rnd.next_turn()) is not None:
            rnd.took(turn, self._acquire_from(pending, turn))
        if op.round_done(rnd, self.loop.now_ms):
            self._finish(pending)
            return
        for tp, _ in op.parts:
            waiting = self._parked.setdefault((self.group_id, tp[0], tp[1]), [])
            if pending not in waiting:
                waiting.append(pending)
        if not pending.deadline_scheduled:
            pending.deadline_scheduled = True
            self.loop.at(op.deadline_ms, self._deadline, pending)

    def _deadline(self, pending: _Pending) -> None:
        if not pending.done and self.loop.now_ms >= pending.op.deadline_ms:
            self._try_fetch(pending)

    def _finish(self, pending: _Pending) -> None:
        pending.done = True
        for tp, _ in pending.op.parts:
            waiting = self._parked.get((self.group_id, tp[0], tp[1]))
            if waiting and pending in waiting:
                waiting.remove(pending)
        answer = pending.op.answer()
        response = FetchResponse(
            ack_errors={
                (p.topic_id, p.partition): p.ack_code
                for p in answer.partitions
                if p.ack_code is not None
            },
            errors={
                (p.topic_id, p.partition): ErrorCode(p.code)
                for p in answer.partitions
                if p.code != ErrorCode.NONE
            },
            delivered=pending.delivered,
            lock_timeout_ms=answer.lock_timeout_ms,
        )
        self.trace.fetched(self.loop.now_ms, pending.consumer_id, response.record_count)
        pending.reply(response)

    def _wake(self, key: PartitionKey) -> None:
        for pending in self._parked.get(key, ()):
            if not pending.done and not pending.wake_scheduled:
                pending.wake_scheduled = True
                self.loop.at(self.loop.now_ms, self._try_fetch, pending)

    def _acquire_from(self, pending: _Pending, turn: Turn) -> Outcome[Batch]:
        """Serve one partition's turn from the in-memory log; ``PartitionRead`` decides."""
        now = self.loop.now_ms
        gone = pending.op.vanished(turn)
        if gone is not None:
            return gone
        pr = pending.op.read(turn, now)
        self._publish(pr.changes)
        pr.changes.clear()
        if pr.outcome is not None:
            return pr.outcome
        topic, partition = turn.topic, turn.tp[1]
        plog = self.log.partition(topic, partition)
        read = pr.log_read()
        result: ReadResult[Batch]
        if read.offset < plog.log_start_offset:
            result = OutOfRange(plog.log_start_offset, plog.high_watermark)
        else:
            result = Batches(
                tuple(
                    (LogBatch(b.base_offset, b.last_offset, read.isolation == 1 and b.aborted), b)
                    for b in plog.read(read.offset, read.max_bytes)
                ),
                plog.high_watermark,
            )
        old_start = pr.sp.start_offset
        outcome = pr.on_read(result)
        if isinstance(outcome, LogStartNeeded):
            outcome = pr.on_log_start(plog.log_start_offset)
        self._publish(pr.changes)
        if isinstance(outcome, NoRecords) and outcome.log_start_moved:
            # Records below the new log start that the share partition never cached are
            # gone as well: never to be delivered.
            self.trace.archive(
                now, topic, partition, old_start, pr.sp.start_offset - 1, "log-start"
            )
        if not isinstance(outcome, Acquired):
            return outcome
        window = pr.sp.in_flight_count
        if window > self.window_max.get(turn.key, 0):
            self.window_max[turn.key] = window
        self._schedule_tick(outcome.lock_deadline_ms)
        runs: list[tuple[int, int]] = []
        for r in outcome.records:
            for a, b in plog.data_runs(r.first_offset, r.last_offset):
                self.trace.acquire(
                    now, pending.consumer_id, topic, partition, a, b, r.delivery_count
                )
                runs.append((a, b))
        pending.delivered.append(Delivered(turn.tp, topic, partition, outcome.records, runs))
        return outcome

    # ------------------------------------------------------------------ changes and time
    def _publish(self, changes: Sequence[Change]) -> None:
        now = self.loop.now_ms
        self._persist(changes)
        for change in changes:
            key = change.key
            topic = self.topic_names[key[1]]
            partition = key[2]
            self._dead_letter(key)
            for b in change.delta.batches:
                if change.cause in ("expiry", "session-close", "connection-close"):
                    self.trace.unlock(
                        now,
                        change.cause,
                        topic,
                        partition,
                        b.first_offset,
                        b.last_offset,
                        _traced(b.state),
                    )
                elif b.state is RecordState.ARCHIVED:
                    if change.cause == "log-start":
                        self.trace.archive(
                            now, topic, partition, b.first_offset, b.last_offset, "log-start"
                        )
                    else:
                        plog = self.log.partition(topic, partition)
                        for a, z, reason in _archive_reasons(plog, b.first_offset, b.last_offset):
                            self.trace.archive(now, topic, partition, a, z, reason)
            self._wake(key)

    # ------------------------------------------------------------------ dead-letter queue
    def _dead_letter(self, key: PartitionKey) -> None:
        """Phase 2 of Kafka's DLQ flow, at once: the records the model moved to ARCHIVING (that
        state is in the state topic by now) are written to the group's simulated DLQ topic,
        then archived, also when the write failed (``ShareGroupDLQStateManager``)."""
        sp = self.engine.share_partition(key)
        if sp is None:
            return
        for work in sp.take_archiving():
            self._write_dlq(key, work)
            delta = sp.complete_archiving(work.first_offset, work.last_offset)
            if not delta.empty:
                self._persist([Change(key, delta, "dlq")])

    def _write_dlq(self, key: PartitionKey, work: ArchivingRange) -> None:
        group_id, topic_id, partition = key
        config = self.engine.group_config(group_id)
        dlq_topic = config.dlq_topic_name
        topic = self.topic_names.get(topic_id, str(topic_id))
        exists = dlq_topic in self.log.topics
        # Every topic of the scenario counts as marked (errors.deadletterqueue.group.enable).
        problem = validate_dlq_topic(
            group_id,
            dlq_topic,
            prefix=self.broker_config.dlq_topic_name_prefix,
            exists=exists,
            marked=exists,
            auto_create=self.broker_config.dlq_auto_create_topics_enable,
        )
        count = work.last_offset - work.first_offset + 1
        if problem is not None:
            self.trace.dlq_write_failed(count)
            self.trace.lifecycle(self.loop.now_ms, "dlq-write-failed", "proxy", problem)
            return
        if not exists:
            self.log.create_topic(dlq_topic, 1)  # broker-default partitions: one here
        partitions = len(self.log.topics[dlq_topic])
        target = dlq_partition(partition, partitions)
        source = self.log.partition(topic, partition)
        dlq_log = self.log.partition(dlq_topic, target)
        now = self.loop.now_ms
        for offset in range(work.first_offset, work.last_offset + 1):
            key_text = source.key_of(offset) if config.dlq_copy_record_enable else None
            first, last = dlq_log.append(1, now, keys=(key_text,) if key_text is not None else None)
            self.trace.written(dlq_topic, target, first, last, now)
            self.trace.dead_letter(
                tr.DlqEntry(
                    dlq_topic=dlq_topic,
                    dlq_partition=target,
                    source_topic=topic,
                    source_partition=partition,
                    source_offset=offset,
                    group=group_id,
                    delivery_count=work.delivery_count,
                    cause=_DLQ_CAUSES[work.cause],
                    key=key_text.encode() if key_text is not None else None,
                    # The simulator's records have no payload: a copied value names its source.
                    value=f"{topic}-{partition}@{offset}".encode()
                    if config.dlq_copy_record_enable
                    else None,
                )
            )

    def _schedule_tick(self, deadline_ms: int | None) -> None:
        if deadline_ms is None:
            return
        if self._tick_at is None or deadline_ms < self._tick_at:
            self._tick_at = deadline_ms
            self.loop.timer(deadline_ms, self._tick)

    def _tick(self) -> None:
        now = self.loop.now_ms
        if self._tick_at is not None and self._tick_at > now:
            return  # superseded by an earlier tick that already ran; a later one is queued
        self._tick_at = None
        self._run_tick()
        self._schedule_tick(self.engine.next_deadline_ms())

    def _run_tick(self) -> None:
        now = self.loop.now_ms
        changes, fenced = self.engine.tick(now, self.log.partition_counts())
        self._publish(changes)
        for member in fenced:
            member_id = member.split("/", 1)[1]
            self.trace.lifecycle(now, "fenced", self.members.get(member_id, member_id))

    # ------------------------------------------------------------------ the log and admin
    def produce(
        self,
        producer: str,
        topic: str,
        partition: int,
        count: int,
        *,
        keys: tuple[str, ...] | None = None,
        record_bytes: int = 100,
        producer_id: int = -1,
        transaction: str | None = None,
    ) -> tuple[int, int]:
        """Records written to the upstream log (producers talk to the brokers, not to us)."""
        now = self.loop.now_ms
        plog = self.log.partition(topic, partition)
        first, last = plog.append(
            count,
            now,
            record_bytes=record_bytes,
            keys=keys,
            producer_id=producer_id,
            aborted=transaction == "abort",
        )
        self.trace.produce(now, producer, topic, partition, first, last, keys)
        if transaction is not None:
            plog.append_marker(now, producer_id, abort=transaction == "abort")
        if self.up:
            self._wake((self.group_id, self.topic_ids[topic], partition))
        return first, last

    def alter_configs(self, configs: dict[str, str | None]) -> None:
        self._set_group_configs(dict(configs))
        for key in list(self._parked):
            self._wake(key)
        self._schedule_tick(self.engine.next_deadline_ms())

    def alter_offsets(self, targets: Sequence[tuple[str, int, str | int]]) -> ErrorCode:
        """AlterShareGroupOffsets: refused while the group has members (NON_EMPTY_GROUP)."""
        offsets = OffsetsCore(self.engine)
        refused = offsets.check_empty(self.group_id)
        if refused is not None:
            return refused.code
        now = self.loop.now_ms
        for topic, partition, to in targets:
            key = (self.group_id, self.topic_ids[topic], partition)
            start = self._start_offset(self.log.partition(topic, partition), to)
            durable = self.state.replay.partitions.get(key)
            self.state.write([reset_snapshot(key, start, durable, now)])
            offsets.apply_resets(self.group_id, [(key, start)])
            self.trace.reset(now, topic, partition, start)
        return ErrorCode.NONE

    def restart(self, downtime_ms: int) -> None:
        """The proxy process stops and starts again: connections, sessions, membership and
        acquisitions are lost; share-partition state, group configs and topic ids come back
        from the state log's replay when it is up again."""
        now = self.loop.now_ms
        self.up = False
        clients = list(self.connections.items())
        self.connections.clear()
        self.conn_instance.clear()
        self.state.release(range(self.state.partitions))
        self.owner.clear()
        for waiting in self._parked.values():
            for pending in waiting:
                pending.done = True
        self._parked.clear()
        for topic, partition in self.trace.topic_partitions:
            hw = self.log.partition(topic, partition).high_watermark
            if hw:
                self.trace.unlock(now, "proxy-restart", topic, partition, 0, hw - 1, tr.AVAILABLE)
        self.engine = ShareEngine(self.broker_config)  # nothing is served while down
        self.engine.dead_letter_queues = True
        self._tick_at = None
        for conn, client in clients:
            client.on_disconnect(conn)
        self.loop.after(downtime_ms, self._come_up)

    def _come_up(self) -> None:
        self._start_instance(0, range(self.state.partitions))
        self.engine = self._recover()
        self.up = True

    def kill_instance(self, instance: int) -> None:
        """An instance of the fleet dies (SIGKILL): it answers nothing more, and what it held
        in memory is gone; after the fleet's session timeout the others take over."""
        assert self.fleet is not None
        now = self.loop.now_ms
        if instance not in self.alive:
            self.trace.lifecycle(now, "kill-instance", "fleet", f"instance {instance}: not running")
            return
        self.alive.remove(instance)
        gone = sorted(p for p, owner in self.owner.items() if owner == instance)
        for p in gone:
            del self.owner[p]
        self.state.release(gone)
        self.trace.lifecycle(
            now, "kill-instance", "fleet", f"instance {instance}: state partitions {gone}"
        )
        self._forget(set(gone))
        for topic, partition in self.trace.topic_partitions:
            if topic in self.topic_ids and not self.leads(
                (self.group_id, self.topic_ids[topic], partition)
            ):
                hw = self.log.partition(topic, partition).high_watermark
                if hw:
                    self.trace.unlock(
                        now, "instance-killed", topic, partition, 0, hw - 1, tr.AVAILABLE
                    )
        for conn, client in list(self.connections.items()):
            if self.conn_instance.get(conn) == instance:
                # The other end of the connection is gone. The surviving instances see the
                # client's share session there end, as when its connection closes.
                self.connection_closed(conn)
                client.on_disconnect(conn)
        self.loop.after(self.fleet.session_timeout_ms, self._take_over, gone)

    def _forget(self, gone: set[int]) -> None:
        """What the instances owning ``gone`` held in memory: share partitions (with their
        acquisitions) and the membership of the groups they coordinate, as
        ``SharePersistence.forget`` lets them go."""
        n = self.state.partitions
        engine = self.engine
        for key in [
            k for k in engine.partitions if state_partition_for_share(k[1], k[2], n) in gone
        ]:
            del engine.partitions[key]
        for group_id, entry in list(engine.groups.items()):
            if state_partition_for_group(group_id, n) in gone:
                entry.group = engine._new_group(group_id, entry.config)
                entry.partitions = {
                    tp for tp in entry.partitions if (group_id, *tp) in engine.partitions
                }

    def _take_over(self, gone: list[int]) -> None:
        """The fleet's group coordinator has noticed the death (its session timed out): the
        survivors are assigned its state partitions, claim and replay them, and serve."""
        now = self.loop.now_ms
        assigned: dict[int, list[int]] = {}
        for i, p in enumerate(gone):
            assigned.setdefault(self.alive[i % len(self.alive)], []).append(p)
        for instance, parts in sorted(assigned.items()):
            claimed = self.state.claim(parts, self.writer_ids[instance], now)
            for p in parts:
                self.owner[p] = instance
            for group_id, configs in claimed.group_configs.items():
                self.engine.set_group_configs(group_id, dict(configs))
            self.trace.lifecycle(
                now, "take-over", "fleet", f"instance {instance}: state partitions {parts}"
            )
        for key in list(self._parked):
            self._wake(key)

    def finish(self) -> None:
        """Record the end state of share partitions and the group in the trace."""
        for key, sp in self.engine.partitions.items():
            topic = self.topic_names[key[1]]
            self.trace.partition_stats[(topic, key[2])] = {
                "start-offset": sp.start_offset,
                "in-flight-max": self.window_max.get(key, 0),
            }
        entry = self.engine.group(self.group_id)
        self.trace.group = {
            "members": len(entry.group.members) if entry else 0,
            "state": entry.group.state if entry else "Empty",
        }

    def probe_epoch(
        self, member_id: str, conn: int | None = None
    ) -> tuple[int, list[TopicPartition]] | None:
        """The stored share session of a member on the node of ``conn`` (for a client
        resynchronising after a probe)."""
        node = self.node(conn) if conn is not None else NODE_ID
        session = self.engine.session_cache(node).get(self.group_id, member_id)
        if session is None:
            return None
        return session.epoch, [
            (t if isinstance(t, UUID) else UUID(str(t)), p) for t, p in session.partitions
        ]


def new_member_id(rng: random.Random) -> str:
    """A member id as clients make them (a random UUID; 36 characters at most)."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _type_runs(batches: Sequence[AckBatch]) -> list[tuple[int, int, int]]:
    runs: list[tuple[int, int, int]] = []
    for b in batches:
        if len(b.ack_types) == 1:
            runs.append((b.first_offset, b.last_offset, b.ack_types[0]))
            continue
        start = b.first_offset
        for i in range(1, len(b.ack_types) + 1):
            if i == len(b.ack_types) or b.ack_types[i] != b.ack_types[i - 1]:
                runs.append((start, b.first_offset + i - 1, b.ack_types[i - 1]))
                start = b.first_offset + i
    return runs


def _type_at(runs: list[tuple[int, int, int]], offset: int) -> int:
    for first, last, t in runs:
        if first <= offset <= last:
            return t
    return 1


_DLQ_CAUSES: Final = {
    DlqCause.CLIENT_REJECT: "rejected",
    DlqCause.DELIVERY_COUNT_EXCEEDED: "delivery-limit",
}


def _traced(state: RecordState) -> str:
    """The state the trace records: ARCHIVING ends as ARCHIVED within the same step here."""
    return RecordState.ARCHIVED.name if state is RecordState.ARCHIVING else state.name


def _archive_reasons(plog: PartitionLog, first: int, last: int) -> list[tuple[int, int, str]]:
    """Why the broker archived [first, last] on its own: an aborted transaction's batch, or
    else records that are gone from the log (compaction)."""
    out: list[tuple[int, int, str]] = []
    cursor = first
    for b in plog.overlapping(first, last):
        if b.aborted:
            lo, hi = max(b.base_offset, first), min(b.last_offset, last)
            if lo > cursor:
                out.append((cursor, lo - 1, "compacted"))
            out.append((lo, hi, "aborted"))
            cursor = hi + 1
    if cursor <= last:
        out.append((cursor, last, "compacted"))
    return out


__all__ = [
    "NODE_ID",
    "Delivered",
    "FetchRequest",
    "FetchResponse",
    "SimProxy",
    "new_member_id",
    "next_epoch",
]
