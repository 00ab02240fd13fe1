"""The proxy's dead-letter-queue writer: Kafka 4.4's DLQ (KIP-1191) for any cluster.

Phase 2 of Kafka's two-phase flow (``SharePartition.initiateDLQAndArchive``): the model put
records in ARCHIVING and that state is durable; this module writes one DLQ record per offset
and then the caller completes ARCHIVING -> ARCHIVED, whether or not the write succeeded.

The records are Kafka's (``ShareGroupDLQStateManager``; the format is ``sharegroup.dlq_format``):
Kafka's six ``__dlq.errors.*`` headers, key and value only with
``errors.deadletterqueue.copy.record.enable`` (read back from the source partition), the source
headers never, the DLQ partition = source partition modulo the DLQ topic's partitions, the
timestamp = the time of the write. They are produced with librdkafka (the client the proxy
already uses for its state topic) set up as Kafka's DLQ sender: acks=all, no compression, five
attempts with a back-off from 1 s doubling to 30 s.

Before each write the group's DLQ topic is checked as Kafka does (``validate_dlq_topic``): it
must exist (or be created, with ``errors.deadletterqueue.auto.create.topics.enable``) and be
marked as a DLQ topic. A topic is marked when its topic config
``errors.deadletterqueue.group.enable`` is ``true`` (Kafka 4.4, Tansu) or, on clusters that
refuse unknown topic configs (Kafka before 4.4), when the proxy config
``sharegroup.errors.deadletterqueue.topics`` lists it, by name or by a name prefix ending in
``*`` (docs/dlq.md).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import trio

from model import ArchivingRange
from model.config import DLQ_TOPIC_ENABLE_KEY
from proxy.kafka_handles import keep
from sharegroup.dlq_format import dlq_headers, dlq_partition, validate_dlq_topic

log = logging.getLogger(__name__)

MARKED_TOPICS_KEY: Final = "sharegroup.errors.deadletterqueue.topics"
# ShareGroupDLQStateManager: REQUEST_BACKOFF_MS, REQUEST_BACKOFF_MAX_MS, MAX_REQUEST_ATTEMPTS.
BACKOFF_MS: Final = 1000
BACKOFF_MAX_MS: Final = 30000
ATTEMPTS: Final = 5
SOURCE_READ_TIMEOUT_S: Final = 10.0


def _partition_count(admin: Any, topic: str) -> int | None:
    """The partition count of ``topic``, or None when it does not exist (waiting up to 10 s
    for a topic just created to have its partitions)."""
    from confluent_kafka import KafkaError, KafkaException, TopicCollection

    deadline = time.monotonic() + 10
    while True:
        try:
            desc = admin.describe_topics(TopicCollection([topic]))[topic].result(10)
        except KafkaException as e:
            if e.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise
            return None
        if desc.partitions or time.monotonic() > deadline:
            return len(desc.partitions) or None
        time.sleep(0.1)


def is_listed(topic: str, listed: set[str]) -> bool:
    """Whether ``sharegroup.errors.deadletterqueue.topics`` names ``topic``: an entry is a
    topic name, or a name prefix when it ends with ``*`` (``dlq.conformance-*``)."""
    return topic in listed or any(
        e.endswith("*") and topic.startswith(e[:-1]) for e in listed if e != "*"
    )


@dataclass(frozen=True, slots=True)
class DlqRecord:
    """One record to write to a DLQ topic."""

    partition: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]


def dlq_records(
    *,
    group: str,
    topic: str,
    partition: int,
    work: ArchivingRange,
    dlq_partitions: int,
    copy: dict[int, tuple[bytes | None, bytes | None]] | None,
) -> list[DlqRecord]:
    """The DLQ records of one ARCHIVING range, one per offset. ``copy`` maps source offsets to
    their (key, value) when the group copies records; offsets missing from it (gone from the
    log, or never records) get headers only, as in Kafka."""
    target = dlq_partition(partition, dlq_partitions)
    out = []
    for offset in range(work.first_offset, work.last_offset + 1):
        key, value = (copy or {}).get(offset, (None, None))
        headers = dlq_headers(topic, partition, offset, group, work.delivery_count, work.cause)
        out.append(DlqRecord(target, key, value, tuple(headers)))
    return out


def producer_config(bootstrap: str) -> dict[str, object]:
    """librdkafka set up as Kafka's DLQ sender."""
    return {
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "compression.type": "none",
        "enable.idempotence": False,
        "retries": ATTEMPTS - 1,
        "retry.backoff.ms": BACKOFF_MS,
        "retry.backoff.max.ms": BACKOFF_MAX_MS,
        "linger.ms": 0,
    }


