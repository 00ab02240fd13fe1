"""Benchmark of share groups end to end: the proxy beside classic consumers and Kafka 4.x.

One run starts three things on loopback: the upstream broker (Apache Kafka 3.9 by default,
Tansu with ``--broker tansu``), a ``sharegroup proxy`` process in front of it, and Apache Kafka
4.x with share groups on, the reference. It then compares three routes, in rounds whose order
rotates so that machine noise hits each route alike:

* proxy_share: C ``confluent_kafka.ShareConsumer`` s in one share group, through the proxy, on a
  topic of the upstream broker;
* classic_direct: C classic ``Consumer`` s in one consumer group, straight from the upstream
  broker (with P partitions only P of them get work: that is what a classic group can do);
* kafka_share: the same share consumers straight to Kafka 4.x share groups.

Each measurement uses a fresh topic with P partitions and a fresh group, and C consumer
processes (``multiprocessing``, spawn: every consumer has its own interpreter, so neither the
GIL nor this script slows the clients down). Share consumers use implicit acknowledgement,
classic ones auto commit. A measurement goes:

1. join: the consumers subscribe and poll while a trickle of tiny warm-up records arrives, until
   every share consumer has received one (classic: the group's assignment covers every
   partition). The warm-up records are drained and committed, then the consumers stop polling
   (a ShareConsumer fetches only inside ``poll``; classic consumers also pause their
   partitions, or they would prefetch in the background).
2. N records of 1 KiB are produced straight to the broker, spread evenly over the partitions
   (not timed: that is bench/passthrough.py's job).
3. timed: the consumers are told to go; the clock runs from the first record any of them
   receives until every consumer has seen the group's delivered count reach N and then
   returned from ``commit_sync()`` (share: that sends the ACCEPT acknowledgements of its last
   poll and waits for the answer, the earlier ones rode on its fetches; classic: a synchronous
   offset commit). records/s = N / that time. Joining and closing are not in it, nor the wait
   for the first record (a few ms for share consumers, but 0.2-0.6 s for a classic consumer
   after ``resume()``, a librdkafka artefact): each report line shows that wait per consumer
   ("first record ms", -1 for a consumer that got nothing).
4. the consumers close, and for share routes DescribeShareGroupOffsets must report lag 0 on
   every partition: all N records were acknowledged (and none is delivered twice: the group's
   delivered count must be exactly N).

With 1 KiB records, defaults of 200,000 records, 4 consumers and 2 partitions: fewer records
make the classic window a fraction of a second.

Every figure is the median of ``--rounds`` rounds (an unreported warm-up round goes first);
ratio_vs_classic and ratio_vs_kafka_share divide the medians (proxy / other).

Latency: then one consumer per route (share through the proxy, classic straight from the
upstream broker, share straight to Kafka 4.x), each on a 1-partition topic of its own, polls
in a thread while this script produces one 1 KiB record at a time to each route in turn (with
the client a user would have: the proxy route's producer also goes through the proxy) and
times produce() to delivery in the consumer. ``--latency-samples`` samples per route after 20
unreported ones; added_latency_p50_ms / added_latency_p99_ms are the proxy share percentiles
minus the classic direct ones. Client fetch settings are at their defaults (fetch.wait.max.ms
500: a broker or the proxy answers a waiting fetch as soon as a record arrives).

Targets: proxy_share >= 0.8 x classic_direct and >= 1.0 x kafka_share.

CPU: while a measurement is timed, the CPU time (user + system, every thread) of each process
serving the route is taken from /proc: the consumers (each reads its own), the proxy and the
upstream broker for proxy_share, the upstream broker for classic_direct, Kafka 4.x for
kafka_share. It is reported in microseconds per record, per part and in total: on a machine
where everything shares a few cores, the total is what one record costs the machine, and it
shows where the time goes ("n/a" where there is no /proc).

The last line printed is JSON with the keys proxy_share_records_per_s,
classic_direct_records_per_s, kafka_share_records_per_s, ratio_vs_classic,
ratio_vs_kafka_share, added_latency_p50_ms, added_latency_p99_ms, the raw latency
percentiles (<route>_latency_p50_ms, <route>_latency_p99_ms) and the CPU medians
(<route>_cpu_us_per_record_<part>, part being consumers, proxy, broker or total). Brokers, proxy and consumer
processes are stopped however the run ends.

The Kafka brokers run with sharegroup/brokers.py's settings except, by default, the JIT: the
tests stop at C1 for a fast start; ``--jit full`` (default) lets the JVM use C2 as production
Kafka does, ``--jit c1`` keeps the tests' setting.

Run: .venv/bin/python bench/share.py [--records N] [--consumers C] [--partitions P]
     [--rounds N] [--broker kafka39|tansu] [--latency-samples K] [--jit full|c1]
Profile the proxy: SHAREGROUP_BENCH_PROFILE=/tmp/proxy.prof .venv/bin/python bench/share.py ...
(runs the proxy under cProfile and writes the stats when it stops).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import multiprocessing.context
import multiprocessing.queues
import os
import queue
import signal
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

# bench/model.py would shadow the ``model`` package the proxy imports: drop this folder.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from confluent_kafka import (  # noqa: E402
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    ShareConsumer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient  # noqa: E402
from confluent_kafka.admin._config import AlterConfigOpType, ConfigEntry, ConfigResource  # noqa: E402
from confluent_kafka.admin._resource import ResourceType  # noqa: E402
from confluent_kafka.cimpl import NewTopic  # noqa: E402

from sharegroup import brokers  # noqa: E402
from sharegroup.brokers import Broker, start_kafka, start_tansu  # noqa: E402
from sharegroup.kafka_dist import KAFKA3_VERSION, KAFKA4_VERSION  # noqa: E402
from sharegroup.proxy_process import (  # noqa: E402
    SIGNALS,
    BenchError,
    ProxyProcess,
    die_with_parent,
    running_proxy,
    stop_on_signal,
)

RECORD_BYTES = 1024
WARM_EVERY_S = 0.02  # one warm-up record per partition this often while the group forms
LATENCY_WARMUP = 20  # unreported latency samples per route (the first one waits for the join)
JOIN_TIMEOUT_S = 120.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
STALL_TIMEOUT_S = 60.0  # no progress for this long: the measurement has failed

Route = Literal["proxy_share", "classic_direct", "kafka_share"]
ROUTES: tuple[Route, ...] = ("proxy_share", "classic_direct", "kafka_share")
Kind = Literal["share", "classic"]

# What the consumer processes are doing; the parent moves them on.
WARM, GATE, RUN, CLOSE, ABORT = range(5)


@contextlib.contextmanager
def jvm_jit(mode: str) -> Iterator[None]:
    """``full``: start Kafka without brokers.py's -XX:TieredStopAtLevel=1 (C2 as in production)."""
    saved = brokers.JVM_OPTS
    if mode == "full":
        brokers.JVM_OPTS = [o for o in saved if not o.startswith("-XX:TieredStopAtLevel")]
    try:
        yield
    finally:
        brokers.JVM_OPTS = saved


