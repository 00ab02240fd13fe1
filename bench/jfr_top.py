"""Where a JVM's CPU went, from a Java Flight Recorder file: the hottest methods.

Reads the execution samples of a recording (``bench/share.py --jfr DIR`` records both Kafka
brokers) with the JDK's ``jfr`` tool and prints, for the samples of all threads: the top
frames (where the CPU was spent), and the innermost Kafka frame of each sample (the Kafka code
doing that work or calling the library that does: request handling, the log, the share
coordinator...).

Run: .venv/bin/python bench/jfr_top.py DIR/upstream.jfr [--top 25]
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import subprocess
import sys

KAFKA_PREFIXES = ("kafka.", "org.apache.kafka.", "kafka/", "org/apache/kafka/")


def samples(path: str) -> list[list[str]]:
    """The stack (innermost frame first, as ``Class.method``) of every execution sample."""
    jfr = shutil.which("jfr")
    if jfr is None:
        raise SystemExit("jfr (the JDK's Flight Recorder tool) not found on PATH")
    out = subprocess.run(
        [jfr, "print", "--json", "--events", "jdk.ExecutionSample", path],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    events = json.loads(out)["recording"]["events"]
    stacks = []
    for event in events:
        frames = event["values"].get("stackTrace", {}) or {}
        names = []
        for frame in frames.get("frames", []):
            method = frame["method"]
            names.append(f"{method['type']['name']}.{method['name']}")
        stacks.append(names)
    return stacks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("recording")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    stacks = samples(args.recording)
    if not stacks:
        print("no execution samples")
        return 1
    top = collections.Counter(s[0] for s in stacks if s)
    kafka = collections.Counter(
        next((f for f in s if f.startswith(KAFKA_PREFIXES)), "(no Kafka frame)") for s in stacks
    )
    total = len(stacks)
    for title, counter in (("top frame", top), ("innermost Kafka frame", kafka)):
        print(f"{title} ({total} samples)")
        for name, n in counter.most_common(args.top):
            print(f"  {100 * n / total:5.1f}%  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
