"""Benchmark of the relay path: confluent-kafka produce and consume, through the proxy and direct.

One run starts one broker (Tansu by default, or Apache Kafka 3.9 with ``--broker kafka39``) and
one ``sharegroup proxy`` process in front of it, then measures, in alternating direct/proxy
rounds so that machine noise hits both alike:

* produce: N records of 1 KiB to a fresh 1-partition topic (linger.ms=5, acks=all), timed from
  the first ``produce()`` to the end of ``flush()``;
* consume: the same N records with an assign-mode Consumer from offset 0 (fetch settings at
  their defaults), timed from ``assign()`` to the last record.

Each figure is the median of the rounds; MB/s counts record values only (1 MB = 10^6 bytes).
The last line printed is JSON with the keys produce_direct_records_per_s,
produce_proxy_records_per_s, consume_direct_records_per_s, consume_proxy_records_per_s,
produce_ratio, consume_ratio (proxy / direct of the medians) and the same figures in MB/s
(produce_direct_mb_per_s, ...). The broker and the proxy are stopped however the run ends.

Run: .venv/bin/python bench/passthrough.py [--records N] [--rounds N] [--broker tansu|kafka39]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import queue
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

# bench/model.py would shadow the ``model`` package the proxy imports: drop this folder.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient  # noqa: E402
from confluent_kafka.cimpl import NewTopic  # noqa: E402

from sharegroup.brokers import Broker, free_port, start_kafka, start_tansu  # noqa: E402
from sharegroup.kafka_dist import KAFKA3_VERSION  # noqa: E402

RECORD_BYTES = 1024
PROXY_READY_TIMEOUT_S = 60.0
PROXY_STOP_TIMEOUT_S = 10.0
STALL_TIMEOUT_S = 60.0  # a produce or consume making no progress for this long has failed
SHAREGROUP = Path(sys.executable).with_name("sharegroup")

Route = Literal["direct", "proxy"]
Kind = Literal["produce", "consume"]


_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded here: no dlopen between fork and exec
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # In the child between fork and exec: SIGKILL the proxy if this script dies without
    # running its `finally` (SIGKILL, a crash); the broker gets the same from brokers.py.
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


_SIGNALS: list[int] = []  # the signals that asked us to stop


def _stop_on_signal(signum: int, _frame: object) -> None:
    # Ctrl-C and SIGTERM alike unwind through the `finally` blocks that stop proxy and broker.
    _SIGNALS.append(signum)
    raise KeyboardInterrupt


class BenchError(RuntimeError):
    """The benchmark could not run (proxy did not start, records went missing, ...)."""


# ---------------------------------------------------------------------------- the proxy process


class ProxyProcess:
    """``sharegroup proxy`` as a child process; its output goes to a drain thread."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.bootstrap = ""
        self._proc: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._tail: list[str] = []

    def start(self) -> ProxyProcess:
        argv = [
            str(SHAREGROUP),
            "proxy",
            "--bootstrap-server",
            self.upstream,
            "--listen",
            f"127.0.0.1:{free_port()}",
            "--log-level",
            "WARNING",
        ]
        self._proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            start_new_session=True,  # Ctrl-C reaches us only; we stop the proxy in `finally`
            preexec_fn=_die_with_parent,
        )
        threading.Thread(target=self._drain, daemon=True).start()
        deadline = time.monotonic() + PROXY_READY_TIMEOUT_S
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BenchError(
                    f"proxy not ready after {PROXY_READY_TIMEOUT_S:.0f} s" + self.tail()
                )
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise BenchError(f"proxy exited with {self._proc.wait()}" + self.tail())
            if "bootstrap.servers=" in line:
                self.bootstrap = line.split("bootstrap.servers=", 1)[1].split()[0]
                return self

    def _drain(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            self._tail = [*self._tail[-40:], line.rstrip()]
            self._lines.put(line)
        self._lines.put(None)

    def tail(self) -> str:
        return "".join(f"\n  proxy: {line}" for line in self._tail)

    def check_alive(self) -> None:
        if self._proc is None or self._proc.poll() is not None:
            code = None if self._proc is None else self._proc.returncode
            raise BenchError(f"proxy process exited with {code}" + self.tail())

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(PROXY_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def running_proxy(upstream: str) -> Iterator[ProxyProcess]:
    proxy = ProxyProcess(upstream)
    try:
        yield proxy.start()
    finally:
        proxy.stop()


@contextlib.contextmanager
def running_broker(kind: str) -> Iterator[Broker]:
    broker = start_tansu() if kind == "tansu" else start_kafka(KAFKA3_VERSION, share_groups=False)
    try:
        yield broker
    finally:
        broker.stop()


# ---------------------------------------------------------------------------- one measurement


def create_topic(admin: AdminClient, name: str) -> None:
    futures = admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])
    for future in futures.values():
        future.result(timeout=30)


