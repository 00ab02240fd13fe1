"""``sharegroup dlq``: look into share-group dead-letter queues and copy records back.

Works on any cluster whose DLQ topics hold Kafka 4.4's DLQ records (KIP-1191): those Kafka
writes itself (``share.version=2``) and those the proxy writes for older clusters. Plain
Kafka clients (confluent-kafka) over the wire; no share-group API is needed.

``describe`` reads DLQ topics whole and counts their records per group, source partition and
cause. ``redrive`` copies a group's DLQ records back to their source topic (or another one).

How ``redrive`` resumes without duplicates (docs/dlq.md has the user's view):

* It works one DLQ partition at a time, in batches, under a classic consumer group of its own,
  ``sharegroup-redrive.<group>.<dlq topic>``, that only ever commits offsets.
* Before a batch it commits, in one OffsetCommit, the batch's first DLQ offset and the end
  offset of every target partition the batch writes to; then it produces the batch
  (idempotent, acks=all), each record carrying the header ``sharegroup.redrive.dlq`` =
  ``<dlq topic>:<partition>:<offset>``; then it commits the DLQ offset after the batch.
* Started again, it reads the committed target offsets, scans the target partitions from
  there for its marker header, and skips the DLQ offsets it finds: what a killed run wrote
  of its last batch is not written twice. Transactions would not do: share groups read
  uncommitted by default, and would deliver the aborted copies too.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

from sharegroup.dlq_format import REDRIVE_MARKER, DlqOrigin, parse_headers

POLL_S = 0.5
DEFAULT_BATCH = 500


class DlqError(Exception):
    """A problem to report to the user and exit 1."""


@dataclass(frozen=True, slots=True)
class DlqRecord:
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    origin: DlqOrigin | None
    marker: str | None


def _consumer(bootstrap: str, group: str | None = None) -> Any:
    from confluent_kafka import Consumer

    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group or "sharegroup-dlq-reader",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            "isolation.level": "read_committed",
        }
    )


def partitions_of(client: Any, topic: str, timeout_s: float) -> list[int]:
    md = client.list_topics(topic, timeout=timeout_s)
    t = md.topics.get(topic)
    if t is None or t.error is not None or not t.partitions:
        why = t.error if t is not None and t.error is not None else "no such topic"
        raise DlqError(f"topic {topic!r}: {why}")
    return sorted(t.partitions)


def read_partition(
    consumer: Any, topic: str, partition: int, start: int, end: int, timeout_s: float
) -> Iterator[DlqRecord]:
    """Records of one partition from ``start`` up to (not including) ``end``, in order."""
    from confluent_kafka import TopicPartition

    if start >= end:
        return
    consumer.assign([TopicPartition(topic, partition, start)])
    try:
        next_offset = start
        deadline = time.monotonic() + timeout_s
        while next_offset < end:
            msgs = consumer.consume(500, POLL_S)
            if not msgs:
                # Transaction markers and compacted offsets leave holes: ask where we are.
                position = consumer.position([TopicPartition(topic, partition)])[0].offset
                if position >= end:
                    return
                if time.monotonic() > deadline:
                    raise DlqError(
                        f"{topic}-{partition}: no progress past offset {next_offset} "
                        f"(end {end}) in {timeout_s:.0f} s"
                    )
                continue
            deadline = time.monotonic() + timeout_s
            for m in msgs:
                if m.error() is not None:
                    raise DlqError(f"{topic}-{partition}: {m.error()}")
                offset = m.offset()
                if offset >= end:
                    return
                next_offset = offset + 1
                headers = m.headers()
                marker = None
                for name, value in headers or ():
                    if name == REDRIVE_MARKER and value is not None:
                        marker = value.decode("utf-8", "replace")
                yield DlqRecord(
                    partition=partition,
                    offset=offset,
                    timestamp_ms=m.timestamp()[1],
                    key=m.key(),
                    value=m.value(),
                    origin=parse_headers(headers),
                    marker=marker,
                )
    finally:
        consumer.unassign()


def watermarks(consumer: Any, topic: str, partition: int, timeout_s: float) -> tuple[int, int]:
    from confluent_kafka import TopicPartition

    low, high = consumer.get_watermark_offsets(
        TopicPartition(topic, partition), timeout=timeout_s, cached=False
    )
    return int(low), int(high)


# ---------------------------------------------------------------------------------- describe


@dataclass
class _Row:
    records: int = 0
    causes: Counter[str] = field(default_factory=Counter)
    with_value: int = 0
    first_offset: int | None = None
    last_offset: int | None = None
    oldest_ms: int | None = None
    newest_ms: int | None = None

    def add(self, r: DlqRecord) -> None:
        self.records += 1
        cause = r.origin.cause if r.origin else None
        self.causes[cause.name if cause else "OTHER"] += 1
        self.with_value += r.value is not None
        if r.origin is not None:
            o = r.origin.offset
            self.first_offset = o if self.first_offset is None else min(self.first_offset, o)
            self.last_offset = o if self.last_offset is None else max(self.last_offset, o)
        t = r.timestamp_ms
        self.oldest_ms = t if self.oldest_ms is None else min(self.oldest_ms, t)
        self.newest_ms = t if self.newest_ms is None else max(self.newest_ms, t)


def _when(ms: int | None) -> str:
    if ms is None or ms < 0:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def describe(
    bootstrap: str, topics: list[str], group: str | None, timeout_s: float, out: TextIO
) -> int:
    consumer = _consumer(bootstrap)
    try:
        rows: dict[tuple[str, str, str, int], _Row] = defaultdict(_Row)
        headers_only = 0
        for topic in topics:
            for p in partitions_of(consumer, topic, timeout_s):
                low, high = watermarks(consumer, topic, p, timeout_s)
                for r in read_partition(consumer, topic, p, low, high, timeout_s):
                    o = r.origin
                    if group is not None and (o is None or o.group != group):
                        continue
                    key = (
                        topic,
                        o.group if o else "-",
                        o.topic if o else "-",
                        o.partition if o else -1,
                    )
                    rows[key].add(r)
                    headers_only += r.value is None
    finally:
        consumer.close()
    head = (
        "DLQ-TOPIC",
        "GROUP",
        "SOURCE-TOPIC",
        "PARTITION",
        "RECORDS",
        "REJECTED",
        "DELIVERY-LIMIT",
        "OTHER",
        "WITH-VALUE",
        "SOURCE-OFFSETS",
        "OLDEST",
        "NEWEST",
    )
    table = [head]
    for (topic, g, source, partition), row in sorted(rows.items()):
        table.append(
            (
                topic,
                g,
                source,
                str(partition) if partition >= 0 else "-",
                str(row.records),
                str(row.causes["CLIENT_REJECT"]),
                str(row.causes["DELIVERY_COUNT_EXCEEDED"]),
                str(row.causes["OTHER"]),
                str(row.with_value),
                f"{row.first_offset}-{row.last_offset}" if row.first_offset is not None else "-",
                _when(row.oldest_ms),
                _when(row.newest_ms),
            )
        )
    if len(table) == 1:
        print(f"no DLQ records in {', '.join(topics)}", file=out)
        return 0
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    for line in table:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip(), file=out)
    if headers_only:
        print(
            f"\n{headers_only} record(s) carry no value: their group had "
            "errors.deadletterqueue.copy.record.enable=false, so they cannot be redriven.",
            file=out,
        )
    return 0


# ---------------------------------------------------------------------------------- redrive


class Progress:
    """One self-rewriting line on a terminal, a line per tenth otherwise.

    Hand-written rather than a progress-bar library: it is one line, and the CLI has no other
    use for one (docs/dlq.md)."""

    def __init__(self, total: int, stream: TextIO, width: int = 30) -> None:
        self.total = max(total, 1)
        self.stream = stream
        self.width = width
        self.tty = stream.isatty()
        self.started = time.monotonic()
        self.shown = -1.0
        self.last_tenth = -1

    def update(self, done: int, *, final: bool = False) -> None:
        now = time.monotonic()
        tenth = done * 10 // self.total
        if not final and (now - self.shown < 0.2 if self.tty else tenth == self.last_tenth):
            return
        self.shown, self.last_tenth = now, tenth
        filled = min(self.width, done * self.width // self.total)
        rate = done / max(now - self.started, 1e-9)
        line = (
            f"[{'#' * filled}{'.' * (self.width - filled)}] {done}/{self.total} records "
            f"{rate:.1f}/s"
        )
        if self.tty:
            self.stream.write("\r" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


class Pacer:
    """At most ``rate`` records per second, counted from the first record."""

    def __init__(self, rate: float | None) -> None:
        self.rate = rate
        self.first: float | None = None
        self.sent = 0

    def wait(self) -> None:
        if self.rate:
            now = time.monotonic()
            if self.first is None:
                self.first = now
            delay = self.first + self.sent / self.rate - now
            if delay > 0:
                time.sleep(delay)
        self.sent += 1


@dataclass
class Plan:
    """What to copy from one DLQ partition: offsets ``start`` to ``end`` (exclusive)."""

    partition: int
    start: int
    end: int
    records: int = 0  # of the group, to copy
    headers_only: int = 0
    done_before: set[int] = field(default_factory=set)  # written by a killed run


@dataclass
class Summary:
    copied: Counter[tuple[str, int]] = field(default_factory=Counter)
    skipped_done: int = 0
    other_groups: int = 0
    headers_only: int = 0


def redrive_group_id(group: str, dlq_topic: str) -> str:
    return f"sharegroup-redrive.{group}.{dlq_topic}"


def _committed(admin: Any, group: str, timeout_s: float) -> dict[tuple[str, int], int]:
    from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException

    try:
        [future] = admin.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group)], request_timeout=timeout_s
        ).values()
        result = future.result(timeout_s)
    except KafkaException as e:
        raise DlqError(f"cannot read the committed offsets of {group}: {e}") from e
    return {
        (tp.topic, tp.partition): tp.offset
        for tp in result.topic_partitions
        if tp.offset is not None and tp.offset >= 0 and tp.error is None
    }


def _target(
    origin: DlqOrigin, to_topic: str | None, counts: Callable[[str], int]
) -> tuple[str, int]:
    """Where one record goes: its source partition of its source topic, or, in a topic with
    fewer partitions, the source partition modulo their number."""
    topic = to_topic or origin.topic
    return topic, origin.partition % counts(topic)


def redrive(
    bootstrap: str,
    group: str,
    dlq_topic: str,
    *,
    to_topic: str | None,
    max_records: int | None,
    rate: float | None,
    dry_run: bool,
    batch_size: int,
    timeout_s: float,
    out: TextIO,
    err: TextIO,
) -> int:
    from confluent_kafka import KafkaException, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient

    if to_topic == dlq_topic:
        raise DlqError("--to-topic must not be the DLQ topic itself")
    rgroup = redrive_group_id(group, dlq_topic)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    consumer = _consumer(bootstrap, rgroup)
    counts_cache: dict[str, int] = {}

    def counts(topic: str) -> int:
        if topic not in counts_cache:
            counts_cache[topic] = len(partitions_of(consumer, topic, timeout_s))
        return counts_cache[topic]

    started = time.monotonic()
    try:
        committed = _committed(admin, rgroup, timeout_s)
        # A killed run's last batch: find its records in the targets by their marker.
        done_before: dict[int, set[int]] = defaultdict(set)
        for (topic, partition), offset in sorted(committed.items()):
            if topic == dlq_topic:
                continue
            _, high = watermarks(consumer, topic, partition, timeout_s)
            for r in read_partition(consumer, topic, partition, offset, high, timeout_s):
                if r.marker is None:
                    continue
                # Topic names cannot hold ':', so the last two fields are partition and offset.
                parts = r.marker.rsplit(":", 2)
                if len(parts) == 3 and parts[0] == dlq_topic:
                    done_before[int(parts[1])].add(int(parts[2]))
        # The plan: what each DLQ partition holds of the group, checked before any write.
        plans: list[Plan] = []
        budget = max_records
        for p in partitions_of(consumer, dlq_topic, timeout_s):
            low, high = watermarks(consumer, dlq_topic, p, timeout_s)
            start = max(low, committed.get((dlq_topic, p), low))
            plan = Plan(p, start, high)
            plan.done_before = {o for o in done_before.get(p, set()) if o >= start}
            for r in read_partition(consumer, dlq_topic, p, start, high, timeout_s):
                if budget is not None and plan.records >= budget:
                    plan.end = r.offset
                    break
                if r.origin is None or r.origin.group != group:
                    continue
                if r.offset in plan.done_before:
                    continue
                plan.records += 1
                plan.headers_only += r.value is None
            if budget is not None:
                budget -= plan.records
            plans.append(plan)
        total = sum(pl.records for pl in plans)
        headers_only = sum(pl.headers_only for pl in plans)
        resumed = sum(len(pl.done_before) for pl in plans)
        if headers_only:
            raise DlqError(
                f"{headers_only} of the {total} DLQ record(s) of group {group} in {dlq_topic} "
                "carry no value: the group had errors.deadletterqueue.copy.record.enable=false "
                "when they were written, so there is nothing to copy back. Set it to true "
                "for records dead-lettered from now on."
            )
        if dry_run:
            print(
                f"dry run: would copy {total} record(s) of group {group} from {dlq_topic} "
                f"to {to_topic or 'their source topics'}"
                + (f" ({resumed} already copied by an interrupted run)" if resumed else ""),
                file=out,
            )
            return 0
        producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
            }
        )
        failures: list[str] = []

        def delivered(error: Any, msg: Any) -> None:
            if error is not None:
                failures.append(f"{msg.topic()}-{msg.partition()}: {error}")

        progress = Progress(total, err)
        summary = Summary(skipped_done=resumed)
        copier = _Copier(
            group,
            dlq_topic,
            to_topic,
            counts,
            consumer,
            producer,
            failures,
            delivered,
            summary,
            progress,
            Pacer(rate),
            timeout_s,
        )
        copied = 0
        for plan in plans:
            if plan.records == 0:
                if plan.end > plan.start:  # only other groups' records: move past them
                    consumer.commit(
                        offsets=[TopicPartition(dlq_topic, plan.partition, plan.end)],
                        asynchronous=False,
                    )
                continue
            batch: list[DlqRecord] = []
            for r in read_partition(
                consumer, dlq_topic, plan.partition, plan.start, plan.end, timeout_s
            ):
                batch.append(r)
                if len(batch) >= batch_size:
                    copied = copier.copy(batch, plan, copied)
                    batch = []
            if batch:
                copied = copier.copy(batch, plan, copied)
            consumer.commit(
                offsets=[TopicPartition(dlq_topic, plan.partition, plan.end)], asynchronous=False
            )
        progress.update(copied, final=True)
    except KafkaException as e:
        raise DlqError(str(e)) from e
    finally:
        consumer.close()
    took = time.monotonic() - started
    per_target = ", ".join(f"{t}-{p}: {n}" for (t, p), n in sorted(summary.copied.items()))
    print(
        f"redrive of {dlq_topic} for group {group}: {copied} record(s) copied"
        + (f" ({per_target})" if per_target else "")
        + f", {summary.other_groups} of other groups left alone"
        + (
            f", {summary.skipped_done} already copied by an interrupted run"
            if summary.skipped_done
            else ""
        )
        + f"; {took:.1f} s",
        file=out,
    )
    return 0


@dataclass
class _Copier:
    """Copies batches of one redrive; see the module docstring for the checkpoints."""

    group: str
    dlq_topic: str
    to_topic: str | None
    counts: Callable[[str], int]
    consumer: Any
    producer: Any
    failures: list[str]
    delivered: Callable[[Any, Any], None]
    summary: Summary
    progress: Progress
    pacer: Pacer
    timeout_s: float

    def copy(self, batch: list[DlqRecord], plan: Plan, copied: int) -> int:
        from confluent_kafka import TopicPartition

        work: list[tuple[DlqRecord, str, int]] = []
        for r in batch:
            if r.origin is None or r.origin.group != self.group:
                self.summary.other_groups += 1
                continue
            if r.offset in plan.done_before:
                continue
            topic, partition = _target(r.origin, self.to_topic, self.counts)
            work.append((r, topic, partition))
        targets = sorted({(t, p) for _, t, p in work})
        # Checkpoint: where this batch starts, in the DLQ and in each partition it writes to.
        checkpoint = [TopicPartition(self.dlq_topic, plan.partition, batch[0].offset)]
        for t, p in targets:
            end = watermarks(self.consumer, t, p, self.timeout_s)[1]
            checkpoint.append(TopicPartition(t, p, end))
        self.consumer.commit(offsets=checkpoint, asynchronous=False)
        for r, topic, partition in work:
            self.pacer.wait()
            self.producer.produce(
                topic,
                key=r.key,
                value=r.value,
                partition=partition,
                headers=[
                    (REDRIVE_MARKER, f"{self.dlq_topic}:{plan.partition}:{r.offset}".encode())
                ],
                on_delivery=self.delivered,
            )
            self.producer.poll(0)
            copied += 1
            self.summary.copied[(topic, partition)] += 1
            self.progress.update(copied)
        if self.producer.flush(self.timeout_s) != 0 or self.failures:
            raise DlqError(
                "records could not be written: "
                + ("; ".join(self.failures[:5]) or "flush timed out")
            )
        self.consumer.commit(
            offsets=[TopicPartition(self.dlq_topic, plan.partition, batch[-1].offset + 1)],
            asynchronous=False,
        )
        return copied


# ---------------------------------------------------------------------------------- wiring


def _run(args: argparse.Namespace) -> int:
    try:
        if args.action == "describe":
            return describe(
                args.bootstrap_server, args.dlq_topic, args.group, args.timeout, sys.stdout
            )
        if args.max_records is not None and args.max_records < 1:
            raise DlqError("--max-records must be at least 1")
        if args.rate is not None and args.rate <= 0:
            raise DlqError("--rate must be above 0 records per second")
        return redrive(
            args.bootstrap_server,
            args.group,
            args.dlq_topic,
            to_topic=args.to_topic,
            max_records=args.max_records,
            rate=args.rate,
            dry_run=args.dry_run,
            batch_size=args.batch_size,
            timeout_s=args.timeout,
            out=sys.stdout,
            err=sys.stderr,
        )
    except DlqError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


def _rate(text: str) -> float:
    value = text.removesuffix("/s")
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a rate like 100 or 100/s") from None


def add_dlq_command(sub: Any) -> None:
    dlq = sub.add_parser(
        "dlq",
        help="describe share-group dead-letter queues, copy records back to their topics",
        description="Share-group dead-letter queues (Kafka 4.4's KIP-1191 record format).",
    )
    actions = dlq.add_subparsers(dest="action", metavar="ACTION", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--bootstrap-server", required=True, metavar="HOST:PORT")
        p.add_argument(
            "--timeout", type=float, default=30.0, metavar="S", help="per request (default 30)"
        )

    d = actions.add_parser(
        "describe",
        help="counts by cause, source topic and partition, oldest and newest, per DLQ topic",
    )
    common(d)
    d.add_argument("--dlq-topic", action="append", required=True, help="repeatable")
    d.add_argument("--group", help="only this share group's records")
    r = actions.add_parser(
        "redrive",
        help="copy a group's DLQ records back to their source topic (resumable)",
        description="Copy the DLQ records of one share group back to their source topic and "
        "partition (or to --to-topic). Needs records written with "
        "errors.deadletterqueue.copy.record.enable=true. Interrupted, it continues where it "
        "stopped without writing any record twice.",
    )
    common(r)
    r.add_argument("--group", required=True, help="the share group whose records to copy")
    r.add_argument("--dlq-topic", required=True)
    r.add_argument("--to-topic", help="write here instead of each record's source topic")
    r.add_argument("--max-records", type=int, metavar="N", help="stop after N records")
    r.add_argument("--rate", type=_rate, metavar="R/s", help="at most R records per second")
    r.add_argument("--dry-run", action="store_true", help="show what would be copied")
    r.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH,
        metavar="N",
        help=f"records per checkpoint (default {DEFAULT_BATCH})",
    )
    dlq.set_defaults(func=_run)
