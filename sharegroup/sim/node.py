"""The proxy's side of a simulated run: the real ``ShareEngine`` driven the way the live proxy
drives it, on the in-memory log, minus sockets.

Role: what ``proxy/shares.py`` does per request, step for step — the share-session step
(``ShareSessionCache.fetch_context`` / ``acknowledge_context``), acknowledgements per partition
through ``ShareEngine.acknowledge``, then for each session partition: expire due locks, pick
``SharePartition.next_fetch_offset``, skip a partition at its in-flight limit or with nothing new
in the log, read whole batches from the fetch offset (MaxBytes split evenly over the session's
partitions, at most 1 MiB each, as the proxy asks), mark aborted
transactions under read_committed, and let ``SharePartition.acquire`` decide, with one record
budget (MaxRecords) across partitions. A fetch that acquires nothing waits (long polling) until
records are produced to, or change state in, one of its partitions, or MaxWaitMs passes. Share
partitions are created at the start offset ``share.auto.offset.reset`` gives, or, new partitions
of a topic the group already consumes, at the earliest offset (as Kafka's
``GroupMetadataManager`` initializes them). Lock expiry and member session timeouts run from the
engine's ``next_deadline_ms``/``tick``.

What the simulator adds around the engine, because a real deployment has it elsewhere:
the durable store (``state_log``: the state topic in memory, holding the encoded records that
``sharegroup.persist.policy`` decides on, exactly as the proxy writes them; a ``restart`` claims
it anew and rebuilds share partitions, group configs and topic ids with the real replay of
``sharegroup.persist.recovery``, then prunes it, as ``proxy/state_store.py`` and
``ShareService.start`` do), and AlterShareGroupOffsets (a fresh share partition at the new start
offset, refused while the group has members, as Kafka does).

Everything it learns goes into the run's ``Trace``. Deterministic: no clock but the loop's,
no randomness of its own.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol
from uuid import UUID

from model import (
    AckBatch,
    AcquiredRecords,
    AcquireMode,
    BrokerConfig,
    ErrorCode,
    HeartbeatResult,
    LogBatch,
    RecordState,
    ShareApiError,
    SharePartition,
)
from model.config import parse_by_duration_ms
from model.session import next_epoch
from sharegroup.engine import Change, PartitionKey, ShareEngine
from sharegroup.persist.policy import (
    DEFAULT_UPDATES_PER_SNAPSHOT,
    PersistPolicy,
    initial_snapshot,
    reset_snapshot,
)
from sharegroup.persist.records import GroupConfigs, TopicIdAssigned
from sharegroup.scenario import trace as tr
from sharegroup.scenario.trace import Trace
from sharegroup.sim.loop import EventLoop
from sharegroup.sim.memlog import MemLog, PartitionLog
from sharegroup.sim.state_log import StateLog, StateWriter

NODE_ID: Final = 0
PARTITION_FETCH_BYTES: Final = 1 << 20  # the proxy's per-partition Fetch size (proxy/shares.py)
DEFAULT_MAX_RECORDS: Final = 500  # the proxy's MaxRecords when a request gives none

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
    delivered: list[Delivered] = field(default_factory=list)
    lock_timeout_ms: int = 0

    @property
    def record_count(self) -> int:
        return sum(b - a + 1 for d in self.delivered for a, b in d.runs)


class Client(Protocol):
    """What the proxy needs of a connected simulated client."""

    consumer_id: str

    def on_disconnect(self, conn: int) -> None: ...


@dataclass(slots=True)
class _Pending:
    """A ShareFetch waiting in the purgatory for records (long polling)."""

    consumer_id: str
    conn: int
    req: FetchRequest
    parts: list[TopicPartition]
    response: FetchResponse
    deadline_ms: int
    reply: Callable[[FetchResponse], None]
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
        self.state_log = StateLog()
        self.instances = 0  # proxy processes started so far
        self.store = self._start_store()
        self.engine = self._recover()
        # Topic ids are assigned by the proxy (as for an upstream without them) and the scenario's
        # group configs set through it: both are written to the state topic.
        self.store.write([TopicIdAssigned(name, tid) for name, tid in self.topic_ids.items()])
        if group_configs:
            self._set_group_configs(dict(group_configs))
        self.up = True
        self.connections: dict[int, Client] = {}
        self.members: dict[str, str] = {}  # member id -> consumer id
        self.window_max: dict[PartitionKey, int] = {}
        self._parked: dict[PartitionKey, list[_Pending]] = {}
        self._next_conn = 0
        self._tick_at: int | None = None

    # ------------------------------------------------------------------ the durable store
    def _start_store(self) -> StateWriter:
        """A proxy process starts: it claims the state topic and replays it."""
        self.instances += 1
        store = StateWriter(self.state_log, UUID(int=self.instances))
        store.start(self.loop.now_ms)
        return store

    def _recover(self) -> ShareEngine:
        """A new engine with what the replay holds, as ``ShareService.start`` sets it up: group
        configs and topic ids now; share partitions when first used (``_init_partition``)."""
        replay = self.store.replay
        engine = ShareEngine(self.broker_config)
        for group_id, configs in replay.group_configs.items():
            engine.set_group_configs(group_id, dict(configs))
        if replay.topic_ids:
            self.topic_ids = {n: replay.topic_ids.get(n, t) for n, t in self.topic_ids.items()}
            self.topic_names = {tid: name for name, tid in self.topic_ids.items()}
        return engine

    def _persist(self, changes: Sequence[Change]) -> None:
        """Write what the engine changed, through the persistence policy the proxy uses."""
        if changes:
            self.store.write(
                self.policy.records(
                    changes, self.store.replay.partitions, self.engine.partitions, self.loop.now_ms
                )
            )

    def _set_group_configs(self, configs: dict[str, str | None]) -> None:
        self.engine.set_group_configs(self.group_id, configs)
        entry = self.engine.group(self.group_id)
        assert entry is not None
        self.store.write([GroupConfigs(self.group_id, dict(entry.overrides))])

    # ------------------------------------------------------------------ connections
    def connect(self, client: Client) -> int | None:
        """A new client connection, or None while the proxy is down."""
        if not self.up:
            return None
        self._next_conn += 1
        self.connections[self._next_conn] = client
        return self._next_conn

    def connection_closed(self, conn: int) -> None:
        client = self.connections.pop(conn, None)
        if client is None:
            return
        self._publish(self.engine.connection_closed(NODE_ID, conn))

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
        now = self.loop.now_ms
        try:
            result = self.engine.heartbeat(
                self.group_id,
                member_id,
                member_epoch,
                now_ms=now,
                partition_counts=self.log.partition_counts(),
                subscribed_topic_names=subscribed,
                client_id=client.consumer_id,
            )
        except ShareApiError as e:
            return e.code
        self.members[member_id] = client.consumer_id
        self._schedule_tick(self.engine.next_deadline_ms())
        if result.assignment is not None:
            self._initialize(result.assignment)
        return result

    def _initialize(self, assignment: dict[str, tuple[int, ...]]) -> None:
        entry = self.engine.group(self.group_id, create=True)
        assert entry is not None
        for name, parts in assignment.items():
            tid = self.topic_ids[name]
            known_topic = any(t == tid for t, _ in entry.partitions)
            for p in parts:
                key = (self.group_id, tid, p)
                if self.engine.share_partition(key) is None:
                    self._init_partition(key, name, known_topic)

    def _init_partition(self, key: PartitionKey, topic: str, known_topic: bool) -> SharePartition:
        durable = self.store.replay.partitions.get(key)
        if durable is not None:
            # Recovery (docs/persistence.md, Recovery): persisted ranges keep their state and
            # delivery count; acquired-but-unpersisted offsets form the gap window and are
            # fetched again.
            return self.engine.add_partition(
                key, SharePartition.from_state(durable.start_offset, durable.batches())
            )
        config = self.engine.group_config(key[0])
        reset = "earliest" if known_topic else config.auto_offset_reset
        start = self._start_offset(self.log.partition(topic, key[2]), reset)
        self.store.write([initial_snapshot(key, start, self.loop.now_ms)])
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
    def _apply_acks(
        self, consumer_id: str, member_id: str, tp: TopicPartition, batches: list[AckBatch]
    ) -> ErrorCode:
        topic = self.topic_names.get(tp[0])
        if topic is None:
            return ErrorCode.UNKNOWN_TOPIC_ID
        key = (self.group_id, tp[0], tp[1])
        now = self.loop.now_ms
        self._expire_due()
        try:
            change = self.engine.acknowledge(key, member_id, batches, now)
        except ShareApiError as e:
            for b in batches:
                self.trace.ack_error(
                    now, consumer_id, topic, tp[1], b.first_offset, b.last_offset, e.code.name
                )
            return e.code
        self._persist([change])
        runs = _type_runs(batches)
        for sb in change.delta.batches:
            kind = _KIND_OF_ACK[_type_at(runs, sb.first_offset)]
            self.trace.ack(
                now, consumer_id, topic, tp[1], sb.first_offset, sb.last_offset, kind, sb.state.name
            )
        if any(t == 4 for _, _, t in runs):
            for first, last, t in runs:
                if t == 4:
                    self.trace._event(now, tr.RENEW, consumer_id, topic, tp[1], first, last, "")
            self._schedule_tick(self.engine.next_deadline_ms())
        self._wake(key)
        return ErrorCode.NONE

    def share_acknowledge(
        self, conn: int, member_id: str, epoch: int, acks: dict[TopicPartition, list[AckBatch]]
    ) -> FetchResponse | None:
        """ShareAcknowledge. None: the connection is gone (no answer)."""
        client = self.connections.get(conn)
        if client is None:
            return None
        cache = self.engine.session_cache(NODE_ID)
        try:
            ctx = cache.acknowledge_context(self.group_id, member_id, epoch)
        except ShareApiError as e:
            return FetchResponse(error=e.code)
        resp = FetchResponse(
            lock_timeout_ms=self.engine.group_config(self.group_id).record_lock_duration_ms
        )
        for tp, batches in acks.items():
            resp.ack_errors[tp] = self._apply_acks(client.consumer_id, member_id, tp, batches)
        if ctx.final:
            self._publish(self.engine.close_session(NODE_ID, self.group_id, member_id))
        return resp

    # ------------------------------------------------------------------ fetch
    def share_fetch(
        self, conn: int, req: FetchRequest, reply: Callable[[FetchResponse], None]
    ) -> None:
        """ShareFetch: ``reply`` gets the response now or, after a long poll, later."""
        client = self.connections.get(conn)
        if client is None:
            return  # the connection is gone: no answer
        cache = self.engine.session_cache(NODE_ID)
        acks = {tp: b for tp, b in req.topics.items() if b}
        try:
            ctx = cache.fetch_context(
                self.group_id,
                req.member_id,
                req.epoch,
                connection_id=conn,
                add=list(req.topics),
                forget=req.forget,
                has_acknowledgements=bool(acks),
            )
        except ShareApiError as e:
            reply(FetchResponse(error=e.code))
            return
        config = self.engine.group_config(self.group_id)
        resp = FetchResponse(lock_timeout_ms=config.record_lock_duration_ms)
        for tp, batches in acks.items():
            resp.ack_errors[tp] = self._apply_acks(client.consumer_id, req.member_id, tp, batches)
        if ctx.final:
            self._publish(self.engine.close_session(NODE_ID, self.group_id, req.member_id))
            reply(resp)
            return
        if req.max_records == 0:
            reply(resp)
            return
        parts: list[TopicPartition] = []
        entry = self.engine.group(self.group_id, create=True)
        assert entry is not None
        for session_tp in ctx.session.partitions:
            tid = UUID(str(session_tp[0]))
            tp = (tid, session_tp[1])
            name = self.topic_names.get(tid)
            if name is None:
                continue
            key = (self.group_id, tid, tp[1])
            if self.engine.share_partition(key) is None:
                known = any(t == tid for t, _ in entry.partitions)
                self._init_partition(key, name, known)
            parts.append(tp)
        pending = _Pending(
            client.consumer_id,
            conn,
            req,
            parts,
            resp,
            self.loop.now_ms + max(req.max_wait_ms, 0),
            reply,
        )
        self._try_fetch(pending)

    def _try_fetch(self, pending: _Pending) -> None:
        pending.wake_scheduled = False
        if pending.done:
            return
        if pending.conn not in self.connections or (
            self.engine.session_cache(NODE_ID).get(self.group_id, pending.req.member_id) is None
        ):
            pending.done = True  # the connection or the share session is gone: no answer
            return
        acquired = self._acquire_all(pending)
        now = self.loop.now_ms
        if acquired or now >= pending.deadline_ms:
            self._finish(pending)
            return
        for tp in pending.parts:
            waiting = self._parked.setdefault((self.group_id, tp[0], tp[1]), [])
            if pending not in waiting:
                waiting.append(pending)
        if not pending.deadline_scheduled:
            pending.deadline_scheduled = True
            self.loop.at(pending.deadline_ms, self._deadline, pending)

    def _deadline(self, pending: _Pending) -> None:
        if not pending.done and self.loop.now_ms >= pending.deadline_ms:
            self._try_fetch(pending)

    def _finish(self, pending: _Pending) -> None:
        pending.done = True
        for tp in pending.parts:
            waiting = self._parked.get((self.group_id, tp[0], tp[1]))
            if waiting and pending in waiting:
                waiting.remove(pending)
        self.trace.fetched(self.loop.now_ms, pending.consumer_id, pending.response.record_count)
        pending.reply(pending.response)

    def _wake(self, key: PartitionKey) -> None:
        for pending in self._parked.get(key, ()):
            if not pending.done and not pending.wake_scheduled:
                pending.wake_scheduled = True
                self.loop.at(self.loop.now_ms, self._try_fetch, pending)

    def _acquire_all(self, pending: _Pending) -> bool:
        req = pending.req
        budget = req.max_records if req.max_records > 0 else DEFAULT_MAX_RECORDS
        batch_size = req.batch_size if req.batch_size > 0 else budget
        read_committed = self.engine.group_config(self.group_id).isolation_level == "read_committed"
        # MaxBytes split evenly over the partitions, at most 1 MiB each (as the proxy does).
        max_bytes = max(1, min(PARTITION_FETCH_BYTES, req.max_bytes // max(len(pending.parts), 1)))
        acquired_any = False
        for tp in pending.parts:
            if budget <= 0:
                break
            got = self._acquire_from(
                pending, tp, budget, batch_size, req.mode, read_committed, max_bytes
            )
            if got:
                acquired_any = True
                budget -= got
        return acquired_any

    def _acquire_from(
        self,
        pending: _Pending,
        tp: TopicPartition,
        budget: int,
        batch_size: int,
        mode: AcquireMode,
        read_committed: bool,
        max_bytes: int = PARTITION_FETCH_BYTES,
    ) -> int:
        """Fetch and acquire from one partition; returns how many offsets were acquired."""
        key = (self.group_id, tp[0], tp[1])
        sp = self.engine.share_partition(key)
        assert sp is not None
        topic = self.topic_names[tp[0]]
        plog = self.log.partition(topic, tp[1])
        now = self.loop.now_ms
        self._expire_due()
        fetch_offset = sp.next_fetch_offset()
        if not sp.has_available() and sp.in_flight_count >= sp.max_in_flight:
            return 0  # at the in-flight limit: wait for acknowledgements
        if fetch_offset >= plog.high_watermark and not sp.has_available():
            return 0  # nothing new in the log
        if fetch_offset < plog.log_start_offset:
            # OFFSET_OUT_OF_RANGE: the log start moved past us (digest 3.3).
            if plog.log_start_offset > sp.start_offset:
                old_start = sp.start_offset
                self._publish([Change(key, sp.move_log_start(plog.log_start_offset), "log-start")])
                # Records below the new log start that the share partition never cached are
                # gone as well: never to be delivered.
                self.trace.archive(
                    now, topic, tp[1], old_start, plog.log_start_offset - 1, "log-start"
                )
            return 0
        batches = plog.read(fetch_offset, max_bytes)
        if not batches:
            return 0
        log_batches = [
            LogBatch(b.base_offset, b.last_offset, read_committed and b.aborted) for b in batches
        ]
        acq = sp.acquire(
            pending.req.member_id,
            fetch_offset,
            log_batches,
            now_ms=now,
            max_records=budget,
            batch_size=batch_size,
            mode=mode,
        )
        if not acq.delta.empty:
            self._publish([Change(key, acq.delta, "acquire")])
        if not acq.records:
            return 0
        window = sp.in_flight_count
        if window > self.window_max.get(key, 0):
            self.window_max[key] = window
        self._schedule_tick(acq.lock_deadline_ms)
        runs: list[tuple[int, int]] = []
        for r in acq.records:
            for a, b in plog.data_runs(r.first_offset, r.last_offset):
                self.trace.acquire(now, pending.consumer_id, topic, tp[1], a, b, r.delivery_count)
                runs.append((a, b))
        pending.response.delivered.append(Delivered(tp, topic, tp[1], acq.records, runs))
        return acq.count

    # ------------------------------------------------------------------ changes and time
    def _publish(self, changes: Sequence[Change]) -> None:
        now = self.loop.now_ms
        self._persist(changes)
        for change in changes:
            key = change.key
            topic = self.topic_names[key[1]]
            partition = key[2]
            for b in change.delta.batches:
                if change.cause in ("expiry", "session-close", "connection-close"):
                    self.trace.unlock(
                        now,
                        change.cause,
                        topic,
                        partition,
                        b.first_offset,
                        b.last_offset,
                        b.state.name,
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

    def _expire_due(self) -> None:
        """Apply what the clock made due before serving a request. Every deadline the engine
        creates is put on the loop as a timer, and timers run before requests of the same
        millisecond, so this is a safety net that costs nothing while a tick is pending."""
        if self._tick_at is not None and self._tick_at > self.loop.now_ms:
            return
        due = self.engine.next_deadline_ms()
        if due is not None and due <= self.loop.now_ms:
            self._run_tick()

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
        entry = self.engine.group(self.group_id)
        if entry is not None and entry.group.members:
            return ErrorCode.NON_EMPTY_GROUP
        now = self.loop.now_ms
        for topic, partition, to in targets:
            key = (self.group_id, self.topic_ids[topic], partition)
            start = self._start_offset(self.log.partition(topic, partition), to)
            durable = self.store.replay.partitions.get(key)
            self.store.write([reset_snapshot(key, start, durable, now)])
            self.engine.add_partition(key, SharePartition(start))
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
        for waiting in self._parked.values():
            for pending in waiting:
                pending.done = True
        self._parked.clear()
        for topic, partition in self.trace.topic_partitions:
            hw = self.log.partition(topic, partition).high_watermark
            if hw:
                self.trace.unlock(now, "proxy-restart", topic, partition, 0, hw - 1, tr.AVAILABLE)
        self.engine = ShareEngine(self.broker_config)  # nothing is served while down
        self._tick_at = None
        for conn, client in clients:
            client.on_disconnect(conn)
        self.loop.after(downtime_ms, self._come_up)

    def _come_up(self) -> None:
        self.store = self._start_store()
        self.engine = self._recover()
        self.up = True

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

    def probe_epoch(self, member_id: str) -> tuple[int, list[TopicPartition]] | None:
        """The stored share session of a member (for a client resynchronising after a probe)."""
        session = self.engine.session_cache(NODE_ID).get(self.group_id, member_id)
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