def delete_topic(admin: AdminClient, name: str) -> None:
    # Tansu keeps records in memory: free them. A broker that cannot delete costs memory only.
    with contextlib.suppress(KafkaException, NotImplementedError, TimeoutError):
        for future in admin.delete_topics([name], operation_timeout=30).values():
            future.result(timeout=30)


def produce(bootstrap: str, topic: str, records: int, value: bytes) -> float:
    """Seconds to produce ``records`` copies of ``value`` and have every one acknowledged."""
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

    send = producer.produce
    poll = producer.poll
    start = time.perf_counter()
    for _ in range(records):
        waited = 0.0
        while True:
            try:
                send(topic, value, partition=0, on_delivery=on_delivery)
                break
            except BufferError:  # queue.buffering.max.messages reached: let deliveries drain
                before, since = delivered, time.perf_counter()
                poll(1.0)
                waited = 0.0 if delivered > before else waited + time.perf_counter() - since
                if failures or waited > STALL_TIMEOUT_S:
                    why = failures[0] if failures else f"no acknowledgement in {waited:.0f} s"
                    raise BenchError(f"produce to {bootstrap}: {why}") from None
        poll(0)
    left = producer.flush(STALL_TIMEOUT_S)
    elapsed = time.perf_counter() - start
    if failures:
        raise BenchError(f"produce to {bootstrap}: {len(failures)} failed, first: {failures[0]}")
    if left or delivered != records:
        raise BenchError(f"produce to {bootstrap}: {delivered} of {records} acknowledged")
    return elapsed


