"""Benchmark of share groups end to end: the proxy beside Kafka 4.4's share groups and classic
consumers, measured side by side in one run.

One run starts, on loopback: the upstream broker (Apache Kafka 3.9 by default, Tansu with
``--broker tansu``), a ``sharegroup proxy`` process in front of it, and Apache Kafka 4.4 with
share groups, the reference. Routes:

* proxy_share: share consumers through the proxy, on a topic of the upstream broker;
* kafka_share: the same share consumers straight to Kafka 4.4's share groups;
* classic_direct: classic consumers straight from the upstream broker (librdkafka only; with P
  partitions only P of them get work: that is what a classic group can do).

Clients: ``librdkafka`` — C consumer processes (``multiprocessing``, spawn: each has its own
interpreter) with ``confluent_kafka.ShareConsumer`` (implicit acknowledgement) or a classic
``Consumer`` (auto commit); ``java`` — Kafka's own ``ShareConsumerPerformance``
(``org.apache.kafka:kafka-tools``, fetched from Maven Central) with ``--threads C``.

Producer batches (``--batch-bytes``, the producer's ``batch.size``): about 1 MiB ("big") and
4 KiB ("small") by default; ``1`` gives one record per batch, the worst case. Records are 1 KiB.

Brokers (``--broker-settings``): ``kafka-defaults`` (default) runs both Kafka brokers as
Kafka's start scripts and server defaults do: a 1 GiB heap, G1, 3 network, 8 I/O and 10
background threads; ``test`` keeps sharegroup/brokers.py's test settings (512 MiB, serial GC,
2/2/2). Kafka 4.4 is formatted with its own default ``share.version`` unless
``--share-version N``. ``--jit full`` (default) lets the JVMs use C2, ``c1`` stops at C1.

Backlog drain (every client, batch size and route, in rounds whose route order rotates):

1. join: the consumers subscribe and poll while a trickle of tiny warm-up records arrives,
   until each has received one (classic: the assignment covers every partition); the
   warm-up records are drained and committed, and the consumers stop polling.
2. N records are produced straight to the broker, round robin over the partitions.
3. timed: from the first record any consumer receives until every consumer has seen the
   group's delivered count reach N and returned from ``commit_sync()``. records/s = N / that.
4. the consumers close; share routes must then report lag 0 on every partition through
   DescribeShareGroupOffsets, and exactly N deliveries (no record twice).

The java client instead runs the tool on the backlog; records/s is the tool's own nMsg.sec
(its join included, as for anyone who runs it).

Steady state (``--steady-rate R``, librdkafka share consumers, proxy_share and kafka_share,
each batch size): the consumers wait at the gate, then ``--steady-records`` records are
produced at R per second while they consume. Every record carries its produce time
(CLOCK_MONOTONIC, one clock for every process), and every record's produce-to-delivery time is
kept: p50, p99 and p99.9 are exact percentiles of all of them (no bucketing).

CPU: while a measurement runs, the CPU time (user + system, every thread) of each process is
taken from /proc: the consumers (each its own; the java tool's from wait4, JVM start
included), the proxy and the upstream broker for proxy_share, Kafka 4.4 for kafka_share. It is
reported in microseconds per record, per part; "route" is what serving costs the machine
without the consumers (proxy + upstream broker, or Kafka 4.4). librdkafka's statistics count
the ShareFetch and ShareAcknowledge requests the consumers sent (within about one per
consumer), which gives records and route CPU per request.

Every figure is per round; the report shows medians with their min and max, and the ratios
proxy_share / other are paired (both measured in the same round) before their median and
spread are taken. An unreported warm-up round of ``--warmup`` records goes first.

The last line printed is JSON. Keys: ratio_vs_kafka_share_<client>_<batch> (and _min, _max),
cpu_us_per_record_proxy_route_<batch>, cpu_us_per_record_kafka_share_<batch> (and _java_
variants), records_per_request_* and cpu_us_per_request_*, steady_* latencies, and
added_latency_p50_ms / _p99_ms / _p999_ms: steady state, proxy_share minus kafka_share, the
worse of the batch sizes (per batch size: added_latency_p99_ms_<batch>). Kept from earlier
versions, for librdkafka and the first batch size: <route>_records_per_s, ratio_vs_classic,
ratio_vs_kafka_share, <route>_cpu_us_per_record_<part>; with ``--latency-samples K`` the
one-at-a-time probe of earlier versions adds <route>_latency_p50_ms / _p99_ms.

Targets: cpu_us_per_record_proxy_route_<batch> <=
cpu_us_per_record_kafka_share_<batch>; every ratio_vs_kafka_share_* >= 1.0; added_latency_p99_ms
<= 2.

A change measured before and after in one run: ``--compare-proxy DIR`` also runs the proxy of
the source tree DIR (``git archive <commit> | tar -x -C DIR``) on the same upstream broker, with
a state topic of its own, as route proxy_base: ratio_vs_proxy_base_* are paired as above, and
cpu_us_per_record_proxy_base_* sit beside cpu_us_per_record_proxy_route_*.

Run: .venv/bin/python bench/share.py [--records N] [--rounds N] [--batch-bytes 1048576,4096]
     [--clients librdkafka,java] [--routes proxy_share,classic_direct,kafka_share]
     [--steady-rate R] [--steady-records N] [--broker-settings kafka-defaults|test]
Profile the proxy: SHAREGROUP_BENCH_PROFILE=/tmp/proxy.prof .venv/bin/python bench/share.py ...
(runs the proxy under cProfile and writes the stats when it stops).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import multiprocessing
import multiprocessing.context
import multiprocessing.queues
import os
import queue
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from array import array
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
from sharegroup.kafka_dist import (  # noqa: E402
    KAFKA3_VERSION,
    KAFKA4_VERSION,
    ensure_kafka_tools,
)
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
BASE_STATE_TOPIC = "__sharegroup_state_base"
STATS_INTERVAL_MS = 100  # librdkafka statistics: how requests are counted
BATCH_NAMES = {1 << 20: "big", 4096: "small", 1: "single"}
# What Kafka's start scripts give a broker (kafka-server-start.sh, kafka-run-class.sh) and a
# tool (kafka-run-class.sh's 256 MiB heap), and Kafka's default thread counts.
_KAFKA_GC_OPTS = [
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:MaxInlineLevel=15",
    "-Djava.awt.headless=true",
]
KAFKA_SCRIPT_JVM_OPTS = ["-Xmx1G", "-Xms1G", *_KAFKA_GC_OPTS]
JAVA_TOOL_OPTS = ["-Xmx256M", *_KAFKA_GC_OPTS]
KAFKA_DEFAULT_THREADS = {
    "num.network.threads": "3",
    "num.io.threads": "8",
    "background.threads": "10",
}

Route = Literal["proxy_share", "classic_direct", "kafka_share", "proxy_base"]
ROUTES: tuple[Route, ...] = ("proxy_share", "classic_direct", "kafka_share")
# proxy_base (--compare-proxy): a second proxy, on the same upstream broker, running the code of
# another checkout: a change measured before and after in one run.
ALL_ROUTES: tuple[Route, ...] = (*ROUTES, "proxy_base")
Kind = Literal["share", "classic"]

# What the consumer processes are doing; the parent moves them on.
WARM, GATE, RUN, CLOSE, ABORT = range(5)


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
    from sharegroup.cli.offsets import OffsetsError, describe_offsets

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


def producer_config(bootstrap: str, batch_bytes: int) -> dict[str, Any]:
    """A producer whose record batches hold about ``batch_bytes`` (at least one record)."""
    return {
        "bootstrap.servers": bootstrap,
        "linger.ms": 5,
        "batch.num.messages": 1_000_000,  # batch.size is then what closes a batch
        "batch.size": batch_bytes,
        "acks": "all",
        "log_level": 3,
    }


def produce(
    bootstrap: str, topic: str, records: int, partitions: int, value: bytes, batch_bytes: int
) -> float:
    """Seconds to produce ``records`` copies of ``value``, round robin over the partitions, in
    record batches of about ``batch_bytes``."""
    producer = Producer(producer_config(bootstrap, batch_bytes))
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
    steady: bool = False  # records carry their produce time: keep each one's latency


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
        # ShareFetch and ShareAcknowledge requests sent while measured (-1: unknown)
        self.requests = ctx.Array("q", [-1] * consumers, lock=False)
        self.go = ctx.Event()
        self.errors: multiprocessing.queues.Queue[str] = ctx.Queue()
        self.latencies: multiprocessing.queues.Queue[bytes] = ctx.Queue()  # steady: array("d")


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


def _count_timed(batch: Batch, latencies: array[float]) -> int:
    """``_count``, keeping each record's produce-to-here time (its first 8 bytes are the
    CLOCK_MONOTONIC nanoseconds at which it was produced: one clock for every process)."""
    now = time.monotonic_ns()
    n = 0
    for msg in batch:
        err = msg.error()
        if err is None:
            n += 1
            value = msg.value()
            if value is not None and len(value) >= 8:
                latencies.append((now - int.from_bytes(value[:8], "big")) / 1e9)
        elif err.fatal():
            raise KafkaException(err)
    return n


class _Client:
    """The few calls the consumer loop needs, for a ShareConsumer or a classic Consumer."""

    def __init__(self, job: Job, shared: Shared) -> None:
        self.kind = job.kind
        self.requests = -1  # ShareFetch + ShareAcknowledge sent, from librdkafka's statistics
        self.stats_seen = 0
        common = {"bootstrap.servers": job.bootstrap, "group.id": job.group, "log_level": 3}
        if job.kind == "share":
            stats = {"statistics.interval.ms": STATS_INTERVAL_MS, "stats_cb": self._stats}
            self.share = ShareConsumer({**common, **stats})
            self.share.subscribe([job.topic])
            return
        self.classic = Consumer({**common, "auto.offset.reset": "earliest"})
        index = job.index

        def on_assign(_c: Any, parts: list[TopicPartition]) -> None:
            shared.assigned[index] = len(parts)

        def on_revoke(_c: Any, _parts: list[TopicPartition]) -> None:
            shared.assigned[index] = 0

        self.classic.subscribe([job.topic], on_assign=on_assign, on_revoke=on_revoke)

    def _stats(self, text: str) -> None:
        brokers = json.loads(text).get("brokers", {}).values()
        self.requests = sum(
            b.get("req", {}).get("ShareFetch", 0) + b.get("req", {}).get("ShareAcknowledge", 0)
            for b in brokers
        )
        self.stats_seen += 1

    def settle_stats(self, timeout_s: float = 2.0) -> int:
        """Poll until two fresh statistics have arrived (the first may predate the call);
        the records received meanwhile."""
        if self.kind != "share":
            return 0
        seen, got = self.stats_seen, 0
        deadline = time.monotonic() + timeout_s
        while self.stats_seen < seen + 2 and time.monotonic() < deadline:
            got += _count(self.share.poll(STATS_INTERVAL_MS / 2000))
        return got

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
    latencies: array[float] = array("d")
    try:
        while shared.phase.value == WARM:
            shared.warm[i] += _count(client.poll(job.poll_s))
        if shared.phase.value != GATE:
            return
        client.commit()
        client.pause(True)
        shared.warm[i] += client.settle_stats()
        requests_before = client.requests
        shared.ready[i] = 1
        while not shared.go.wait(0.5):
            if shared.phase.value == ABORT:
                return
        client.pause(False)
        cpu_started = time.process_time()  # every thread of the process: librdkafka's too
        delivered = shared.delivered
        while delivered.value < job.records and shared.phase.value == RUN:
            batch = client.poll(job.poll_s)
            n = _count_timed(batch, latencies) if job.steady else _count(batch)
            if n:
                with delivered.get_lock():
                    delivered.value += n
                if not shared.first_at[i]:
                    shared.first_at[i] = time.perf_counter()
        client.commit()
        shared.cpu_s[i] = time.process_time() - cpu_started
        shared.done_at[i] = time.perf_counter()
        late = client.settle_stats()
        if late:
            with delivered.get_lock():
                delivered.value += late  # more than produced: the parent fails the run
        if requests_before >= 0 and client.requests >= 0:
            shared.requests[i] = client.requests - requests_before
        if job.steady:
            shared.latencies.put(latencies.tobytes())
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
    # ShareFetch + ShareAcknowledge requests the consumers sent (None: not counted)
    requests: int | None = None
    latencies: list[float] = field(default_factory=list)  # steady state: seconds per record

    @property
    def cpu_us_route(self) -> float | None:
        """What serving the route costs, without the consumers: proxy + broker."""
        values = [v for k, v in self.cpu_us.items() if k != "consumers"]
        return None if not values or None in values else sum(v for v in values if v is not None)

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
        self, target: Target, shape: Shape, group: str, topic: str, records: int, steady: bool
    ) -> None:
        self.target = target
        ctx = multiprocessing.get_context("spawn")
        self.shared = Shared(ctx, shape.consumers)
        job = Job(target.kind, 0, target.consume, group, topic, records, shape.poll_s, steady)
        self.procs = [
            ctx.Process(
                target=consumer_main,
                args=(dataclasses.replace(job, index=i), self.shared),
                name=f"bench-consumer-{i}",
                daemon=True,
            )
            for i in range(shape.consumers)
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


@dataclass(frozen=True)
class Shape:
    """What every measurement of a run shares."""

    consumers: int
    partitions: int
    value: bytes
    poll_s: float


def _cpu_us(
    target: Target,
    before: dict[str, float | None],
    after: dict[str, float | None],
    consumers_s: float | None,
    records: int,
) -> dict[str, float | None]:
    cpu_s: dict[str, float | None] = {"consumers": consumers_s}
    for name, was in before.items():
        now = after[name]
        cpu_s[name] = None if was is None or now is None else now - was
    return {k: None if v is None else v / records * 1e6 for k, v in cpu_s.items()}


def _snapshot(target: Target) -> dict[str, float | None]:
    return {name: process_cpu_s(pid) for name, pid in target.processes.items()}


def measure(
    target: Target, records: int, shape: Shape, batch_bytes: int, steady_rate: float = 0
) -> Measurement:
    """Backlog drain (``steady_rate`` 0): ``records`` are produced, then consumed, timed.
    Steady state: the consumers run while ``records`` are produced at ``steady_rate`` per
    second, and each record's produce-to-delivery time is kept."""
    topic = f"bench-share-{target.route}-{uuid.uuid4().hex[:10]}"
    group = f"bench-share-{uuid.uuid4().hex[:10]}"
    steady = steady_rate > 0
    create_topic(target.admin, topic, shape.partitions)
    try:
        if target.kind == "share":
            set_earliest(target.consume, group)
        with Run(target, shape, group, topic, records, steady) as run:
            shared = run.shared
            started = time.perf_counter()
            warm = warm_up(run, topic, shape.partitions)
            join_s = time.perf_counter() - started
            run.wait("drained warm-up", lambda: sum(shared.warm) >= warm, STALL_TIMEOUT_S)
            shared.phase.value = GATE
            run.wait("consumers at the gate", lambda: all(shared.ready), STALL_TIMEOUT_S)
            produce_s = 0.0
            if not steady:
                produce_s = produce(
                    target.data, topic, records, shape.partitions, shape.value, batch_bytes
                )
                run.check()

            cpu_before = _snapshot(target)
            start = time.perf_counter()
            shared.phase.value = RUN
            shared.go.set()
            if steady:
                produce_s = produce_paced(
                    target.data, topic, records, shape.partitions, batch_bytes, steady_rate, run
                )
            progress, last = time.monotonic(), -1
            while not all(shared.done_at):
                run.check()
                now, got = time.monotonic(), shared.delivered.value
                if got != last:
                    progress, last = now, got
                elif now - progress > STALL_TIMEOUT_S:
                    raise BenchError(f"{target.route}: stuck at {got} of {records} records")
                time.sleep(0.005)
            cpu_after = _snapshot(target)
            first_ms = [(t - start) * 1000 if t else -1.0 for t in shared.first_at]
            seconds = max(shared.done_at) - min(t for t in shared.first_at if t)
            latencies: list[float] = []
            if steady:
                for _ in run.procs:
                    got_bytes = shared.latencies.get(timeout=STALL_TIMEOUT_S)
                    latencies.extend(array("d", got_bytes))
            shared.phase.value = CLOSE
            for proc in run.procs:
                proc.join(60)
            run.check()
            close_s = max(shared.close_s)
        delivered = shared.delivered.value
        if delivered != records:
            raise BenchError(f"{target.route}: {delivered} deliveries of {records} records")
        if target.kind == "share":
            missing = acknowledged_everything(target.consume, group, topic, shape.partitions)
            if missing:
                raise BenchError(f"{target.route}: not everything acknowledged: {missing}")
    finally:
        delete_topic(target.admin, topic)
    counts = list(shared.requests)
    requests = sum(counts) if target.kind == "share" and min(counts) >= 0 else None
    return Measurement(
        records / seconds,
        seconds,
        first_ms,
        join_s,
        produce_s,
        close_s,
        _cpu_us(target, cpu_before, cpu_after, sum(shared.cpu_s), records),
        requests,
        latencies,
    )


