"""Every scenario in scenarios/ runs in the simulator and passes; runs are deterministic per
seed; a wrong expectation fails; the command line says pass or fail in its exit status."""

from __future__ import annotations

from pathlib import Path

import pytest

from sharegroup.cli.main import main
from sharegroup.cli.scenario import summary_table
from sharegroup.scenario.load import load, loads
from sharegroup.scenario.run_sim import run_sim

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = sorted((ROOT / "scenarios").glob("*.yaml"))


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_scenario_passes_in_the_simulator(path: Path) -> None:
    result = run_sim(load(path))
    failures = [
        f"{v.expectation.where}: {v.expectation.text}\n    {v.detail}"
        for v in result.verdicts
        if v.passed is False
    ]
    assert result.error is None, result.error
    assert not failures, "\n".join(failures)
    assert any(v.passed for v in result.verdicts), "nothing was checked"


@pytest.mark.parametrize(
    "name",
    [
        "mixed-outcomes-with-jitter",
        "proxy-restart-mid-stream",
        "release-storm",
        "fleet-instance-killed",
    ],
)
def test_the_same_seed_gives_the_same_run(name: str) -> None:
    scenario = load(ROOT / "scenarios" / f"{name}.yaml")
    first = run_sim(scenario).trace
    again = run_sim(scenario).trace
    assert first.events == again.events
    assert first.digest() == again.digest()


def test_another_seed_gives_another_run() -> None:
    scenario = load(ROOT / "scenarios" / "mixed-outcomes-with-jitter.yaml")
    first = run_sim(scenario).trace
    other = run_sim(scenario, seed=scenario.seed + 1).trace
    assert other.digest() != first.digest()
    assert other.totals()["produced"] == first.totals()["produced"]


QUICK = (ROOT / "scenarios" / "quickstart.yaml").read_text()


def test_a_wrong_expectation_fails_and_says_what_was_measured() -> None:
    text = QUICK.replace(
        "- {records: {topic: hello}, delivered: 1, final: ACKNOWLEDGED}",
        "- {records: {topic: hello}, delivered: 2, final: ACKNOWLEDGED}",
    )
    assert text != QUICK
    result = run_sim(loads(text, "wrong.yaml"))
    assert result.status == "FAIL"
    failed = [v for v in result.verdicts if v.passed is False]
    assert len(failed) == 1
    assert "delivered 1, expected 2" in failed[0].detail
    line = text.splitlines().index(
        "  - {records: {topic: hello}, delivered: 2, final: ACKNOWLEDGED}"
    )
    assert failed[0].expectation.where.line == line + 1


def test_rejected_and_delivery_limit_archives_are_counted_apart() -> None:
    result = run_sim(load(ROOT / "scenarios" / "reject-versus-delivery-limit.yaml"))
    totals = result.trace.totals()
    assert totals["archived-rejected"] == 5
    assert totals["archived-delivery-limit"] == 5
    reasons = {e[7] for e in result.trace.events if e[1] == "archive"}
    assert reasons == {"rejected", "delivery-limit"}


def test_the_summary_table_lists_each_run() -> None:
    results = [
        run_sim(load(ROOT / "scenarios" / f"{n}.yaml"))
        for n in ("quickstart", "poison-record-delivery-limit")
    ]
    table = summary_table(results)
    assert "quickstart" in table and "poison-record-delivery-limit" in table
    assert table.splitlines()[-1] == "2 passed, 0 failed, 0 skipped"


def test_the_command_line_exit_status_says_pass_fail_or_invalid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = ROOT / "scenarios" / "quickstart.yaml"
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(QUICK.replace("acknowledged: 200", "acknowledged: 201"))
    invalid = tmp_path / "invalid.yaml"
    invalid.write_text(QUICK.replace("partitions: 1", "partitions: one"))
    assert main(["scenario", "run", str(good), "--quiet"]) == 0
    assert main(["scenario", "run", str(good), str(wrong)]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "acknowledged 200, expected 201" in out
    assert main(["scenario", "run", str(invalid)]) == 2
    assert "invalid.yaml:" in capsys.readouterr().err
    assert main(["scenario", "validate", str(good)]) == 0
    assert main(["scenario", "validate", str(invalid)]) == 2