@dataclass
class DlqMetrics:
    """Kafka's DLQ meters (``ShareGroupMetrics``, tag ``group``), as totals per group."""

    record_count: Counter[str] = field(default_factory=Counter)  # DeadLetterQueueRecordCount
    produce_requests: Counter[str] = field(default_factory=Counter)  # ...TotalProduceRequests
    failed_produce_requests: Counter[str] = field(default_factory=Counter)  # ...FailedProduce...


class DlqWriter:
    """Writes DLQ records for the proxy, one blocking call per range in a worker thread."""

    def __init__(
        self,
        bootstrap: str,
        *,
        prefix: str = "dlq.",
        auto_create: bool = False,
        marked_topics: Sequence[str] = (),
        client_config: Mapping[str, Any] | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        # TLS/SASL settings of the upstream for librdkafka (proxy.security), added to every
        # client this writer makes.
        self.client_config = dict(client_config or {})
        self.prefix = prefix
        self.auto_create = auto_create
        self.marked_topics = {t.strip() for t in marked_topics if t.strip()}
        self.metrics = DlqMetrics()
        self._producer: Any = None
        self._lock = trio.Lock()  # one write at a time keeps each partition's order

    async def write(
        self,
        *,
        group: str,
        dlq_topic: str,
        copy_records: bool,
        topic: str,
        partition: int,
        work: ArchivingRange,
    ) -> bool:
        """Write the DLQ records of ``work``; False (logged and counted) when they could not
        be written. Never raises for a cluster problem: the caller archives either way."""
        async with self._lock:
            try:
                return await trio.to_thread.run_sync(
                    self._write_blocking, group, dlq_topic, copy_records, topic, partition, work
                )
            except Exception:
                log.exception("DLQ write for %s %s-%d failed", group, topic, partition)
                self.metrics.failed_produce_requests[group] += 1
                return False

    # ------------------------------------------------------------------ worker thread

    def _write_blocking(
        self,
        group: str,
        dlq_topic: str,
        copy_records: bool,
        topic: str,
        partition: int,
        work: ArchivingRange,
    ) -> bool:
        partitions = self._dlq_partitions(group, dlq_topic)
        if partitions is None:
            self.metrics.failed_produce_requests[group] += 1
            return False
        copy = self._read_source(topic, partition, work) if copy_records else None
        records = dlq_records(
            group=group,
            topic=topic,
            partition=partition,
            work=work,
            dlq_partitions=partitions,
            copy=copy,
        )
        producer = self._get_producer()
        errors: list[str] = []

        def delivered(err: Any, _msg: Any) -> None:
            if err is not None:
                errors.append(str(err))

        now = int(time.time() * 1000)
        for r in records:
            producer.produce(
                dlq_topic,
                key=r.key,
                value=r.value,
                partition=r.partition,
                headers=list(r.headers),
                timestamp=now,
                on_delivery=delivered,
            )
        self.metrics.produce_requests[group] += 1
        pending = producer.flush(ATTEMPTS * BACKOFF_MAX_MS / 1000)
        if pending or errors:
            log.error(
                "DLQ write of %s %s-%d offsets %d-%d to %s failed: %s",
                group,
                topic,
                partition,
                work.first_offset,
                work.last_offset,
                dlq_topic,
                "; ".join(errors[:3]) or f"{pending} not delivered",
            )
            self.metrics.failed_produce_requests[group] += 1
            return False
        self.metrics.record_count[group] += len(records)
        return True

    def _get_producer(self) -> Any:
        if self._producer is None:
            from confluent_kafka import Producer

            self._producer = keep(
                Producer({**producer_config(self.bootstrap), **self.client_config})
            )
        return self._producer

    def _dlq_partitions(self, group: str, dlq_topic: str) -> int | None:
        """The DLQ topic's partition count after Kafka's checks, or None (logged)."""
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient
        from confluent_kafka.admin._config import ConfigResource
        from confluent_kafka.admin._resource import ResourceType
        from confluent_kafka.cimpl import NewTopic

        admin = keep(AdminClient({"bootstrap.servers": self.bootstrap, **self.client_config}))
        # DescribeTopics, not a metadata request for the topic: librdkafka's asks the broker to
        # auto-create a missing topic (auto.create.topics.enable), which would then exist
        # unmarked; Kafka's own check creates nothing.
        partitions = _partition_count(admin, dlq_topic)
        exists = partitions is not None
        marked = is_listed(dlq_topic, self.marked_topics)
        if exists and not marked:
            resource = ConfigResource(ResourceType.TOPIC, dlq_topic)
            try:
                configs = admin.describe_configs([resource])[resource].result(10)
                entry = configs.get(DLQ_TOPIC_ENABLE_KEY)
                marked = entry is not None and str(entry.value).lower() == "true"
            except KafkaException as e:  # a cluster that cannot describe it: not marked
                log.debug("describe configs of %s: %s", dlq_topic, e)
        problem = validate_dlq_topic(
            group,
            dlq_topic,
            prefix=self.prefix,
            exists=exists,
            marked=marked,
            auto_create=self.auto_create,
        )
        if problem is not None:
            log.error("no DLQ write: %s", problem)
            return None
        if not exists:
            configs = {DLQ_TOPIC_ENABLE_KEY: "true", "message.timestamp.type": "CreateTime"}
            new = NewTopic(dlq_topic, num_partitions=-1, replication_factor=-1, config=configs)
            try:
                admin.create_topics([new])[dlq_topic].result(30)
            except KafkaException:
                # Clusters before Kafka 4.4 refuse the DLQ topic config: create it without,
                # and remember that this proxy made it a DLQ topic.
                plain = NewTopic(
                    dlq_topic,
                    num_partitions=-1,
                    replication_factor=-1,
                    config={"message.timestamp.type": "CreateTime"},
                )
                admin.create_topics([plain])[dlq_topic].result(30)
            self.marked_topics.add(dlq_topic)
            deadline = time.monotonic() + 10
            while (partitions := _partition_count(admin, dlq_topic)) is None:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.1)  # the new topic's metadata is on its way to the brokers
        if partitions is None:
            log.error("no DLQ write: topic %s vanished after it was created", dlq_topic)
            return None
        return partitions

    def _read_source(
        self, topic: str, partition: int, work: ArchivingRange
    ) -> dict[int, tuple[bytes | None, bytes | None]]:
        """Key and value of the source records, read back from the log."""
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer(
            {
                **self.client_config,
                "bootstrap.servers": self.bootstrap,
                "group.id": "sharegroup-dlq-source-reader",
                "enable.auto.commit": False,
                "isolation.level": "read_uncommitted",
            }
        )
        keep(consumer)
        out: dict[int, tuple[bytes | None, bytes | None]] = {}
        try:
            consumer.assign([TopicPartition(topic, partition, work.first_offset)])
            deadline = time.monotonic() + SOURCE_READ_TIMEOUT_S
            while time.monotonic() < deadline:
                msgs = consumer.consume(500, 0.5)
                done = False
                for m in msgs:
                    if m.error() is not None:
                        continue
                    offset = m.offset()
                    if offset is None:
                        continue
                    if offset > work.last_offset:
                        done = True
                        break
                    out[offset] = (m.key(), m.value())
                if done or len(out) == work.last_offset - work.first_offset + 1:
                    break
                if not msgs:
                    position = consumer.position([TopicPartition(topic, partition)])[0].offset
                    if position > work.last_offset:
                        break
        finally:
            consumer.close()
        return out

    def close(self) -> None:
        """The proxy stops: the producer is let go, so that its connections end with the
        proxy (a write under way in a worker thread keeps its own reference until it is done;
        ARCHIVING not yet completed is written again after a restart)."""
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.flush(0)