# ---------------------------------------------------------------------------- admin helpers


def create_topic(admin: AdminClient, name: str, partitions: int) -> None:
    futures = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    for future in futures.values():
        future.result(timeout=30)


def delete_topic(admin: AdminClient, name: str) -> None:
    # Free the records (Tansu keeps them in memory; Kafka's disk is a temp dir either way).
    with contextlib.suppress(KafkaException, NotImplementedError, TimeoutError):
        for future in admin.delete_topics([name], operation_timeout=30).values():
            future.result(timeout=30)


def set_earliest(bootstrap: str, group: str) -> None:
    """share.auto.offset.reset=earliest on the group, before any member joins (as Kafka 4.x)."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 3})
    entry = ConfigEntry(
        "share.auto.offset.reset", "earliest", incremental_operation=AlterConfigOpType.SET
    )
    resource = ConfigResource(ResourceType.GROUP, group, incremental_configs=[entry])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(timeout=30)


def acknowledged_everything(bootstrap: str, group: str, topic: str, partitions: int) -> str | None:
    """None when DescribeShareGroupOffsets reports lag 0 on every partition; else the rows.

    Lag, not the start offset: Kafka 4.x reports a start offset that trails the acknowledged
    records (its lag is 0 and a fresh consumer gets nothing), the proxy an exact one.
    """
    from sharegroup.offsets_cli import OffsetsError, describe_offsets

    rows: list[tuple[str, int, int, int]] = []
    deadline = time.monotonic() + 15
    while True:
        with contextlib.suppress(OffsetsError, OSError):
            rows = describe_offsets(bootstrap, group, [topic])
        if len(rows) == partitions and all(lag == 0 for _t, _p, _start, lag in rows):
            return None
        if time.monotonic() > deadline:
            return f"(topic, partition, start offset, lag): {rows}"
        time.sleep(0.2)


def produce(bootstrap: str, topic: str, records: int, partitions: int, value: bytes) -> float:
    """Seconds to produce ``records`` copies of ``value``, round robin over the partitions."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 5,
            "batch.num.messages": 100_000,  # batch.size (1 MB) is then what closes a batch
            "acks": "all",
            "log_level": 3,
        }
    )
    failures: list[str] = []
    delivered = 0

    def on_delivery(err: KafkaError | None, _msg: Any) -> None:
        nonlocal delivered
        if err is not None:
            failures.append(str(err))
        else:
            delivered += 1

    start = time.perf_counter()
    for i in range(records):
        waited = 0.0
        while True:
            try:
                producer.produce(topic, value, partition=i % partitions, on_delivery=on_delivery)
                break
            except BufferError:  # queue.buffering.max.messages reached: let deliveries drain
                before, since = delivered, time.perf_counter()
                producer.poll(1.0)
                waited = 0.0 if delivered > before else waited + time.perf_counter() - since
                if failures or waited > STALL_TIMEOUT_S:
                    why = failures[0] if failures else f"no acknowledgement in {waited:.0f} s"
                    raise BenchError(f"produce to {bootstrap}: {why}") from None
        producer.poll(0)
    left = producer.flush(STALL_TIMEOUT_S)
    elapsed = time.perf_counter() - start
    if failures or left or delivered != records:
        why = failures[0] if failures else f"{delivered} of {records} acknowledged"
        raise BenchError(f"produce to {bootstrap}: {why}")
    return elapsed