def produce_paced(
    bootstrap: str,
    topic: str,
    records: int,
    partitions: int,
    batch_bytes: int,
    rate: float,
    run: Run,
) -> float:
    """Produce ``records`` at ``rate`` per second, each starting with its produce time
    (CLOCK_MONOTONIC ns); the seconds it took. Falls behind only if this process cannot keep up,
    which the report shows (produce seconds against records / rate)."""
    producer = Producer(producer_config(bootstrap, batch_bytes))
    filler = os.urandom(RECORD_BYTES - 8)
    start = time.monotonic()
    sent = 0
    while sent < records:
        due = min(records, int((time.monotonic() - start) * rate) + 1)
        while sent < due:
            stamp = time.monotonic_ns().to_bytes(8, "big")
            try:
                producer.produce(topic, stamp + filler, partition=sent % partitions)
            except BufferError:
                producer.poll(0.01)
                continue
            sent += 1
        producer.poll(0)
        run.check()
        time.sleep(0.0005)
    if producer.flush(STALL_TIMEOUT_S):
        raise BenchError(f"produce to {bootstrap}: not every record was acknowledged")
    return time.monotonic() - start


def tools_classpath() -> str | None:
    """The classpath of Kafka's command-line tools (kafka-tools, fetched from Maven Central on
    first use), or None if they cannot be had."""
    try:
        return f"{ensure_kafka_tools(KAFKA4_VERSION)}/*"
    except RuntimeError as e:
        print(f"kafka-tools {KAFKA4_VERSION} not available: {e}", file=sys.stderr)
        return None


