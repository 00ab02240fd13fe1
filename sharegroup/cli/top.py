"""``sharegroup top``: a live terminal view of share groups, in the spirit of ``top``.

Everything comes over the wire with Kafka's own APIs, so it works against the proxy and
against a Kafka 4.x cluster alike: ListGroups (share groups and their state),
ShareGroupDescribe (members and assignments), DescribeShareGroupOffsets v1 (start offset and
KIP-1226 lag) and a one-byte Fetch per partition (log end). Rates are differences between two
refreshes: ``in/s`` records produced, ``done/s`` records delivered to completion (the log end
moved, less what the lag grew). With ``--metrics URL`` (the proxy's ``/metrics``) each
partition also shows its records by state, which no Kafka API tells.

The screen is redrawn in place with curses; ``q`` quits. ``--once`` prints one frame to stdout.
The requests go to the first bootstrap server: the proxy answers them on every port, and so
does a one-broker cluster.
"""

from __future__ import annotations

import argparse
import contextlib
import curses
import os
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from proxy import messages, wire
from sharegroup.cli.offsets import OffsetsError, WireClient, describe, log_bounds

STATES = ("available", "acquired", "acknowledged", "archived")


@dataclass
class PartitionRow:
    topic: str
    partition: int
    start: int
    lag: int
    end: int
    owners: list[str] = field(default_factory=list)
    by_state: dict[str, int] = field(default_factory=dict)
    in_rate: float | None = None
    done_rate: float | None = None


@dataclass
class MemberRow:
    member_id: str
    client_id: str
    host: str
    assignment: list[tuple[str, int]]


@dataclass
class GroupView:
    group_id: str
    state: str
    epoch: int
    members: list[MemberRow]
    partitions: list[PartitionRow]


@dataclass
class Frame:
    at: float
    groups: list[GroupView]
    error: str | None = None


def _list_groups(client: WireClient) -> list[tuple[str, str]]:
    req = wire.request_class(wire.LIST_GROUPS)(version=5, states_filter=[], types_filter=["share"])
    resp = client.request(req, 5)
    return sorted((g.group_id, g.group_state) for g in resp.groups)


def _describe_groups(client: WireClient, group_ids: list[str]) -> dict[str, Any]:
    req = messages.ShareGroupDescribeRequest(
        version=1, group_ids=group_ids, include_authorized_operations=False
    )
    return {g.group_id: g for g in client.request(req, 1).groups if g.error_code == 0}


def _metrics_states(url: str) -> dict[tuple[str, str, int], dict[str, int]]:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    out: dict[tuple[str, str, int], dict[str, int]] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "sharegroup_share_partition_records":
            continue
        for s in family.samples:
            key = (s.labels["group"], s.labels["topic"], int(s.labels["partition"]))
            out.setdefault(key, {})[s.labels["state"]] = int(s.value)
    return out


def collect(
    bootstrap: str,
    metrics_url: str | None,
    previous: Frame | None,
    only: Sequence[str] = (),
) -> Frame:
    """One snapshot of every share group (or of the groups in ``only``), with rates against
    ``previous``."""
    now = time.monotonic()
    with WireClient(bootstrap, timeout_s=10) as client:
        listed = _list_groups(client)
        if only:
            listed = [(g, state) for g, state in listed if g in only]
        described = _describe_groups(client, [g for g, _ in listed]) if listed else {}
        states = _metrics_states(metrics_url) if metrics_url else {}
        groups = []
        ends: dict[tuple[str, int], int] = {}
        for group_id, state in listed:
            d = described.get(group_id)
            members = []
            owners: dict[tuple[str, int], list[str]] = {}
            for m in d.members if d is not None else []:
                assignment = [
                    (tp.topic_name, p)
                    for tp in m.assignment.topic_partitions
                    for p in tp.partitions
                ]
                members.append(MemberRow(m.member_id, m.client_id, m.client_host, assignment))
                for tp in assignment:
                    owners.setdefault(tp, []).append(m.member_id[:8])
            rows = []
            try:
                offsets = describe(client, group_id, None)
            except OffsetsError:
                offsets = []
            for topic, partition, start, lag in offsets:
                if (topic, partition) not in ends:
                    ends[(topic, partition)] = log_bounds(client, topic, partition)[1]
                rows.append(
                    PartitionRow(
                        topic,
                        partition,
                        start,
                        lag,
                        ends[(topic, partition)],
                        owners.get((topic, partition), []),
                        states.get((group_id, topic, partition), {}),
                    )
                )
            groups.append(
                GroupView(group_id, state, d.group_epoch if d is not None else -1, members, rows)
            )
    frame = Frame(now, groups)
    if previous is not None:
        _rates(previous, frame)
    return frame