# ---------------------------------------------------------------------------- consumer processes


@dataclass(frozen=True)
class Job:
    """What one consumer process does (pickled to it)."""

    kind: Kind
    index: int
    bootstrap: str
    group: str
    topic: str
    records: int
    poll_s: float  # poll timeout: how late a waiting consumer notices that the group is done


class Batch(Protocol):
    """What a poll returns: a list (Consumer.consume) or Messages (ShareConsumer.poll)."""

    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[Any]: ...


class Shared:
    """State shared by the parent and the consumer processes of one measurement."""

    def __init__(self, ctx: multiprocessing.context.SpawnContext, consumers: int) -> None:
        self.phase = ctx.Value("i", WARM, lock=False)
        self.warm = ctx.Array("q", consumers, lock=False)  # warm-up records seen, per consumer
        self.assigned = ctx.Array("i", [-1] * consumers, lock=False)  # classic: partitions held
        self.ready = ctx.Array("i", consumers, lock=False)  # 1: stopped at the gate
        self.delivered = ctx.Value("q", 0)  # measured records delivered, all consumers
        self.first_at = ctx.Array("d", consumers, lock=False)  # perf_counter of first record
        self.done_at = ctx.Array("d", consumers, lock=False)  # perf_counter after commit
        self.close_s = ctx.Array("d", consumers, lock=False)
        self.cpu_s = ctx.Array("d", consumers, lock=False)  # process CPU while measured
        self.go = ctx.Event()
        self.errors: multiprocessing.queues.Queue[str] = ctx.Queue()


def _count(batch: Batch) -> int:
    """Records in a poll's batch; a fatal error fails the run, others librdkafka retries."""
    n = 0
    for msg in batch:
        err = msg.error()
        if err is None:
            n += 1
        elif err.fatal():
            raise KafkaException(err)
    return n


class _Client:
    """The few calls the consumer loop needs, for a ShareConsumer or a classic Consumer."""

    def __init__(self, job: Job, shared: Shared) -> None:
        self.kind = job.kind
        common = {"bootstrap.servers": job.bootstrap, "group.id": job.group, "log_level": 3}
        if job.kind == "share":
            self.share = ShareConsumer(common)
            self.share.subscribe([job.topic])
            return
        self.classic = Consumer({**common, "auto.offset.reset": "earliest"})
        index = job.index

        def on_assign(_c: Any, parts: list[TopicPartition]) -> None:
            shared.assigned[index] = len(parts)

        def on_revoke(_c: Any, _parts: list[TopicPartition]) -> None:
            shared.assigned[index] = 0

        self.classic.subscribe([job.topic], on_assign=on_assign, on_revoke=on_revoke)

    def poll(self, timeout: float) -> Batch:
        if self.kind == "share":
            return self.share.poll(timeout)
        return self.classic.consume(num_messages=500, timeout=timeout)

    def commit(self) -> None:
        if self.kind == "share":
            failed = {tp: e for tp, e in self.share.commit_sync().items() if e is not None}
            if failed:
                raise BenchError(f"acknowledgements failed: {failed}")
            return
        try:
            self.classic.commit(asynchronous=False)
        except KafkaException as e:
            if e.args[0].code() != KafkaError._NO_OFFSET:  # nothing new to commit is fine
                raise

    def pause(self, pause: bool) -> None:
        if self.kind == "classic":  # a ShareConsumer fetches only inside poll()
            parts = self.classic.assignment()
            (self.classic.pause if pause else self.classic.resume)(parts)

    def close(self) -> None:
        (self.share if self.kind == "share" else self.classic).close()


