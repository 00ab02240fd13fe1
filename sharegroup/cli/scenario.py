"""``sharegroup scenario run|validate``: the command line of scenario files.

Role: an entry point (layer 3): reads files, runs them in the simulator or live, prints a
summary table and a progress bar, writes reports, and says pass or fail in its exit status
(0 every scenario passed, 1 some failed, 2 a file is not a valid scenario or the command line
is wrong). ``sharegroup/cli/main.py`` only calls ``add_scenario_commands``.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from sharegroup.cli.scenario_live import LiveRunner
from sharegroup.scenario.expect import RunResult
from sharegroup.scenario.load import ScenarioError, load
from sharegroup.scenario.report import write_report
from sharegroup.scenario.run_sim import run_sim
from sharegroup.scenario.spec import Scenario


def add_scenario_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``scenario run`` and ``scenario validate`` to the ``sharegroup`` parser."""
    scenario = sub.add_parser(
        "scenario",
        help="run or check scenario files (share-group stories in YAML)",
        description=(
            "Scenario files tell a share-group story: topics, a group, producers and share "
            "consumers, timed steps and expectations. See scenarios/README.md."
        ),
    )
    commands = scenario.add_subparsers(dest="scenario_command", metavar="COMMAND")
    run = commands.add_parser(
        "run",
        help="run scenarios and check their expectations",
        description=(
            "Run each scenario in the simulator (the real engine on an in-memory log, in "
            "virtual time, deterministic per seed) or live (real share consumers through the "
            "proxy against a real broker) and check its expectations. Exit status 0 when all "
            "pass, 1 when any fails, 2 when a file is not a valid scenario."
        ),
    )
    run.add_argument("files", nargs="+", metavar="FILE", type=Path)
    run.add_argument("--target", choices=["sim", "live"], default="sim")
    run.add_argument(
        "--bootstrap-server",
        metavar="HOST:PORT",
        help="live: the upstream cluster (default: start a local in-memory broker for the run)",
    )
    run.add_argument(
        "--report", metavar="DIR", type=Path, help="write an HTML and a JSON report per run here"
    )
    run.add_argument("--seed", type=int, help="override every scenario's seed")
    run.add_argument("--quiet", action="store_true", help="print only the summary table")
    run.set_defaults(func=_run)
    validate = commands.add_parser(
        "validate",
        help="check scenario files without running them",
        description="Check scenario files: every problem is reported as FILE:LINE:COLUMN.",
    )
    validate.add_argument("files", nargs="+", metavar="FILE", type=Path)
    validate.set_defaults(func=_validate)
    scenario.set_defaults(func=lambda args: _usage(scenario))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _load_all(files: Sequence[Path], out: TextIO) -> tuple[list[Scenario], bool]:
    scenarios: list[Scenario] = []
    ok = True
    for f in files:
        try:
            scenarios.append(load(f))
        except ScenarioError as e:
            ok = False
            for problem in e.problems:
                print(problem, file=out)
    return scenarios, ok


def _validate(args: argparse.Namespace) -> int:
    scenarios, ok = _load_all(args.files, sys.stderr)
    for s in scenarios:
        print(f"ok  {s.path}  ({s.name})")
    return 0 if ok else 2


class _Progress:
    """A one-line progress bar on a terminal; silent otherwise or for short runs."""

    def __init__(self, label: str, stream: TextIO, *, delay_s: float = 0.5) -> None:
        self.label = label
        self.stream = stream
        self.started = time.perf_counter()
        self.delay_s = delay_s
        self.shown = False
        self.enabled = stream.isatty()

    def __call__(self, fraction: float) -> None:
        if not self.enabled or time.perf_counter() - self.started < self.delay_s:
            return
        width = 30
        done = int(max(0.0, min(1.0, fraction)) * width)
        bar = "#" * done + "-" * (width - done)
        self.stream.write(f"\r  [{bar}] {fraction * 100:5.1f}%  {self.label[:60]}")
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            self.stream.write("\r" + " " * 100 + "\r")
            self.stream.flush()


def _run(args: argparse.Namespace) -> int:
    scenarios, ok = _load_all(args.files, sys.stderr)
    if not ok:
        return 2
    with contextlib.ExitStack() as stack:
        runner = _runner(args, stack)
        results: list[RunResult] = []
        for s in scenarios:
            progress = _Progress(s.stem, sys.stderr)
            started = time.perf_counter()
            result = runner(s, progress)
            result.wall_s = time.perf_counter() - started
            progress.close()
            results.append(result)
            if not args.quiet:
                _print_result(result)
            if args.report is not None and result.skipped is None:
                html = write_report(result, args.report)
                if not args.quiet:
                    print(f"    report: {html}")
    print()
    print(summary_table(results))
    failed = [r for r in results if r.status == "FAIL"]
    return 1 if failed else 0


def _runner(
    args: argparse.Namespace, stack: contextlib.ExitStack
) -> Callable[[Scenario, Callable[[float], None]], RunResult]:
    if args.target == "live":
        live = stack.enter_context(LiveRunner(bootstrap=args.bootstrap_server))

        def run_live(s: Scenario, progress: Callable[[float], None]) -> RunResult:
            return live.run(s, seed=args.seed, progress=progress)

        return run_live

    def run(s: Scenario, progress: Callable[[float], None]) -> RunResult:
        return run_sim(s, seed=args.seed, progress=progress)

    return run


def _print_result(r: RunResult) -> None:
    print(f"{r.status}  {r.scenario.path}  ({r.scenario.name}) [{r.target}, seed {r.seed}]")
    if r.skipped:
        print(f"    skipped: {r.skipped}")
        return
    if r.error:
        print(f"    error: {r.error}")
    for v in r.verdicts:
        if v.passed is False:
            print(f"    FAIL {v.expectation.where}: {v.expectation.text}")
            print(f"         {v.detail}")


def summary_table(results: Sequence[RunResult]) -> str:
    """One row per run: name, target, result, checks passed, record counts, times."""
    head = (
        "SCENARIO",
        "TARGET",
        "RESULT",
        "CHECKS",
        "PRODUCED",
        "DELIVERED",
        "ACKED",
        "REJECTED",
        "AT LIMIT",
        "VIRTUAL",
        "WALL",
    )
    rows: list[tuple[str, ...]] = [head]
    for r in results:
        if r.skipped is not None:
            rows.append((r.scenario.stem, r.target, "SKIP", "-", "", "", "", "", "", "", ""))
            continue
        t = r.trace.totals()
        checked = [v for v in r.verdicts if v.passed is not None]
        rows.append(
            (
                r.scenario.stem,
                r.target,
                r.status,
                f"{sum(1 for v in checked if v.passed)}/{len(checked)}",
                f"{t['produced']:,}",
                f"{t['delivered']:,}",
                f"{t['acknowledged']:,}",
                f"{t['archived-rejected']:,}",
                f"{t['archived-delivery-limit']:,}",
                f"{r.virtual_ms / 1000:,.1f}s",
                f"{r.wall_s:.2f}s",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    right = {4, 5, 6, 7, 8, 9, 10}
    lines = []
    for row in rows:
        cells = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    passed = sum(1 for r in results if r.status == "PASS")
    failed = sum(1 for r in results if r.status == "FAIL")
    skipped = sum(1 for r in results if r.status == "SKIP")
    lines.append("")
    lines.append(f"{passed} passed, {failed} failed, {skipped} skipped")
    return "\n".join(lines)
