"""Benchmark of durable state: recovery time and state bytes per acknowledged record.

1. ``recovery_s``: the state topic is filled with the state of 1,000 share partitions covering
   1,000 records each (1,000,000 records): per partition a snapshot and the updates a consumer
   would have caused — a release of 100 records, their re-acknowledgement, and acknowledgements in
   batches of 500 — written as a proxy instance writes them: a writer claim, then the
   records with the proxy's encoder and writer header, idempotent with acks=all. Then ``sharegroup proxy`` is started as a process and timed from exec to the line
   it prints once it serves (it prints it only after replaying the state topic). Median of runs.
2. ``state_bytes_per_acked_record``: a proxy on the same broker, real ShareConsumers (implicit
   acknowledgement, max.poll.records=500, records produced in log batches of 500 so that each
   acknowledgement covers 500) consume N records; the state topic's size on the broker
   (record batches as stored, read back with a Fetch) grows by B bytes; the figure is B / N.

Prints a final JSON line with the keys recovery_s and state_bytes_per_acked_record.
Run: .venv/bin/python bench/recovery.py [--partitions 1000] [--records-per-partition 1000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

# bench/ holds a script called model.py: keep it from shadowing the model package.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from confluent_kafka import Producer, ShareConsumer  # noqa: E402
from confluent_kafka.admin import AdminClient  # noqa: E402
from confluent_kafka.admin._config import AlterConfigOpType, ConfigEntry, ConfigResource  # noqa: E402
from confluent_kafka.admin._resource import ResourceType  # noqa: E402
from confluent_kafka.cimpl import NewTopic  # noqa: E402

from model import RecordState, StateBatch  # noqa: E402
from proxy import wire  # noqa: E402
from sharegroup.brokers import start_tansu  # noqa: E402
from sharegroup.cli.offsets import WireClient  # noqa: E402
from sharegroup.persist.records import (  # noqa: E402
    WRITER_HEADER,
    Record,
    Snapshot,
    Update,
    WriterClaim,
    encode,
    writer_header,
)

SHAREGROUP = Path(sys.executable).with_name("sharegroup")
ACK, AVAIL = RecordState.ACKNOWLEDGED, RecordState.AVAILABLE


def state_records(partitions: int, per_partition: int) -> list[Record]:
    topic_id = uuid.uuid4()
    out: list[Record] = []
    now = int(time.time() * 1000)
    for p in range(partitions):
        key = ("bench-group", topic_id, p)
        out.append(Snapshot(key, 0, 0, 0, 0, now, now, ()))
        out.append(Update(key, 0, 0, 0, (StateBatch(0, 99, AVAIL, 1),)))  # released once
        start = 0
        while start < per_partition:
            last = min(start + 499, per_partition - 1)
            out.append(Update(key, 0, 0, last + 1, (StateBatch(start, last, ACK, 1),)))
            start = last + 1
    return out


def fill_state_topic(bootstrap: str, topic: str, records: list[Record]) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = NewTopic(topic, 1, 1, config={"cleanup.policy": "delete", "retention.ms": "-1"})
    for f in admin.create_topics([new]).values():
        f.result(30)
    producer = Producer(
        {"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 5}
    )
    writer = uuid.uuid4()
    for seq, r in enumerate([WriterClaim(writer), *records]):
        key, value = encode(r)
        header: list[tuple[str, str | bytes | None]] = [(WRITER_HEADER, writer_header(writer, seq))]
        while True:
            try:
                producer.produce(topic, key=key, value=value, partition=0, headers=header)
                break
            except BufferError:  # the local queue is full: let it drain
                producer.poll(0.1)
    if producer.flush(60):
        raise SystemExit("could not write the state topic")


def time_start(upstream: str, state_topic: str) -> float:
    started = time.monotonic()
    proc = subprocess.Popen(
        [
            str(SHAREGROUP),
            "proxy",
            "--bootstrap-server",
            upstream,
            "--listen",
            "127.0.0.1:0",
            "--log-level",
            "WARNING",
            "--config",
            f"sharegroup.state.topic={state_topic}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        elapsed = time.monotonic() - started
        if "bootstrap.servers=" not in line:
            raise SystemExit(f"the proxy did not start: {line!r}")
        return elapsed
    finally:
        proc.terminate()
        proc.wait(20)
        if proc.stdout is not None:
            proc.stdout.close()


def topic_bytes(bootstrap: str, topic: str) -> int:
    """Bytes of record batches stored in partition 0 of a topic, read back with Fetches."""
    total = 0
    offset = 0
    with WireClient(bootstrap) as client:
        while True:
            req = wire.fetch_request(11, [(topic, 0, offset, 8 << 20)], max_wait_ms=1, min_bytes=0)
            p = client.request(req, 11).responses[0].partitions[0]
            data = bytes(p.records or b"")
            if not data:
                return total
            pos, last_end = 0, offset
            while pos + 61 <= len(data):
                base = int.from_bytes(data[pos : pos + 8], "big")
                length = int.from_bytes(data[pos + 8 : pos + 12], "big")
                if pos + 12 + length > len(data):
                    break
                delta = int.from_bytes(data[pos + 23 : pos + 27], "big")
                total += 12 + length
                last_end = base + delta + 1
                pos += 12 + length
            if last_end >= p.high_watermark or last_end == offset:
                return total
            offset = last_end


def bytes_per_acked(upstream: str, records: int) -> float:
    state_topic = f"__bench_state_{uuid.uuid4().hex[:6]}"
    proc = subprocess.Popen(
        [
            str(SHAREGROUP),
            "proxy",
            "--bootstrap-server",
            upstream,
            "--listen",
            "127.0.0.1:0",
            "--log-level",
            "WARNING",
            "--config",
            f"sharegroup.state.topic={state_topic}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        bootstrap = line.strip().split("bootstrap.servers=")[1]
        topic = f"bench-{uuid.uuid4().hex[:6]}"
        admin = AdminClient({"bootstrap.servers": bootstrap})
        for f in admin.create_topics([NewTopic(topic, 4, 1)]).values():
            f.result(30)
        group = f"g-{uuid.uuid4().hex[:6]}"
        entry = ConfigEntry(
            "share.auto.offset.reset", "earliest", incremental_operation=AlterConfigOpType.SET
        )
        for f in admin.incremental_alter_configs(
            [ConfigResource(ResourceType.GROUP, group, incremental_configs=[entry])]
        ).values():
            f.result(30)
        producer = Producer(
            {"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.num.messages": 500}
        )
        for i in range(records):
            producer.produce(topic, value=b"x" * 100, partition=i % 4)
        producer.flush(60)
        before = topic_bytes(upstream, state_topic)
        consumers = [
            ShareConsumer(
                {"bootstrap.servers": bootstrap, "group.id": group, "max.poll.records": 500}
            )
            for _ in range(2)
        ]
        for c in consumers:
            c.subscribe([topic])
        got = 0
        deadline = time.monotonic() + 120
        while got < records and time.monotonic() < deadline:
            for c in consumers:
                got += sum(1 for m in c.poll(0.2) if m.error() is None)
        for c in consumers:
            c.commit_sync(30)
            c.close()
        if got < records:
            raise SystemExit(f"only {got} of {records} records consumed")
        time.sleep(1)
        after = topic_bytes(upstream, state_topic)
        print(
            f"state topic: {before:,} bytes before, {after:,} after {records:,} acknowledged records"
        )
        return (after - before) / records
    finally:
        proc.terminate()
        proc.wait(20)
        if proc.stdout is not None:
            proc.stdout.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partitions", type=int, default=1000)
    parser.add_argument("--records-per-partition", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--acked-records", type=int, default=100_000)
    args = parser.parse_args()
    with start_tansu() as broker:
        state_topic = "__bench_recovery_state"
        records = state_records(args.partitions, args.records_per_partition)
        fill_state_topic(broker.bootstrap, state_topic, records)
        stored = topic_bytes(broker.bootstrap, state_topic)
        print(
            f"state topic: {len(records):,} records, {stored:,} bytes for "
            f"{args.partitions * args.records_per_partition:,} records in {args.partitions} share partitions"
        )
        times = []
        for i in range(args.runs):
            times.append(time_start(broker.bootstrap, state_topic))
            print(f"run {i + 1}: serving after {times[-1]:.2f}s")
        per_record = bytes_per_acked(broker.bootstrap, args.acked_records)
        print(f"state topic grew by {per_record:.2f} bytes per acknowledged record")
    print(
        json.dumps(
            {
                "recovery_s": round(statistics.median(times), 3),
                "state_bytes_per_acked_record": round(per_record, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
