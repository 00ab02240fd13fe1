"""What the number of state-topic partitions costs one instance that owns them all.

On a fresh Kafka 3.9 broker, for each partition count (default 1 and 8), in alternating
rounds: a new state topic; ``PartitionedStateStore.start`` timed (topic creation, a claim and
a replay per partition); then writes of one record at a time, each waited for (a share group's
config, spread over the partitions by the mapping), timed one by one. The idle cost is one
tail reader per partition (a long-polling Fetch each, about 10/s when idle), given as a count.

Prints one line per round and a final JSON line: per count, the median start-up seconds and the
median and p99 write confirmation milliseconds.
Run: .venv/bin/python bench/state_partitions.py [--counts 1,8] [--rounds 3] [--writes 300]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from pathlib import Path

# bench/ holds a script called model.py: keep it from shadowing the model package.
_HERE = Path(__file__).resolve().parent
sys.path = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import trio  # noqa: E402

from proxy.state_partitions import PartitionedStateStore  # noqa: E402
from proxy.state_store import StoreConfig  # noqa: E402
from sharegroup.brokers import start_kafka  # noqa: E402
from sharegroup.kafka_dist import KAFKA3_VERSION  # noqa: E402
from sharegroup.persist.records import GroupConfigs  # noqa: E402


def one_round(bootstrap: str, partitions: int, writes: int) -> tuple[float, list[float]]:
    topic = f"bench-state-{partitions}-{uuid.uuid4().hex[:8]}"
    out: dict[str, object] = {}

    async def main() -> None:
        store = PartitionedStateStore(
            StoreConfig(bootstrap=bootstrap, topic=topic, partitions=partitions)
        )
        async with trio.open_nursery() as nursery:
            started = time.monotonic()
            await store.start(nursery)
            out["start"] = time.monotonic() - started
            latencies = []
            for i in range(writes):
                t = time.monotonic()
                await store.write([GroupConfigs(f"group-{i % 64}", {"n": str(i)})])
                latencies.append((time.monotonic() - t) * 1000)
            out["latencies"] = latencies
            await store.aclose()
            nursery.cancel_scope.cancel()

    trio.run(main)
    start = out["start"]
    latencies = out["latencies"]
    assert isinstance(start, float) and isinstance(latencies, list)
    return start, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", default="1,8", help="partition counts, comma-separated")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--writes", type=int, default=300)
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    starts: dict[int, list[float]] = {c: [] for c in counts}
    writes: dict[int, list[float]] = {c: [] for c in counts}
    with start_kafka(KAFKA3_VERSION, share_groups=False) as broker:
        for r in range(args.rounds):
            for c in counts:
                s, lat = one_round(broker.bootstrap, c, args.writes)
                starts[c].append(s)
                writes[c].extend(lat)
                print(
                    f"round {r + 1} partitions {c}: start {s:.2f}s, "
                    f"write median {statistics.median(lat):.2f} ms",
                    flush=True,
                )
    result = {
        str(c): {
            "start_s_median": round(statistics.median(starts[c]), 3),
            "write_ms_median": round(statistics.median(writes[c]), 2),
            "write_ms_p99": round(statistics.quantiles(writes[c], n=100)[98], 2),
            "tail_readers": c,
        }
        for c in counts
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
