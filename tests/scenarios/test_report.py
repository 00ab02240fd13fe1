"""The HTML/JSON report: self-contained, and it shows what the run did."""

from __future__ import annotations

import json
import re
from pathlib import Path

from sharegroup.scenario.load import load
from sharegroup.scenario.report import write_report
from sharegroup.scenario.run_sim import run_sim

ROOT = Path(__file__).resolve().parents[2]


def test_the_report_is_self_contained_and_tells_rejected_from_delivery_limit(
    tmp_path: Path,
) -> None:
    result = run_sim(load(ROOT / "scenarios" / "reject-versus-delivery-limit.yaml"))
    html_path = write_report(result, tmp_path)
    assert html_path.name == "reject-versus-delivery-limit.sim.html"
    html = html_path.read_text()
    assert "<script" not in html
    assert not re.search(r'(src|href)="', html), "the report must not load anything"
    assert html.count("<svg") >= 5  # timeline, two histograms, two series
    assert "archived: rejected" in html and "archived: delivery limit" in html
    assert ">c1</text>" in html, "the consumer's lane is drawn"
    # Nothing is archived by the broker here, so its lane is left out.
    assert ">broker</text>" not in html
    data = json.loads((tmp_path / "reject-versus-delivery-limit.sim.json").read_text())
    assert data["run"]["status"] == "PASS"
    assert data["totals"]["archived-rejected"] == 5
    assert data["totals"]["archived-delivery-limit"] == 5
    assert data["delivery_histogram"] == {"1": 10, "2": 5}
    lanes = data["timeline"]["lanes"]
    assert set(lanes["c1"]) >= {
        "acquire",
        "accept",
        "release",
        "reject",
        "archive:rejected",
        "archive:delivery-limit",
    }
    assert all(v["passed"] for v in data["verdicts"])


def test_the_broker_lane_is_drawn_when_the_broker_archived_records(tmp_path: Path) -> None:
    result = run_sim(load(ROOT / "scenarios" / "read-committed-aborted-transactions.yaml"))
    html = write_report(result, tmp_path).read_text()
    data = json.loads((tmp_path / "read-committed-aborted-transactions.sim.json").read_text())
    assert any(data["timeline"]["lanes"]["broker"].values()), "aborted records archive"
    assert ">broker</text>" in html


def test_a_large_run_draws_a_bounded_timeline(tmp_path: Path) -> None:
    result = run_sim(load(ROOT / "scenarios" / "more-consumers-than-partitions.yaml"))
    html = write_report(result, tmp_path).read_text()
    assert html.count("<rect") < 64 * 4 * 400
    assert "w-64" in html