def _rates(before: Frame, after: Frame) -> None:
    dt = after.at - before.at
    if dt <= 0:
        return
    old = {(g.group_id, r.topic, r.partition): r for g in before.groups for r in g.partitions}
    for g in after.groups:
        for r in g.partitions:
            prev = old.get((g.group_id, r.topic, r.partition))
            if prev is None or prev.lag < 0 or r.lag < 0:
                continue
            produced = r.end - prev.end
            r.in_rate = produced / dt
            r.done_rate = max(0, produced - (r.lag - prev.lag)) / dt


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def render(frame: Frame, bootstrap: str, width: int = 120) -> list[str]:
    """The lines of one screen."""
    stamp = time.strftime("%H:%M:%S")
    total_lag = sum(max(r.lag, 0) for g in frame.groups for r in g.partitions)
    members = sum(len(g.members) for g in frame.groups)
    lines = [
        f"sharegroup top - {stamp}  {bootstrap}  groups: {len(frame.groups)}  "
        f"members: {members}  lag: {total_lag}   (q quits)",
    ]
    if frame.error:
        lines.append(f"error: {frame.error}")
    for g in frame.groups:
        lines.append("")
        lag = sum(max(r.lag, 0) for r in g.partitions)
        lines.append(
            f"GROUP {g.group_id}  state {g.state}  epoch {g.epoch}  "
            f"members {len(g.members)}  lag {lag}"
        )
        for m in g.members:
            parts = ",".join(f"{t}:{p}" for t, p in m.assignment) or "-"
            lines.append(f"  member {m.member_id[:8]}  {m.client_id}  {m.host}  {parts}")
        header = f"  {'TOPIC':<24} {'PART':>4} {'START':>10} {'END':>10} {'LAG':>8} {'IN/S':>8} {'DONE/S':>8}"
        if any(r.by_state for r in g.partitions):
            header += "".join(f" {s[:5].upper():>6}" for s in STATES)
        lines.append(header + "  OWNERS")
        for r in g.partitions:
            line = (
                f"  {r.topic[:24]:<24} {r.partition:>4} {r.start:>10} {r.end:>10} {r.lag:>8} "
                f"{_rate(r.in_rate):>8} {_rate(r.done_rate):>8}"
            )
            if r.by_state:
                line += "".join(f" {r.by_state.get(s, 0):>6}" for s in STATES)
            lines.append(line + "  " + (",".join(r.owners) or "-"))
    return [ln[:width] for ln in lines]


def _follow_terminal_size(screen: Any) -> None:
    """Resize to the terminal's size as the kernel has it: curses may have started with a
    stale size (LINES/COLUMNS, or a terminal resized as it was created) and keep it."""
    out = sys.__stdout__
    if out is None:
        return
    try:
        size = os.get_terminal_size(out.fileno())
    except (OSError, ValueError):
        return
    if (size.lines, size.columns) != screen.getmaxyx():
        curses.resizeterm(size.lines, size.columns)


def _loop(screen: Any, args: argparse.Namespace) -> None:
    curses.curs_set(0)
    screen.timeout(100)
    frame: Frame | None = None
    next_at = 0.0
    while True:
        if time.monotonic() >= next_at:
            try:
                frame = collect(args.bootstrap_server, args.metrics, frame, args.group)
            except (OffsetsError, OSError) as e:
                frame = Frame(time.monotonic(), frame.groups if frame else [], str(e))
            _follow_terminal_size(screen)
            height, width = screen.getmaxyx()
            screen.erase()
            for y, line in enumerate(render(frame, args.bootstrap_server, width - 1)[: height - 1]):
                with contextlib.suppress(curses.error):
                    screen.addstr(y, 0, line)
            screen.refresh()
            next_at = time.monotonic() + args.interval
        if screen.getch() in (ord("q"), ord("Q")):
            return


def run(args: argparse.Namespace) -> int:
    if args.once:
        try:
            frame = collect(args.bootstrap_server, args.metrics, None, args.group)
        except (OffsetsError, OSError) as e:
            print(f"sharegroup top: {e}")
            return 1
        print("\n".join(render(frame, args.bootstrap_server, 200)))
        return 0
    with contextlib.suppress(KeyboardInterrupt):
        curses.wrapper(_loop, args)
    return 0


def add_top_command(sub: Any) -> None:
    p = sub.add_parser(
        "top",
        help="live view of share groups, members, partitions, lag and rates",
        description=(
            "A live terminal view of every share group: members and assignments, share "
            "partitions with start offset, log end, lag and rates (and records by state with "
            "--metrics). Works against the proxy and against Kafka 4.x. Press q to quit."
        ),
    )
    p.add_argument("--bootstrap-server", required=True, metavar="HOST:PORT")
    p.add_argument(
        "--interval", type=float, default=2.0, help="seconds between refreshes (default: 2)"
    )
    p.add_argument("--metrics", metavar="URL", help="the proxy's metrics URL, for records by state")
    p.add_argument("--once", action="store_true", help="print one frame and exit")
    p.add_argument(
        "--group",
        action="append",
        default=[],
        metavar="GROUP",
        help="show only this share group (repeatable; default: every share group)",
    )
    p.set_defaults(func=run)
