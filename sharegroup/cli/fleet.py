"""``sharegroup fleet describe``: the instances of a fleet of proxies, the state partitions each
owns and the share partitions those hold.

Everything comes from the upstream cluster itself, as each instance learns it: the fleet's
consumer group described through the cluster's group coordinator (members' client ids carry the
instance id and listener addresses; their assignments are the state partitions they own), and
the state topic read from its start (which share partitions each state partition holds, by the
single-writer rule). Nothing asks the proxies.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any
from uuid import UUID

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicCollection, TopicPartition
from confluent_kafka.admin import AdminClient

from proxy.fleet import FleetIdentity, default_group_id, describe_fleet
from proxy.state_store import DEFAULT_TOPIC, header_writer
from sharegroup.persist.partitioning import state_partition_for_share
from sharegroup.persist.records import PartitionKey, RecordError, decode
from sharegroup.persist.recovery import Replay

READ_TIMEOUT_S = 60.0


class FleetError(Exception):
    """A problem to report to the user and exit 1."""


def share_partitions(bootstrap: str, topic: str) -> tuple[int, set[PartitionKey]]:
    """(the state topic's partition count, the share partitions it holds), read to its end."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"sharegroup-fleet-describe-{topic}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        md = consumer.list_topics(topic, timeout=15)
        info = md.topics.get(topic)
        if info is None or info.error is not None or not info.partitions:
            raise FleetError(f"state topic {topic} not found")
        count = len(info.partitions)
        consumer.assign([TopicPartition(topic, p, -2) for p in range(count)])
        replays = {p: Replay() for p in range(count)}
        at_end: set[int] = set()
        deadline = time.monotonic() + READ_TIMEOUT_S
        while len(at_end) < count:
            if time.monotonic() > deadline:
                raise FleetError(f"could not read {topic} to its end in {READ_TIMEOUT_S:.0f} s")
            m = consumer.poll(0.5)
            if m is None:
                continue
            part = m.partition()
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF and part is not None:
                    at_end.add(part)
                    continue
                raise FleetError(f"reading {topic}: {err}")
            key = m.key()
            if key is None or part is None:
                continue
            writer = header_writer(m.headers() or ())
            try:
                replays[part].apply_logged(decode(key, m.value()), writer and writer[0])
            except RecordError:
                continue
        return count, {k for r in replays.values() for k in r.partitions}
    finally:
        consumer.close()


def topic_names(admin: AdminClient, ids: set[UUID]) -> dict[UUID, str]:
    names = list(admin.list_topics(timeout=15).topics)
    out: dict[UUID, str] = {}
    if not names:
        return out
    mask = (1 << 64) - 1
    for name, future in admin.describe_topics(TopicCollection(names)).items():
        try:
            tid = future.result(15).topic_id
        except KafkaException:
            continue
        msb, lsb = tid.get_most_significant_bits(), tid.get_least_significant_bits()
        uid = UUID(int=((msb & mask) << 64) | (lsb & mask))
        if uid in ids:
            out[uid] = name
    return out


def describe(bootstrap: str, state_topic: str, group_id: str | None) -> list[list[str]]:
    """Rows: instance, address, state partitions, share partitions (group/topic-partition)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    group = group_id or default_group_id(state_topic)
    try:
        members = describe_fleet(admin, group, state_topic)
    except KafkaException as e:
        raise FleetError(f"cannot describe the fleet's group {group}: {e}") from e
    count, keys = share_partitions(bootstrap, state_topic)
    names = topic_names(admin, {k[1] for k in keys})
    owner_of: dict[int, str] = {}
    rows = []
    for client_id, parts in sorted(members):
        identity = FleetIdentity.parse(client_id)
        if identity is None:
            continue
        for p in parts:
            owner_of[p] = str(identity.instance_id)
        address = ",".join(f"{identity.host}:{port}" for _, port in sorted(identity.ports.items()))
        held = sorted(
            f"{g}/{names.get(t, str(t))}-{p}"
            for g, t, p in keys
            if state_partition_for_share(t, p, count) in parts
        )
        rows.append(
            [
                str(identity.instance_id),
                address,
                ",".join(str(p) for p in sorted(parts)) or "-",
                " ".join(held) or "-",
            ]
        )
    unowned = sorted(set(range(count)) - set(owner_of))
    if unowned:
        rows.append(["(none)", "-", ",".join(map(str, unowned)), "-"])
    return rows


def run(args: argparse.Namespace) -> int:
    try:
        rows = describe(args.bootstrap_server, args.state_topic, args.group)
    except FleetError as e:
        print(f"sharegroup fleet: {e}", file=sys.stderr)
        return 1
    if not rows:
        print(f"no instance of the fleet over {args.state_topic} is running")
        return 0
    header = ["INSTANCE", "ADDRESS", "STATE-PARTITIONS", "SHARE-PARTITIONS"]
    table = [header, *rows]
    widths = [max(len(r[i]) for r in table) for i in range(3)]
    for r in table:
        print("  ".join([*(r[i].ljust(widths[i]) for i in range(3)), r[3]]))
    return 0


def add_fleet_command(sub: Any) -> None:
    p = sub.add_parser(
        "fleet",
        help="describe a fleet of proxies: instances, state partitions, share partitions",
        description=(
            "Show the instances of a fleet of sharegroup proxies (sharegroup proxy "
            "--instance-id), as the upstream cluster knows them: each instance's address, the "
            "state partitions its fleet membership gives it and the share partitions those "
            "hold (group/topic-partition)."
        ),
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    d = actions.add_parser("describe", help="instances, state partitions, share partitions")
    d.add_argument(
        "--bootstrap-server",
        required=True,
        metavar="HOST:PORT",
        help="the upstream Kafka cluster (or any proxy instance)",
    )
    d.add_argument(
        "--state-topic",
        default=DEFAULT_TOPIC,
        help="the fleet's state topic (sharegroup.state.topic, default: %(default)s)",
    )
    d.add_argument(
        "--group",
        metavar="GROUP",
        help="the fleet's consumer group (sharegroup.fleet.group.id; "
        "default: sharegroup-fleet-<state topic>)",
    )
    d.set_defaults(func=run)
