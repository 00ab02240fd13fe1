"""The durable store of share-group state: an internal topic on the upstream cluster.

Policy (docs/persistence.md): the topic has ``cleanup.policy=delete`` with infinite retention,
like Kafka's ``__share_group_state``; the proxy reclaims space itself by writing fresh snapshots
of every key at start-up and then deleting the records below its claim (DeleteRecords).
Compaction would keep only the last record per key, which would lose the updates since a
snapshot.

Single writer, kept by the log itself: an instance starts by appending a WriterClaim record
with an id of its own, and tags every record it writes with that id. The log decides: after a
claim, only the claiming writer's records count (``Replay.apply_logged``); the records of an
older instance that went on writing are ignored by every reader. A write is confirmed only
once this instance's own tail reader has read it back with no other claim in front of it,
so every confirmed write lies before any newer claim and the newer instance, which reads
through its own claim before serving, sees it. Writes are idempotent produces with acks=all:
a round trip of about a millisecond, where a Kafka transaction per write cost 5-30 ms.

Writes go through librdkafka's idempotent producer: a non-blocking call from the Trio thread, so
writes of many partitions are in flight at once, in the order they were made, and its delivery
reports are polled from a Trio task (only failures matter). The tail reader is the proxy's own
Fetch, in the Trio thread; it also checks that this instance's records come back without a gap
in their sequence numbers. A librdkafka consumer replays the topic at start-up only.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID, uuid4

import trio
from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from kafka.record.memory_records import MemoryRecords

from proxy import wire
from proxy.kafka_handles import keep
from proxy.security import UpstreamSecurity
from proxy.upstream import BrokerConnection, UpstreamError, parse_servers
from sharegroup.persist.records import (
    RECORD_WRITER_CLAIM,
    WRITER_HEADER,
    GroupConfigs,
    Record,
    RecordError,
    Snapshot,
    Tombstone,
    TopicIdAssigned,
    WriterClaim,
    decode,
    encode,
    joined,
    read_writer_header,
    type_of_key,
    writer_header,
)
from sharegroup.persist.recovery import Replay

log = logging.getLogger("sharegroup.state")
# librdkafka's own lines (connections coming and going) go through logging, not raw to stderr.
CLIENT_LOG = logging.getLogger("librdkafka")

DEFAULT_TOPIC = "__sharegroup_state"
_PARTITION_EOF = -191

# The tail reader's Fetch: a long poll. Kafka answers it as soon as a record lands, so this
# only sets the idle rate (10 Fetches/s); Tansu answers only when the wait is over, so there it
# bounds how long a write waits to be confirmed (about 50 ms at 100; 250 ms at 500).
TAIL_MAX_WAIT_MS = 100
TAIL_FETCH_BYTES = 4 << 20
TAIL_MAX_FRAME_BYTES = 64 << 20
TAIL_TIMEOUT_S = 30.0
TAIL_BACKOFF_S = 0.05
TAIL_BACKOFF_MAX_S = 2.0
DELIVERY_POLL_S = 0.05
# Fetch errors after which the reader finds the leader again: UNKNOWN_TOPIC_OR_PARTITION,
# LEADER_NOT_AVAILABLE, NOT_LEADER_OR_FOLLOWER, REPLICA_NOT_AVAILABLE, KAFKA_STORAGE_ERROR,
# FENCED_LEADER_EPOCH, UNKNOWN_LEADER_EPOCH, OFFSET_NOT_AVAILABLE.
RETRIABLE_FETCH_ERRORS = frozenset({3, 5, 6, 9, 56, 74, 75, 78})
RECOVER_BACKOFF_S = 0.5
RECOVER_BACKOFF_MAX_S = 10.0


class StateWriteError(Exception):
    def __init__(self, message: str, *, fenced: bool = False) -> None:
        super().__init__(message)
        self.fenced = fenced


@dataclass
class StoreConfig:
    bootstrap: str
    topic: str = DEFAULT_TOPIC
    replication_factor: int | None = None  # None: min(3, brokers)
    min_isr: int | None = None  # None: min(2, replication factor)
    updates_per_snapshot: int = 500
    write_timeout_s: float = 10.0  # start-up steps (claim, admin calls)
    # How long a write may stay unconfirmed (the broker away) before this instance gives up
    # on it: its outcome is then unknown, and the instance recovers (StateStore._recover).
    commit_retry_s: float = 120.0
    # The state partition this store writes (proxy/state_partitions.py runs one store per
    # state partition it owns), the partition count a new topic is created with, and
    # whether start() creates the topic (the partitioned store does that once for all).
    partition: int = 0
    partitions: int = 1
    create_topic: bool = True
    # TLS and SASL for the store's own connections: the Trio tail reader's and librdkafka's.
    security: UpstreamSecurity = field(default_factory=UpstreamSecurity)

    def client(self, settings: dict[str, Any]) -> dict[str, Any]:
        """A librdkafka client config: ``settings`` plus the bootstrap and security ones."""
        return {
            "bootstrap.servers": self.bootstrap,
            "logger": CLIENT_LOG,
            **self.security.librdkafka,
            **settings,
        }


@dataclass
class _Reclaimed:
    replay: Replay  # the log through the new claim
    foreign_claim: bool


@dataclass
class Waiter:
    seq: int
    done: trio.Event = field(default_factory=trio.Event)
    error: StateWriteError | None = None


def _poll_batch(consumer: Consumer, timeout_s: float) -> list[Message]:
    """What the consumer has: waits up to ``timeout_s`` for the first message only (consume()
    would wait its whole timeout unless it fills its batch), then takes all that is queued."""
    first = consumer.poll(timeout_s)
    return [] if first is None else [first, *consumer.consume(10000, 0)]


def _writer_of(message: Message) -> tuple[UUID, int] | None:
    return header_writer(message.headers() or ())


def header_writer(headers: Any) -> tuple[UUID, int] | None:
    for name, value in headers:
        if name == WRITER_HEADER and isinstance(value, bytes):
            return read_writer_header(value)
    return None


def new_producer(config: StoreConfig) -> Producer:
    """The idempotent producer of the state writes (one per instance, whatever the number
    of state partitions it writes)."""
    producer = Producer(
        config.client(
            {
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 0,
                "socket.nagle.disable": True,
                "message.timeout.ms": int(config.commit_retry_s * 1000),
            }
        )
    )
    return keep(producer)


class StateStore:
    """The writer and reader of one state partition (``config.partition``)."""

    def __init__(self, config: StoreConfig, producer: Producer | None = None) -> None:
        self.config = config
        self.partition = config.partition
        self.writer_id = uuid4()
        # The state as this instance wrote it, in log order: applied when a write is made (the
        # log has it in that order). A write that fails stops the writer (see _fail), so this
        # never holds anything that will not be durable unless the instance stops serving.
        self.replay = Replay()
        self.fenced = False
        self.claim_offset = -1
        # Never delete below the claim: the partition holds state this instance could not
        # take over (PartitionedStateStore._rehome).
        self.keep_log = False
        self._producer: Producer | None = producer  # shared by the stores of one instance
        # A shared producer carries the writes of other state partitions: recovery leaves it
        # to them (its records of this store's old writer id count for no one anyway).
        self._own_producer = producer is None
        self._tail_done = trio.Event()
        self._tail_offset = 0  # where the tail reader reads next
        self._read_seq = 0  # the last of our sequence numbers it read
        self._seq = 0  # last sequence number produced
        self._confirmed = 0  # last sequence number read back before any other claim
        self._waiters: deque[Waiter] = deque()
        self._stopped = False
        # A write of unknown outcome was met: the tail reader stops and _recover runs.
        self._recover_wanted = False
        self._generation = 0  # bumped with every producer: old delivery reports are ignored
        self.recoveries = 0
        self._own_writers = {self.writer_id}  # every writer id this instance has used
        self._fenced_by_other = False  # another instance claimed the topic: for good
        self._claims_read: list[tuple[int, UUID]] = []  # (offset, writer) in the last replay

    # ------------------------------------------------------------------ start-up
    async def start(self, nursery: trio.Nursery) -> Replay:
        started = time.monotonic()
        if self.config.create_topic:
            await trio.to_thread.run_sync(self.create_topic)
        created = time.monotonic()
        await trio.to_thread.run_sync(self._claim)
        claimed = time.monotonic()
        self.replay = await trio.to_thread.run_sync(self._read_through_claim)
        log.info(
            "state topic %s partition %d: %d records replayed (%d of fenced writers ignored), %d share "
            "partitions, %d groups with configs, in %.2fs (topic %.2fs, claim %.2fs at offset "
            "%d, replay %.2fs)",
            self.config.topic,
            self.partition,
            self.replay.records,
            self.replay.ignored,
            len(self.replay.partitions),
            len(self.replay.group_configs),
            time.monotonic() - started,
            created - started,
            claimed - created,
            self.claim_offset,
            time.monotonic() - claimed,
        )
        if self.replay.owner != self.writer_id:
            self.fenced = True
            log.error(
                "state topic %s partition %d was claimed by a newer instance at start",
                self.config.topic,
                self.partition,
            )
        nursery.start_soon(self._run_tail)
        return self.replay

    def _admin(self) -> AdminClient:
        return keep(AdminClient(self.config.client({})))

    def create_topic(self) -> int:
        """Create the topic unless it exists; returns its partition count."""
        admin = self._admin()
        metadata = admin.list_topics(timeout=30)
        existing = metadata.topics.get(self.config.topic)
        if existing is not None and existing.error is None and existing.partitions:
            return len(existing.partitions)
        brokers = max(1, len(metadata.brokers))
        rf = self.config.replication_factor or min(3, brokers)
        min_isr = self.config.min_isr or min(2, rf)
        topic = NewTopic(
            self.config.topic,
            self.config.partitions,
            rf,
            config={
                "cleanup.policy": "delete",
                "retention.ms": "-1",
                "min.insync.replicas": str(min_isr),
            },
        )
        for future in admin.create_topics([topic]).values():
            try:
                future.result(30)
            except KafkaException as e:
                if "TOPIC_ALREADY_EXISTS" not in str(e):
                    raise
                # Created by another instance meanwhile.
                again = admin.list_topics(self.config.topic, timeout=30).topics
                return max(1, len(again[self.config.topic].partitions))
        log.info(
            "created state topic %s (%d partitions, replication factor %d, min.insync.replicas %d)",
            self.config.topic,
            self.config.partitions,
            rf,
            min_isr,
        )
        return self.config.partitions

    def _claim(self) -> None:
        """Append this instance's claim and learn its offset."""
        if self._producer is None:
            self._producer = new_producer(self.config)
        outcome: list[tuple[Any, Message]] = []
        claim = WriterClaim(
            self.writer_id, int(time.time() * 1000), socket.gethostname(), os.getpid()
        )
        self._send(claim, 0, lambda err, msg: outcome.append((err, msg)))
        self._producer.flush(self.config.write_timeout_s * 3)
        if not outcome:
            raise StateWriteError(
                f"claiming {self.config.topic} partition {self.partition}: no answer"
            )
        err, msg = outcome[0]
        if err is not None:
            raise StateWriteError(f"claiming {self.config.topic} partition {self.partition}: {err}")
        self.claim_offset = int(msg.offset() or 0)

    def _read_through_claim(self) -> Replay:
        """Replay the topic from its start through this instance's claim; the tail reader
        goes on from there."""
        replay = Replay()
        self._claims_read = []
        consumer = Consumer(
            self.config.client(
                {
                    "group.id": f"sharegroup-state-reader-{self.config.topic}",
                    "isolation.level": "read_committed",
                    "enable.auto.commit": False,
                    "enable.partition.eof": True,
                    "fetch.wait.max.ms": 100,
                    "socket.nagle.disable": True,
                    "fetch.queue.backoff.ms": 0,
                    "fetch.error.backoff.ms": 50,
                    "auto.offset.reset": "earliest",
                }
            )
        )
        keep(consumer)
        try:
            return self._replay_with(consumer, replay)
        finally:
            consumer.close()

    def _replay_with(self, consumer: Consumer, replay: Replay) -> Replay:
        # Start at the low watermark itself: assigning OFFSET_BEGINNING makes librdkafka look
        # the offset up first, which costs ~0.5 s before the first fetch.
        start = -2  # OFFSET_BEGINNING, if the watermarks cannot be read
        try:
            low, _high = consumer.get_watermark_offsets(
                TopicPartition(self.config.topic, self.partition), timeout=10
            )
            start = low
        except KafkaException as e:
            log.warning("reading the watermarks of %s: %s", self.config.topic, e)
        consumer.assign([TopicPartition(self.config.topic, self.partition, start)])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for m in _poll_batch(consumer, 0.1):
                err = m.error()
                if err is not None:
                    if err.code() == _PARTITION_EOF:
                        continue
                    raise StateWriteError(f"reading {self.config.topic}: {err}")
                key = m.key()
                if key is None:
                    continue
                writer = _writer_of(m)
                try:
                    record = decode(key, m.value())
                    replay.apply_logged(record, writer and writer[0])
                    if isinstance(record, WriterClaim):
                        self._claims_read.append((m.offset() or 0, record.writer_id))
                except RecordError as e:
                    log.warning("skipping state record at offset %s: %s", m.offset(), e)
                offset = m.offset() or 0
                if offset >= self.claim_offset:
                    # Through our claim: the rest is read by the tail reader.
                    self._tail_offset = offset + 1
                    return replay
        raise StateWriteError(
            f"could not read {self.config.topic} through offset {self.claim_offset} within 60 s"
        )

    # ------------------------------------------------------------------ the tail reader
    async def _run_tail(self) -> None:
        """Read the tail until fenced or stopped; after a write of unknown outcome, recover
        (``_recover``) and read on."""
        try:
            while not self._stopped:
                try:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._poll_deliveries)
                        await self._tail(nursery)
                        nursery.cancel_scope.cancel()
                except Exception as e:  # noqa: BLE001 - the proxy stays up and recovers
                    log.error("the state topic reader failed: %r", e)
                    self._fail(StateWriteError(f"the state topic reader failed: {e!r}"))
                if not self._recover_wanted:
                    return
                try:
                    await self._recover()
                except Exception:  # it runs in the proxy's own nursery
                    # Not a failure recovery knows (those it retries itself): logged, and
                    # recovery starts again after a pause; this partition is not served
                    # meanwhile, every other one is.
                    log.exception(
                        "state topic %s partition %d: recovery failed",
                        self.config.topic,
                        self.partition,
                    )
                    self._recover_wanted = not self._fenced_by_other
                    await trio.sleep(RECOVER_BACKOFF_MAX_S)
                    continue
                if self.fenced:
                    return
        finally:
            self._stopped = True
            # Nothing is read back any more (the proxy is stopping, or fenced): writes still
            # waiting get an error now rather than at their timeout. They may be in the log or
            # not; their clients are told the acknowledgement failed.
            self.fenced = True
            waiting = len(self._waiters)
            self._fail(StateWriteError("the state topic reader stopped", fenced=True))
            if waiting:
                log.info("state reader stopped with %d writes unconfirmed", waiting)
            self._tail_done.set()

    async def _recover(self) -> None:
        """Make the log say what this instance holds again, after a write of unknown outcome.

        The unknown write may land later or never; no reader can be told which. So this
        instance takes the topic again under a new writer id: a new producer (the old one's
        queue is purged), a new WriterClaim, and a replay of the log through it. From the new
        claim on, records of the old writer id count for no one (``Replay.apply_logged``), so
        the unknown write either lies before the claim or is void. Then it writes, after the
        claim, a snapshot of every share partition as this instance wrote it (``self.replay``,
        which includes every write it ever confirmed and the unknown ones), the group configs
        and topic ids, and tombstones for share partitions the log still has but this instance
        deleted. The log now agrees with the instance whatever became of the unknown write, and
        a confirmed acknowledgement, being in ``self.replay``, is written again, never undone.
        Then writes are confirmed again (in order, so after these snapshots).

        If the replay meets another instance's claim after this instance's previous one, that
        instance owns the topic: this one stays fenced (and the other, seeing the new claim,
        stops too; a restart of either recovers). Retried with backoff while the cluster is
        away."""
        self.recoveries += 1
        backoff = RECOVER_BACKOFF_S
        while not self._stopped:
            try:
                logged = await trio.to_thread.run_sync(self._reclaim, abandon_on_cancel=True)
            except (StateWriteError, KafkaException) as e:
                log.warning("state topic recovery: %s; retrying in %.1fs", e, backoff)
                await trio.sleep(backoff)
                backoff = min(backoff * 2, RECOVER_BACKOFF_MAX_S)
                continue
            if logged.foreign_claim:
                self._recover_wanted = False
                self._fenced_by_other = True
                log.error(
                    "state topic %s was claimed by another instance; share groups stop here",
                    self.config.topic,
                )
                return
            records = self._reconcile(logged.replay)
            self._recover_wanted = False
            self.fenced = False
            try:
                self._produce(records)
            except StateWriteError as e:  # refused before it left: try again from the start
                log.warning("state topic recovery: %s", e)
                self._fail(e)
                continue
            log.warning(
                "state topic writer recovered: writer %s claimed %s at offset %d; %d records "
                "rewritten (%d share partitions)",
                self.writer_id,
                self.config.topic,
                self.claim_offset,
                len(records),
                len(self.replay.partitions),
            )
            return

    def _reclaim(self) -> _Reclaimed:
        """(worker thread) A new writer: producer, claim, replay through the claim. Not if
        another instance claimed the topic since this one's last claim: a new claim would
        fence it."""
        previous_claim = self.claim_offset
        if self._foreign_claim_after(previous_claim):
            return _Reclaimed(Replay(), foreign_claim=True)
        old, self._producer = self._producer, None
        self._generation += 1
        if old is not None and self._own_producer:
            old.purge()
            old.flush(0)
        self._own_producer = True  # _claim makes a producer of this store's own
        self.writer_id = uuid4()
        self._own_writers.add(self.writer_id)
        self._seq = self._read_seq = self._confirmed = 0
        self._claim()
        replay = self._read_through_claim()
        # A claim after this instance's previous one by a writer id it never used: another
        # instance took the topic meanwhile.
        foreign = any(
            offset > previous_claim and writer not in self._own_writers
            for offset, writer in self._claims_read
        )
        return _Reclaimed(replay, foreign)

    def _foreign_claim_after(self, offset: int) -> bool:
        """(worker thread) Is there a claim of another writer after ``offset``, up to the end
        of the topic now?"""
        consumer = Consumer(
            {
                **self.config.client({}),
                "group.id": f"sharegroup-state-reader-{self.config.topic}",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "fetch.wait.max.ms": 100,
                "socket.nagle.disable": True,
                "auto.offset.reset": "earliest",
            }
        )
        keep(consumer)
        try:
            consumer.assign([TopicPartition(self.config.topic, self.partition, offset + 1)])
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                for m in _poll_batch(consumer, 0.1):
                    err = m.error()
                    if err is not None:
                        if err.code() == _PARTITION_EOF:
                            return False
                        raise StateWriteError(f"reading {self.config.topic}: {err}")
                    key = m.key()
                    if key is None or type_of_key(key) != RECORD_WRITER_CLAIM:
                        continue
                    writer = _writer_of(m)
                    if writer is None or writer[0] not in self._own_writers:
                        return True
            raise StateWriteError(f"could not read {self.config.topic} to its end within 60 s")
        finally:
            consumer.close()

    def _reconcile(self, logged: Replay) -> list[Record]:
        """Records that make the log's state equal to ``self.replay``."""
        now = int(time.time() * 1000)
        mine = self.replay
        out: list[Record] = [
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
            for key, d in mine.partitions.items()
        ]
        out += [Tombstone(key) for key in logged.partitions if key not in mine.partitions]
        out += [GroupConfigs(g, dict(c)) for g, c in mine.group_configs.items()]
        out += [GroupConfigs(g, None) for g in logged.group_configs if g not in mine.group_configs]
        out += [TopicIdAssigned(name, tid) for name, tid in mine.topic_ids.items()]
        return out

    async def _poll_deliveries(self) -> None:
        """Serve the producer's delivery reports (only failures matter)."""
        assert self._producer is not None
        while True:
            self._producer.poll(0)
            await trio.sleep(DELIVERY_POLL_S)

    async def _tail(self, nursery: trio.Nursery) -> None:
        """Read the topic after the claim with the proxy's own Fetch requests, on a connection
        of its own to the partition leader (a long poll there holds nothing else up): confirm
        our own writes in order, and stop at another instance's claim.

        No client thread is involved: a librdkafka consumer needed one of its own, which took
        the GIL from the Trio thread for every batch it read and handed each confirmation over
        with trio.from_thread."""
        conn: BrokerConnection | None = None
        backoff = TAIL_BACKOFF_S
        troubled = False  # a problem was logged: the next ones go to debug until it reads again

        def trouble(message: str) -> None:
            nonlocal troubled
            (log.debug if troubled else log.warning)("state topic reader: %s", message)
            troubled = True

        try:
            while not self._stopped and not self._recover_wanted:
                if conn is None or conn.closed:
                    try:
                        conn = await self._leader_connection(nursery)
                    except (UpstreamError, OSError, trio.TooSlowError) as e:
                        trouble(f"{e}; retrying")
                        await trio.sleep(backoff)
                        backoff = min(backoff * 2, TAIL_BACKOFF_MAX_S)
                        continue
                version = conn.version_for(wire.FETCH, 12)
                request = wire.fetch_request(
                    version,
                    [(self.config.topic, self.partition, self._tail_offset, TAIL_FETCH_BYTES)],
                    max_wait_ms=TAIL_MAX_WAIT_MS,
                    min_bytes=1,
                )
                try:
                    resp = await conn.request(request, version, timeout_s=TAIL_TIMEOUT_S)
                except UpstreamError as e:
                    trouble(f"{e}; reconnecting")
                    await conn.aclose()
                    conn = None
                    continue
                part = resp.responses[0].partitions[0]
                code = part.error_code or resp.error_code
                if code in RETRIABLE_FETCH_ERRORS:
                    trouble(f"error {code} from the leader; reconnecting")
                    await conn.aclose()
                    conn = None
                    await trio.sleep(backoff)
                    backoff = min(backoff * 2, TAIL_BACKOFF_MAX_S)
                    continue
                if code:
                    self._fail(
                        StateWriteError(
                            f"reading {self.config.topic} at offset {self._tail_offset}: "
                            f"error {code}"
                        )
                    )
                    return
                backoff = TAIL_BACKOFF_S
                if troubled:
                    log.info("state topic reader: reading again at offset %d", self._tail_offset)
                    troubled = False
                if part.records and self._read_back(part.records):
                    return  # fenced
        finally:
            if conn is not None:
                await conn.aclose()

    def _read_back(self, records: bytes) -> bool:
        """Take what a tail Fetch returned; True when another instance's claim was met."""
        confirmed, fenced_by = 0, None
        data = MemoryRecords(bytes(records))  # type: ignore[no-untyped-call]
        while fenced_by is None and (batch := data.next_batch()) is not None:  # type: ignore[no-untyped-call]
            if batch.is_control_batch:
                self._tail_offset = max(
                    self._tail_offset, batch.base_offset + batch.last_offset_delta + 1
                )
                continue
            for r in batch:
                if r.offset < self._tail_offset:
                    continue
                writer = header_writer(r.headers)
                if type_of_key(r.key) == RECORD_WRITER_CLAIM:
                    if writer is None or writer[0] != self.writer_id:
                        fenced_by = r.offset
                        break
                elif writer is not None and writer[0] == self.writer_id:
                    if writer[1] != self._read_seq + 1:
                        # A write of ours is missing before this one: lost, so the log no
                        # longer says what this instance holds (recovered by _recover).
                        self._fail(
                            StateWriteError(
                                f"state write {self._read_seq + 1} is missing from the log"
                                f" (read {writer[1]} at offset {r.offset})"
                            )
                        )
                        return True
                    self._read_seq = confirmed = writer[1]
                self._tail_offset = r.offset + 1
        if confirmed or fenced_by is not None:
            self._on_read(confirmed, fenced_by)
        return fenced_by is not None

    async def _leader_connection(self, nursery: trio.Nursery) -> BrokerConnection:
        """A new connection to the leader of the state topic's partition."""
        errors = []
        for host, port in parse_servers(self.config.bootstrap):
            boot = BrokerConnection(host, port, TAIL_MAX_FRAME_BYTES, self.config.security)
            try:
                await boot.start(nursery)
                version = boot.version_for(wire.METADATA, 12)
                meta = await boot.request(
                    wire.metadata_request(version, [self.config.topic]),
                    version,
                    timeout_s=TAIL_TIMEOUT_S,
                )
            except (UpstreamError, OSError, trio.TooSlowError) as e:
                errors.append(f"{host}:{port}: {e}")
                await boot.aclose()
                continue
            leader = next(
                (
                    p.leader_id
                    for t in meta.topics
                    for p in t.partitions
                    if p.partition_index == self.partition
                ),
                -1,
            )
            broker = next((b for b in meta.brokers if b.node_id == leader), None)
            if broker is None:
                await boot.aclose()
                raise UpstreamError(f"{self.config.topic} partition {self.partition} has no leader")
            if (broker.host, broker.port) == (host, port):
                return boot
            await boot.aclose()
            conn = BrokerConnection(
                broker.host, broker.port, TAIL_MAX_FRAME_BYTES, self.config.security
            )
            await conn.start(nursery)
            return conn
        raise UpstreamError("no bootstrap server reachable: " + "; ".join(errors))

    def _on_read(self, confirmed: int, fenced_by: int | None) -> None:
        if confirmed > self._confirmed:
            self._confirmed = confirmed
        waiters = self._waiters
        while waiters and waiters[0].seq <= self._confirmed:
            waiters.popleft().done.set()
        if fenced_by is not None:
            self._fail(
                StateWriteError(
                    f"this proxy instance was fenced: another one claimed {self.config.topic} "
                    f"at offset {fenced_by}",
                    fenced=True,
                ),
                recover=False,
            )

    def _delivery_report(self) -> Callable[[Any, Message], None]:
        generation = self._generation

        def delivered(err: Any, _msg: Message) -> None:
            """A delivery report (Trio thread, from _poll_deliveries). Only failures matter:
            success is confirmed by reading the record back. Reports of a producer that
            recovery replaced are its purged writes: already failed."""
            if err is not None and not self._stopped and generation == self._generation:
                self._fail(StateWriteError(f"state write failed, outcome unknown: {err}"))

        return delivered

    def _fail(self, error: StateWriteError, *, recover: bool = True) -> None:
        """Stop confirming writes: whatever is unconfirmed may or may not be in the log. Every
        write waiting fails (the acknowledging clients get an error, which allows either
        outcome). Unless another instance claimed the topic, ``_recover`` then makes the log
        say what this instance holds, and it serves again; fenced by another, it stops serving
        share groups for good."""
        if not self.fenced:
            if recover:
                log.error("state topic writer stopped, recovering: %s", error)
            else:
                log.error("state topic writer stopped: %s", error)
        self.fenced = True
        if not recover:
            self._fenced_by_other = True
        self._recover_wanted = recover and not self._stopped and not self._fenced_by_other
        error = StateWriteError(str(error), fenced=True)
        while self._waiters:
            waiter = self._waiters.popleft()
            waiter.error = error
            waiter.done.set()

    # ------------------------------------------------------------------ writes
    def _produce(self, records: Sequence[Record]) -> int:
        """Hand records to the producer and apply them to the written state; returns the
        sequence number of the last one."""
        if self.fenced:
            raise StateWriteError("this proxy instance no longer writes the state", fenced=True)
        for i, record in enumerate(records):
            record = joined(record)
            self._seq += 1
            try:
                self._send(record, self._seq, self._delivery_report())
            except (KafkaException, BufferError) as e:
                error = StateWriteError(f"state write refused: {e}")
                if i:  # part of the write is on its way: its outcome is unknown
                    self._fail(error)
                    raise StateWriteError(str(error), fenced=True) from e
                self._seq -= 1  # never sent: the tail reader must not wait for it
                raise error from e
            self.replay.apply(record)
        return self._seq

    def _send(self, record: Record, seq: int, on_delivery: Callable[[Any, Message], None]) -> None:
        """Hand one record, tagged with this writer and ``seq``, to the producer."""
        assert self._producer is not None
        key, value = encode(record)
        self._producer.produce(
            self.config.topic,
            key=key,
            value=value,
            partition=self.partition,
            headers=[(WRITER_HEADER, writer_header(self.writer_id, seq))],
            on_delivery=on_delivery,
        )

    async def write(self, records: Sequence[Record]) -> None:
        """Persist records; returns once they are durable and this instance still owns the
        topic, else raises."""
        if not records:
            return
        await self.confirmed(self.begin_write(records))

    def begin_write(self, records: Sequence[Record]) -> Waiter:
        """Hand records to the producer now (raises if refused); ``confirmed`` waits for them."""
        waiter = Waiter(self._produce(records))
        self._waiters.append(waiter)
        return waiter

    async def confirmed(self, waiter: Waiter) -> None:
        """Wait until the write of ``waiter`` is durable and read back, else raise."""
        with trio.CancelScope(shield=True):  # the write happens anyway; wait for its outcome
            with trio.move_on_after(self.config.commit_retry_s + 30):
                await waiter.done.wait()
        if not waiter.done.is_set():
            self._fail(StateWriteError("a state write was not confirmed in time"))
        if waiter.error is not None:
            raise waiter.error

    async def durable(self) -> None:
        """Wait until everything written so far is durable (or failed)."""
        if self._seq <= self._confirmed or self.fenced:
            return
        waiter = Waiter(self._seq)
        self._waiters.append(waiter)
        with trio.move_on_after(self.config.commit_retry_s + 30):
            await waiter.done.wait()

    def write_nowait(self, records: Sequence[Record]) -> None:
        """Write records without waiting (lock expiries, releases): Kafka applies those
        transitions even when the write fails."""
        if records and not self.fenced:
            try:
                self._produce(records)
            except StateWriteError as e:
                log.error("state write of %d records failed: %s", len(records), e)

    async def prune(self, snapshots: Sequence[Record]) -> int:
        """Write fresh snapshots of everything, then delete the records below this instance's
        claim: the snapshots (after the claim) supersede them, and the claim itself stays, so
        a later reader still knows whose records count."""
        if not snapshots:
            return 0
        await self.write(snapshots)
        if self.claim_offset <= 0:
            return 0
        await trio.to_thread.run_sync(self.delete_below, self.claim_offset)
        return self.claim_offset

    def delete_below(self, offset: int) -> None:
        admin = self._admin()
        try:
            futures = admin.delete_records(
                [TopicPartition(self.config.topic, self.partition, offset)]
            )
            for f in futures.values():
                f.result(30)
        except (KafkaException, AttributeError, TypeError) as e:
            log.warning("pruning the state topic below %d failed: %s", offset, e)

    @property
    def pending(self) -> int:
        """Writes made and not yet confirmed (or failed)."""
        return len(self._waiters)

    async def stop(self) -> None:
        """Stop reading and writing this state partition (writes still unconfirmed fail);
        returns once the tail reader has stopped."""
        self._stopped = True
        with trio.move_on_after(TAIL_TIMEOUT_S + 5):
            await self._tail_done.wait()

    async def aclose(self) -> None:
        self._stopped = True
        producer = self._producer
        if producer is not None:
            await trio.to_thread.run_sync(producer.flush, 5)
