"""The durable store of share-group state: an internal topic on the upstream cluster.

Policy (docs/persistence.md): the topic has ``cleanup.policy=delete`` with infinite retention,
like Kafka's ``__share_group_state``; the proxy reclaims space itself by writing fresh snapshots
of every key at start-up and then deleting the records below them (DeleteRecords). Compaction
would keep only the last record per key, which would lose the updates since a snapshot.

Single writer: every proxy instance writing to one state topic uses the same transactional id.
``init_transactions`` fences any earlier instance (its next commit fails with PRODUCER_FENCED),
and the new instance reads the topic with read_committed after fencing, so it sees everything
the old one ever confirmed and nothing it did not. A write is confirmed only after its
transaction commits (acks=all, idempotent); a fenced instance stops serving share groups.

Writes are group-committed: whatever is queued while a transaction is in flight goes into the
next one. The confluent-kafka clients run in worker threads; nothing here blocks the Trio loop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import trio
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from sharegroup.persist.records import Record, RecordError, decode, encode
from sharegroup.persist.recovery import Replay

log = logging.getLogger("sharegroup.state")

DEFAULT_TOPIC = "__sharegroup_state"


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
    write_timeout_s: float = 10.0
    commit_retry_s: float = 120.0  # how long a commit may stay unresolved (broker away)


@dataclass
class _Pending:
    records: list[Record]
    done: trio.Event = field(default_factory=trio.Event)
    error: StateWriteError | None = None


class StateStore:
    def __init__(self, config: StoreConfig) -> None:
        self.config = config
        self.replay = Replay()
        self.fenced = False
        self._producer: Producer | None = None
        self._send: trio.MemorySendChannel[_Pending]
        self._receive: trio.MemoryReceiveChannel[_Pending]
        self._send, self._receive = trio.open_memory_channel[_Pending](10000)
        self.transactions = 0
        self.records_written = 0

    # ------------------------------------------------------------------ start-up
    async def start(self, nursery: trio.Nursery) -> Replay:
        started = time.monotonic()
        await trio.to_thread.run_sync(self._create_topic)
        created = time.monotonic()
        await trio.to_thread.run_sync(self._init_producer)
        fenced = time.monotonic()
        self.replay = await trio.to_thread.run_sync(self._read_all)
        log.info(
            "state topic %s: %d records replayed, %d share partitions, %d groups with configs, "
            "in %.2fs (topic %.2fs, fencing %.2fs, replay %.2fs)",
            self.config.topic,
            self.replay.records,
            len(self.replay.partitions),
            len(self.replay.group_configs),
            time.monotonic() - started,
            created - started,
            fenced - created,
            time.monotonic() - fenced,
        )
        nursery.start_soon(self._writer)
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

    def _init_producer(self) -> None:
        self._producer = Producer(
            {
                "bootstrap.servers": self.config.bootstrap,
                "transactional.id": f"sharegroup-{self.config.topic}",
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 0,
                "transaction.timeout.ms": 60000,
            }
        )
        self._producer.init_transactions(30)

    def _read_all(self) -> Replay:
        replay = Replay()
        consumer = Consumer(
            {
                "bootstrap.servers": self.config.bootstrap,
                "group.id": f"sharegroup-state-reader-{self.config.topic}",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "fetch.wait.max.ms": 10,
                "fetch.queue.backoff.ms": 0,
                "auto.offset.reset": "earliest",
            }
        )
        try:
            # Start at the low watermark itself: assigning OFFSET_BEGINNING makes librdkafka
            # look the offset up first, which costs ~0.5 s before the first fetch. An empty
            # partition (nothing stored, or everything below the end deleted) is done at once.
            start = -2  # OFFSET_BEGINNING, if the watermarks cannot be read
            try:
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(self.config.topic, 0), timeout=10
                )
            except KafkaException as e:
                log.warning("reading the watermarks of %s: %s", self.config.topic, e)
            else:
                if high <= low:
                    return replay
                start = low
            consumer.assign([TopicPartition(self.config.topic, 0, start)])
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                # consume() waits its whole timeout unless it fills the batch: keep the
                # timeout short so the end-of-partition event is seen at once.
                messages = consumer.consume(10000, 0.05)
                at_end = False
                for m in messages:
                    err = m.error()
                    if err is not None:
                        if err.code() == -191:  # _PARTITION_EOF: caught up
                            at_end = True
                            continue
                        raise StateWriteError(f"reading {self.config.topic}: {err}")
                    key = m.key()
                    if key is None:
                        continue
                    try:
                        replay.apply(decode(key, m.value()))
                    except RecordError as e:
                        log.warning("skipping state record at offset %s: %s", m.offset(), e)
                if at_end:
                    return replay
            raise StateWriteError(f"could not read {self.config.topic} to its end within 60 s")
        finally:
            consumer.close()

    # ------------------------------------------------------------------ writes
    async def write(self, records: Sequence[Record]) -> None:
        """Persist records; returns once their transaction committed, else raises."""
        if not records:
            return
        if self.fenced:
            raise StateWriteError("this proxy instance was fenced by a newer one", fenced=True)
        pending = _Pending(list(records))
        await self._send.send(pending)
        with trio.CancelScope(shield=True):  # the write happens anyway; wait for its outcome
            await pending.done.wait()
        if pending.error is not None:
            raise pending.error

    def write_nowait(self, records: Sequence[Record]) -> None:
        """Queue records without waiting (lock expiries, releases): Kafka applies those
        transitions even when the write fails."""
        if records and not self.fenced:
            self._send.send_nowait(_Pending(list(records)))

    async def _writer(self) -> None:
        async for first in self._receive:
            batch = [first]
            while True:
                try:
                    batch.append(self._receive.receive_nowait())
                except trio.WouldBlock:
                    break
            records = [r for p in batch for r in p.records]
            error: StateWriteError | None = None
            if self.fenced:
                error = StateWriteError(
                    "this proxy instance was fenced by a newer one", fenced=True
                )
            else:
                try:
                    await trio.to_thread.run_sync(self._commit, records)
                except StateWriteError as e:
                    error = e
            if error is None:
                for r in records:
                    self.replay.apply(r)
                self.transactions += 1
                self.records_written += len(records)
            else:
                log.error("state write of %d records failed: %s", len(records), error)
            for p in batch:
                p.error = error
                p.done.set()

    def _commit(self, records: list[Record]) -> None:
        """One transaction (runs in a worker thread). A retriable failure of the commit (the
        broker is away, a timeout) leaves the commit in progress: it is retried until it
        resolves, because librdkafka allows nothing else until then, and because giving up
        would leave us not knowing whether the records are in the topic."""
        producer = self._producer
        assert producer is not None
        try:
            producer.begin_transaction()
            for r in records:
                key, value = encode(r)
                producer.produce(self.config.topic, key=key, value=value, partition=0)
        except KafkaException as e:
            self._failed(producer, e.args[0])
            raise StateWriteError(f"state write failed: {e.args[0]}") from e
        deadline = time.monotonic() + self.config.commit_retry_s
        while True:
            try:
                producer.commit_transaction(self.config.write_timeout_s)
                return
            except KafkaException as e:
                err = e.args[0]
                if not self._is_fenced(err) and not err.txn_requires_abort() and err.retriable():
                    if time.monotonic() < deadline:
                        log.warning("state commit not done yet (%s); retrying", err)
                        time.sleep(0.5)
                        continue
                    # Still unresolved: this writer cannot go on safely. Stop serving share
                    # groups (as when fenced) rather than risk answering from unknown state.
                    self.fenced = True
                    log.error(
                        "state commit unresolved after %.0fs: stopping share-group service",
                        self.config.commit_retry_s,
                    )
                    raise StateWriteError(f"state commit unresolved: {err}", fenced=True) from e
                self._failed(producer, err)
                raise StateWriteError(f"state write failed: {err}", fenced=self.fenced) from e

    @staticmethod
    def _is_fenced(err: Any) -> bool:
        return bool(err.fatal()) or err.name() in (
            "_FENCED",
            "PRODUCER_FENCED",
            "INVALID_PRODUCER_EPOCH",
        )

    def _failed(self, producer: Producer, err: Any) -> None:
        if self._is_fenced(err):
            self.fenced = True
            log.error("state topic writer fenced: another proxy instance took over (%s)", err)
        elif err.txn_requires_abort():
            try:
                producer.abort_transaction(self.config.write_timeout_s)
            except KafkaException as abort_error:
                log.error("aborting the state transaction failed: %s", abort_error)
                self.fenced = True

    async def prune(self, snapshots: Sequence[Record]) -> int:
        """Write fresh snapshots of everything, then delete the records below them."""
        if not snapshots:
            return 0
        before = await trio.to_thread.run_sync(self._end_offset)
        await self.write(snapshots)
        if before <= 0:
            return 0
        await trio.to_thread.run_sync(self._delete_below, before)
        return before

    def _end_offset(self) -> int:
        consumer = Consumer(
            {"bootstrap.servers": self.config.bootstrap, "group.id": "sharegroup-state-probe"}
        )
        try:
            _low, high = consumer.get_watermark_offsets(
                TopicPartition(self.config.topic, 0), timeout=10
            )
            return int(high)
        finally:
            consumer.close()

    def _delete_below(self, offset: int) -> None:
        admin = self._admin()
        try:
            futures = admin.delete_records([TopicPartition(self.config.topic, 0, offset)])
            for f in futures.values():
                f.result(30)
        except (KafkaException, AttributeError, TypeError) as e:
            log.warning("pruning the state topic below %d failed: %s", offset, e)

    async def aclose(self) -> None:
        self._send.close()
        producer = self._producer
        if producer is not None:
            await trio.to_thread.run_sync(producer.flush, 5)
