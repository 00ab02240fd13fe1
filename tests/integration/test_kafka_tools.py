"""Kafka 4.4's own tools against the proxy (on Kafka 3.9) and against Kafka 4.4, same assertions.

The tools are the classes behind ``kafka-share-groups.sh``, ``kafka-console-share-consumer.sh``,
``kafka-verifiable-share-consumer.sh``, ``kafka-share-consumer-perf-test.sh`` and
``kafka-configs.sh``, fetched from Maven Central (``sharegroup/kafka_tools.py``). Every test runs
once through the proxy in front of Kafka 3.9 (no share groups of its own) and once directly
against Kafka 4.4 share groups; what the tools print must agree. Differences that remain are in
docs/conformance.md.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from confluent_kafka import Producer, ShareConsumer

from proxy.thread import ProxyThread
from sharegroup.kafka_tools import (
    CONFIGS,
    CONSOLE_SHARE_CONSUMER,
    SHARE_CONSUMER_PERF,
    SHARE_GROUPS,
    VERIFIABLE_SHARE_CONSUMER,
    run_tool,
)
from tests.conftest import PROXY_CONFIGS, Target
from tests.integration.test_share_consumers import new_topic, records, set_group_configs

pytestmark = pytest.mark.integration

DEADLINE_S = 60.0


@pytest.fixture(params=["proxy-kafka39", "kafka4"])
def tool_target(request: pytest.FixtureRequest) -> Iterator[Target]:
    """The proxy on Kafka 3.9, and Kafka 4.4 share groups, the reference."""
    if request.param == "kafka4":
        yield Target("kafka4", request.getfixturevalue("kafka4").bootstrap)
        return
    broker = request.getfixturevalue("kafka39")
    with ProxyThread(broker.bootstrap, PROXY_CONFIGS) as p:
        yield Target(request.param, p.bootstrap)


# ---------------------------------------------------------------------- helpers
def share_groups(t: Target, *args: str, rc: int = 0) -> str:
    """Run kafka-share-groups; returns stdout and stderr (the tool exits 0 even for most errors)."""
    r = run_tool(SHARE_GROUPS, ["--bootstrap-server", t.bootstrap, *args])
    assert r.returncode == rc, f"kafka-share-groups {args} exited {r.returncode}:\n{r.stderr}"
    return r.stdout + r.stderr


def table(output: str) -> list[dict[str, str]]:
    """The rows of the tool's table as dicts keyed by column header."""
    lines = [ln for ln in output.splitlines() if ln.strip()]
    starts = [i for i, ln in enumerate(lines) if ln.startswith("GROUP ") or ln == "GROUP"]
    assert starts, f"no table in:\n{output}"
    rows: list[dict[str, str]] = []
    for start in starts:
        header = lines[start].replace("COORDINATOR (ID)", "COORDINATOR(ID)").split()
        for line in lines[start + 1 :]:
            if line.startswith(("GROUP ", "Share group")):
                break
            cells = re.sub(r"\s+\((\d+)\)", r"(\1)", line).split()
            assert len(cells) == len(header), f"{header} vs {cells}"
            rows.append(dict(zip(header, cells, strict=True)))
    return rows


def offsets(t: Target, group: str) -> dict[int, tuple[str, str]]:
    """partition -> (START-OFFSET, LAG) as ``--describe`` shows them."""
    return {
        int(r["PARTITION"]): (r["START-OFFSET"], r["LAG"])
        for r in table(share_groups(t, "--describe", "--group", group))
    }


def lags(t: Target, group: str) -> dict[int, str]:
    """partition -> LAG. Right after acknowledgements only the lag is compared: Kafka 4.4
    shows the start offset of its previous state write (docs/conformance.md)."""
    return {p: lag for p, (_, lag) in offsets(t, group).items()}


def wait_for(what: str, probe: Callable[[], object], want: object) -> None:
    deadline = time.monotonic() + DEADLINE_S
    got = probe()
    while got != want:
        assert time.monotonic() < deadline, f"{what}: still {got!r}, want {want!r}"
        time.sleep(0.5)
        got = probe()


