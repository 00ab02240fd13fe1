"""The live subset: every scenario tagged ``live`` runs with real librdkafka share consumers
through the proxy against a real broker (Tansu, started once for the module), and passes. A
fleet's scenarios (``given.fleet``) run against Kafka 3.9 (the session's), whose topic ids the
fleet's instances agree on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sharegroup.brokers import Broker, start_tansu
from sharegroup.cli.scenario_live import LiveRunner
from sharegroup.scenario.load import load

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ALL_LIVE = sorted(p for p in (ROOT / "scenarios").glob("*.yaml") if "live" in load(p).tags)
LIVE = [p for p in ALL_LIVE if load(p).fleet is None]
FLEET = [p for p in ALL_LIVE if load(p).fleet is not None]


def test_the_live_subset_has_at_least_eight_scenarios_and_a_fleet() -> None:
    assert len(LIVE) >= 8
    assert FLEET


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    with start_tansu() as b:
        yield b


@pytest.mark.parametrize("path", LIVE, ids=lambda p: p.stem)
def test_scenario_passes_live(path: Path, broker: Broker) -> None:
    _passes(path, broker)


@pytest.mark.parametrize("path", FLEET, ids=lambda p: p.stem)
def test_fleet_scenario_passes_live(path: Path, kafka39: Broker) -> None:
    _passes(path, kafka39)


def _passes(path: Path, broker: Broker) -> None:
    scenario = load(path)
    with LiveRunner(bootstrap=broker.bootstrap) as runner:
        result = runner.run(scenario)
    failures = [
        f"{v.expectation.where}: {v.expectation.text}\n    {v.detail}"
        for v in result.verdicts
        if v.passed is False
    ]
    assert result.error is None, result.error
    assert not failures, "\n".join(failures)
    assert sum(1 for v in result.verdicts if v.passed) >= 1
    assert result.trace.totals()["produced"] > 0


def test_a_sim_only_scenario_is_skipped_live_not_run() -> None:
    scenario = load(ROOT / "scenarios" / "share-session-epochs.yaml")
    result = LiveRunner(bootstrap="127.0.0.1:1").run(scenario)
    assert result.status == "SKIP"
