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

With ``--tls`` the broker is Apache Kafka 3.9 with an SSL listener (certificates from a test CA
made for the run) and both routes are TLS end to end: direct is client -> broker over TLS, proxy
is client -> proxy over TLS (an SSL listener) and proxy -> broker over TLS, so the ratios say
what TLS through the proxy costs against TLS direct.

Run: .venv/bin/python bench/passthrough.py [--records N] [--rounds N] [--broker tansu|kafka39]
     [--tls]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import sys
import tempfile
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

from sharegroup.brokers import Broker, KafkaSecurity, start_kafka, start_tansu  # noqa: E402
from sharegroup.kafka_dist import KAFKA3_VERSION  # noqa: E402
from sharegroup.proxy_process import (  # noqa: E402
    SIGNALS,
    BenchError,
    ProxyProcess,
    running_proxy,
    stop_on_signal,
)

RECORD_BYTES = 1024
# Security settings every client of a run adds (the TLS run's SSL settings; empty otherwise).
CLIENT: dict[str, str] = {}
STALL_TIMEOUT_S = 60.0  # a produce or consume making no progress for this long has failed

Route = Literal["direct", "proxy"]
Kind = Literal["produce", "consume"]


@contextlib.contextmanager
def running_broker(kind: str, security: KafkaSecurity | None = None) -> Iterator[Broker]:
    if security is not None:
        broker = start_kafka(KAFKA3_VERSION, share_groups=False, security=security)
    elif kind == "tansu":
        broker = start_tansu()
    else:
        broker = start_kafka(KAFKA3_VERSION, share_groups=False)
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
            **CLIENT,
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
            **CLIENT,
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
    admin = AdminClient({**CLIENT, "bootstrap.servers": broker, "log_level": 3})
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
        "--tls",
        action="store_true",
        help="TLS on both routes (Kafka 3.9 with an SSL listener; the proxy SSL on both sides)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=20_000,
        help="records of an unreported first round through both paths (0: none)",
    )
    args = parser.parse_args()
    if args.records < 1 or args.rounds < 1:
        parser.error("--records and --rounds must be positive")

    with contextlib.ExitStack() as stack:
        security, configs, protocol = None, [], "PLAINTEXT"
        if args.tls:
            from sharegroup.pki import make_pki

            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-tls-")))
            pki = make_pki(tmp)
            security = KafkaSecurity(
                keystore=pki.kafka_keystore, truststore=pki.ca, protocol="SSL", authorizer=False
            )
            CLIENT.update({"security.protocol": "ssl", "ssl.ca.location": str(pki.ca)})
            configs = [
                f"ssl.keystore.location={pki.server}",
                "upstream.security.protocol=SSL",
                f"upstream.ssl.truststore.location={pki.ca}",
            ]
            protocol = "SSL"
        broker = stack.enter_context(running_broker(args.broker, security))
        proxy = stack.enter_context(
            running_proxy(broker.bootstrap, configs, listen_protocol=protocol)
        )
        print(
            f"broker {broker.kind} {broker.version} at {broker.bootstrap}, proxy at "
            f"{proxy.bootstrap}; {args.records:,} records of {RECORD_BYTES} B, {args.rounds} rounds"
            + (", TLS on both routes" if args.tls else ""),
            flush=True,
        )
        rounds = run_rounds(broker.bootstrap, proxy, args.records, args.rounds, args.warmup)
    print(json.dumps(summary(rounds)), flush=True)
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGINT, stop_on_signal)
    signal.signal(signal.SIGTERM, stop_on_signal)
    try:
        sys.exit(main())
    except (KeyboardInterrupt, SystemError) as stop:
        # confluent-kafka turns an exception raised in a delivery callback into SystemError
        # ("returned NULL without setting an exception"): after a signal, that is the signal.
        if isinstance(stop, SystemError) and not SIGNALS:
            raise
        print("interrupted", file=sys.stderr)
        sys.exit(128 + (SIGNALS[0] if SIGNALS else signal.SIGINT))
    except BenchError as e:
        print(f"passthrough: {e}", file=sys.stderr)
        sys.exit(1)