def _child_cpu_s(proc: subprocess.Popen[str]) -> tuple[int, float]:
    """Wait for a child; its exit status and the CPU seconds it used (every thread)."""
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_utime + usage.ru_stime


def measure_java(
    target: Target, records: int, shape: Shape, batch_bytes: int, classpath: str
) -> Measurement:
    """Backlog drain by Kafka's own ShareConsumerPerformance (``--threads`` consumers): the
    records are produced first, then the tool consumes them. records/s is the tool's own
    nMsg.sec; the proxy's and broker's CPU is taken over the tool's whole run (its join
    included), the tool's own CPU (JVM start included) from wait4."""
    topic = f"bench-share-java-{uuid.uuid4().hex[:10]}"
    group = f"bench-share-java-{uuid.uuid4().hex[:10]}"
    create_topic(target.admin, topic, shape.partitions)
    try:
        set_earliest(target.consume, group)
        produce_s = produce(target.data, topic, records, shape.partitions, shape.value, batch_bytes)
        java = shutil.which("java") or "java"
        argv = [
            java,
            *JAVA_TOOL_OPTS,
            "-cp",
            classpath,
            "org.apache.kafka.tools.ShareConsumerPerformance",
            "--bootstrap-server",
            target.consume,
            "--topic",
            topic,
            "--group",
            group,
            "--num-records",
            str(records),
            "--threads",
            str(shape.consumers),
            "--timeout",
            str(int(STALL_TIMEOUT_S * 1000)),
        ]
        before = _snapshot(target)
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        output = proc.stdout.read()
        code, client_cpu_s = _child_cpu_s(proc)
        wall_s = time.perf_counter() - started
        after = _snapshot(target)
        target.check()
        if code != 0:
            raise BenchError(
                f"{target.route} java: ShareConsumerPerformance exited {code}:\n{output[-3000:]}"
            )
        rate, consumed = _java_result(output)
        if consumed != records:
            raise BenchError(
                f"{target.route} java: consumed {consumed} of {records}:\n{output[-3000:]}"
            )
        missing = acknowledged_everything(target.consume, group, topic, shape.partitions)
        if missing:
            raise BenchError(f"{target.route} java: not everything acknowledged: {missing}")
    finally:
        delete_topic(target.admin, topic)
    cpu = _cpu_us(target, before, after, client_cpu_s, records)
    # "join": the tool's run outside its own timing (JVM start, join, close).
    return Measurement(
        rate, records / rate, [], max(0.0, wall_s - records / rate), produce_s, 0.0, cpu
    )


