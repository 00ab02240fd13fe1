"""Judging a run: every ``then`` expectation of a scenario against the run's ``Trace``.

Role: turns a trace into verdicts (passed, failed, or not checked on this target) with a line
saying what was measured, so a failure reads like "delivered 2, expected 3". Also the result of
a whole run (``RunResult``), which the summary table and the report show.

Pure: no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import pairwise
from typing import cast

from sharegroup.scenario import trace as tr
from sharegroup.scenario.spec import Bound, Expectation, Scenario
from sharegroup.scenario.trace import RecordView, Trace

EXCUSED_FROM_DELIVERY = frozenset({"aborted", "compacted", "log-start"})


@dataclass(frozen=True, slots=True)
class Verdict:
    """One expectation's outcome: ``passed`` None means not checked on this target."""

    expectation: Expectation
    passed: bool | None
    detail: str


@dataclass
class RunResult:
    """One scenario run on one target."""

    scenario: Scenario
    target: str
    seed: int
    trace: Trace
    verdicts: list[Verdict] = field(default_factory=list)
    wall_s: float = 0.0
    virtual_ms: int = 0
    error: str | None = None  # the run itself failed (not an expectation)
    skipped: str | None = None  # the scenario does not run on this target

    @property
    def passed(self) -> bool:
        return self.error is None and all(v.passed is not False for v in self.verdicts)

    @property
    def status(self) -> str:
        if self.skipped is not None:
            return "SKIP"
        return "PASS" if self.passed else "FAIL"


def evaluate(scenario: Scenario, trace: Trace, target: str) -> list[Verdict]:
    """Every expectation of the scenario, judged on ``trace`` (a run on ``target``)."""
    out: list[Verdict] = []
    for e in scenario.expectations:
        if target not in e.targets:
            out.append(Verdict(e, None, f"not checked on {target}"))
            continue
        passed, detail = _judge(scenario, trace, e)
        out.append(Verdict(e, passed, detail))
    return out


def _judge(scenario: Scenario, trace: Trace, e: Expectation) -> tuple[bool, str]:
    kind = e.kind
    if kind == "record":
        return _record(trace, e)
    if kind == "records":
        return _records(scenario, trace, e)
    if kind == "consumer":
        return _consumers(scenario, trace, e)
    if kind == "totals":
        totals = trace.totals()
        return _bounds({k: totals[k] for k in e.checks}, e)
    if kind == "invariant":
        return _invariant(trace, str(e.subject["name"]))
    if kind == "throughput":
        return _throughput(trace, e)
    if kind == "latency":
        return _latency(trace, e)
    if kind == "no-pause":
        return _no_pause(trace, e)
    if kind == "partition":
        key = (str(e.subject["topic"]), int(str(e.subject["partition"])))
        stats = trace.partition_stats.get(key)
        if stats is None:
            return False, f"the group never used {key[0]}-{key[1]}"
        return _bounds({k: stats[k] for k in e.checks}, e)
    if kind == "response":
        step = str(e.subject["step"])
        got = trace.responses.get(step)
        if got is None:
            return False, f"step {step} sent nothing (its consumer was not connected?)"
        error, ack_error = got
        bad = []
        if "error" in e.checks and e.checks["error"] != error:
            bad.append(f"error {error}, expected {e.checks['error']}")
        if "ack-error" in e.checks and e.checks["ack-error"] != ack_error:
            bad.append(f"acknowledge error {ack_error}, expected {e.checks['ack-error']}")
        return not bad, "; ".join(bad) or f"error {error}, acknowledge error {ack_error}"
    if kind == "dlq":
        return _dlq(trace, e)
    # group
    measured: dict[str, object] = dict(trace.group)
    return _bounds(measured, e)


def _dlq(trace: Trace, e: Expectation) -> tuple[bool, str]:
    """The records of a DLQ topic (narrowed by source topic, partition and offsets): how many,
    and for each its cause, delivery count, DLQ partition and whether it carries the source
    record's key and value."""
    subj = e.subject
    offsets = cast(tuple[tuple[int, int], ...], subj.get("source-offsets", ()))
    chosen = [
        d
        for d in trace.dlq
        if d.dlq_topic == subj["topic"]
        and subj.get("source-topic", d.source_topic) == d.source_topic
        and int(str(subj.get("source-partition", d.source_partition))) == d.source_partition
        and (not offsets or any(a <= d.source_offset <= b for a, b in offsets))
    ]
    bad: list[str] = []
    count = e.checks.get("count")
    if isinstance(count, Bound) and not count.holds(len(chosen)):
        bad.append(f"{len(chosen)} DLQ records, expected {count}")
    for d in chosen:
        got: dict[str, object] = {
            "cause": d.cause,
            "delivery-count": d.delivery_count,
            "dlq-partition": d.dlq_partition,
            "copied": str(d.value is not None).lower(),
        }
        for name, want in e.checks.items():
            if name == "count":
                continue
            value = got[name]
            ok = (
                isinstance(value, int) and want.holds(value)
                if isinstance(want, Bound)
                else value == want
            )
            if not ok:
                bad.append(
                    f"{d.source_topic}-{d.source_partition}@{d.source_offset}: {name} {value}, "
                    f"expected {want}"
                )
    if bad:
        return False, "; ".join(bad[:3]) + (f" (and {len(bad) - 3} more)" if len(bad) > 3 else "")
    return True, f"{len(chosen)} DLQ records"


