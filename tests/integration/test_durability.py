"""Durable share-group state: crash recovery, single-writer fencing, and the offsets CLI.

The proxy runs as a real process (``sharegroup proxy``) so that a crash is a SIGKILL.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from confluent_kafka import AcknowledgeType, Consumer, Message, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import ConfigResource
from confluent_kafka.admin._resource import ResourceType

from sharegroup.brokers import Broker
from sharegroup.cli import offsets as offsets_cli
from tests.harness import ProxyThread
from tests.integration.test_share_consumers import (
    consumer,
    count_of,
    key_of,
    new_topic,
    poll_until,
    produce,
    set_group_configs,
)

pytestmark = pytest.mark.integration
SHAREGROUP = Path(sys.executable).with_name("sharegroup")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def proxy_process(upstream: str, port: int, *extra: str) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [
            str(SHAREGROUP),
            "proxy",
            "--bootstrap-server",
            upstream,
            "--listen",
            f"127.0.0.1:{port}",
            "--config",
            "group.share.min.record.lock.duration.ms=1000",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if "bootstrap.servers=" not in line:
            proc.kill()
            _, err = proc.communicate(timeout=10)
            raise AssertionError(f"proxy did not start: {line!r} {err[-2000:]}")
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture(params=["tansu", "kafka39"])
def upstream(request: pytest.FixtureRequest) -> Broker:
    broker: Broker = request.getfixturevalue(request.param)
    return broker


def test_crash_keeps_acknowledged_records_and_persisted_delivery_counts(upstream: Broker) -> None:
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    group = f"g-{uuid.uuid4().hex[:8]}"
    with proxy_process(upstream.bootstrap, port) as first:
        topic = new_topic(bootstrap)
        set_group_configs(bootstrap, group, {"share.auto.offset.reset": "earliest"})
        produce(bootstrap, topic, 15, per_batch=5)
        c = consumer(bootstrap, group, topic, **{"share.acknowledgement.mode": "explicit"})
        seen: set[int] = set()

        def settle(m: Message) -> None:
            offset = key_of(m)[1]
            seen.add(offset)
            c.acknowledge(m, AcknowledgeType.ACCEPT if offset < 10 else AcknowledgeType.RELEASE)

        poll_until(c, lambda: len(seen) >= 15, 30, settle)
        results = c.commit_sync(30)
        assert results and all(v is None for v in results.values()), results  # durable first
        # 10-14 come back (delivery 2) and stay acquired, unacknowledged, through the crash.
        again: list[Message] = []
        poll_until(c, lambda: bool(again), 20, again.append)
        assert sorted((key_of(m)[1], count_of(m)) for m in again) == [(o, 2) for o in range(10, 15)]
        # 15-29: some are acquired for the first time (never persisted) when the proxy dies.
        produce(bootstrap, topic, 15, per_batch=5, start=15)
        c2 = consumer(bootstrap, group, topic, **{"share.acknowledgement.mode": "explicit"})
        held: list[Message] = []
        poll_until(c2, lambda: bool(held), 20, held.append)
        assert held and all(key_of(m)[1] >= 15 and count_of(m) == 1 for m in held)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
    with proxy_process(upstream.bootstrap, port):
        c.close()
        c2.close()
        d = consumer(bootstrap, group, topic)
        got: dict[int, int] = {}
        try:
            poll_until(
                d, lambda: len(got) >= 20, 40, lambda m: got.setdefault(key_of(m)[1], count_of(m))
            )
            poll_until(d, lambda: False, 2, lambda m: got.setdefault(key_of(m)[1], -1))
            d.commit_sync(30)
        finally:
            d.close()
        assert set(got) == set(range(10, 30)), "acknowledged records came back, or some were lost"
        # Released then re-acquired before the crash: the last persisted count (1) + 1.
        assert {o: got[o] for o in range(10, 15)} == dict.fromkeys(range(10, 15), 2)
        # Acquired but never persisted: delivered again as new.
        assert {o: got[o] for o in range(15, 30)} == dict.fromkeys(range(15, 30), 1)
        rows = offsets_cli.describe_offsets(bootstrap, group, [topic])
        assert rows == [(topic, 0, 30, 0)]
        admin = AdminClient({"bootstrap.servers": bootstrap})
        configs = admin.describe_configs([ConfigResource(ResourceType.GROUP, group)])
        [described] = [f.result(10) for f in configs.values()]
        assert described["share.auto.offset.reset"].value == "earliest"  # survived the crash


def test_second_instance_fences_the_first_and_state_stays_right(kafka39: Broker) -> None:
    port_a, port_b = free_port(), free_port()
    group = f"g-{uuid.uuid4().hex[:8]}"
    with proxy_process(kafka39.bootstrap, port_a) as a:
        boot_a = f"127.0.0.1:{port_a}"
        topic = new_topic(boot_a)
        set_group_configs(boot_a, group, {"share.auto.offset.reset": "earliest"})
        produce(boot_a, topic, 10)
        ca = consumer(boot_a, group, topic, **{"share.acknowledgement.mode": "explicit"})
        first: list[Message] = []
        poll_until(ca, lambda: len(first) >= 10, 30, first.append)
        for m in first:
            ca.acknowledge(m, AcknowledgeType.ACCEPT)
        confirmed = ca.commit_sync(30)
        assert confirmed and all(v is None for v in confirmed.values()), confirmed
        accepted = {key_of(m)[1] for m in first}
        assert accepted == set(range(10))
        # A acquires 10-19 and holds them, unacknowledged, when B starts.
        produce(boot_a, topic, 10, start=10)
        held: list[Message] = []
        poll_until(ca, lambda: len(held) >= 10, 30, held.append)
        assert sorted(key_of(m)[1] for m in held) == list(range(10, 20))
        with proxy_process(kafka39.bootstrap, port_b):
            boot_b = f"127.0.0.1:{port_b}"
            # B recovered from the state topic and fenced A: A's acknowledgements are refused.
            for m in held:
                ca.acknowledge(m, AcknowledgeType.ACCEPT)
            outcome = ca.commit_sync(30)
            assert outcome, "no acknowledgement outcome at all"
            assert all(v is not None for v in outcome.values()), outcome
            ca.close()
            cb = consumer(boot_b, group, topic)
            got: dict[int, int] = {}
            try:
                poll_until(
                    cb,
                    lambda: len(got) >= 20 - len(accepted),
                    40,
                    lambda m: got.setdefault(key_of(m)[1], count_of(m)),
                )
                poll_until(cb, lambda: False, 2, lambda m: got.setdefault(key_of(m)[1], -1))
            finally:
                cb.close()
            assert not accepted & set(got), "a confirmed acknowledgement was lost"
            # The refused acknowledgements changed nothing, and A's acquisitions were never
            # written: 10-19 come back from B as new records.
            assert got == dict.fromkeys(range(10, 20), 1), got
        assert a.poll() is None or a.returncode == 0


def test_offsets_cli_describe_reset_delete_copy(
    tansu: Broker, capsys: pytest.CaptureFixture[str]
) -> None:
    from sharegroup.cli.main import main

    with ProxyThread(tansu.bootstrap) as p:
        topic = new_topic(p.bootstrap, 2)
        for part in (0, 1):
            produce(p.bootstrap, topic, 20, partition=part)
        # A classic consumer group commits offsets 5 and 7.
        classic = f"c-{uuid.uuid4().hex[:6]}"
        cg = Consumer(
            {"bootstrap.servers": p.bootstrap, "group.id": classic, "session.timeout.ms": 6000}
        )
        cg.commit(
            offsets=[TopicPartition(topic, 0, 5), TopicPartition(topic, 1, 7)], asynchronous=False
        )
        cg.close()
        share = f"s-{uuid.uuid4().hex[:6]}"
        assert (
            main(
                [
                    "offsets",
                    "copy",
                    "--bootstrap-server",
                    p.bootstrap,
                    "--from-consumer-group",
                    classic,
                    "--to-share-group",
                    share,
                ]
            )
            == 0
        )
        assert "copied 2 partition offsets" in capsys.readouterr().out
        assert (
            main(["offsets", "describe", "--bootstrap-server", p.bootstrap, "--group", share]) == 0
        )
        out = capsys.readouterr().out
        assert f"{topic}  0          5" in out and f"{topic}  1          7" in out
        # The share group starts where the consumer group was.
        sc = consumer(p.bootstrap, share, topic)
        seen: list[tuple[int, int]] = []
        try:
            poll_until(sc, lambda: len(seen) >= 28, 30, lambda m: seen.append(key_of(m)))
            # Members present: resets are refused with a clear message.
            assert (
                main(
                    [
                        "offsets",
                        "reset",
                        "--bootstrap-server",
                        p.bootstrap,
                        "--group",
                        share,
                        "--topic",
                        topic,
                        "--to-earliest",
                        "--execute",
                    ]
                )
                == 1
            )
            assert "has active members" in capsys.readouterr().err
            sc.commit_sync()
        finally:
            sc.close()
        assert sorted(seen) == [(0, o) for o in range(5, 20)] + [(1, o) for o in range(7, 20)]
        assert (
            main(
                [
                    "offsets",
                    "reset",
                    "--bootstrap-server",
                    p.bootstrap,
                    "--group",
                    share,
                    "--topic",
                    topic,
                    "--partition",
                    "0",
                    "--to-offset",
                    "2",
                    "--execute",
                ]
            )
            == 0
        )
        assert offsets_cli.describe_offsets(p.bootstrap, share, [topic])[0][:3] == (
            topic,
            0,
            2,
        )
        assert (
            main(
                [
                    "offsets",
                    "delete",
                    "--bootstrap-server",
                    p.bootstrap,
                    "--group",
                    share,
                    "--topic",
                    topic,
                ]
            )
            == 0
        )
        assert offsets_cli.describe_offsets(p.bootstrap, share, None) == []
        # Clear errors.
        capsys.readouterr()
        assert (
            main(
                [
                    "offsets",
                    "copy",
                    "--bootstrap-server",
                    p.bootstrap,
                    "--from-consumer-group",
                    "nobody",
                    "--to-share-group",
                    share,
                ]
            )
            == 1
        )
        assert "has no committed offsets" in capsys.readouterr().err
        assert (
            main(
                [
                    "offsets",
                    "copy",
                    "--bootstrap-server",
                    p.bootstrap,
                    "--from-consumer-group",
                    classic,
                    "--to-share-group",
                    share,
                    "--topic",
                    "not-there",
                ]
            )
            == 1
        )
        assert "no committed offsets for not-there" in capsys.readouterr().err
        assert (
            main(
                ["offsets", "describe", "--bootstrap-server", p.bootstrap, "--group", "never-seen"]
            )
            == 1
        )
        assert "GROUP_ID_NOT_FOUND" in capsys.readouterr().err