def _java_result(output: str) -> tuple[float, int]:
    """(nMsg.sec, data.consumed.in.nMsg) from ShareConsumerPerformance's result lines."""
    lines = [line.strip() for line in output.splitlines()]
    for i, line in enumerate(lines):
        if "nMsg.sec" in line and i + 1 < len(lines):
            names = [n.strip() for n in line.split(",")]
            values = [v.strip() for v in lines[i + 1].split(",")]
            row = dict(zip(names, values, strict=False))
            try:
                return float(row["nMsg.sec"]), int(float(row["data.consumed.in.nMsg"]))
            except (KeyError, ValueError):
                break
    raise BenchError(f"no result line in ShareConsumerPerformance's output:\n{output[-3000:]}")


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
    """The q-th percentile (0-100), linear between the closest ranks, of every sample (no
    bucketing: the steady-state samples are kept whole, so p99.9 is exact)."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def _us(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def batch_name(batch_bytes: int) -> str:
    return BATCH_NAMES.get(batch_bytes, f"{batch_bytes}B")


Mode = Literal["drain", "steady"]
Client = Literal["librdkafka", "java"]
Cell = tuple[Mode, Client, str, Route]  # mode, client, batch name, route
ROUTE_NAMES: tuple[tuple[Route, str], ...] = (
    ("proxy_share", "proxy_route"),
    ("kafka_share", "kafka_share"),
    ("proxy_base", "proxy_base"),
)


def describe(cell: Cell, m: Measurement) -> str:
    mode, client, batch, route = cell
    cpu = ", ".join(f"{name} {_us(v)}" for name, v in m.cpu_us.items())
    extra = f"; {m.requests} requests" if m.requests is not None else ""
    if m.latencies:
        ms = [v * 1000 for v in m.latencies]
        extra += "; latency ms p50 {:.2f} p99 {:.2f} p99.9 {:.2f}".format(
            *(percentile(ms, q) for q in (50, 99, 99.9))
        )
    first = " ".join(f"{t:.0f}" for t in m.first_ms) or "-"
    return (
        f"  {mode:<6} {client:<10} {batch:<6} {route:<15}{m.records_per_s:>9,.0f} rec/s"
        f"  ({m.seconds:6.2f} s; join {m.join_s:5.1f} s, produce {m.produce_s:5.2f} s,"
        f" close {m.close_s:4.1f} s; first record ms {first}; CPU us/record {cpu}{extra})"
    )


def _median(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known and len(known) == len(values) else None


def _spread(values: Sequence[float]) -> str:
    if not values:
        return "n/a"
    return f"{statistics.median(values):.3f} [{min(values):.3f}-{max(values):.3f}]"


def _r(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


@dataclass
class Results:
    batches: list[str] = field(default_factory=list)
    rounds: list[dict[Cell, Measurement]] = field(default_factory=list)
    latency: dict[Route, list[float]] = field(default_factory=dict)  # the one-at-a-time probe

    def cells(self) -> list[Cell]:
        seen: dict[Cell, None] = {}
        for measured in self.rounds:
            seen.update(dict.fromkeys(measured))
        return list(seen)

    def each(self, cell: Cell) -> list[Measurement]:
        return [x[cell] for x in self.rounds if cell in x]

    def rate(self, cell: Cell) -> float | None:
        got = self.each(cell)
        return statistics.median(m.records_per_s for m in got) if got else None

    def paired(self, mode: Mode, client: Client, batch: str, other: Route) -> list[float]:
        """proxy_share / other of each round, both measured in that round."""
        a, b = (mode, client, batch, "proxy_share"), (mode, client, batch, other)
        return [x[a].records_per_s / x[b].records_per_s for x in self.rounds if a in x and b in x]

    def cpu(self, cell: Cell, part: str) -> float | None:
        """Median CPU us per record of one part ("route": proxy + broker; "total")."""
        values: list[float | None] = []
        for m in self.each(cell):
            if part == "route":
                values.append(m.cpu_us_route)
            elif part == "total":
                values.append(m.cpu_us_total)
            else:
                values.append(m.cpu_us.get(part))
        return _median(values)

    def per_request(self, cell: Cell) -> tuple[float | None, float | None]:
        """(records per ShareFetch/ShareAcknowledge, route CPU us per request), medians."""
        per, cost = [], []
        for m in self.each(cell):
            route_us = m.cpu_us_route
            if m.requests and route_us is not None:
                records = m.records_per_s * m.seconds
                per.append(records / m.requests)
                cost.append(route_us * records / m.requests)
        return _median(per) if per else None, _median(cost) if cost else None

    def latencies_ms(self, cell: Cell) -> list[float]:
        return [v * 1000 for m in self.each(cell) for v in m.latencies]

    def table(self) -> str:
        lines = [
            f"{'mode':<7}{'client':<11}{'batch':<7}{'route':<16}{'median rec/s':>13}"
            f"{'min':>10}{'max':>10}  CPU us/record: consumers, proxy, broker; route = proxy +"
            " broker; records and route CPU us per ShareFetch/ShareAcknowledge"
        ]
        for cell in self.cells():
            got = [m.records_per_s for m in self.each(cell)]
            parts = ", ".join(
                f"{p} {_us(self.cpu(cell, p))}" for p in [*self.each(cell)[0].cpu_us, "route"]
            )
            per, cost = self.per_request(cell)
            req = f"; {per:.0f} rec, {cost:.0f} us per request" if per and cost else ""
            mode, client, batch, route = cell
            lines.append(
                f"{mode:<7}{client:<11}{batch:<7}{route:<16}{statistics.median(got):>13,.0f}"
                f"{min(got):>10,.0f}{max(got):>10,.0f}  {parts}{req}"
            )
        lines.append("paired ratios, proxy_share / other in the same round: median [min-max]")
        for mode, client, batch, route in self.cells():
            if route != "proxy_share":
                continue
            for other in ("kafka_share", "classic_direct", "proxy_base"):
                ratios = self.paired(mode, client, batch, other)
                if ratios:
                    lines.append(f"  {mode} {client} {batch} vs {other}: {_spread(ratios)}")
        steady = [c for c in self.cells() if c[0] == "steady"]
        if steady:
            lines.append(
                f"{'steady latency ms':<40}{'p50':>8}{'p90':>8}{'p99':>8}{'p99.9':>8}{'max':>8}"
                "   produce() to delivery, every record"
            )
            for cell in steady:
                ms = self.latencies_ms(cell)
                if ms:
                    lines.append(
                        f"  {' '.join(cell[1:]):<38}"
                        + "".join(f"{percentile(ms, q):>8.2f}" for q in (50, 90, 99, 99.9))
                        + f"{max(ms):>8.2f}"
                    )
        if self.latency:
            lines.append(f"{'probe latency ms':<18}{'p50':>8}{'p90':>8}{'p99':>8}{'max':>8}")
            for route, values in self.latency.items():
                ms = [v * 1000 for v in values]
                lines.append(
                    f"  {route:<16}"
                    + "".join(f"{percentile(ms, q):>8.2f}" for q in (50, 90, 99))
                    + f"{max(ms):>8.2f}"
                )
        return "\n".join(lines)

    def summary(self) -> dict[str, float | None]:
        result: dict[str, float | None] = {}
        first = self.batches[0] if self.batches else "big"
        # The keys of earlier versions: librdkafka, backlog drain, the first batch size.
        for route in ROUTES:
            rate = self.rate(("drain", "librdkafka", first, route))
            result[f"{route}_records_per_s"] = None if rate is None else round(rate)
        old_keys: tuple[tuple[Route, str], ...] = (
            ("classic_direct", "ratio_vs_classic"),
            ("kafka_share", "ratio_vs_kafka_share"),
        )
        for other, key in old_keys:
            ratios = self.paired("drain", "librdkafka", first, other)
            result[key] = round(statistics.median(ratios), 3) if ratios else None
        for route in ROUTES:
            cell: Cell = ("drain", "librdkafka", first, route)
            if self.each(cell):
                for part in [*self.each(cell)[0].cpu_us, "total"]:
                    result[f"{route}_cpu_us_per_record_{part}"] = _r(self.cpu(cell, part))
        # Per client and batch size: paired ratios with their spread, CPU per record and per
        # request of the route (proxy + upstream broker against Kafka 4.4's broker).
        for batch in self.batches:
            for client in ("librdkafka", "java"):
                for other in ("kafka_share", "proxy_base"):
                    ratios = self.paired("drain", client, batch, other)
                    if ratios:
                        key = f"ratio_vs_{other}_{client}_{batch}"
                        result[key] = round(statistics.median(ratios), 3)
                        result[f"{key}_min"] = round(min(ratios), 3)
                        result[f"{key}_max"] = round(max(ratios), 3)
            suffixes: tuple[tuple[Client, str], ...] = (("librdkafka", ""), ("java", "_java"))
            for client, suffix in suffixes:
                for route, name in ROUTE_NAMES:
                    cell = ("drain", client, batch, route)
                    if self.each(cell):
                        result[f"cpu_us_per_record_{name}{suffix}_{batch}"] = _r(
                            self.cpu(cell, "route")
                        )
                        if route != "kafka_share":  # the proxy's part and the broker's
                            for part in ("proxy", "broker"):
                                result[f"cpu_us_per_record_{name}_{part}{suffix}_{batch}"] = _r(
                                    self.cpu(cell, part)
                                )
                        per, cost = self.per_request(cell)
                        if per is not None:
                            result[f"records_per_request_{name}{suffix}_{batch}"] = _r(per, 1)
                            result[f"cpu_us_per_request_{name}{suffix}_{batch}"] = _r(cost, 1)
        # Steady state: every record's produce-to-delivery time; added = proxy - Kafka 4.4.
        added: dict[str, list[float]] = {"p50": [], "p99": [], "p999": []}
        for batch in self.batches:
            proxy = self.latencies_ms(("steady", "librdkafka", batch, "proxy_share"))
            kafka = self.latencies_ms(("steady", "librdkafka", batch, "kafka_share"))
            if not proxy or not kafka:
                continue
            for name, q in (("p50", 50), ("p99", 99), ("p999", 99.9)):
                p, k = percentile(proxy, q), percentile(kafka, q)
                result[f"steady_proxy_share_{batch}_latency_{name}_ms"] = round(p, 2)
                result[f"steady_kafka_share_{batch}_latency_{name}_ms"] = round(k, 2)
                result[f"added_latency_{name}_ms_{batch}"] = round(p - k, 2)
                added[name].append(p - k)
            for route, name in ROUTE_NAMES:
                cell = ("steady", "librdkafka", batch, route)
                if self.each(cell):
                    cpu = _r(self.cpu(cell, "route"))
                    result[f"steady_cpu_us_per_record_{name}_{batch}"] = cpu
        for name, values in added.items():  # the worse of the batch sizes
            result[f"added_latency_{name}_ms"] = round(max(values), 2) if values else None
        ms = {r: [v * 1000 for v in values] for r, values in self.latency.items()}
        for route, values in ms.items():
            for q in (50, 99):
                result[f"{route}_latency_p{q}_ms"] = round(percentile(values, q), 2)
        return result


@dataclass
class Plan:
    """Which measurements a round makes."""

    batches: list[int]
    routes: list[Route]
    java_classpath: str | None
    steady_rate: float
    steady_records: int

    def drain(self, round_index: int) -> list[tuple[Client, int, Route]]:
        out: list[tuple[Client, int, Route]] = []
        for batch in self.batches:
            routes = _rotate(self.routes, round_index)
            out += [("librdkafka", batch, r) for r in routes]
            if self.java_classpath:
                share = [r for r in routes if r != "classic_direct"]
                out += [("java", batch, r) for r in share]
        return out


def _rotate(routes: Sequence[Route], i: int) -> list[Route]:
    k = i % len(routes)
    return [*routes[k:], *routes[:k]]


def run_all(
    upstream: Broker,
    kafka4: Broker,
    proxy: ProxyProcess,
    args: argparse.Namespace,
    plan: Plan,
    base: ProxyProcess | None = None,
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
    if base is not None:
        targets["proxy_base"] = Target(
            "proxy_base",
            "share",
            upstream.bootstrap,
            base.bootstrap,
            upstream_admin,
            base.check_alive,
            {"proxy": base.pid, "broker": upstream.pid},
        )
    shape = Shape(args.consumers, args.partitions, os.urandom(RECORD_BYTES), args.poll_ms / 1000)

    def one(client: Client, batch: int, route: Route, records: int) -> Measurement:
        target = targets[route]
        if client == "java":
            assert plan.java_classpath is not None
            return measure_java(target, records, shape, batch, plan.java_classpath)
        return measure(target, records, shape, batch)

    results = Results(batches=[batch_name(b) for b in plan.batches])
    if args.warmup > 0:
        print(f"warm-up round ({args.warmup:,} records, not reported)", flush=True)
        for client, batch, route in plan.drain(0):
            m = one(client, batch, route, args.warmup)
            print(describe(("drain", client, batch_name(batch), route), m), flush=True)
    for i in range(args.rounds):
        print(f"round {i + 1}/{args.rounds}", flush=True)
        measured: dict[Cell, Measurement] = {}
        for client, batch, route in plan.drain(i):
            cell: Cell = ("drain", client, batch_name(batch), route)
            measured[cell] = one(client, batch, route, args.records)
            print(describe(cell, measured[cell]), flush=True)
        if plan.steady_rate > 0:
            for batch in plan.batches:
                steady_routes = [r for r in plan.routes if r != "classic_direct"]
                for route in _rotate(steady_routes, i):
                    cell = ("steady", "librdkafka", batch_name(batch), route)
                    measured[cell] = measure(
                        targets[route], plan.steady_records, shape, batch, plan.steady_rate
                    )
                    print(describe(cell, measured[cell]), flush=True)
        results.rounds.append(measured)
    if args.latency_samples > 0:
        print(f"latency probe: {args.latency_samples} samples per route", flush=True)
        results.latency = measure_latency([targets[r] for r in plan.routes], args.latency_samples)
    return results


@contextlib.contextmanager
def broker_settings(settings: str, jit: str) -> Iterator[dict[str, str]]:
    """JVM options for the brokers while they start, and the server properties they get.

    ``kafka-defaults``: what Kafka's own start scripts and server defaults give (a 1 GiB heap,
    G1, 3 network / 8 I/O / 10 background threads), for the upstream broker and Kafka 4.4
    alike. ``test``: sharegroup/brokers.py's settings for the tests (512 MiB, serial GC, 2 / 2 /
    2 threads). ``jit``: ``full`` lets the JVM use C2 as production Kafka does, ``c1`` stops at
    C1 as the tests do."""
    saved = brokers.JVM_OPTS
    opts = KAFKA_SCRIPT_JVM_OPTS if settings == "kafka-defaults" else list(saved)
    if jit == "full":
        opts = [o for o in opts if not o.startswith("-XX:TieredStopAtLevel")]
    elif not any(o.startswith("-XX:TieredStopAtLevel") for o in opts):
        opts = [*opts, "-XX:TieredStopAtLevel=1"]
    brokers.JVM_OPTS = opts
    try:
        yield dict(KAFKA_DEFAULT_THREADS) if settings == "kafka-defaults" else {}
    finally:
        brokers.JVM_OPTS = saved


def jfr_option(folder: str, name: str) -> str:
    """Java Flight Recorder for a broker's whole life, dumped at the end of the run
    (bench/jfr_top.py summarises it)."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    path = Path(folder).resolve() / f"{name}.jfr"
    return f"-XX:StartFlightRecording=filename={path},settings=profile"


