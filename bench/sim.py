"""Simulator throughput: 1,000,000 records through 64 share consumers on 8 partitions.

Runs the real engine and model in the simulator (``sharegroup scenario run`` does the same) and
prints one final JSON line with ``wall_s`` (wall-clock seconds of the run, loading excluded)
and ``sim_records_per_wall_s`` (records acknowledged per wall second), plus the virtual time
and event counts. Every record must end acknowledged exactly once, or the bench fails.

    .venv/bin/python bench/sim.py [--records N] [--consumers N] [--partitions N] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import time
from pathlib import Path

# bench/model.py would shadow the ``model`` package: take this folder off the import path.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from sharegroup.scenario.load import loads  # noqa: E402
from sharegroup.scenario.run_sim import SimRun  # noqa: E402

SCENARIO = """
name: bench - {records} records, {consumers} consumers, {partitions} partitions
seed: 1
given:
  topics: {{jobs: {{partitions: {partitions}}}}}
  group: {{id: bench, config: {{share.auto.offset.reset: earliest}}}}
  consumers:
    - {{id: w, replicas: {consumers}, processing: 0.1ms, max.poll.records: 500}}
when:
  - {{at: 0s, produce: {{topic: jobs, records: {records}, batch: 100}}}}
duration: {duration}
then:
  - {{totals: {{acknowledged: {records}, redelivered: 0}}}}
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--consumers", type=int, default=64)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--profile", action="store_true", help="print the top of a cProfile")
    args = parser.parse_args()
    # Enough virtual time for every record at 0.1 ms each, spread over the consumers.
    duration_s = max(10, args.records * 0.0001 / max(1, min(args.consumers, 64)) * 4)
    scenario = loads(
        SCENARIO.format(
            records=args.records,
            consumers=args.consumers,
            partitions=args.partitions,
            duration=f"{duration_s:.0f}s",
        ),
        "bench/sim.py",
    )
    profiler = cProfile.Profile() if args.profile else None
    started = time.perf_counter()
    run = SimRun(scenario)
    if profiler is not None:
        profiler.enable()
    result = run.run()
    if profiler is not None:
        profiler.disable()
    wall_s = time.perf_counter() - started
    totals = result.trace.totals()
    if profiler is not None:
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(30)
    acknowledged = totals["acknowledged"]
    ok = result.passed and acknowledged == args.records
    last_ack = max((e[0] for e in result.trace.events if e[1] == "accept"), default=0)
    print(
        json.dumps(
            {
                "records": args.records,
                "consumers": args.consumers,
                "partitions": args.partitions,
                "acknowledged": acknowledged,
                "redelivered": totals["redelivered"],
                "virtual_s": last_ack / 1000,
                "events": run.loop.events_run,
                "trace_events": len(result.trace.events),
                "passed": ok,
                "wall_s": round(wall_s, 3),
                "sim_records_per_wall_s": round(acknowledged / wall_s),
            }
        )
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
