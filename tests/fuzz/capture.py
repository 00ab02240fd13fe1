"""Record the fuzzers' seed corpus from real client traffic (run under ``heavy``: it starts
Kafka 3.9).

A proxy in-process in front of Kafka 3.9 records every request frame its client connections
send while real clients work through it: librdkafka's admin client (topics, configs of a
topic and of a share group, groups, DeleteRecords), an idempotent and an acks=0 producer, a
classic consumer in a group, a ShareConsumer that acknowledges with ACCEPT, RELEASE and REJECT
and commits, a ShareGroupDescribe, and the ``sharegroup offsets`` requests (APIs 90-92).

Written to ``tests/fuzz/seeds/``: one file per request kind and version (the first few of
each, whole frames with their size prefix, ``<api>-v<version>-<n>.bin``), the start of each
connection's conversation (``conn-<n>.bin``, up to ``--conversation-bytes``), and
``tests/fuzz/cluster.json`` (the upstream's topics, topic ids, cluster id and API versions, which the
``connection`` target's stand-in cluster serves). Frames larger than ``--frame-bytes`` are left
out, so the corpus stays small.

    heavy .venv/bin/python -m tests.fuzz.capture
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from confluent_kafka import AcknowledgeType, Consumer, Producer, ShareConsumer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import ConfigResource
from confluent_kafka.admin._resource import ResourceType
from confluent_kafka.cimpl import NewTopic

from proxy import connection, messages
from proxy.thread import ProxyThread
from sharegroup.brokers import start_kafka
from sharegroup.cli.offsets import WireClient, alter, delete, describe
from sharegroup.kafka_dist import KAFKA3_VERSION
from tests.fuzz.targets import CLUSTER_FILE, SEEDS
from tests.integration.test_share_consumers import set_group_configs

TOPIC = "fuzz-seed"
GROUP = "fuzz-share"
PER_KIND = 3


def _record(frames: dict[int, list[bytes]]) -> None:
    original = connection.ClientConnection._dispatch

    async def dispatch(self: connection.ClientConnection, framed: bytearray, nursery: Any) -> Any:
        frames[self.id].append(bytes(framed))
        return await original(self, framed, nursery)

    connection.ClientConnection._dispatch = dispatch  # type: ignore[method-assign]


def traffic(bootstrap: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(TOPIC, 2, 1)]).values():
        f.result(30)
    for f in admin.describe_configs([ConfigResource(ResourceType.TOPIC, TOPIC)]).values():
        f.result(30)
    set_group_configs(
        bootstrap,
        GROUP,
        {"share.auto.offset.reset": "earliest", "share.record.lock.duration.ms": "15000"},
    )
    for f in admin.describe_configs([ConfigResource(ResourceType.GROUP, GROUP)]).values():
        f.result(30)

    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for i in range(40):
        producer.produce(TOPIC, key=b"k%d" % i, value=b"value %d" % i, partition=i % 2)
    assert producer.flush(30) == 0
    fire = Producer({"bootstrap.servers": bootstrap, "acks": 0, "linger.ms": 0})
    for i in range(4):
        fire.produce(TOPIC, value=b"fire %d" % i, partition=0)
    fire.flush(30)

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "fuzz-classic",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([TOPIC])
    got = 0
    deadline = time.monotonic() + 30
    while got < 20 and time.monotonic() < deadline:
        m = consumer.poll(0.5)
        if m is not None and m.error() is None:
            got += 1
    consumer.commit(asynchronous=False)
    consumer.close()

    share = ShareConsumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": GROUP,
            "share.acknowledgement.mode": "explicit",
            "max.poll.records": 10,
        }
    )
    share.subscribe([TOPIC])
    acked = 0
    kinds = [AcknowledgeType.ACCEPT, AcknowledgeType.RELEASE, AcknowledgeType.REJECT]
    deadline = time.monotonic() + 60
    while acked < 30 and time.monotonic() < deadline:
        for m in share.poll(1.0):
            if m.error() is None:
                share.acknowledge(m, kinds[acked % 3])
                acked += 1
        share.commit_sync(30)
    with WireClient(bootstrap) as client:
        req = messages.ShareGroupDescribeRequest(
            version=1, group_ids=[GROUP], include_authorized_operations=True
        )
        client.request(req, 1)
    share.close()

    admin.list_consumer_groups().result(30)
    admin.describe_consumer_groups(["fuzz-classic"])["fuzz-classic"].result(30)
    for f in admin.delete_records([TopicPartition(TOPIC, 1, 2)]).values():
        f.result(30)
    with WireClient(bootstrap) as client:
        describe(client, GROUP, [TOPIC])
        alter(client, GROUP, {(TOPIC, 0): 5, (TOPIC, 1): 3})
        delete(client, GROUP, [TOPIC])


def write_seeds(
    frames: dict[int, list[bytes]],
    recorded: dict[str, Any],
    out: Path,
    frame_bytes: int,
    conversation_bytes: int,
) -> None:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    kinds: dict[tuple[int, int], int] = defaultdict(int)
    for conn_id, conn_frames in sorted(frames.items()):
        conversation = bytearray()
        for framed in conn_frames:
            if len(framed) > frame_bytes:
                continue
            key, version = int.from_bytes(framed[4:6], "big"), int.from_bytes(framed[6:8], "big")
            if kinds[key, version] < PER_KIND:
                kinds[key, version] += 1
                (out / f"{key}-v{version}-{kinds[key, version]}.bin").write_bytes(framed)
            if len(conversation) + len(framed) <= conversation_bytes:
                conversation += framed
        if conversation:
            (out / f"conn-{conn_id}.bin").write_bytes(bytes(conversation))
    CLUSTER_FILE.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz.capture", description=__doc__)
    parser.add_argument("--out", type=Path, default=SEEDS)
    parser.add_argument("--frame-bytes", type=int, default=8192)
    parser.add_argument("--conversation-bytes", type=int, default=16384)
    args = parser.parse_args(argv)
    frames: dict[int, list[bytes]] = defaultdict(list)
    _record(frames)
    with start_kafka(KAFKA3_VERSION, share_groups=False) as broker:
        configs = {"group.share.min.record.lock.duration.ms": "1000"}
        with ProxyThread(broker.bootstrap, configs) as p:
            traffic(p.bootstrap)

            def snapshot() -> dict[str, Any]:
                proxy = p.proxy
                assert proxy is not None
                cluster = proxy.cluster
                return {
                    "cluster_id": cluster.cluster_id,
                    "api_versions": {
                        str(k): list(v) for k, v in sorted(proxy._upstream_versions(0).items())
                    },
                    "topics": {
                        name: {"topic_id": str(t.topic_id), "partitions": len(t.partitions)}
                        for name, t in sorted(cluster.topics.items())
                        if not name.startswith("__")
                    },
                }

            recorded = p.call(snapshot)
    write_seeds(frames, recorded, args.out, args.frame_bytes, args.conversation_bytes)
    total = sum(f.stat().st_size for f in args.out.iterdir())
    print(f"{len(list(args.out.iterdir()))} seed files, {total} bytes in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
