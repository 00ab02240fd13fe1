"""Crash torture: 100,000 records, four share consumers, a proxy that dies.

Four ``confluent_kafka.ShareConsumer`` processes with explicit acknowledgements work through
100,000 records of one topic with several partitions, through a ``sharegroup proxy`` process on
a fixed port, in front of Apache Kafka 3.9. The acknowledgement of a record is a pure function of
its offset and delivery count (:func:`ack_for`): mostly ACCEPT, some REJECT, some RELEASE once,
some RELEASE every time (archived at the delivery limit).

* ``test_proxy_sigkill_torture``: the proxy is killed with SIGKILL :data:`KILLS` times and
  restarted on the same port each time. The moments are seeded and random: each kill comes a
  random delay after a random number of records has settled, so every kill is mid-run.
* ``test_upstream_restart_torture[sigterm|sigkill]``: the Kafka broker under the proxy is
  restarted mid-run (cleanly, or killed), its log dir kept; the same proxy process rides it out.

The consumers run as child processes (so they outlive the proxy and keep their own logs). Each
writes one line per delivery (partition, offset, delivery count) and one per acknowledgement it
saw confirmed: ``commit_sync`` returned ``None`` for that partition. Timestamps are
``CLOCK_MONOTONIC`` nanoseconds, one clock for every process on the machine.

When the share state says every partition is done (the start offset reported by
DescribeShareGroupOffsets is at the log end), the consumers stop, and the test checks:

1. every produced record is ACKNOWLEDGED or ARCHIVED: the SPSO of every partition is at the log
   end, both as the proxy reports it and as a replay of the state topic says; the durable SPSO
   (start offset of every state record in the topic) never went backwards;
2. every record was delivered at least once, never twice in one poll, and (in the proxy-kill
   test, where no ShareFetch answer can be lost by a live proxy) the last delivery of every
   record got a final acknowledgement (ACCEPT, REJECT, or RELEASE at the delivery limit);
3. no record whose final acknowledgement a client saw confirmed was delivered again
   afterwards, and at most one final acknowledgement per record was confirmed;
4. the delivery counts of one record never decreased from one delivery to the next, never
   exceeded the delivery limit, and a delivery after a confirmed RELEASE of delivery ``n``
   has a count above ``n`` (the release was durable).

Set ``SHAREGROUP_TORTURE_SEED`` to replay a schedule of kills; logs (consumers, proxy stderr)
stay in pytest's ``tmp_path`` of the test.

The module is also the consumer program: ``python -m tests.integration.test_crash_torture
consume ...`` (see :func:`consume`).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import random
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import pytest
from confluent_kafka import (
    AcknowledgeType,
    Consumer,
    IllegalStateException,
    KafkaException,
    Producer,
    ShareConsumer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from sharegroup.brokers import Broker, _die_with_parent, free_port
from sharegroup.cli.offsets import OffsetsError, describe_offsets
from sharegroup.persist.records import PartitionKey, Snapshot, Update, decode
from sharegroup.persist.recovery import Replay
from tests.integration.test_share_consumers import set_group_configs

# Past the suite's 180 s: a run may take SETTLE_TIMEOUT_S to settle after its broker started and
# 100,000 records were produced; that deadline, with its own message, must come first.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]

ROOT = Path(__file__).resolve().parents[2]
SHAREGROUP = Path(sys.executable).with_name("sharegroup")
SEED = int(os.environ.get("SHAREGROUP_TORTURE_SEED", "932"))

RECORDS = 100_000
PARTITIONS = 8
CONSUMERS = 4
KILLS = 6
LOCK_MS = 4000
DELIVERY_LIMIT = 3
SETTLE_TIMEOUT_S = 150.0
STALL_S = 45.0
# Producer batches of a few hundred records and polls of up to 500: thousands of acquisitions,
# acknowledgements and state writes for the kills to land among (whole 10,000-record batches would
# finish the run in a few round trips).
PRODUCE_BATCH = 250
MAX_POLL_RECORDS = 500

ACCEPT, RELEASE, REJECT = (
    int(t) for t in (AcknowledgeType.ACCEPT, AcknowledgeType.RELEASE, AcknowledgeType.REJECT)
)
ACK_NAMES = {ACCEPT: "ACCEPT", RELEASE: "RELEASE", REJECT: "REJECT"}


def ack_for(offset: int, delivery_count: int) -> int:
    """The acknowledgement a consumer gives one delivery: a pure function of the record."""
    r = offset % 100
    if r == 7:
        return REJECT
    if r == 13:
        return RELEASE  # every time: archived when the delivery limit is reached
    if r in (21, 42) and delivery_count == 1:
        return RELEASE  # once, then accepted
    return ACCEPT


def terminal(ack: int, delivery_count: int) -> bool:
    """Does this acknowledgement end the record (ACKNOWLEDGED, or ARCHIVED)?"""
    return ack != RELEASE or delivery_count >= DELIVERY_LIMIT


# ---------------------------------------------------------------------------- consumer process


def consume(bootstrap: str, group: str, topic: str, log_path: Path, stop_path: Path) -> None:
    """Poll, acknowledge every record, commit; log deliveries and confirmed acks until stopped.

    Log lines (space separated, times in CLOCK_MONOTONIC ns):
    ``D partition offset delivery_count time`` a delivery;
    ``A partition offset ack delivery_count time`` an acknowledgement confirmed by commit_sync;
    ``U partition offset ack delivery_count time`` one sent but not confirmed (commit failed);
    ``E text`` an error seen (for diagnosis only).
    """
    c = ShareConsumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "share.acknowledgement.mode": "explicit",
            "max.poll.records": MAX_POLL_RECORDS,
            "reconnect.backoff.ms": 50,
            "reconnect.backoff.max.ms": 500,
            "socket.connection.setup.timeout.ms": 3000,
        }
    )
    c.subscribe([topic])
    with log_path.open("w", encoding="utf-8") as log:
        while not stop_path.exists():
            try:
                messages = c.poll(0.5)
            except (KafkaException, IllegalStateException) as e:
                log.write(f"E poll {e!r}\n")
                time.sleep(0.1)
                continue
            polled = time.monotonic_ns()
            pending: dict[int, list[tuple[int, int, int]]] = {}
            for m in messages:
                err = m.error()
                if err is not None:
                    log.write(f"E message {err!r}\n")
                    continue
                p, o, n = m.partition(), m.offset(), m.delivery_count()
                assert p is not None and o is not None and n is not None
                log.write(f"D {p} {o} {n} {polled}\n")
                ack = ack_for(o, n)
                try:
                    c.acknowledge(m, AcknowledgeType(ack))
                except (KafkaException, IllegalStateException) as e:
                    log.write(f"E acknowledge {p} {o} {e!r}\n")
                    continue
                pending.setdefault(p, []).append((o, ack, n))
            if pending:
                commit(c, pending, log)
            log.flush()
        try:
            c.close()
        except (KafkaException, IllegalStateException) as e:
            log.write(f"E close {e!r}\n")
        log.write("END\n")


def commit(c: ShareConsumer, pending: dict[int, list[tuple[int, int, int]]], log: TextIO) -> None:
    try:
        results = c.commit_sync(30)
    except (KafkaException, IllegalStateException) as e:
        log.write(f"E commit {e!r}\n")
        unconfirmed(pending, log)
        return
    confirmed = time.monotonic_ns()
    for tp, error in results.items():
        if error is not None:
            log.write(f"E commit {tp.partition} {error!r}\n")
            continue
        for o, ack, n in pending.pop(tp.partition, []):
            log.write(f"A {tp.partition} {o} {ack} {n} {confirmed}\n")
    missing = set(pending) - {tp.partition for tp in results}
    if missing:
        log.write(f"E commit: no result for partitions {sorted(missing)}\n")
    unconfirmed(pending, log)


def unconfirmed(pending: dict[int, list[tuple[int, int, int]]], log: TextIO) -> None:
    now = time.monotonic_ns()
    for p, acks in pending.items():
        for o, ack, n in acks:
            log.write(f"U {p} {o} {ack} {n} {now}\n")


# ---------------------------------------------------------------------------- processes


class ProxyProcess:
    """``sharegroup proxy`` on a fixed port, killed and restarted at will; stderr to a file."""

    def __init__(self, upstream: str, port: int, log_path: Path, configs: dict[str, str]) -> None:
        self.upstream = upstream
        self.port = port
        self.log_path = log_path
        self.configs = configs
        self.proc: subprocess.Popen[str] | None = None
        self.starts = 0
        self.kills = 0

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        argv = [str(SHAREGROUP), "proxy", "--bootstrap-server", self.upstream]
        argv += ["--listen", self.bootstrap]
        for key, value in self.configs.items():
            argv += ["--config", f"{key}={value}"]
        with self.log_path.open("a", encoding="utf-8") as err:
            err.write(f"--- start {self.starts + 1} at {time.monotonic_ns()}\n")
            err.flush()
            self.proc = subprocess.Popen(
                argv,
                stdout=subprocess.PIPE,
                stderr=err,
                stdin=subprocess.DEVNULL,
                text=True,
                preexec_fn=_die_with_parent,  # SIGKILL if pytest dies: no stray proxies
            )
        self.starts += 1
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "bootstrap.servers=" not in line:
            self.stop()
            raise AssertionError(f"proxy did not start: {line!r}\n{self.log_excerpt()}")

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind in the proxy."""
        assert self.alive(), "the proxy died on its own\n" + self.log_excerpt()
        self.stop()
        self.kills += 1
        with self.log_path.open("a", encoding="utf-8") as err:
            err.write(f"--- SIGKILL at {time.monotonic_ns()}\n")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
            if self.proc.stdout is not None:
                self.proc.stdout.close()

    def log_excerpt(self, lines: int = 15) -> str:
        """The first line of every distinct error, then warning, and the tail of the log."""
        text = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        distinct: dict[str, str] = {}
        for level in (" ERROR ", " WARNING "):
            for line in text:
                if level in line:  # the same message with other numbers counts once
                    distinct.setdefault(re.sub(r"\d+", "N", line[24:])[:100], line)
        head = list(distinct.values())[:15]
        tail = text[-lines:]
        return "\n".join(
            [
                "--- proxy warnings and errors (first of each) ---",
                *head,
                "--- proxy tail ---",
                *tail,
            ]
        )


