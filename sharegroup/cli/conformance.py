"""``sharegroup conformance``: run the KIP-932 conformance checks against any cluster.

Works against anything that speaks the share-group APIs: the proxy, a Kafka 4.x cluster with
share groups, another implementation. Each example creates a topic and a share group of its own
(names start with ``conformance-``) and sets group configs on it; nothing else is touched.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from sharegroup.conformance import client, runner
from sharegroup.conformance.machine import SetupError, TargetSpec


def add_conformance_command(sub: Any) -> None:
    """Register the ``conformance`` subcommand on the ``sharegroup`` command line."""
    p = sub.add_parser(
        "conformance",
        help="check a cluster's share groups against the KIP-932 model",
        description=(
            "Property-based differential test: random sequences of ShareFetch, "
            "ShareAcknowledge, ShareGroupHeartbeat, connection drops, lock expiry and group "
            "config changes are sent to the cluster and every answer is checked against the "
            "model's prediction. Some examples give the group a dead-letter queue "
            "(KIP-1191) and compare the DLQ topic record by record. Prints one row per check: "
            "result and the first (shrunk) counter-example. Creates topics and share groups "
            "named conformance-* and DLQ topics named dlq.conformance-*."
        ),
    )
    p.add_argument("--bootstrap-server", required=True, metavar="HOST:PORT")
    p.add_argument(
        "--examples", type=int, default=10, metavar="N", help="examples to run (default: 10)"
    )
    p.add_argument(
        "--steps", type=int, default=30, metavar="N", help="operations per example (default: 30)"
    )
    p.add_argument(
        "--lock-ms",
        type=int,
        default=3000,
        metavar="MS",
        help="share.record.lock.duration.ms for the test groups (default: 3000; if the cluster "
        "refuses it, 15000 and then 30000 are tried)",
    )
    p.add_argument("--partitions", type=int, default=2, help="partitions per test topic")
    p.add_argument("--report", type=Path, metavar="FILE", help="write a report (.md or .json)")
    p.add_argument(
        "--strict",
        action="store_true",
        help="fail on the known, documented differences too (docs/conformance.md)",
    )
    p.add_argument(
        "--dlq",
        choices=["auto", "on", "off"],
        default="auto",
        help="whether the cluster dead-letters: auto (default) = as its finalized share.version "
        "says (2 or more); off checks that a group's DLQ topic stays empty. A proxy in front of "
        "Kafka before 4.4 must mark the DLQ topics: --config "
        "sharegroup.errors.deadletterqueue.topics=dlq.conformance-*",
    )
    p.add_argument(
        "--derandomize", action="store_true", help="the same examples on every run (as in CI)"
    )
    p.add_argument(
        "--no-shrink",
        action="store_true",
        help="report a failing example as found (shrinking replays whole examples against the "
        "cluster and can take minutes)",
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:

    if args.examples < 1 or args.steps < 1:
        print("sharegroup conformance: --examples and --steps must be >= 1", file=sys.stderr)
        return 2
    try:
        client.parse_host_port(args.bootstrap_server)
        lock_ms = runner.choose_lock_ms(args.bootstrap_server, args.lock_ms)
    except (ValueError, client.ClientError, SetupError) as e:
        print(f"sharegroup conformance: {e}", file=sys.stderr)
        return 2
    if lock_ms != args.lock_ms:
        print(f"(the cluster refuses {args.lock_ms} ms locks; using {lock_ms} ms)", flush=True)
    spec = TargetSpec(
        args.bootstrap_server,
        name=args.bootstrap_server,
        lock_ms=lock_ms,
        partitions=args.partitions,
        strict=args.strict,
        dlq={"auto": None, "on": True, "off": False}[args.dlq],
    )
    print(
        f"running {args.examples} examples of up to {args.steps} operations against "
        f"{args.bootstrap_server} ...",
        flush=True,
    )
    result = runner.run(
        spec,
        examples=args.examples,
        steps=args.steps,
        derandomize=args.derandomize,
        shrink=not args.no_shrink,
    )
    print(runner.table(result))
    print()
    print(runner.summary(result))
    text = runner.details(result)
    if text:
        print()
        print(text)
    if args.report:
        runner.write_report(result, args.report)
        print(f"report written to {args.report}")
    if result.errors and not result.failures():
        return 2
    return 0 if result.ok else 1