def consume(bootstrap: str, topic: str, records: int) -> float:
    """Seconds to read ``records`` records of ``topic`` partition 0 from offset 0."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{uuid.uuid4().hex}",  # never joined: assign mode, no commits
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "log_level": 3,
        }
    )
    try:
        got = 0
        last_error: KafkaError | None = None
        last_progress = start = time.perf_counter()
        consumer.assign([TopicPartition(topic, 0, 0)])
        while got < records:
            batch = consumer.consume(num_messages=10_000, timeout=1.0)
            now, before = time.perf_counter(), got
            for msg in batch:
                err = msg.error()
                if err is None:
                    got += 1
                elif err.fatal():
                    raise BenchError(f"consume from {bootstrap}: {err}")
                else:  # librdkafka reports and retries: only a stall makes it fatal here
                    last_error = err
            if got > before:
                last_progress = now
            elif now - last_progress > STALL_TIMEOUT_S:
                raise BenchError(
                    f"consume from {bootstrap}: stuck at {got} of {records} records"
                    f" (last error: {last_error})"
                )
        elapsed = time.perf_counter() - start
    finally:
        consumer.close()
    if got != records:
        raise BenchError(f"consume from {bootstrap}: {got} records, expected {records}")
    return elapsed


def measure_round(
    admin: AdminClient,
    bootstraps: dict[Route, str],
    order: list[Route],
    records: int,
    value: bytes,
    check: Callable[[], None],
) -> dict[tuple[Kind, Route], float]:
    """records/s per (produce|consume, direct|proxy) for one round, paths in ``order``."""
    rates: dict[tuple[Kind, Route], float] = {}
    for path in order:
        topic = f"bench-{path}-{uuid.uuid4().hex[:12]}"
        create_topic(admin, topic)
        try:
            rates["produce", path] = records / produce(bootstraps[path], topic, records, value)
            check()
            rates["consume", path] = records / consume(bootstraps[path], topic, records)
            check()
        finally:
            delete_topic(admin, topic)
    return rates


# ---------------------------------------------------------------------------- report


def mb(records_per_s: float) -> float:
    return records_per_s * RECORD_BYTES / 1e6


def describe_round(number: int, total: int, rates: dict[tuple[Kind, Route], float]) -> str:
    parts = []
    for kind in ("produce", "consume"):
        direct, via = rates[kind, "direct"], rates[kind, "proxy"]
        parts.append(
            f"{kind} direct {direct:>9,.0f} rec/s ({mb(direct):6.1f} MB/s)"
            f" proxy {via:>9,.0f} rec/s ({mb(via):6.1f} MB/s) ratio {via / direct:.2f}"
        )
    return f"round {number}/{total}: " + "; ".join(parts)


def summary(rounds: list[dict[tuple[Kind, Route], float]]) -> dict[str, float]:
    medians = {
        (kind, path): statistics.median(r[kind, path] for r in rounds)
        for kind in ("produce", "consume")
        for path in ("direct", "proxy")
    }
    result: dict[str, float] = {}
    for (kind, path), rate in medians.items():
        result[f"{kind}_{path}_records_per_s"] = round(rate)
    for kind in ("produce", "consume"):
        result[f"{kind}_ratio"] = round(medians[kind, "proxy"] / medians[kind, "direct"], 3)
    for (kind, path), rate in medians.items():
        result[f"{kind}_{path}_mb_per_s"] = round(mb(rate), 1)
    return result


def run_rounds(
    broker: str, proxy: ProxyProcess, records: int, count: int, warmup: int
) -> list[dict[tuple[Kind, Route], float]]:
    """Measure ``count`` rounds; the admin client is gone on return, before the broker stops."""
    value = os.urandom(RECORD_BYTES)
    admin = AdminClient({"bootstrap.servers": broker, "log_level": 3})
    bootstraps: dict[Route, str] = {"direct": broker, "proxy": proxy.bootstrap}
    if warmup > 0:
        measure_round(admin, bootstraps, ["direct", "proxy"], warmup, value, proxy.check_alive)
    rounds: list[dict[tuple[Kind, Route], float]] = []
    for i in range(count):
        # ABBA order: neither path always goes first (warm caches, a fresh broker heap).
        order: list[Route] = ["direct", "proxy"] if i % 2 == 0 else ["proxy", "direct"]
        rates = measure_round(admin, bootstraps, order, records, value, proxy.check_alive)
        rounds.append(rates)
        print(describe_round(i + 1, count, rates), flush=True)
    return rounds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--records", type=int, default=200_000, help="records per measurement")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--broker", choices=["tansu", "kafka39"], default="tansu")
    parser.add_argument(
        "--warmup",
        type=int,
        default=20_000,
        help="records of an unreported first round through both paths (0: none)",
    )
    args = parser.parse_args()
    if args.records < 1 or args.rounds < 1:
        parser.error("--records and --rounds must be positive")

    with running_broker(args.broker) as broker, running_proxy(broker.bootstrap) as proxy:
        print(
            f"broker {broker.kind} {broker.version} at {broker.bootstrap}, proxy at "
            f"{proxy.bootstrap}; {args.records:,} records of {RECORD_BYTES} B, {args.rounds} rounds",
            flush=True,
        )
        rounds = run_rounds(broker.bootstrap, proxy, args.records, args.rounds, args.warmup)
    print(json.dumps(summary(rounds)), flush=True)
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGINT, _stop_on_signal)
    signal.signal(signal.SIGTERM, _stop_on_signal)
    try:
        sys.exit(main())
    except (KeyboardInterrupt, SystemError) as stop:
        # confluent-kafka turns an exception raised in a delivery callback into SystemError
        # ("returned NULL without setting an exception"): after a signal, that is the signal.
        if isinstance(stop, SystemError) and not _SIGNALS:
            raise
        print("interrupted", file=sys.stderr)
        sys.exit(128 + (_SIGNALS[0] if _SIGNALS else signal.SIGINT))
    except BenchError as e:
        print(f"passthrough: {e}", file=sys.stderr)
        sys.exit(1)
