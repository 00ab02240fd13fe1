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

The confluent-kafka clients run in one worker thread (the tail reader, which also serves the
producer's delivery reports); producing is a non-blocking call from the Trio thread, so writes
of many partitions are in flight at once, in the order they were made.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
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

from sharegroup.persist.records import (
    RECORD_WRITER_CLAIM,
    WRITER_HEADER,
    Record,
    RecordError,
    WriterClaim,
    decode,
    encode,
    read_writer_header,
    type_of_key,
    writer_header,
)
from sharegroup.persist.recovery import Replay

log = logging.getLogger("sharegroup.state")

DEFAULT_TOPIC = "__sharegroup_state"
_PARTITION_EOF = -191


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
    # How long a write may stay unconfirmed (the broker away) before this instance gives up:
    # its outcome is then unknown, so it stops serving share groups, as when fenced.
    commit_retry_s: float = 120.0


@dataclass
class _Waiter:
    seq: int
    done: trio.Event = field(default_factory=trio.Event)
    error: StateWriteError | None = None


def _poll_batch(consumer: Consumer, timeout_s: float) -> list[Message]:
    """What the consumer has: waits up to ``timeout_s`` for the first message only (consume()
    would wait its whole timeout unless it fills its batch), then takes all that is queued."""
    first = consumer.poll(timeout_s)
    return [] if first is None else [first, *consumer.consume(10000, 0)]


def _writer_of(message: Message) -> tuple[UUID, int] | None:
    headers: Any = message.headers() or ()
    for name, value in headers:
        if name == WRITER_HEADER and isinstance(value, bytes):
            return read_writer_header(value)
    return None


class StateStore:
    def __init__(self, config: StoreConfig) -> None:
        self.config = config
        self.writer_id = uuid4()
        # The state as this instance wrote it, in log order: applied when a write is made (the
        # log has it in that order). A write that fails stops the writer (see _fail), so this
        # never holds anything that will not be durable unless the instance stops serving.
        self.replay = Replay()
        self.fenced = False
        self.claim_offset = -1
        self._producer: Producer | None = None
        self._consumer: Consumer | None = None
        self._seq = 0  # last sequence number produced
        self._confirmed = 0  # last sequence number read back before any other claim
        self._waiters: deque[_Waiter] = deque()
        self._stop = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None

    # ------------------------------------------------------------------ start-up
    async def start(self, nursery: trio.Nursery) -> Replay:
        started = time.monotonic()
        await trio.to_thread.run_sync(self._create_topic)
        created = time.monotonic()
        await trio.to_thread.run_sync(self._claim)
        claimed = time.monotonic()
        self.replay = await trio.to_thread.run_sync(self._read_through_claim)
        log.info(
            "state topic %s: %d records replayed (%d of fenced writers ignored), %d share "
            "partitions, %d groups with configs, in %.2fs (topic %.2fs, claim %.2fs at offset "
            "%d, replay %.2fs)",
            self.config.topic,
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
            log.error("state topic %s was claimed by a newer instance at start", self.config.topic)
        self._token = trio.lowlevel.current_trio_token()
        nursery.start_soon(self._run_tail)
        return self.replay

    def _admin(self) -> AdminClient:
        return AdminClient({"bootstrap.servers": self.config.bootstrap})

    def _create_topic(self) -> None:
        admin = self._admin()
        metadata = admin.list_topics(timeout=30)
        if self.config.topic in metadata.topics:
            return
        brokers = max(1, len(metadata.brokers))
        rf = self.config.replication_factor or min(3, brokers)
        min_isr = self.config.min_isr or min(2, rf)
        topic = NewTopic(
            self.config.topic,
            1,
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
        log.info(
            "created state topic %s (replication factor %d, min.insync.replicas %d)",
            self.config.topic,
            rf,
            min_isr,
        )

    def _claim(self) -> None:
        """Append this instance's claim and learn its offset."""
        self._producer = Producer(
            {
                "bootstrap.servers": self.config.bootstrap,
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 0,
                "socket.nagle.disable": True,
                "message.timeout.ms": int(self.config.commit_retry_s * 1000),
            }
        )
        outcome: list[tuple[Any, Message]] = []
        claim = WriterClaim(
            self.writer_id, int(time.time() * 1000), socket.gethostname(), os.getpid()
        )
        self._send(claim, 0, lambda err, msg: outcome.append((err, msg)))
        self._producer.flush(self.config.write_timeout_s * 3)
        if not outcome:
            raise StateWriteError(f"claiming {self.config.topic}: no answer from the cluster")
        err, msg = outcome[0]
        if err is not None:
            raise StateWriteError(f"claiming {self.config.topic}: {err}")
        self.claim_offset = int(msg.offset() or 0)

    def _read_through_claim(self) -> Replay:
        """Replay the topic from its start through this instance's claim. The consumer stays
        open: it becomes the tail reader."""
        replay = Replay()
        consumer = Consumer(
            {
                "bootstrap.servers": self.config.bootstrap,
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
        self._consumer = consumer
        # Start at the low watermark itself: assigning OFFSET_BEGINNING makes librdkafka look
        # the offset up first, which costs ~0.5 s before the first fetch.
        start = -2  # OFFSET_BEGINNING, if the watermarks cannot be read
        try:
            low, _high = consumer.get_watermark_offsets(
                TopicPartition(self.config.topic, 0), timeout=10
            )
            start = low
        except KafkaException as e:
            log.warning("reading the watermarks of %s: %s", self.config.topic, e)
        consumer.assign([TopicPartition(self.config.topic, 0, start)])
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
                    replay.apply_logged(decode(key, m.value()), writer and writer[0])
                except RecordError as e:
                    log.warning("skipping state record at offset %s: %s", m.offset(), e)
                offset = m.offset() or 0
                if offset >= self.claim_offset:
                    # Through our claim: the rest is read by the tail reader.
                    consumer.seek(TopicPartition(self.config.topic, 0, offset + 1))
                    return replay
        raise StateWriteError(
            f"could not read {self.config.topic} through offset {self.claim_offset} within 60 s"
        )

    # ------------------------------------------------------------------ the tail reader
    async def _run_tail(self) -> None:
        try:
            await trio.to_thread.run_sync(self._tail, abandon_on_cancel=True)
        except Exception as e:  # noqa: BLE001 - the proxy stays up; share groups stop
            log.error("the state topic reader failed: %r", e)
        finally:
            self._stop.set()
            # Nothing is read back any more (the proxy is stopping, or the reader failed):
            # writes still waiting get an error now rather than at their timeout. They may be
            # in the log or not; their clients are told the acknowledgement failed.
            self.fenced = True
            waiting = len(self._waiters)
            self._fail(StateWriteError("the state topic reader stopped", fenced=True))
            if waiting:
                log.info("state reader stopped with %d writes unconfirmed", waiting)

    def _tail(self) -> None:
        """Read the topic after the claim (worker thread): confirm our own writes in order,
        and stop at another instance's claim."""
        consumer, producer = self._consumer, self._producer
        assert consumer is not None and producer is not None
        try:
            self._tail_loop(consumer, producer)
        finally:
            consumer.close()

    def _tail_loop(self, consumer: Consumer, producer: Producer) -> None:
        while not self._stop.is_set():
            producer.poll(0)  # delivery reports: a failed write stops the writer
            messages = _poll_batch(consumer, 0.05)
            if not messages:
                continue
            confirmed, fenced_by = 0, None
            for m in messages:
                err = m.error()
                if err is not None:
                    if err.code() != _PARTITION_EOF:
                        log.warning("reading %s: %s", self.config.topic, err)
                    continue
                writer = _writer_of(m)
                if type_of_key(m.key()) == RECORD_WRITER_CLAIM:
                    if writer is None or writer[0] != self.writer_id:
                        fenced_by = m.offset()
                        break
                elif writer is not None and writer[0] == self.writer_id:
                    confirmed = writer[1]
            if confirmed or fenced_by is not None:
                try:
                    trio.from_thread.run_sync(
                        self._on_read, confirmed, fenced_by, trio_token=self._token
                    )
                except trio.RunFinishedError:
                    return
            if fenced_by is not None:
                return

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
                )
            )

    def _delivered(self, err: Any, _msg: Message) -> None:
        """A delivery report (tail thread). Only failures matter: success is confirmed by
        reading the record back."""
        if err is not None and not self._stop.is_set():
            error = StateWriteError(f"state write failed, outcome unknown: {err}", fenced=True)
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(self._fail, error, trio_token=self._token)

    def _fail(self, error: StateWriteError) -> None:
        """Stop writing: whatever is unconfirmed may or may not be in the log, so this
        instance can no longer tell its state. It stops serving share groups (a restart, or
        another instance, recovers from the log)."""
        if not self.fenced:
            log.error("state topic writer stopped: %s", error)
        self.fenced = True
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
            self._seq += 1
            try:
                self._send(record, self._seq, self._delivered)
            except (KafkaException, BufferError) as e:
                error = StateWriteError(f"state write refused: {e}")
                if i:  # part of the write is on its way: its outcome is unknown
                    self._fail(StateWriteError(str(error), fenced=True))
                    raise StateWriteError(str(error), fenced=True) from e
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
            partition=0,
            headers=[(WRITER_HEADER, writer_header(self.writer_id, seq))],
            on_delivery=on_delivery,
        )

    async def write(self, records: Sequence[Record]) -> None:
        """Persist records; returns once they are durable and this instance still owns the
        topic, else raises."""
        if not records:
            return
        waiter = _Waiter(self._produce(records))
        self._waiters.append(waiter)
        with trio.CancelScope(shield=True):  # the write happens anyway; wait for its outcome
            with trio.move_on_after(self.config.commit_retry_s + 30):
                await waiter.done.wait()
        if not waiter.done.is_set():
            self._fail(StateWriteError("a state write was not confirmed in time", fenced=True))
        if waiter.error is not None:
            raise waiter.error

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
        await trio.to_thread.run_sync(self._delete_below, self.claim_offset)
        return self.claim_offset

    def _delete_below(self, offset: int) -> None:
        admin = self._admin()
        try:
            futures = admin.delete_records([TopicPartition(self.config.topic, 0, offset)])
            for f in futures.values():
                f.result(30)
        except (KafkaException, AttributeError, TypeError) as e:
            log.warning("pruning the state topic below %d failed: %s", offset, e)

    async def aclose(self) -> None:
        self._stop.set()  # the tail reader closes its consumer
        producer = self._producer
        if producer is not None:
            await trio.to_thread.run_sync(producer.flush, 5)
