"""``sharegroup top`` in a real terminal (tmux), against the proxy and against Kafka 4.4."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import ShareConsumer

from proxy.metrics import metrics_of
from proxy.thread import ProxyThread
from tests.conftest import PROXY_CONFIGS
from tests.integration.test_kafka_tools import consume_all, produce_to
from tests.integration.test_share_consumers import new_topic, records, set_group_configs

pytestmark = pytest.mark.integration

DEADLINE_S = 60.0
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["proxy-kafka39", "kafka4"])
def top_target(request: pytest.FixtureRequest) -> Iterator[tuple[str, str | None]]:
    """(bootstrap, metrics URL or None): the proxy on Kafka 3.9, and Kafka 4.4 itself."""
    if request.param == "kafka4":
        yield request.getfixturevalue("kafka4").bootstrap, None
        return
    broker = request.getfixturevalue("kafka39")
    configs = {**PROXY_CONFIGS, "sharegroup.metrics.listen": "127.0.0.1:0"}
    with ProxyThread(broker.bootstrap, configs) as p:
        assert p.proxy is not None
        m = metrics_of(p.proxy)
        assert m is not None
        yield p.bootstrap, f"http://127.0.0.1:{m.port}/metrics"


class Tmux:
    """One detached tmux session running a command in a 160x50 terminal, on a tmux server of
    its own (own socket, no user config: nothing else decides the window size)."""

    def __init__(self, command: list[str]) -> None:
        tmux = shutil.which("tmux")
        assert tmux is not None, "tmux is needed (.ci/run installs it)"
        self.name = f"sgtop-{uuid.uuid4().hex[:8]}"
        self.tmux = [tmux, "-L", self.name]
        size = ["-x", "160", "-y", "50"]
        subprocess.run(
            [*self.tmux, "-f", "/dev/null", "new-session", "-d", "-s", self.name, *size, *command],
            check=True,
            cwd=ROOT,
        )

    def screen(self) -> list[str]:
        out = subprocess.run(
            [*self.tmux, "capture-pane", "-p", "-t", self.name],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.splitlines()

    def wait_for(self, what: str, found: Callable[[list[str]], bool]) -> list[str]:
        deadline = time.monotonic() + DEADLINE_S
        while True:
            lines = self.screen()
            if found(lines):
                return lines
            assert time.monotonic() < deadline, f"{what} not on screen:\n" + "\n".join(lines)
            time.sleep(0.3)

    def alive(self) -> bool:
        return (
            subprocess.run(
                [*self.tmux, "has-session", "-t", self.name], capture_output=True, check=False
            ).returncode
            == 0
        )

    def keys(self, keys: str) -> None:
        subprocess.run([*self.tmux, "send-keys", "-t", self.name, keys], check=True)

    def kill(self) -> None:
        subprocess.run([*self.tmux, "kill-server"], capture_output=True, check=False)


def row_of(lines: list[str], topic: str, partition: int) -> list[str] | None:
    for line in lines:
        cells = line.split()
        if len(cells) > 2 and cells[0] == topic and cells[1] == str(partition):
            return cells
    return None


def test_top_shows_groups_members_partitions_lag_and_refreshes(
    top_target: tuple[str, str | None],
) -> None:
    bootstrap, metrics = top_target
    topic = new_topic(bootstrap, 2)
    group = f"g-{uuid.uuid4().hex[:8]}"
    set_group_configs(bootstrap, group, {"share.auto.offset.reset": "earliest"})
    produce_to(bootstrap, topic, {0: 6, 1: 4})
    c = ShareConsumer({"bootstrap.servers": bootstrap, "group.id": group, "client.id": "top-test"})
    c.subscribe([topic])
    command = [sys.executable, "-m", "sharegroup.cli", "top", "--bootstrap-server", bootstrap]
    # Only this test's group: a session-wide broker holds other tests' groups, which would push
    # it off a 50-line screen.
    command += ["--interval", "0.5", "--group", group] + (["--metrics", metrics] if metrics else [])
    term: Tmux | None = None
    try:
        consume_all(c, 10)
        # Five more on partition 0, delivered but not acknowledged: lag 5, and in the proxy's
        # window 5 records acquired (or available again, had their locks expired).
        produce_to(bootstrap, topic, {0: 5}, start=6)
        held = 0
        deadline = time.monotonic() + DEADLINE_S
        while held < 5:
            assert time.monotonic() < deadline, f"delivered {held} of 5"
            held += len(records(c.poll(0.5)))
        term = Tmux(command)

        def lag_is(want0: str, want1: str) -> Callable[[list[str]], bool]:
            def check(lines: list[str]) -> bool:
                r0, r1 = row_of(lines, topic, 0), row_of(lines, topic, 1)
                return r0 is not None and r1 is not None and (r0[4], r1[4]) == (want0, want1)

            return check

        lines = term.wait_for("lag 5 and 0", lag_is("5", "0"))
        assert lines[0].startswith("sharegroup top - ")
        [group_line] = [ln for ln in lines if ln.startswith(f"GROUP {group} ")]
        assert "state Stable" in group_line and "members 1" in group_line, group_line
        [member_line] = [ln for ln in lines if ln.strip().startswith("member ")]
        assert "top-test" in member_line and f"{topic}:0,{topic}:1" in member_line
        r0 = row_of(lines, topic, 0)
        assert r0 is not None and r0[3] == "11"  # log end
        if metrics:  # the proxy's records by state: 5 acquired or available, none acked
            [header] = [ln for ln in lines if ln.strip().startswith("TOPIC ")]
            assert header.split()[7:11] == ["AVAIL", "ACQUI", "ACKNO", "ARCHI"], header
            assert sum(map(int, r0[7:9])) == 5 and r0[9:11] == ["0", "0"]

        # More records: the same screen shows the new lag and a positive rate in.
        produce_to(bootstrap, topic, {1: 3}, start=4)
        lines = term.wait_for("lag 5 and 3", lag_is("5", "3"))
        assert sum(ln.startswith(f"GROUP {group} ") for ln in lines) == 1  # redrawn in place
        term.keys("q")
        deadline = time.monotonic() + 10
        while term.alive():
            assert time.monotonic() < deadline, "q did not end sharegroup top"
            time.sleep(0.2)
    finally:
        if term is not None:
            term.kill()
        c.close()


def test_top_once_prints_one_frame(top_target: tuple[str, str | None]) -> None:
    bootstrap, _ = top_target
    out = subprocess.run(
        [sys.executable, "-m", "sharegroup.cli", "top", "--bootstrap-server", bootstrap, "--once"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        timeout=60,
    )
    assert out.stdout.startswith("sharegroup top - ")