def _bounds(measured: dict[str, object], e: Expectation) -> tuple[bool, str]:
    bad: list[str] = []
    shown: list[str] = []
    for name, want in e.checks.items():
        got = measured.get(name)
        shown.append(f"{name} {got}")
        if isinstance(want, Bound):
            if not isinstance(got, int | float) or not want.holds(got):
                bad.append(f"{name} {got}, expected {want}")
        elif got != want:
            bad.append(f"{name} {got}, expected {want}")
    return not bad, "; ".join(bad) if bad else ", ".join(shown)


def _view_checks(view: RecordView, e: Expectation) -> list[str]:
    bad: list[str] = []
    for name, want in e.checks.items():
        if name == "delivered":
            got: object = view.delivered
        elif name == "delivery-count":
            got = view.delivery_count
        elif name == "final":
            got = view.state
        else:  # archived
            got = view.reason if view.state == tr.ARCHIVED else f"not archived ({view.state})"
        if isinstance(want, Bound):
            assert isinstance(got, int)
            ok = want.holds(got)
        else:
            ok = got == want
        if not ok:
            bad.append(f"{name} {got}, expected {want}")
    return bad


def _describe(view: RecordView) -> str:
    reason = f" ({view.reason})" if view.reason else ""
    return (
        f"delivered {view.delivered}, delivery count {view.delivery_count}, "
        f"final {view.state}{reason}"
    )


def _record(trace: Trace, e: Expectation) -> tuple[bool, str]:
    topic = str(e.subject["topic"])
    partition = int(str(e.subject.get("partition", 0)))
    offset = int(str(e.subject["offset"]))
    view = trace.record_at(topic, partition, offset)
    if view is None:
        return False, f"no record was produced at {topic}-{partition} offset {offset}"
    bad = _view_checks(view, e)
    return not bad, "; ".join(bad) if bad else _describe(view)


def _selected(scenario: Scenario, trace: Trace, e: Expectation) -> Iterator[RecordView]:
    topic = str(e.subject["topic"])
    partitions = (
        [int(str(e.subject["partition"]))]
        if "partition" in e.subject
        else range(scenario.topics[topic].partitions)
    )
    ranges = e.subject.get("offsets")
    key = e.subject.get("key")
    for p in partitions:
        keys = trace.keys.get((topic, p), {})
        for view in trace.records(topic, p):
            spans = [(view.first, view.last)]
            if isinstance(ranges, tuple):
                spans = [
                    (max(a, view.first), min(b, view.last))
                    for a, b in ranges
                    if a <= view.last and b >= view.first
                ]
            for a, b in spans:
                if key is None:
                    yield RecordView(topic, p, a, b, *_tail(view))
                    continue
                for o in range(a, b + 1):
                    if keys.get(o) == key:
                        yield RecordView(topic, p, o, o, *_tail(view))


def _tail(v: RecordView) -> tuple[str, int, int, str, str]:
    return v.state, v.delivered, v.delivery_count, v.reason, v.owner


def _records(scenario: Scenario, trace: Trace, e: Expectation) -> tuple[bool, str]:
    n = 0
    failures: list[str] = []
    failed = 0
    for view in _selected(scenario, trace, e):
        count = view.last - view.first + 1
        n += count
        bad = _view_checks(view, e)
        if bad:
            failed += count
            if len(failures) < 3:
                failures.append(
                    f"{view.topic}-{view.partition} {view.first}-{view.last}: {'; '.join(bad)}"
                )
    if n == 0:
        return False, "no records matched"
    if failed:
        return False, f"{failed} of {n} records: " + " | ".join(failures)
    return True, f"all {n} records"


def _consumer_ids(scenario: Scenario, ref: str) -> list[str]:
    if ref == "*":
        return [c.id for c in scenario.consumers]
    members = [c.id for c in scenario.consumers if c.replica_of == ref]
    return members or [ref]


def _consumers(scenario: Scenario, trace: Trace, e: Expectation) -> tuple[bool, str]:
    ids = _consumer_ids(scenario, str(e.subject["consumer"]))
    bad: list[str] = []
    shown: list[str] = []
    for cid in ids:
        stats = trace.consumer(cid)
        for name, want in e.checks.items():
            got = stats.get(name)
            assert isinstance(want, Bound)
            if not want.holds(got):
                bad.append(f"{cid} {name} {got}, expected {want}")
            elif len(ids) == 1:
                shown.append(f"{name} {got}")
    if bad:
        more = f" (+{len(bad) - 4} more)" if len(bad) > 4 else ""
        return False, "; ".join(bad[:4]) + more
    if len(ids) > 1:
        values = {name: [trace.consumer(c).get(name) for c in ids] for name in e.checks}
        shown = [
            f"{name} {min(v)}..{max(v)} over {len(ids)} consumers" for name, v in values.items()
        ]
    return True, ", ".join(shown)


