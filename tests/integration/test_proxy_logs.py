"""``sharegroup proxy`` as a user runs it: its own lines only, as text or JSON, from start to stop."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sharegroup.brokers import Broker

pytestmark = pytest.mark.integration

SHAREGROUP = Path(sys.executable).with_name("sharegroup")
TEXT_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (INFO|WARNING|ERROR) (sharegroup[\w.]*): "
)


def run_proxy(broker: Broker | None, log_format: str) -> tuple[str, list[str]]:
    """Start the proxy (with its own local broker when ``broker`` is None), wait until it
    listens, stop it with SIGTERM: (stdout, stderr lines)."""
    upstream = ["--bootstrap-server", broker.bootstrap] if broker is not None else []
    proc = subprocess.Popen(
        [
            str(SHAREGROUP),
            "proxy",
            *upstream,
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--log-format",
            log_format,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # blocks until the proxy serves (or dies: "")
        assert first.startswith("sharegroup proxy listening; bootstrap.servers="), first
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    return first + out, err.splitlines()


def test_text_logs_are_the_proxys_own_lines(kafka39: Broker) -> None:
    _, lines = run_proxy(kafka39, "text")
    assert lines, "the proxy logged nothing"
    for line in lines:
        assert TEXT_LINE.match(line), f"not one of the proxy's own lines: {line!r}"
    assert any("metrics on http://127.0.0.1:" in ln for ln in lines), lines
    assert lines[-1].endswith("SIGTERM: stopping"), lines


def test_a_proxy_with_its_own_local_broker_logs_only_its_own_lines() -> None:
    _, lines = run_proxy(None, "text")
    for line in lines:
        assert TEXT_LINE.match(line), f"not one of the proxy's own lines: {line!r}"
    assert any("started a local in-memory broker (Tansu)" in ln for ln in lines), lines


def test_json_logs_are_one_object_per_line(kafka39: Broker) -> None:
    _, lines = run_proxy(kafka39, "json")
    events = [json.loads(line) for line in lines]
    assert {e["logger"].split(".")[0] for e in events} == {"sharegroup"}
    assert {e["level"] for e in events} <= {"INFO", "WARNING"}
    assert events[-1]["message"] == "SIGTERM: stopping"
