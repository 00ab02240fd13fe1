"""Benchmark of the pure share-partition model.

Measures, on one core:
* acquire + ACCEPT cycles with whole-batch acknowledgements (batches of 500 records);
* acquire + ACCEPT cycles where every record is acknowledged by its own request;
* bytes per in-flight record with 1,000,000 records acquired and not yet acknowledged.

Each throughput figure is the median of several rounds. The last line printed is JSON with the
keys batch_ack_records_per_s, per_record_ack_records_per_s, bytes_per_inflight_record.
Run: .venv/bin/python bench/model.py [--rounds N]
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

# This file is called model.py, like the package it measures: drop its own folder from the
# import path so ``import model`` finds the package, not this script.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from model import AckBatch, LogBatch, SharePartition  # noqa: E402

BATCH = 500


def batch_acks(records: int) -> float:
    sp = SharePartition(0, max_in_flight=10_000, lock_duration_ms=30_000)
    accept = (1,)
    start = time.perf_counter()
    offset = 0
    while offset < records:
        got = sp.acquire(
            "m",
            sp.next_fetch_offset(),
            [LogBatch(offset, offset + BATCH - 1)],
            now_ms=0,
            max_records=BATCH,
            batch_size=BATCH,
        )
        sp.acknowledge(
            "m", [AckBatch(r.first_offset, r.last_offset, accept) for r in got.records], now_ms=1
        )
        offset += BATCH
    elapsed = time.perf_counter() - start
    assert sp.start_offset == records
    return records / elapsed


def per_record_acks(records: int) -> float:
    sp = SharePartition(0, max_in_flight=10_000, lock_duration_ms=30_000)
    accept = (1,)
    start = time.perf_counter()
    offset = 0
    while offset < records:
        sp.acquire(
            "m",
            sp.next_fetch_offset(),
            [LogBatch(offset, offset + BATCH - 1)],
            now_ms=0,
            max_records=BATCH,
            batch_size=BATCH,
        )
        for o in range(offset, offset + BATCH):
            sp.acknowledge("m", [AckBatch(o, o, accept)], now_ms=1)
        offset += BATCH
    elapsed = time.perf_counter() - start
    assert sp.start_offset == records
    return records / elapsed


def bytes_per_inflight(records: int) -> float:
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    sp = SharePartition(0, max_in_flight=records + 1, lock_duration_ms=30_000)
    for offset in range(0, records, BATCH):
        sp.acquire("m", offset, [LogBatch(offset, offset + BATCH - 1)], now_ms=0, max_records=BATCH)
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    assert sp.in_flight_count == records
    return used / records


def bytes_per_exploded_record(records: int) -> float:
    """The worst case: every other offset released, so every offset is a range of its own."""
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    sp = SharePartition(0, max_in_flight=records + 1, lock_duration_ms=30_000)
    for offset in range(0, records, BATCH):
        sp.acquire("m", offset, [LogBatch(offset, offset + BATCH - 1)], now_ms=0, max_records=BATCH)
    for o in range(1, records, 2):
        sp.acknowledge("m", [AckBatch(o, o, (2,))], now_ms=1)
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    assert sp.range_count() == records
    return used / records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--records", type=int, default=1_000_000)
    args = parser.parse_args()
    batch, single = [], []
    for i in range(args.rounds):  # alternate the two so machine noise hits both alike
        batch.append(batch_acks(args.records))
        single.append(per_record_acks(args.records // 5))
        print(f"round {i + 1}: batch {batch[-1]:,.0f} rec/s, per-record {single[-1]:,.0f} rec/s")
    mem = bytes_per_inflight(args.records)
    exploded = bytes_per_exploded_record(args.records // 10)
    print(
        f"bytes per in-flight record: {mem:.3f} whole ranges, {exploded:.1f} one range per offset"
    )
    result = {
        "batch_ack_records_per_s": round(statistics.median(batch)),
        "per_record_ack_records_per_s": round(statistics.median(single)),
        "bytes_per_inflight_record": round(mem, 3),
        "bytes_per_inflight_record_one_range_per_offset": round(exploded, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