def _invariant(trace: Trace, name: str) -> tuple[bool, str]:
    if name in ("no-redelivery-after-ack", "single-owner", "delivery-counts-agree"):
        n = trace.counts[f"violations:{name}"]
        if n == 0:
            return True, "held throughout"
        first = next(v for v in trace.violations if v.invariant == name)
        return False, f"{n} violation(s); first at {first.time_ms} ms: {first.message}"
    totals = trace.totals()
    if name == "all-terminal":
        if totals["unfinished"] == 0:
            return True, f"all {totals['produced']} records acknowledged or archived"
        return False, _unfinished(trace)
    # at-least-once
    missing = 0
    example = ""
    for topic, p in trace.topic_partitions:
        for view in trace.records(topic, p):
            excused = view.state == tr.SKIPPED or (
                view.state == tr.ARCHIVED and view.reason in EXCUSED_FROM_DELIVERY
            )
            if view.delivered == 0 and not excused:
                missing += view.last - view.first + 1
                example = example or f"{topic}-{p} {view.first}-{view.last}"
    if missing:
        return False, f"{missing} record(s) never delivered, e.g. {example}"
    return True, "every record delivered at least once"


def _unfinished(trace: Trace) -> str:
    parts: list[str] = []
    for topic, p in trace.topic_partitions:
        for view in trace.records(topic, p):
            if view.state not in tr.TERMINAL and len(parts) < 3:
                parts.append(f"{topic}-{p} {view.first}-{view.last} {view.state}")
    return f"{trace.totals()['unfinished']} record(s) unfinished: " + ", ".join(parts)


def accepted_between(trace: Trace, from_ms: int, to_ms: int) -> int:
    return sum(
        int(str(ev[7])) for ev in trace.events if ev[1] == tr.ACCEPT and from_ms <= ev[0] < to_ms
    )


def _throughput(trace: Trace, e: Expectation) -> tuple[bool, str]:
    from_ms = int(str(e.subject["from"]))
    to = e.subject.get("to")
    to_ms = int(str(to)) if to is not None else trace.end_ms
    span_s = max(to_ms - from_ms, 1) / 1000
    rate = accepted_between(trace, from_ms, to_ms) / span_s
    bound = e.checks["rate"]
    assert isinstance(bound, Bound)
    detail = f"{rate:,.0f} records/s acknowledged between {from_ms} and {to_ms} ms"
    return bound.holds(rate), detail if bound.holds(rate) else f"{detail}, expected {bound}"


def percentile(samples: list[tuple[int, int]], q: float) -> int | None:
    """The q-quantile (0..1) of weighted samples (value, weight)."""
    total = sum(w for _, w in samples)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for value, weight in sorted(samples):
        seen += weight
        if seen >= rank:
            return value
    return max(v for v, _ in samples)


def _latency(trace: Trace, e: Expectation) -> tuple[bool, str]:
    bad: list[str] = []
    shown: list[str] = []
    quantiles = {"p50": 0.5, "p90": 0.9, "p99": 0.99, "max": 1.0}
    for name, want in e.checks.items():
        got = percentile(trace.latency, quantiles[name])
        assert isinstance(want, Bound)
        if got is None:
            bad.append(f"{name}: nothing was acknowledged")
            continue
        shown.append(f"{name} {got} ms")
        if not want.holds(got):
            bad.append(f"{name} {got} ms, expected {want} ms")
    return not bad, "; ".join(bad) if bad else ", ".join(shown)


def _no_pause(trace: Trace, e: Expectation) -> tuple[bool, str]:
    consumers = e.subject["consumers"]
    assert isinstance(consumers, tuple)
    from_ms = int(str(e.subject["from"]))
    to = e.subject.get("to")
    to_ms = int(str(to)) if to is not None else trace.end_ms
    bound = e.checks["max-gap"]
    assert isinstance(bound, Bound)
    times: dict[str, list[int]] = {str(c): [] for c in consumers}
    for ev in trace.events:
        if ev[1] == tr.ACQUIRE and ev[2] in times and from_ms <= ev[0] <= to_ms:
            times[ev[2]].append(ev[0])
    worst = (0, "", 0)
    for c, ts in times.items():
        points = [from_ms, *ts, to_ms]
        for a, b in pairwise(points):
            if b - a > worst[0]:
                worst = (b - a, c, a)
    gap, who, at = worst
    detail = f"longest wait between deliveries: {gap} ms ({who} from {at} ms)"
    return bound.holds(gap), detail if bound.holds(
        gap
    ) else f"{detail}, expected <= {bound.max:g} ms"
