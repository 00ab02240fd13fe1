"""A fleet of proxies: time to serve again after an instance is killed, and share throughput with
one and with two instances, on a fresh Kafka 3.9 broker.

Failover, ``--rounds`` times: three ``sharegroup proxy --instance-id`` processes over a fresh
state topic (session timeout ``--session-ms``, heartbeat 500 ms), a six-partition topic, three
``confluent_kafka.ShareConsumer``s (explicit ACCEPT, ``commit_sync``) each bootstrapped from
another instance, ``--records`` produced over about 15 s. Once a quarter are confirmed the
instance owning partition 0's share state is killed with SIGKILL. Failover time: from the kill
until every share partition it owned has had an acknowledgement confirmed again. Then every
record must be confirmed: ``lost`` counts records never confirmed, ``redelivered_after_confirm``
records delivered again after a confirmed acknowledgement.

Throughput, alternating per round: ``--records`` pre-produced, then consumed to the last
confirmation by two share consumers through a fleet of one instance, and of two instances;
records/s and the proxies' CPU (user+system from /proc) per record.

The consumer, fleet and split helpers are those of ``tests/integration/test_fleet.py``.
Prints one line per measurement and a final JSON line with failover_s_median, failover_s_max,
lost, redelivered_after_confirm, ratio_2_vs_1_instances (and the figures behind them).
Run: heavy .venv/bin/python bench/fleet.py [--rounds 3] [--records 6000] [--session-ms 6000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

# bench/ holds a script called model.py: keep it from shadowing the model package.
_HERE = Path(__file__).resolve().parent
sys.path = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from sharegroup.brokers import Broker, start_kafka  # noqa: E402
from sharegroup.kafka_dist import KAFKA3_VERSION  # noqa: E402
from tests.integration import test_fleet as harness  # noqa: E402
from tests.integration.test_share_consumers import produce  # noqa: E402

PARTITIONS = 6
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of a process so far."""
    if pid is None:
        return 0.0
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def failover_round(broker: Broker, records: int) -> dict[str, float]:
    topic, group = f"bench-fleet-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    harness.create_topic(broker.bootstrap, topic, PARTITIONS)
    with harness.fleet(broker, 3) as (procs, state_topic):
        split = harness.wait_for_split(broker, state_topic, {0, 1, 2})
        tid = harness.topic_id(broker.bootstrap, topic)
        (victim_id,) = (i for i, ps in split.items() if harness.state_partition(tid, 0) in ps)
        workers = [harness.Worker(p.bootstrap, group, topic).start() for p in procs]
        everyone = ",".join(p.bootstrap for p in procs)
        producing = threading.Thread(
            target=harness.produce_slowly, args=(everyone, topic, records), daemon=True
        )
        try:
            harness.wait_until_initialized(procs[0].bootstrap, group, topic, PARTITIONS)
            producing.start()
            while sum(len(w.confirmed) for w in workers) < records // 4:
                time.sleep(0.05)
            killed_at = time.monotonic()
            procs[victim_id].kill()
            survivors = {0, 1, 2} - {victim_id}
            harness.wait_for_split(broker, state_topic, survivors)
            producing.join(120)
            in_log = harness.log_records(broker.bootstrap, topic, PARTITIONS)
            try:
                harness.settle(workers, len(in_log), 120, [procs[i] for i in survivors])
            except AssertionError as e:
                print(f"  not settled: {str(e)[:300]}", flush=True)
        finally:
            for w in workers:
                w.join()
    moved = {p for p in range(PARTITIONS) if harness.state_partition(tid, p) in split[victim_id]}
    served = [
        min(
            (t for w in workers for q, _o, _n, t in w.confirmed if q == p and t > killed_at),
            default=float("inf"),
        )
        for p in moved
    ]
    confirmed = Counter((p, o) for w in workers for p, o, _, _ in w.confirmed)
    redelivered, decreased = harness.check_history(workers)
    return {
        "failover_s": max(served) - killed_at,
        "lost": len(in_log - set(confirmed)),
        "confirmed_twice": sum(1 for n in confirmed.values() if n > 1),
        "redelivered_after_confirm": redelivered,
        "delivery_count_decreased": decreased,
    }


def throughput_round(broker: Broker, instances: int, records: int) -> tuple[float, float]:
    """(records/s, proxy CPU microseconds per record) through a fleet of ``instances``."""
    topic, group = f"bench-tput-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    harness.create_topic(broker.bootstrap, topic, PARTITIONS)
    with harness.fleet(broker, instances) as (procs, _state_topic):
        bootstraps = [procs[i % instances].bootstrap for i in range(2)]
        workers = [harness.Worker(b, group, topic).start() for b in bootstraps]
        try:
            harness.wait_until_initialized(procs[0].bootstrap, group, topic, PARTITIONS)
            produce(broker.bootstrap, topic, records, per_batch=1000)
            cpu_before = sum(cpu_s(p.pid) for p in procs)
            started = time.monotonic()
            harness.settle(workers, records, 300, procs)
            elapsed = time.monotonic() - started
            cpu = sum(cpu_s(p.pid) for p in procs) - cpu_before
        finally:
            for w in workers:
                w.join()
    return records / elapsed, cpu / records * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--records", type=int, default=6000)
    parser.add_argument("--throughput-records", type=int, default=200000)
    parser.add_argument("--session-ms", type=int, default=6000)
    args = parser.parse_args()
    harness.SESSION_MS = args.session_ms
    failovers: list[dict[str, float]] = []
    rates: dict[int, list[float]] = {1: [], 2: []}
    cpus: dict[int, list[float]] = {1: [], 2: []}
    with start_kafka(KAFKA3_VERSION, share_groups=False) as broker:
        for r in range(args.rounds):
            f = failover_round(broker, args.records)
            failovers.append(f)
            print(f"round {r + 1} failover: {json.dumps(f)}", flush=True)
            for n in (1, 2) if r % 2 == 0 else (2, 1):
                rate, cpu = throughput_round(broker, n, args.throughput_records)
                rates[n].append(rate)
                cpus[n].append(cpu)
                print(
                    f"round {r + 1} throughput, {n} instance(s): {rate:.0f} records/s, "
                    f"{cpu:.0f} us proxy CPU per record",
                    flush=True,
                )
    times = [f["failover_s"] for f in failovers]
    summary = {
        "failover_s_median": round(statistics.median(times), 2),
        "failover_s_max": round(max(times), 2),
        "lost": int(sum(f["lost"] for f in failovers)),
        "redelivered_after_confirm": int(sum(f["redelivered_after_confirm"] for f in failovers)),
        "confirmed_twice": int(sum(f["confirmed_twice"] for f in failovers)),
        "delivery_count_decreased": int(sum(f["delivery_count_decreased"] for f in failovers)),
        "records_per_s_1_instance": round(statistics.median(rates[1])),
        "records_per_s_2_instances": round(statistics.median(rates[2])),
        "proxy_cpu_us_per_record_1_instance": round(statistics.median(cpus[1])),
        "proxy_cpu_us_per_record_2_instances": round(statistics.median(cpus[2])),
        "ratio_2_vs_1_instances": round(
            statistics.median(rates[2]) / statistics.median(rates[1]), 3
        ),
        "session_timeout_ms": args.session_ms,
        "rounds": args.rounds,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    sys.exit(main())