def produce_to(
    bootstrap: str,
    topic: str,
    counts: dict[int, int],
    ts: list[int] | None = None,
    start: int = 0,
) -> None:
    """``counts[p]`` records on partition p, values "p-i" from ``start``; the i-th record of a
    partition gets timestamp ``ts[i]``."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    for p, n in counts.items():
        for i in range(n):
            value = f"{p}-{start + i}".encode()
            if ts:
                producer.produce(topic, value=value, partition=p, timestamp=ts[i])
            else:
                producer.produce(topic, value=value, partition=p)
    assert producer.flush(30) == 0


def group_with_records(t: Target, counts: dict[int, int]) -> tuple[str, str]:
    topic = new_topic(t.bootstrap, len(counts))
    group = f"g-{uuid.uuid4().hex[:8]}"
    set_group_configs(t.bootstrap, group, {"share.auto.offset.reset": "earliest"})
    produce_to(t.bootstrap, topic, counts)
    return topic, group


def consume_all(c: ShareConsumer, total: int) -> None:
    """Poll until ``total`` records came, acknowledging (implicitly) and committing them."""
    got = 0
    deadline = time.monotonic() + DEADLINE_S
    while got < total:
        assert time.monotonic() < deadline, f"consumed {got} of {total}"
        got += len(records(c.poll(0.5)))
    c.commit_sync()


# ---------------------------------------------------------------------- kafka-share-groups
def test_list_and_describe_a_live_group(tool_target: Target) -> None:
    t = tool_target
    topic, group = group_with_records(t, {0: 12, 1: 8})
    c = ShareConsumer(
        {"bootstrap.servers": t.bootstrap, "group.id": group, "client.id": "tools-test"}
    )
    c.subscribe([topic])
    try:
        consume_all(c, 20)
        wait_for("lag", lambda: lags(t, group), {0: "0", 1: "0"})

        assert group in share_groups(t, "--list").split()
        assert {"GROUP": group, "STATE": "Stable"} in table(share_groups(t, "--list", "--state"))
        assert {"GROUP": group, "STATE": "Stable"} in table(
            share_groups(t, "--list", "--state", "Stable")
        )
        assert group not in share_groups(t, "--list", "--state", "Empty")

        [member] = table(share_groups(t, "--describe", "--group", group, "--members"))
        assert (member["GROUP"], member["HOST"], member["CLIENT-ID"]) == (
            group,
            "/127.0.0.1",
            "tools-test",
        )
        assert (member["#PARTITIONS"], member["ASSIGNMENT"]) == ("2", f"{topic}:0,1")
        [verbose] = table(share_groups(t, "--describe", "--group", group, "--members", "--verbose"))
        assert int(verbose["MEMBER-EPOCH"]) > 0
        assert verbose["CONSUMER-ID"] == member["CONSUMER-ID"]

        [state] = table(share_groups(t, "--describe", "--group", group, "--state"))
        assert (state["STATE"], state["#MEMBERS"]) == ("Stable", "1")
        assert state["COORDINATOR(ID)"].startswith("127.0.0.1:")
        [vstate] = table(share_groups(t, "--describe", "--group", group, "--state", "--verbose"))
        assert int(vstate["GROUP-EPOCH"]) >= int(vstate["ASSIGNMENT-EPOCH"]) > 0

        rows = table(share_groups(t, "--describe", "--group", group, "--offsets", "--verbose"))
        assert [(r["TOPIC"], r["PARTITION"], r["LAG"]) for r in rows] == [
            (topic, "0", "0"),
            (topic, "1", "0"),
        ]
        assert {r["LEADER-EPOCH"] for r in rows} == {"0"}
        every = table(share_groups(t, "--describe", "--all-groups"))
        assert [(r["PARTITION"], r["LAG"]) for r in every if r["GROUP"] == group] == [
            ("0", "0"),
            ("1", "0"),
        ]

        # Offsets of a group with members cannot be reset, nor the group deleted.
        out = share_groups(
            t,
            "--reset-offsets",
            "--group",
            group,
            "--all-topics",
            "--to-earliest",
            "--execute",
            rc=1,
        )
        assert out == f"Share group '{group}' is not empty.\n", out
        out = share_groups(t, "--delete", "--group", group)
        assert f"Share group '{group}' is not EMPTY" in out, out
    finally:
        c.close()
    [state] = table(share_groups(t, "--describe", "--group", group, "--state"))
    assert (state["STATE"], state["#MEMBERS"]) == ("Empty", "0")
    assert {"GROUP": group, "STATE": "Empty"} in table(
        share_groups(t, "--list", "--state", "Empty")
    )


def test_reset_offsets_with_every_option(tool_target: Target, tmp_path: Path) -> None:
    t = tool_target
    topic = new_topic(t.bootstrap, 2)
    group = f"g-{uuid.uuid4().hex[:8]}"
    set_group_configs(t.bootstrap, group, {"share.auto.offset.reset": "earliest"})
    hour = 3_600_000
    now = int(time.time() * 1000)
    # Partition 0: 6 records two hours old, then 6 one hour old; partition 1: 6 and 2.
    produce_to(t.bootstrap, topic, {0: 12, 1: 8}, ts=[now - 2 * hour] * 6 + [now - hour] * 6)
    c = ShareConsumer({"bootstrap.servers": t.bootstrap, "group.id": group})
    c.subscribe([topic])
    try:
        consume_all(c, 20)
    finally:
        c.close()
    wait_for("lag", lambda: lags(t, group), {0: "0", 1: "0"})

    def reset(*spec: str) -> list[tuple[str, str]]:
        out = share_groups(t, "--reset-offsets", "--group", group, *spec)
        return sorted((r["PARTITION"], r["NEW-OFFSET"]) for r in table(out) if r["TOPIC"] == topic)

    assert reset("--topic", topic, "--to-earliest", "--dry-run") == [("0", "0"), ("1", "0")]
    assert lags(t, group) == {0: "0", 1: "0"}  # a dry run changes nothing
    assert reset("--topic", topic, "--to-earliest", "--execute") == [("0", "0"), ("1", "0")]
    assert offsets(t, group) == {0: ("0", "12"), 1: ("0", "8")}
    assert reset("--all-topics", "--to-latest", "--execute") == [("0", "12"), ("1", "8")]
    assert offsets(t, group) == {0: ("12", "0"), 1: ("8", "0")}
    assert reset("--topic", topic, "--to-offset", "5", "--execute") == [("0", "5"), ("1", "5")]
    assert offsets(t, group) == {0: ("5", "7"), 1: ("5", "3")}
    assert reset("--all-topics", "--to-current", "--execute") == [("0", "5"), ("1", "5")]
    half = datetime.fromtimestamp((now - hour * 3 // 2) / 1000, UTC)
    when = half.strftime("%Y-%m-%dT%H:%M:%S.000") + "Z"
    assert reset("--all-topics", "--to-datetime", when, "--execute") == [("0", "6"), ("1", "6")]
    assert offsets(t, group) == {0: ("6", "6"), 1: ("6", "2")}
    assert reset("--topic", f"{topic}:1", "--to-earliest", "--execute") == [("1", "0")]
    assert offsets(t, group) == {0: ("6", "6"), 1: ("0", "8")}

    exported = share_groups(
        t,
        "--reset-offsets",
        "--group",
        group,
        "--all-topics",
        "--to-offset",
        "3",
        "--export",
        "--dry-run",
    )
    assert sorted(ln for ln in exported.splitlines() if ln) == [f"{topic},0,3", f"{topic},1,3"]
    assert offsets(t, group) == {0: ("6", "6"), 1: ("0", "8")}
    csv = tmp_path / "offsets.csv"
    csv.write_text(f"{topic},0,2\n{topic},1,7\n", encoding="utf-8")
    assert reset("--from-file", str(csv), "--execute") == [("0", "2"), ("1", "7")]
    assert offsets(t, group) == {0: ("2", "10"), 1: ("7", "1")}

    out = share_groups(t, "--delete-offsets", "--group", group, "--topic", topic)
    assert [(r["TOPIC"], r["STATUS"]) for r in table_of(out, "TOPIC")] == [(topic, "Successful")]
    assert f"Share group '{group}' has no offset information." in share_groups(
        t, "--describe", "--group", group
    )


def table_of(output: str, first: str) -> list[dict[str, str]]:
    """Rows of a table whose header starts with ``first`` (not GROUP)."""
    lines = [ln for ln in output.splitlines() if ln.strip()]
    start = next(i for i, ln in enumerate(lines) if ln.split()[0] == first)
    header = lines[start].split()
    return [dict(zip(header, ln.split(), strict=True)) for ln in lines[start + 1 :]]


def test_delete_a_group_and_what_it_looks_like_afterwards(tool_target: Target) -> None:
    t = tool_target
    topic, group = group_with_records(t, {0: 3})
    c = ShareConsumer({"bootstrap.servers": t.bootstrap, "group.id": group})
    c.subscribe([topic])
    try:
        consume_all(c, 3)
    finally:
        c.close()
    wait_for("lag", lambda: lags(t, group), {0: "0"})

    out = share_groups(t, "--delete", "--group", group)
    assert f"Deletion of requested share groups ('{group}') was successful." in out, out
    assert group not in share_groups(t, "--list").split()
    assert group not in share_groups(t, "--list", "--state")
    out = share_groups(t, "--describe", "--group", group)
    assert f"GroupIdNotFoundException: Group {group} not found." in out, out
    out = share_groups(t, "--delete", "--group", group)
    assert f"Group '{group}' is not a share group." in out, out
    # The group's configs outlive it, as in Kafka.
    assert "share.auto.offset.reset=earliest" in configs(t, group, "--describe")

    # A new member starts the group afresh from the configured earliest offset.
    c = ShareConsumer({"bootstrap.servers": t.bootstrap, "group.id": group})
    c.subscribe([topic])
    try:
        consume_all(c, 3)
        assert group in share_groups(t, "--list").split()
    finally:
        c.close()


# ---------------------------------------------------------------------- kafka-configs
def configs(t: Target, group: str, *args: str) -> str:
    r = run_tool(
        CONFIGS,
        [
            "--bootstrap-server",
            t.bootstrap,
            "--entity-type",
            "groups",
            "--entity-name",
            group,
            *args,
        ],
    )
    assert r.returncode == 0, f"kafka-configs {args} exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
    return r.stdout


def test_configs_alter_and_describe_groups(tool_target: Target) -> None:
    t = tool_target
    group = f"g-{uuid.uuid4().hex[:8]}"
    out = configs(
        t,
        group,
        "--alter",
        "--add-config",
        "share.record.lock.duration.ms=20000,share.auto.offset.reset=earliest",
    )
    assert f"Completed updating config for group {group}." in out
    assert configs(t, group, "--describe").splitlines() == [
        f"Dynamic configs for group {group} are:",
        "  share.auto.offset.reset=earliest sensitive=false synonyms="
        "{DYNAMIC_GROUP_CONFIG:share.auto.offset.reset=earliest, DEFAULT_CONFIG:share.auto.offset.reset=latest}",
        "  share.record.lock.duration.ms=20000 sensitive=false synonyms="
        "{DYNAMIC_GROUP_CONFIG:share.record.lock.duration.ms=20000, "
        "DEFAULT_CONFIG:group.share.record.lock.duration.ms=30000}",
    ]
    configs(t, group, "--alter", "--delete-config", "share.record.lock.duration.ms")
    described = configs(t, group, "--describe")
    assert "share.record.lock.duration.ms" not in described
    assert "share.auto.offset.reset=earliest" in described
    # Configs alone do not make a group.
    assert group not in share_groups(t, "--list").split()
    r = run_tool(
        CONFIGS,
        [
            "--bootstrap-server",
            t.bootstrap,
            "--entity-type",
            "groups",
            "--entity-name",
            group,
            "--alter",
            "--add-config",
            "share.record.lock.duration.ms=10",
        ],
    )
    assert r.returncode != 0
    assert "InvalidConfigurationException" in r.stdout + r.stderr


# ---------------------------------------------------------------------- share consumer tools
def console(t: Target, topic: str, group: str, *args: str) -> tuple[list[str], str]:
    r = run_tool(
        CONSOLE_SHARE_CONSUMER,
        [
            "--bootstrap-server",
            t.bootstrap,
            "--topic",
            topic,
            "--group",
            group,
            "--formatter-property",
            "print.partition=true",
            "--formatter-property",
            "print.offset=true",
            "--formatter-property",
            "print.delivery=true",
            "--timeout-ms",
            "20000",
            *args,
        ],
    )
    assert r.returncode == 0, r.stderr
    return [ln for ln in r.stdout.splitlines() if ln], r.stderr


def test_console_share_consumer_accept_release_reject(tool_target: Target) -> None:
    t = tool_target
    topic, group = group_with_records(t, {0: 1})
    # --release: the one record comes back with a higher delivery count each time.
    lines, err = console(t, topic, group, "--release", "--max-messages", "3")
    assert "Processed a total of 3 messages" in err
    assert [ln.split("\t") for ln in lines] == [
        ["Partition:0", "Offset:0", f"Delivery:{n}", "0-0"] for n in (1, 2, 3)
    ]
    # --reject: gone for good.
    produce_to(t.bootstrap, topic, {0: 2})
    lines, err = console(t, topic, group, "--reject", "--max-messages", "3")
    assert [ln.split("\t")[1:] for ln in lines] == [
        ["Offset:0", "Delivery:4", "0-0"],
        ["Offset:1", "Delivery:1", "0-0"],
        ["Offset:2", "Delivery:1", "0-1"],
    ]
    wait_for("lag", lambda: lags(t, group), {0: "0"})
    # Accepting (the default), after more records.
    produce_to(t.bootstrap, topic, {0: 2}, start=2)
    lines, _ = console(t, topic, group, "--max-messages", "2")
    assert [ln.split("\t")[1:] for ln in lines] == [
        ["Offset:3", "Delivery:1", "0-2"],
        ["Offset:4", "Delivery:1", "0-3"],
    ]
    wait_for("lag", lambda: lags(t, group), {0: "0"})
    # Nothing is left to deliver: the consumer gives up after its timeout.
    r = run_tool(
        CONSOLE_SHARE_CONSUMER,
        [
            "--bootstrap-server",
            t.bootstrap,
            "--topic",
            topic,
            "--group",
            group,
            "--timeout-ms",
            "3000",
        ],
    )
    assert r.stdout == ""
    assert "Processed a total of 0 messages" in r.stderr


@pytest.mark.parametrize("mode", ["auto", "sync", "async"])
def test_verifiable_share_consumer(tool_target: Target, mode: str) -> None:
    t = tool_target
    topic = new_topic(t.bootstrap, 2)
    produce_to(t.bootstrap, topic, {0: 15, 1: 15})
    group = f"g-{uuid.uuid4().hex[:8]}"
    r = run_tool(
        VERIFIABLE_SHARE_CONSUMER,
        [
            "--bootstrap-server",
            t.bootstrap,
            "--topic",
            topic,
            "--group-id",
            group,
            "--max-messages",
            "30",
            "--acknowledgement-mode",
            mode,
            "--offset-reset-strategy",
            "earliest",
        ],
    )
    assert r.returncode == 0, r.stderr
    events = [json.loads(ln) for ln in r.stdout.splitlines() if ln.startswith("{")]
    names = [e["name"] for e in events]
    assert "startup_complete" in names, names
    consumed = sum(e["count"] for e in events if e["name"] == "records_consumed")
    assert consumed == 30, names
    acked = [e for e in events if e["name"] == "offsets_acknowledged"]
    assert acked and all(e["success"] for e in acked), acked
    assert sum(len(p["offsets"]) for e in acked for p in e["partitions"]) == 30
    assert names[-1] == "shutdown_requested", names
    wait_for("lag", lambda: lags(t, group), {0: "0", 1: "0"})


def test_share_consumer_perf_test(tool_target: Target) -> None:
    t = tool_target
    topic, group = group_with_records(t, {0: 500, 1: 500})
    r = run_tool(
        SHARE_CONSUMER_PERF,
        [
            "--bootstrap-server",
            t.bootstrap,
            "--topic",
            topic,
            "--group",
            group,
            "--num-records",
            "1000",
        ],
    )
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stdout.splitlines() if ln.strip()]
    header = [h.strip() for h in lines[0].split(",")]
    row = dict(zip(header, (v.strip() for v in lines[-1].split(",")), strict=True))
    assert (
        int(row["nMsg.consumed"] if "nMsg.consumed" in row else row["data.consumed.in.nMsg"])
        == 1000
    )