@dataclass
class ConsumerProcess:
    index: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    err_path: Path


def start_consumer(
    index: int, bootstrap: str, group: str, topic: str, workdir: Path, stop_path: Path
) -> ConsumerProcess:
    log_path = workdir / f"consumer-{index}.log"
    err_path = workdir / f"consumer-{index}.stderr"
    argv = [sys.executable, "-m", "tests.integration.test_crash_torture", "consume"]
    argv += [bootstrap, group, topic, str(log_path), str(stop_path)]
    with err_path.open("wb") as err:
        proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            stdout=err,
            stderr=err,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
    return ConsumerProcess(index, proc, log_path, err_path)


# ---------------------------------------------------------------------------- set-up


def create_topic(upstream: str, name: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": upstream})
    for f in admin.create_topics([NewTopic(name, partitions, 1)]).values():
        f.result(30)


def produce_all(upstream: str, topic: str) -> dict[int, int]:
    """RECORDS small records, round robin over the partitions; returns the end offsets."""
    producer = Producer(
        {
            "bootstrap.servers": upstream,
            "linger.ms": 20,
            "batch.num.messages": PRODUCE_BATCH,
            "queue.buffering.max.messages": RECORDS + 1000,
            "enable.idempotence": True,
        }
    )
    for i in range(RECORDS):
        producer.produce(topic, value=b"%d" % i, partition=i % PARTITIONS)
    assert producer.flush(60) == 0
    ends: dict[int, int] = {}
    probe = Consumer({"bootstrap.servers": upstream, "group.id": "torture-probe"})
    try:
        for p in range(PARTITIONS):
            low, high = probe.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            assert low == 0
            ends[p] = int(high)
    finally:
        probe.close()
    assert sum(ends.values()) == RECORDS
    return ends


# ---------------------------------------------------------------------------- the run


@dataclass
class Progress:
    """What DescribeShareGroupOffsets said over time: (time ns, {partition: start offset})."""

    samples: list[tuple[int, dict[int, int]]] = field(default_factory=list)

    def sample(self, bootstrap: str, group: str, topic: str) -> dict[int, int] | None:
        try:
            rows = describe_offsets(bootstrap, group, [topic])
        except (OffsetsError, OSError):
            return None
        starts = {p: start for t, p, start, _lag in rows if t == topic}
        self.samples.append((time.monotonic_ns(), starts))
        return starts

    def settled(self, ends: dict[int, int]) -> bool:
        return bool(self.samples) and self.samples[-1][1] == ends

    def done_records(self) -> int:
        return sum(max(0, v) for v in self.samples[-1][1].values()) if self.samples else 0


@dataclass
class Torture:
    upstream: Broker
    workdir: Path
    group: str = field(default_factory=lambda: f"torture-{uuid.uuid4().hex[:8]}")
    topic: str = field(default_factory=lambda: f"torture-{uuid.uuid4().hex[:8]}")
    state_topic: str = field(default_factory=lambda: f"__sharegroup_torture_{uuid.uuid4().hex[:8]}")
    ends: dict[int, int] = field(default_factory=dict)
    progress: Progress = field(default_factory=Progress)
    consumers: list[ConsumerProcess] = field(default_factory=list)
    proxy: ProxyProcess | None = None

    @property
    def stop_path(self) -> Path:
        return self.workdir / "stop"

    def start(self) -> ProxyProcess:
        self.proxy = ProxyProcess(
            self.upstream.bootstrap,
            free_port(),
            self.workdir / "proxy.stderr",
            {
                "sharegroup.state.topic": self.state_topic,
                "group.share.min.record.lock.duration.ms": "1000",
                "group.share.heartbeat.interval.ms": "1000",
                "group.share.min.heartbeat.interval.ms": "1000",
            },
        )
        create_topic(self.upstream.bootstrap, self.topic, PARTITIONS)
        self.ends = produce_all(self.upstream.bootstrap, self.topic)
        self.proxy.start()
        set_group_configs(
            self.proxy.bootstrap,
            self.group,
            {
                "share.auto.offset.reset": "earliest",
                "share.record.lock.duration.ms": str(LOCK_MS),
                "share.delivery.count.limit": str(DELIVERY_LIMIT),
            },
        )
        self.consumers = [
            start_consumer(
                i, self.proxy.bootstrap, self.group, self.topic, self.workdir, self.stop_path
            )
            for i in range(CONSUMERS)
        ]
        return self.proxy

    def sample(self) -> dict[int, int] | None:
        assert self.proxy is not None
        return self.progress.sample(self.proxy.bootstrap, self.group, self.topic)

    def wait_progress(self, records: int, timeout_s: float = SETTLE_TIMEOUT_S) -> None:
        """Until the running proxy says at least ``records`` are settled; fails when nothing
        moves for STALL_S."""
        deadline = time.monotonic() + timeout_s
        moved_at, best = time.monotonic(), self.progress.done_records()
        first = len(self.progress.samples)
        while self.progress.done_records() < records or len(self.progress.samples) == first:
            now = time.monotonic()
            if now > deadline or now - moved_at > STALL_S:
                why = "no progress for" if now <= deadline else "not done within"
                last = self.progress.samples[-1:] or "none"
                raise AssertionError(
                    f"{why} {min(now - moved_at, timeout_s):.0f}s: {best} of {records} records "
                    f"settled; last start offsets {last}, log ends {self.ends}\n"
                    + self.diagnostics()
                )
            self.check_consumers_alive()
            self.sample()
            if self.progress.done_records() > best:
                moved_at, best = now, self.progress.done_records()
            time.sleep(0.2)

    def wait_settled(self) -> None:
        self.wait_progress(sum(self.ends.values()))
        assert self.progress.settled(self.ends)

    def check_consumers_alive(self) -> None:
        dead = [c for c in self.consumers if c.proc.poll() is not None]
        if dead:
            raise AssertionError(
                f"consumer process(es) {[c.index for c in dead]} exited early\n"
                + self.diagnostics()
            )

    def stop_consumers(self) -> None:
        self.stop_path.touch()
        for c in self.consumers:
            try:
                c.proc.wait(60)
            except subprocess.TimeoutExpired:
                c.proc.kill()
                c.proc.wait(10)

    def close(self) -> None:
        self.stop_path.touch()
        for c in self.consumers:
            if c.proc.poll() is None:
                c.proc.kill()
            c.proc.wait(10)
        if self.proxy is not None:
            self.proxy.stop()

    def diagnostics(self) -> str:
        parts = [f"logs in {self.workdir}"]
        if self.proxy is not None:
            parts.append(self.proxy.log_excerpt())
        for c in self.consumers:
            with contextlib.suppress(OSError):
                tail = c.err_path.read_text(errors="replace").splitlines()[-5:]
                parts.append(f"--- consumer {c.index} stderr tail ---\n" + "\n".join(tail))
        return "\n".join(parts)


@contextlib.contextmanager
def torture(upstream: Broker, workdir: Path) -> Iterator[Torture]:
    run = Torture(upstream, workdir)
    try:
        yield run
    finally:
        run.close()


# ---------------------------------------------------------------------------- the checks


@dataclass
class Delivery:
    time: int
    count: int
    consumer: int


@dataclass
class Ack:
    time: int
    ack: int
    count: int
    consumer: int


@dataclass
class ClientLogs:
    deliveries: dict[tuple[int, int], list[Delivery]] = field(default_factory=dict)
    acks: dict[tuple[int, int], list[Ack]] = field(default_factory=dict)
    unconfirmed: dict[tuple[int, int], list[Ack]] = field(default_factory=dict)
    errors: int = 0
    ended: int = 0

    @property
    def delivery_total(self) -> int:
        return sum(len(v) for v in self.deliveries.values())

    @property
    def ack_total(self) -> int:
        return sum(len(v) for v in self.acks.values())


def read_client_logs(consumers: Sequence[ConsumerProcess]) -> ClientLogs:
    logs = ClientLogs()
    for c in consumers:
        for line in c.log_path.read_text(encoding="utf-8").splitlines():
            kind, _, rest = line.partition(" ")
            if kind == "D":
                p, o, n, t = (int(x) for x in rest.split())
                logs.deliveries.setdefault((p, o), []).append(Delivery(t, n, c.index))
            elif kind == "A":
                p, o, a, n, t = (int(x) for x in rest.split())
                logs.acks.setdefault((p, o), []).append(Ack(t, a, n, c.index))
            elif kind == "U":
                p, o, a, n, t = (int(x) for x in rest.split())
                logs.unconfirmed.setdefault((p, o), []).append(Ack(t, a, n, c.index))
            elif kind == "E":
                logs.errors += 1
            elif kind == "END":
                logs.ended += 1
    for ds in logs.deliveries.values():
        ds.sort(key=lambda d: d.time)
    return logs


def read_state_topic(upstream: str, topic: str) -> tuple[Replay, list[str]]:
    """Replay the proxy's state topic (read_committed, as the proxy does), and list the state
    records whose start offset is below one written before it for the same share partition and
    state epoch: the durable SPSO going backwards."""
    replay = Replay()
    backwards: list[str] = []
    highest: dict[PartitionKey, tuple[int, int]] = {}  # key -> (state epoch, highest SPSO)
    consumer = Consumer(
        {
            "bootstrap.servers": upstream,
            "group.id": f"torture-reader-{uuid.uuid4().hex[:6]}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        # Every state partition (a share partition's records all lie in one of them, in order).
        partitions = list(consumer.list_topics(topic, timeout=30).topics[topic].partitions)
        assert partitions, f"state topic {topic} has no partitions"
        consumer.assign([TopicPartition(topic, p, -2) for p in partitions])  # OFFSET_BEGINNING
        caught_up: set[int] = set()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for m in consumer.consume(1000, 1.0):
                err = m.error()
                if err is not None:
                    assert err.code() == -191, err  # _PARTITION_EOF: caught up
                    caught_up.add(m.partition() or 0)
                    continue
                key = m.key()
                if key is None:
                    continue
                record = decode(key, m.value())
                if isinstance(record, (Snapshot, Update)):
                    epoch, high = highest.get(record.key, (0, 0))
                    if isinstance(record, Snapshot) and record.state_epoch != epoch:
                        epoch, high = record.state_epoch, 0
                    if record.start_offset < high:
                        backwards.append(
                            f"state topic offset {m.offset()}: {type(record).__name__} of "
                            f"partition {record.key[2]} with start offset {record.start_offset}"
                            f" after {high}"
                        )
                    highest[record.key] = (epoch, max(high, record.start_offset))
                replay.apply(record)
            if caught_up >= set(partitions):
                return replay, backwards
        raise AssertionError(f"could not read {topic} to its end")
    finally:
        consumer.close()


@dataclass
class Report:
    records: int
    deliveries: int
    redeliveries: int
    confirmed_acks: int
    unconfirmed_acks: int
    unconfirmed_then_delivered_again: int
    records_without_confirmed_final_ack: int
    records_last_seen_released: int
    archived_at_delivery_limit: int
    client_errors_seen: int
    kills: int
    run_s: float

    def line(self) -> str:
        return " ".join(f"{k}={v}" for k, v in vars(self).items())


def check_share_state(run: Torture) -> list[str]:
    """Check 1: every partition's SPSO at its log end, reported and stored; never backwards."""
    problems: list[str] = []
    final = run.sample()
    if final != run.ends:
        problems.append(f"start offsets {final} reported at the end, log ends {run.ends}")
    # Kafka answers DescribeShareGroupOffsets from the persisted state: what it reports as
    # settled stays settled, through any crash.
    for p in range(PARTITIONS):
        seen = [(t, starts[p]) for t, starts in run.progress.samples if p in starts]
        for (t0, a), (t1, b) in itertools.pairwise(seen):
            if b < a:
                problems.append(
                    f"partition {p}: DescribeShareGroupOffsets start offset went back from {a}"
                    f" (at {t0}) to {b} (at {t1})"
                )
    replay, backwards = read_state_topic(run.upstream.bootstrap, run.state_topic)
    problems += backwards
    stored = {key[2]: d for key, d in replay.partitions.items() if key[0] == run.group}
    if sorted(stored) != list(range(PARTITIONS)):
        problems.append(f"state topic has share partitions {sorted(stored)}")
    for p, durable in sorted(stored.items()):
        if durable.start_offset != run.ends[p] or durable.ranges:
            problems.append(
                f"partition {p}: state topic says start offset {durable.start_offset} "
                f"(log end {run.ends[p]}), in-flight ranges {durable.batches()[:5]}"
            )
    return problems


def check_client_logs(
    logs: ClientLogs, ends: dict[int, int], *, check_last_delivery: bool
) -> list[str]:
    """Checks 2-4 on what the consumers saw.

    A released record must be delivered again, unless a later acquisition was never seen: a
    ShareFetch answer lost while the proxy lives (it drops the client connections when its
    upstream connection breaks), and the record released at the delivery limit when that client
    connection closed: archived unseen, as Kafka does. ``check_last_delivery`` where that cannot
    happen (client connections die only with the proxy, and its acquisitions with them)."""
    problems: list[str] = []
    produced = {(p, o) for p in range(PARTITIONS) for o in range(ends[p])}
    never = produced - set(logs.deliveries)
    if never:
        problems.append(f"{len(never)} records never delivered, e.g. {sorted(never)[:10]}")
    if set(logs.deliveries) - produced:
        problems.append(
            f"records not produced delivered: {sorted(set(logs.deliveries) - produced)[:10]}"
        )
    for key, ds in sorted(logs.deliveries.items()):
        history = [(d.count, d.consumer, d.time) for d in ds]
        polls = Counter((d.consumer, d.time) for d in ds)
        if max(polls.values()) > 1:
            problems.append(f"{key}: delivered more than once in one poll: {history}")
        counts = [d.count for d in ds]
        if any(b < a for a, b in itertools.pairwise(counts)):
            problems.append(f"{key}: delivery count went down: {history}")
        if not all(1 <= n <= DELIVERY_LIMIT for n in counts):
            problems.append(f"{key}: delivery count outside [1, {DELIVERY_LIMIT}]: {history}")
        acks = logs.acks.get(key, [])
        finals = [a for a in acks if terminal(a.ack, a.count)]
        if len(finals) > 1:
            problems.append(
                f"{key}: {len(finals)} final acknowledgements confirmed: "
                f"{[(ACK_NAMES[a.ack], a.count, a.consumer, a.time) for a in finals]}; "
                f"deliveries {history}"
            )
        for a in finals:
            later = [h for h in history if h[2] > a.time]
            if later:
                problems.append(
                    f"{key}: {ACK_NAMES[a.ack]} of delivery {a.count} confirmed to consumer "
                    f"{a.consumer} at {a.time}, delivered again after that: {later}"
                )
        for a in acks:
            if a.ack == RELEASE and not terminal(a.ack, a.count):
                after = [d.count for d in ds if d.time > a.time]
                if after and after[0] <= a.count:
                    problems.append(
                        f"{key}: RELEASE of delivery {a.count} confirmed at {a.time}, next "
                        f"delivery count {after[0]}: {history}"
                    )
        last = ds[-1]
        if check_last_delivery and not terminal(ack_for(key[1], last.count), last.count):
            problems.append(f"{key}: the last delivery was released, not redelivered: {history}")
    return problems


def last_seen_released(logs: ClientLogs) -> int:
    """Records whose last delivery a client saw was released (not a final acknowledgement)."""
    return sum(
        1
        for (_p, o), ds in logs.deliveries.items()
        if not terminal(ack_for(o, ds[-1].count), ds[-1].count)
    )


def check(run: Torture, kills: int, started: float, *, answers_lost: bool) -> Report:
    """All the end-of-run checks (every problem found is listed); the numbers of the run."""
    problems = check_share_state(run)
    logs = read_client_logs(run.consumers)
    if logs.ended != CONSUMERS:
        problems.append(f"only {logs.ended} of {CONSUMERS} consumers finished cleanly")
    problems += check_client_logs(logs, run.ends, check_last_delivery=not answers_lost)
    (run.workdir / "progress.log").write_text(
        "".join(f"{t} {sorted(s.items())}\n" for t, s in run.progress.samples)
    )
    assert not problems, f"{len(problems)} problems (logs in {run.workdir}):\n" + "\n".join(
        problems[:60]
    )
    records = sum(run.ends.values())
    finals = {key for key, acks in logs.acks.items() if any(terminal(a.ack, a.count) for a in acks)}
    return Report(
        records=records,
        deliveries=logs.delivery_total,
        redeliveries=logs.delivery_total - records,
        confirmed_acks=logs.ack_total,
        unconfirmed_acks=sum(len(v) for v in logs.unconfirmed.values()),
        unconfirmed_then_delivered_again=sum(
            1
            for key, us in logs.unconfirmed.items()
            for u in us
            if any(d.time > u.time for d in logs.deliveries[key])
        ),
        records_without_confirmed_final_ack=records - len(finals),
        records_last_seen_released=last_seen_released(logs),
        archived_at_delivery_limit=sum(
            1
            for (_p, o), ds in logs.deliveries.items()
            if ds[-1].count == DELIVERY_LIMIT and ack_for(o, DELIVERY_LIMIT) == RELEASE
        ),
        client_errors_seen=logs.errors,
        kills=kills,
        run_s=round(time.monotonic() - started, 1),
    )


# ---------------------------------------------------------------------------- the tests


def test_proxy_sigkill_torture(kafka39: Broker, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    started = time.monotonic()
    # Kill when these many records are settled (or at once if they are, as soon as the new proxy
    # answers), plus a random delay: always mid-run.
    targets = sorted(int(rng.uniform(0.03, 0.9) * RECORDS) for _ in range(KILLS))
    with torture(kafka39, tmp_path) as run:
        proxy = run.start()
        at_kill: list[int] = []
        for target in targets:
            run.wait_progress(target)
            time.sleep(rng.uniform(0.0, 1.0))
            at_kill.append(run.progress.done_records())
            proxy.kill()
            proxy.start()
        run.wait_settled()
        run.stop_consumers()
        report = check(run, proxy.kills, started, answers_lost=False)
        print(f"\nproxy killed at settled-record counts {at_kill}\n{report.line()}")
        assert proxy.kills >= KILLS and max(at_kill) < RECORDS, at_kill


@pytest.mark.parametrize("graceful", [True, False], ids=["sigterm", "sigkill"])
def test_upstream_restart_torture(own_kafka39: Broker, tmp_path: Path, graceful: bool) -> None:
    kafka39 = own_kafka39
    rng = random.Random(SEED + 1)
    started = time.monotonic()
    with torture(kafka39, tmp_path) as run:
        proxy = run.start()
        run.wait_progress(int(rng.uniform(0.2, 0.6) * RECORDS))
        time.sleep(rng.uniform(0.0, 0.5))
        before = run.progress.done_records()
        down = time.monotonic()
        kafka39.restart(graceful=graceful)
        down = time.monotonic() - down
        print(f"\nbroker restarted ({'SIGTERM' if graceful else 'SIGKILL'}) in {down:.1f}s")
        run.wait_settled()
        assert proxy.alive() and proxy.starts == 1, "the proxy did not ride out the restart"
        run.stop_consumers()
        report = check(run, 0, started, answers_lost=True)
        print(f"broker restarted at {before} settled records\n{report.line()}")
        assert before < RECORDS, "the broker was restarted after all work was done"


# ---------------------------------------------------------------------------- consumer entry


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="test_crash_torture")
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("consume")
    c.add_argument("bootstrap")
    c.add_argument("group")
    c.add_argument("topic")
    c.add_argument("log", type=Path)
    c.add_argument("stop", type=Path)
    args = parser.parse_args(argv)
    consume(args.bootstrap, args.group, args.topic, args.log, args.stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