def consumer_main(job: Job, shared: Shared) -> None:
    """One consumer process: join, drain the warm-up, wait at the gate, consume, commit."""
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us
    try:
        _consume(job, shared)
    except BaseException as e:  # noqa: BLE001 - reported to the parent, which fails the run
        shared.errors.put(f"consumer {job.index} ({job.kind}): {e!r}")
        shared.phase.value = ABORT
        sys.exit(1)


def _consume(job: Job, shared: Shared) -> None:
    i = job.index
    client = _Client(job, shared)
    try:
        while shared.phase.value == WARM:
            shared.warm[i] += _count(client.poll(job.poll_s))
        if shared.phase.value != GATE:
            return
        client.commit()
        client.pause(True)
        shared.ready[i] = 1
        while not shared.go.wait(0.5):
            if shared.phase.value == ABORT:
                return
        client.pause(False)
        cpu_started = time.process_time()  # every thread of the process: librdkafka's too
        delivered = shared.delivered
        while delivered.value < job.records and shared.phase.value == RUN:
            n = _count(client.poll(job.poll_s))
            if n:
                with delivered.get_lock():
                    delivered.value += n
                if not shared.first_at[i]:
                    shared.first_at[i] = time.perf_counter()
        client.commit()
        shared.cpu_s[i] = time.process_time() - cpu_started
        shared.done_at[i] = time.perf_counter()
        while shared.phase.value == RUN:
            time.sleep(0.01)
    finally:
        started = time.perf_counter()
        client.close()
        shared.close_s[i] = time.perf_counter() - started


# ---------------------------------------------------------------------------- one measurement


@dataclass
class Target:
    """Where one route's records live and where its consumers connect."""

    route: Route
    kind: Kind
    data: str  # the broker the topic lives on (records are produced straight to it)
    consume: str  # the consumers' bootstrap
    admin: AdminClient
    check: Callable[[], None] = lambda: None
    # The processes serving this route (name -> pid), whose CPU time is measured with the
    # consumers' own: "proxy" and "broker".
    processes: dict[str, int | None] = field(default_factory=dict)


@dataclass
class Measurement:
    records_per_s: float
    seconds: float
    first_ms: list[float]  # per consumer: go to its first record (-1: none)
    join_s: float
    produce_s: float
    close_s: float
    # CPU time per record while measured, in microseconds: "consumers" (all of them), and
    # each of the route's processes; None where it cannot be read (no /proc).
    cpu_us: dict[str, float | None] = field(default_factory=dict)

    @property
    def cpu_us_total(self) -> float | None:
        values = list(self.cpu_us.values())
        return None if not values or None in values else sum(v for v in values if v is not None)


