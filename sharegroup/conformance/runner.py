"""Run the conformance machine against one target and summarize per check.

``run(spec, ...)`` drives Hypothesis (``run_state_machine_as_test``) with the given budget and
returns a ``RunResult``: for every named check how often it passed, and for every failing check
its shrunk counter-example (the operation log of the minimal failing example). Hypothesis
reports distinct failing checks separately because each check raises its own exception class.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, Phase, Verbosity, settings
from hypothesis.errors import Flaky, FlakyStrategyDefinition
from hypothesis.stateful import run_state_machine_as_test

from sharegroup.conformance import client as kc
from sharegroup.conformance.checks import CHECKS, ConformanceFailure, Stats
from sharegroup.conformance.known import KNOWN
from sharegroup.conformance.machine import SetupError, TargetSpec, machine_for

# Not observable on a live target within a test run; see docs/conformance.md.
NOT_EXERCISED_REASON = "not exercised in this run"


@dataclass(slots=True)
class CheckResult:
    name: str
    title: str
    refs: str
    passed: int
    failed: bool
    message: str = ""
    counterexample: list[str] = field(default_factory=list)

    @property
    def result(self) -> str:
        if self.failed:
            return "FAIL"
        if self.passed:
            return f"pass ({self.passed})"
        return "not exercised"


@dataclass(slots=True)
class RunResult:
    target: str
    bootstrap: str
    examples: int
    steps: int
    inconclusive: int
    seconds: float
    checks: list[CheckResult]
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # not failures (see run)
    known: dict[str, int] = field(default_factory=dict)  # known differences met (known.py)

    @property
    def ok(self) -> bool:
        return not self.errors and not any(c.failed for c in self.checks)

    def failures(self) -> list[CheckResult]:
        return [c for c in self.checks if c.failed]


def ci_settings(
    examples: int, steps: int, *, derandomize: bool, quiet: bool, shrink: bool = True
) -> settings:
    return settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        database=None,
        derandomize=derandomize,
        report_multiple_bugs=True,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, *([Phase.shrink] if shrink else [])],
        verbosity=Verbosity.quiet if quiet else Verbosity.normal,
        print_blob=False,
    )


def _leaves(e: BaseException) -> Iterator[BaseException]:
    if isinstance(e, BaseExceptionGroup):
        for sub in e.exceptions:
            yield from _leaves(sub)
    else:
        yield e


def run(
    spec: TargetSpec,
    *,
    examples: int = 10,
    steps: int = 25,
    derandomize: bool = False,
    quiet: bool = True,
    shrink: bool = True,
    hypothesis_settings: settings | None = None,
) -> RunResult:
    stats = Stats()
    machine = machine_for(spec, stats)
    started = time.monotonic()
    errors: list[str] = []
    notes: list[str] = []
    failures: dict[str, ConformanceFailure] = {}
    s = hypothesis_settings or ci_settings(
        examples, steps, derandomize=derandomize, quiet=quiet, shrink=shrink
    )
    try:
        run_state_machine_as_test(machine, settings=s)
    except BaseException as top:  # every failure is reported, none is lost
        if isinstance(top, KeyboardInterrupt):
            raise
        for e in _leaves(top):
            if isinstance(e, ConformanceFailure):
                failures.setdefault(e.check, e)
            elif isinstance(e, SetupError):
                errors.append(f"setup: {e}")
            elif isinstance(e, FlakyStrategyDefinition):
                # Not a finding: the target's timing (a lock, an initialization) differed
                # between two runs of one example prefix, so Hypothesis stopped generating.
                notes.append(
                    "the run stopped early: the target's timing changed the shape of an example "
                    f"Hypothesis had seen before ({str(e).splitlines()[0]})"
                )
            elif isinstance(e, Flaky):
                errors.append(f"flaky: {e}")
            else:
                errors.append("".join(traceback.format_exception(e)).strip())
    checks = []
    for name, check in CHECKS.items():
        f = failures.get(name)
        checks.append(
            CheckResult(
                name=name,
                title=check.title,
                refs=check.refs,
                passed=stats.passed[name],
                failed=f is not None,
                message=f.message if f is not None else "",
                counterexample=f.steps if f is not None else [],
            )
        )
    return RunResult(
        target=spec.name,
        bootstrap=spec.bootstrap,
        examples=stats.examples,
        steps=stats.steps,
        inconclusive=stats.inconclusive,
        seconds=round(time.monotonic() - started, 1),
        checks=checks,
        errors=errors,
        notes=notes,
        known=dict(stats.known),
    )


def choose_lock_ms(bootstrap: str, wanted: int) -> int:
    """The shortest lock duration the target accepts for a group, trying ``wanted`` first."""
    host, port = kc.parse_host_port(bootstrap)
    with kc.Connection(host, port) as conn:
        probe = f"conformance-probe-{int(time.time())}"
        for lock_ms in dict.fromkeys([wanted, 15000, 30000]):
            code = kc.alter_group_configs(
                conn, probe, {"share.record.lock.duration.ms": str(lock_ms)}
            )
            if code == 0:
                return lock_ms
    raise SetupError(
        f"{bootstrap} refuses group config share.record.lock.duration.ms "
        f"({wanted}, 15000 and 30000); does it have share groups?"
    )


# ---------------------------------------------------------------------------- output


def table(result: RunResult, *, all_checks: bool = True) -> str:
    rows = [("check", "result", "first counter-example (shrunk)")]
    for c in result.checks:
        if not all_checks and not c.failed:
            continue
        first = c.message.splitlines()[0] if c.failed and c.message else ""
        rows.append((c.name, c.result, first))
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    lines = [f"{a:<{w0}}  {b:<{w1}}  {c}".rstrip() for a, b, c in rows]
    lines.insert(1, "-" * min(120, max(len(line) for line in lines)))
    return "\n".join(lines)


def summary(result: RunResult) -> str:
    passed = sum(1 for c in result.checks if c.passed and not c.failed)
    failed = len(result.failures())
    return (
        f"{result.target} ({result.bootstrap}): {result.examples} examples, {result.steps} "
        f"checked requests, {result.inconclusive} inconclusive, {result.seconds} s; "
        f"{passed} checks passed, {failed} failed, "
        f"{len(result.checks) - passed - failed} not exercised"
    )


def known_lines(result: RunResult) -> list[str]:
    return [
        f"known difference {k} ({n}x): {KNOWN[k].summary if k in KNOWN else ''}"
        for k, n in sorted(result.known.items())
    ]


def details(result: RunResult) -> str:
    out: list[str] = known_lines(result) + [f"note: {n}" for n in result.notes]
    for c in result.failures():
        out.append(f"== {c.name}: {c.title}")
        out.append(c.message)
        out.append("counter-example:")
        out.extend(f"  {line}" for line in c.counterexample)
        out.append("")
    for e in result.errors:
        out.append(f"== error\n{e}\n")
    return "\n".join(out)


def write_report(result: RunResult, path: Path) -> None:
    if path.suffix == ".json":
        path.write_text(json.dumps(asdict(result), indent=2) + "\n", encoding="utf-8")
        return
    lines = [
        f"# Conformance report: {result.target}",
        "",
        summary(result),
        "",
        "| check | result | what | first counter-example |",
        "|---|---|---|---|",
    ]
    for c in result.checks:
        first = c.message.splitlines()[0].replace("|", "\\|") if c.failed else ""
        lines.append(f"| `{c.name}` | {c.result} | {c.title} | {first} |")
    if result.known:
        lines += ["", "## Known differences met", ""] + [
            f"* {line}" for line in known_lines(result)
        ]
    if result.failures() or result.errors:
        lines += ["", "## Failures", "", "```", details(result), "```"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