def jfr_dump(pid: int | None, path: Path) -> None:
    """Write a broker's flight recording so far (``jcmd <pid> JFR.dump``)."""
    jcmd = shutil.which("jcmd")
    if pid is None or jcmd is None:
        print(f"cannot dump the flight recording of process {pid} (jcmd: {jcmd})", file=sys.stderr)
        return
    done = subprocess.run(
        [jcmd, str(pid), "JFR.dump", f"filename={path}"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    print(f"flight recording: {path}" if done.returncode == 0 else done.stdout + done.stderr)


def _batch_list(text: str) -> list[int]:
    values = [int(v) for v in text.split(",") if v.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("batch sizes are positive byte counts")
    return values


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--records", type=int, default=300_000, help="records per measurement")
    parser.add_argument("--consumers", type=int, default=4, help="consumers (or tool threads)")
    parser.add_argument("--partitions", type=int, default=2, help="partitions per topic")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--broker", choices=["kafka39", "tansu"], default="kafka39")
    parser.add_argument(
        "--batch-bytes",
        type=_batch_list,
        default=[1 << 20, 4096],
        help="producer batch.size values, comma-separated (default 1048576,4096: big, small;"
        " 1 gives one record per batch)",
    )
    parser.add_argument(
        "--routes",
        default=",".join(ROUTES),
        help=f"comma-separated, of {', '.join(ROUTES)} (default all)",
    )
    parser.add_argument(
        "--clients",
        default="librdkafka,java",
        help="librdkafka (confluent_kafka.ShareConsumer processes) and/or java (Kafka's"
        " ShareConsumerPerformance, skipped if kafka-tools cannot be fetched)",
    )
    parser.add_argument(
        "--warmup", type=int, default=20_000, help="records of an unreported first round (0: none)"
    )
    parser.add_argument(
        "--steady-rate", type=float, default=20_000, help="records/s of the steady state (0: none)"
    )
    parser.add_argument(
        "--steady-records", type=int, default=200_000, help="records per steady measurement"
    )
    parser.add_argument(
        "--latency-samples", type=int, default=0, help="one-at-a-time probe, per route (0: none)"
    )
    parser.add_argument("--poll-ms", type=float, default=10, help="consumers' poll timeout (ms)")
    parser.add_argument("--jit", choices=["full", "c1"], default="full", help="Kafka's JVM JIT")
    parser.add_argument(
        "--broker-settings",
        choices=["kafka-defaults", "test"],
        default="kafka-defaults",
        help="heap, GC and threads of both Kafka brokers",
    )
    parser.add_argument(
        "--share-version",
        default="default",
        help="share.version Kafka 4.4 is formatted with (default: the release's own)",
    )
    parser.add_argument(
        "--proxy-config", action="append", default=[], metavar="KEY=VALUE", help="repeatable"
    )
    parser.add_argument(
        "--jfr",
        metavar="DIR",
        help="record both Kafka brokers with Java Flight Recorder into DIR (upstream.jfr,"
        " kafka44.jfr; bench/jfr_top.py shows where their CPU went)",
    )
    parser.add_argument(
        "--compare-proxy",
        metavar="SOURCE_TREE",
        help="also run the proxy of this source tree (e.g. `git archive <commit>` unpacked) on"
        " the same upstream: route proxy_base, paired with proxy_share in every round",
    )
    args = parser.parse_args()
    if min(args.records, args.consumers, args.partitions, args.rounds) < 1:
        parser.error("--records, --consumers, --partitions and --rounds must be positive")
    if args.latency_samples < 0 or args.warmup < 0 or args.steady_rate < 0:
        parser.error("--latency-samples, --warmup and --steady-rate must not be negative")
    routes = [r.strip() for r in args.routes.split(",") if r.strip()]
    if not routes or any(r not in ROUTES for r in routes) or "proxy_share" not in routes:
        parser.error(f"--routes: proxy_share and any of {', '.join(ROUTES)}")
    clients = {c.strip() for c in args.clients.split(",") if c.strip()}
    if not clients <= {"librdkafka", "java"} or "librdkafka" not in clients:
        parser.error("--clients: librdkafka, and java if wanted")
    share_version = None if args.share_version == "default" else int(args.share_version)
    classpath = tools_classpath() if "java" in clients else None
    plan = Plan(
        args.batch_bytes,
        [r for r in ALL_ROUTES if r in routes or (r == "proxy_base" and args.compare_proxy)],
        classpath,
        args.steady_rate if "kafka_share" in routes else 0,
        args.steady_records,
    )

    with contextlib.ExitStack() as stack:
        with broker_settings(args.broker_settings, args.jit) as props:
            jvm = list(brokers.JVM_OPTS)
            if args.jfr:
                brokers.JVM_OPTS = [*jvm, jfr_option(args.jfr, "upstream")]
            upstream = stack.enter_context(
                start_tansu()
                if args.broker == "tansu"
                else start_kafka(KAFKA3_VERSION, share_groups=False, extra_config=props)
            )
            if args.jfr:
                brokers.JVM_OPTS = [*jvm, jfr_option(args.jfr, "kafka44")]
            kafka4 = stack.enter_context(
                start_kafka(
                    KAFKA4_VERSION,
                    share_groups=True,
                    share_version=share_version,
                    extra_config=props,
                )
            )
        profile = os.environ.get("SHAREGROUP_BENCH_PROFILE") or None
        proxy = stack.enter_context(running_proxy(upstream.bootstrap, args.proxy_config, profile))
        base = None
        if args.compare_proxy:
            # Its own state topic: two instances on one topic would fence each other.
            configs = [*args.proxy_config, f"sharegroup.state.topic={BASE_STATE_TOPIC}"]
            base = stack.enter_context(
                running_proxy(upstream.bootstrap, configs, code=args.compare_proxy)
            )
        print(
            f"upstream {upstream.kind} {upstream.version} at {upstream.bootstrap}, proxy at"
            f" {proxy.bootstrap}, kafka {kafka4.version} share groups at {kafka4.bootstrap}"
            f" (settings {args.broker_settings}, JIT {args.jit}, share.version"
            f" {args.share_version}); {args.records:,} records of {RECORD_BYTES} B,"
            f" {args.consumers} consumers, {args.partitions} partitions, {args.rounds} rounds;"
            f" batches {', '.join(batch_name(b) for b in plan.batches)};"
            f" java client {'on' if classpath else 'off'}"
            + (f"; proxy_base from {args.compare_proxy} at {base.bootstrap}" if base else ""),
            flush=True,
        )
        results = run_all(upstream, kafka4, proxy, args, plan, base)
        if args.jfr:  # the brokers are killed when the run ends: dump the recordings first
            for broker, name in ((upstream, "upstream"), (kafka4, "kafka44")):
                jfr_dump(broker.pid, Path(args.jfr).resolve() / f"{name}.jfr")
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