def process_cpu_s(pid: int | None) -> float | None:
    """User plus system CPU seconds of a process (all its threads), from /proc; None where
    there is no /proc or no such process."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class Run:
    """The consumer processes of one measurement and the checks while waiting on them."""

    def __init__(
        self, target: Target, consumers: int, group: str, topic: str, records: int, poll_s: float
    ) -> None:
        self.target = target
        ctx = multiprocessing.get_context("spawn")
        self.shared = Shared(ctx, consumers)
        self.procs = [
            ctx.Process(
                target=consumer_main,
                args=(
                    Job(target.kind, i, target.consume, group, topic, records, poll_s),
                    self.shared,
                ),
                name=f"bench-consumer-{i}",
                daemon=True,
            )
            for i in range(consumers)
        ]

    def __enter__(self) -> Run:
        for proc in self.procs:
            proc.start()
        return self

    def __exit__(self, *exc: object) -> None:
        shared = self.shared
        if shared.phase.value != CLOSE:
            shared.phase.value = ABORT
        shared.go.set()
        deadline = time.monotonic() + 30
        for proc in self.procs:
            proc.join(max(0.1, deadline - time.monotonic()))
        for proc in self.procs:
            if proc.is_alive():
                proc.kill()
                proc.join()

    def check(self) -> None:
        with contextlib.suppress(queue.Empty):
            raise BenchError(self.shared.errors.get_nowait())
        for proc in self.procs:
            if proc.exitcode not in (None, 0):
                raise BenchError(f"{proc.name} exited with {proc.exitcode}")
        self.target.check()

    def wait(self, what: str, done: Callable[[], bool], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not done():
            self.check()
            if time.monotonic() > deadline:
                raise BenchError(f"{self.target.route}: no {what} after {timeout_s:.0f} s")
            time.sleep(0.005)


def warm_up(run: Run, topic: str, partitions: int) -> int:
    """Trickle tiny records until the group has formed; the number produced."""
    shared, consumers = run.shared, len(run.procs)
    if run.target.kind == "share":

        def joined() -> bool:
            return all(shared.warm[i] > 0 for i in range(consumers))
    else:

        def joined() -> bool:
            held = [shared.assigned[i] for i in range(consumers)]
            return bool(min(held) >= 0 and sum(held) == partitions)

    producer = Producer({"bootstrap.servers": run.target.data, "linger.ms": 0, "log_level": 3})
    produced = 0
    deadline = time.monotonic() + JOIN_TIMEOUT_S
    while not joined():
        run.check()
        if time.monotonic() > deadline:
            raise BenchError(
                f"{run.target.route}: the group did not form in {JOIN_TIMEOUT_S:.0f} s"
                f" (warm-up records per consumer {list(shared.warm)},"
                f" partitions per consumer {list(shared.assigned)})"
            )
        for p in range(partitions):
            producer.produce(topic, b"w", partition=p)
        produced += partitions
        producer.poll(0)
        time.sleep(WARM_EVERY_S)
    if producer.flush(30):
        raise BenchError(f"{run.target.route}: warm-up records not acknowledged")
    return produced


def measure(
    target: Target, records: int, consumers: int, partitions: int, value: bytes, poll_s: float
) -> Measurement:
    topic = f"bench-share-{target.route}-{uuid.uuid4().hex[:10]}"
    group = f"bench-share-{uuid.uuid4().hex[:10]}"
    create_topic(target.admin, topic, partitions)
    try:
        if target.kind == "share":
            set_earliest(target.consume, group)
        with Run(target, consumers, group, topic, records, poll_s) as run:
            shared = run.shared
            started = time.perf_counter()
            warm = warm_up(run, topic, partitions)
            join_s = time.perf_counter() - started
            run.wait("drained warm-up", lambda: sum(shared.warm) >= warm, STALL_TIMEOUT_S)
            shared.phase.value = GATE
            run.wait("consumers at the gate", lambda: all(shared.ready), STALL_TIMEOUT_S)
            produce_s = produce(target.data, topic, records, partitions, value)
            run.check()

            cpu_before = {name: process_cpu_s(pid) for name, pid in target.processes.items()}
            start = time.perf_counter()
            shared.phase.value = RUN
            shared.go.set()
            progress, last = time.monotonic(), -1
            while not all(shared.done_at):
                run.check()
                now, got = time.monotonic(), shared.delivered.value
                if got != last:
                    progress, last = now, got
                elif now - progress > STALL_TIMEOUT_S:
                    raise BenchError(f"{target.route}: stuck at {got} of {records} records")
                time.sleep(0.005)
            cpu_after = {name: process_cpu_s(pid) for name, pid in target.processes.items()}
            first_ms = [(t - start) * 1000 if t else -1.0 for t in shared.first_at]
            seconds = max(shared.done_at) - min(t for t in shared.first_at if t)
            shared.phase.value = CLOSE
            for proc in run.procs:
                proc.join(60)
            run.check()
            close_s = max(shared.close_s)
        delivered = shared.delivered.value
        if delivered != records:
            raise BenchError(f"{target.route}: {delivered} deliveries of {records} records")
        if target.kind == "share":
            missing = acknowledged_everything(target.consume, group, topic, partitions)
            if missing:
                raise BenchError(f"{target.route}: not everything acknowledged: {missing}")
    finally:
        delete_topic(target.admin, topic)
    cpu_s: dict[str, float | None] = {"consumers": sum(shared.cpu_s)}
    for name, before in cpu_before.items():
        after = cpu_after[name]
        cpu_s[name] = None if before is None or after is None else after - before
    cpu_us = {k: None if v is None else v / records * 1e6 for k, v in cpu_s.items()}
    return Measurement(records / seconds, seconds, first_ms, join_s, produce_s, close_s, cpu_us)


# ---------------------------------------------------------------------------- latency


class LatencyProbe:
    """One consumer polling in a thread; records the delivery time of each sequence number."""

    def __init__(self, target: Target, topic: str, group: str) -> None:
        self.target = target
        self.topic = topic
        self.group = group
        self.producer = Producer(
            {"bootstrap.servers": target.consume, "linger.ms": 0, "acks": "all", "log_level": 3}
        )
        self.received: dict[int, float] = {}
        self.samples: list[float] = []
        self.error: BaseException | None = None
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"probe-{target.route}")

    def start(self) -> LatencyProbe:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)
        self.producer.flush(10)

    def _run(self) -> None:
        try:
            config: dict[str, Any] = {
                "bootstrap.servers": self.target.consume,
                "group.id": self.group,
                "log_level": 3,
            }
            if self.target.kind == "share":
                share = ShareConsumer(config)
                share.subscribe([self.topic])
                self._loop(share.poll, share.close)
            else:
                classic = Consumer({**config, "enable.auto.commit": False})
                classic.assign([TopicPartition(self.topic, 0, 0)])
                self._loop(lambda t: [m] if (m := classic.poll(t)) else [], classic.close)
        except BaseException as e:  # noqa: BLE001 - reported by sample()
            self.error = e
            with self._cond:
                self._cond.notify_all()

    def _loop(self, poll: Callable[[float], Batch], close: Callable[[], None]) -> None:
        try:
            while not self._stop.is_set():
                batch = poll(0.1)
                now = time.perf_counter()
                if not batch:
                    continue
                with self._cond:
                    for msg in batch:
                        if msg.error() is None:
                            self.received[int.from_bytes(msg.value()[:8], "big")] = now
                    self._cond.notify_all()
        finally:
            close()

    def sample(self, seq: int, timeout_s: float) -> float:
        """Produce record ``seq``; seconds until the consumer had it."""
        value = seq.to_bytes(8, "big") + bytes(RECORD_BYTES - 8)
        sent = time.perf_counter()
        self.producer.produce(self.topic, value, partition=0)
        self.producer.poll(0)
        with self._cond:
            if not self._cond.wait_for(
                lambda: seq in self.received or self.error is not None, timeout_s
            ):
                raise BenchError(
                    f"{self.target.route}: record {seq} not delivered in {timeout_s} s"
                )
            if self.error is not None:
                raise BenchError(f"{self.target.route} latency consumer: {self.error!r}")
            return self.received.pop(seq) - sent


def measure_latency(targets: Sequence[Target], samples: int) -> dict[Route, list[float]]:
    """Seconds from produce() to delivery, ``samples`` per route, routes interleaved."""
    probes: list[LatencyProbe] = []
    topics: list[tuple[Target, str]] = []
    try:
        for target in targets:
            topic = f"bench-latency-{target.route}-{uuid.uuid4().hex[:10]}"
            group = f"bench-latency-{uuid.uuid4().hex[:10]}"
            create_topic(target.admin, topic, 1)
            topics.append((target, topic))
            if target.kind == "share":
                set_earliest(target.consume, group)
            probes.append(LatencyProbe(target, topic, group).start())
        for seq in range(LATENCY_WARMUP + samples):
            for k in range(len(probes)):
                probe = probes[(seq + k) % len(probes)]  # each route goes first in turn
                probe.target.check()
                took = probe.sample(seq, JOIN_TIMEOUT_S if seq == 0 else STALL_TIMEOUT_S)
                if seq >= LATENCY_WARMUP:
                    probe.samples.append(took)
                time.sleep(0.002)
        return {probe.target.route: probe.samples for probe in probes}
    finally:
        for probe in probes:
            probe.stop()
        for target, topic in topics:
            delete_topic(target.admin, topic)


# ---------------------------------------------------------------------------- report


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear between the closest ranks."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def _us(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def describe(route: Route, m: Measurement) -> str:
    cpu = ", ".join(f"{name} {_us(v)}" for name, v in m.cpu_us.items())
    return (
        f"  {route:<15}{m.records_per_s:>9,.0f} rec/s  ({m.seconds:6.2f} s;"
        f" join {m.join_s:5.1f} s, pre-produce {m.produce_s:5.2f} s, close {m.close_s:4.1f} s;"
        f" first record ms {' '.join(f'{t:.0f}' for t in m.first_ms)};"
        f" CPU us/record {cpu})"
    )


@dataclass
class Results:
    rounds: list[dict[Route, Measurement]] = field(default_factory=list)
    latency: dict[Route, list[float]] = field(default_factory=dict)

    def medians(self) -> dict[Route, float]:
        return {r: statistics.median(x[r].records_per_s for x in self.rounds) for r in ROUTES}

    def cpu_medians(self, route: Route) -> dict[str, float | None]:
        """Median CPU microseconds per record of each part of a route, and "total"."""
        out: dict[str, float | None] = {}
        parts = [*self.rounds[0][route].cpu_us, "total"]
        for part in parts:
            values = [
                x[route].cpu_us_total if part == "total" else x[route].cpu_us.get(part)
                for x in self.rounds
            ]
            known = [v for v in values if v is not None]
            out[part] = statistics.median(known) if len(known) == len(values) else None
        return out

    def table(self) -> str:
        medians = self.medians()
        lines = [f"{'route':<16}{'median rec/s':>13}{'MB/s':>8}   per round"]
        for route in ROUTES:
            each = ", ".join(f"{x[route].records_per_s:,.0f}" for x in self.rounds)
            rate = medians[route]
            lines.append(f"{route:<16}{rate:>13,.0f}{rate * RECORD_BYTES / 1e6:>8.1f}   {each}")
        lines.append(
            f"proxy_share / classic_direct {medians['proxy_share'] / medians['classic_direct']:.3f}"
            f" (target >= 0.8); proxy_share / kafka_share"
            f" {medians['proxy_share'] / medians['kafka_share']:.3f} (target >= 1.0)"
        )
        lines.append("CPU us per record (median; all cores, while measured)")
        for route in ROUTES:
            cpu = self.cpu_medians(route)
            lines.append(f"{route:<16}" + ", ".join(f"{part} {_us(v)}" for part, v in cpu.items()))
        lines.append(
            f"{'latency ms':<16}{'p50':>8}{'p90':>8}{'p99':>8}{'max':>8}   produce() to delivery"
        )
        for route, values in self.latency.items():
            ms = [v * 1000 for v in values]
            lines.append(
                f"{route:<16}"
                + "".join(f"{percentile(ms, q):>8.2f}" for q in (50, 90, 99))
                + f"{max(ms):>8.2f}"
            )
        return "\n".join(lines)

    def summary(self) -> dict[str, float | None]:
        medians = self.medians()
        result: dict[str, float | None] = {f"{r}_records_per_s": round(medians[r]) for r in ROUTES}
        result["ratio_vs_classic"] = round(medians["proxy_share"] / medians["classic_direct"], 3)
        result["ratio_vs_kafka_share"] = round(medians["proxy_share"] / medians["kafka_share"], 3)
        for route in ROUTES:
            for part, value in self.cpu_medians(route).items():
                result[f"{route}_cpu_us_per_record_{part}"] = (
                    None if value is None else round(value, 2)
                )
        ms = {r: [v * 1000 for v in values] for r, values in self.latency.items()}
        for q in (50, 99):
            added = None
            if ms:  # without --latency-samples: null
                added = round(
                    percentile(ms["proxy_share"], q) - percentile(ms["classic_direct"], q), 2
                )
            result[f"added_latency_p{q}_ms"] = added
        for route, values in ms.items():
            for q in (50, 99):
                result[f"{route}_latency_p{q}_ms"] = round(percentile(values, q), 2)
        return result


def run_all(
    upstream: Broker, kafka4: Broker, proxy: ProxyProcess, args: argparse.Namespace
) -> Results:
    """Every round and the latency probes; the admin clients are gone on return."""
    upstream_admin = AdminClient({"bootstrap.servers": upstream.bootstrap, "log_level": 3})
    kafka4_admin = AdminClient({"bootstrap.servers": kafka4.bootstrap, "log_level": 3})
    targets = {
        "proxy_share": Target(
            "proxy_share",
            "share",
            upstream.bootstrap,
            proxy.bootstrap,
            upstream_admin,
            proxy.check_alive,
            {"proxy": proxy.pid, "broker": upstream.pid},
        ),
        "classic_direct": Target(
            "classic_direct",
            "classic",
            upstream.bootstrap,
            upstream.bootstrap,
            upstream_admin,
            processes={"broker": upstream.pid},
        ),
        "kafka_share": Target(
            "kafka_share",
            "share",
            kafka4.bootstrap,
            kafka4.bootstrap,
            kafka4_admin,
            processes={"broker": kafka4.pid},
        ),
    }
    value = os.urandom(RECORD_BYTES)
    shape = (args.consumers, args.partitions, value, args.poll_ms / 1000)
    if args.warmup > 0:
        print(f"warm-up round ({args.warmup:,} records, not reported)", flush=True)
        for route in ROUTES:
            print(describe(route, measure(targets[route], args.warmup, *shape)), flush=True)
    results = Results()
    for i in range(args.rounds):
        order = ROUTES[i % len(ROUTES) :] + ROUTES[: i % len(ROUTES)]
        print(f"round {i + 1}/{args.rounds}", flush=True)
        measured: dict[Route, Measurement] = {}
        for route in order:
            measured[route] = measure(targets[route], args.records, *shape)
            print(describe(route, measured[route]), flush=True)
        results.rounds.append(measured)
    if args.latency_samples > 0:
        print(f"latency: {args.latency_samples} samples per route", flush=True)
        results.latency = measure_latency([targets[r] for r in ROUTES], args.latency_samples)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--records", type=int, default=200_000, help="records per measurement")
    parser.add_argument("--consumers", type=int, default=4, help="consumers per route")
    parser.add_argument("--partitions", type=int, default=2, help="partitions per topic")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--broker", choices=["kafka39", "tansu"], default="kafka39")
    parser.add_argument(
        "--warmup", type=int, default=20_000, help="records of an unreported first round (0: none)"
    )
    parser.add_argument("--latency-samples", type=int, default=200, help="per route (0: none)")
    parser.add_argument("--poll-ms", type=float, default=10, help="consumers' poll timeout (ms)")
    parser.add_argument("--jit", choices=["full", "c1"], default="full", help="Kafka's JVM JIT")
    parser.add_argument(
        "--proxy-config", action="append", default=[], metavar="KEY=VALUE", help="repeatable"
    )
    args = parser.parse_args()
    if min(args.records, args.consumers, args.partitions, args.rounds) < 1:
        parser.error("--records, --consumers, --partitions and --rounds must be positive")
    if args.latency_samples < 0 or args.warmup < 0:
        parser.error("--latency-samples and --warmup must not be negative")

    with contextlib.ExitStack() as stack:
        with jvm_jit(args.jit):
            upstream = stack.enter_context(
                start_tansu()
                if args.broker == "tansu"
                else start_kafka(KAFKA3_VERSION, share_groups=False)
            )
            kafka4 = stack.enter_context(start_kafka(KAFKA4_VERSION, share_groups=True))
        profile = os.environ.get("SHAREGROUP_BENCH_PROFILE") or None
        proxy = stack.enter_context(running_proxy(upstream.bootstrap, args.proxy_config, profile))
        print(
            f"upstream {upstream.kind} {upstream.version} at {upstream.bootstrap}, proxy at"
            f" {proxy.bootstrap}, kafka {kafka4.version} share groups at {kafka4.bootstrap}"
            f" (JIT {args.jit}); {args.records:,} records of {RECORD_BYTES} B,"
            f" {args.consumers} consumers, {args.partitions} partitions, {args.rounds} rounds",
            flush=True,
        )
        results = run_all(upstream, kafka4, proxy, args)
    print(results.table(), flush=True)
    print(json.dumps(results.summary()), flush=True)
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGINT, stop_on_signal)
    signal.signal(signal.SIGTERM, stop_on_signal)
    try:
        sys.exit(main())
    except (KeyboardInterrupt, SystemError) as stop:
        # confluent-kafka turns an exception raised in a callback into SystemError
        # ("returned NULL without setting an exception"): after a signal, that is the signal.
        if isinstance(stop, SystemError) and not SIGNALS:
            raise
        print("interrupted", file=sys.stderr)
        sys.exit(128 + (SIGNALS[0] if SIGNALS else signal.SIGINT))
    except BenchError as e:
        print(f"share: {e}", file=sys.stderr)
        sys.exit(1)
