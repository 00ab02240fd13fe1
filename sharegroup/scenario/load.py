"""Scenario YAML -> ``Scenario`` values, with every problem reported as file:line:column.

Role: the only reader of scenario files. Three passes, each collecting all its problems before
giving up: YAML (PyYAML's node marks give positions; duplicate keys are refused, not silently
overwritten), the JSON Schema of ``schema.json`` (shape, names, types), then meaning (references
between parts, Kafka config values checked by ``model.config`` with Kafka's bounds, step order,
what a target can run). Raises ``ScenarioError`` listing the problems.

Pure apart from reading the file it is given; no clock, no randomness.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, cast

import yaml

from model import BrokerConfig, ConfigError, ErrorCode, GroupConfig
from model.config import parse_by_duration_ms
from sharegroup.scenario.schema import Path_, SchemaProblem, Validator, format_path
from sharegroup.scenario.spec import (
    AckChoice,
    AckName,
    AckRule,
    Action,
    Advance,
    AlterConfig,
    Bound,
    ClassicOffset,
    Compact,
    ConsumerAction,
    ConsumerSpec,
    CopyOffsets,
    DeleteRecords,
    Expectation,
    ExpectKind,
    FleetSpec,
    KillInstance,
    Processing,
    Produce,
    ProducerSpec,
    ResetOffsets,
    RestartProxy,
    Scenario,
    Send,
    Step,
    Subscribe,
    Target,
    TopicSpec,
    Where,
)

_DURATION: Final = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)$")
_RATE: Final = re.compile(r"^([0-9]+(?:\.[0-9]+)?)/(ms|s|m)$")
_UNIT_MS: Final = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}
DEFAULT_GROUP_ID: Final = "g"
DEFAULT_LATENCY_MS: Final = 1
SETTLE_MS: Final = 1000  # default time after the last step before the story ends

# What the live runner cannot do (it drives real librdkafka clients, which cannot be told to
# send a malformed request or to stop heartbeating while staying connected).
SIM_ONLY_ACTIONS: Final = (Send, Compact, DeleteRecords, ResetOffsets, CopyOffsets, Subscribe)
SIM_ONLY_VERBS: Final = ("hang",)
STEP_ACTIONS: Final = (
    "produce",
    "start",
    "stop",
    "kill",
    "hang",
    "subscribe",
    "restart-proxy",
    "kill-instance",
    "alter-config",
    "reset-offsets",
    "copy-offsets",
    "compact",
    "delete-records",
    "advance",
    "send",
)
EXPECT_KINDS: Final[tuple[ExpectKind, ...]] = (
    "record",
    "records",
    "consumer",
    "totals",
    "invariant",
    "throughput",
    "latency",
    "no-pause",
    "partition",
    "response",
    "group",
    "dlq",
)
SIM_ONLY_KINDS: Final = ("throughput", "latency", "no-pause")
# The cluster's group.min.session.timeout.ms by default: a live fleet cannot go below it.
LIVE_MIN_FLEET_SESSION_MS: Final = 6000


@dataclass(frozen=True, slots=True)
class Problem:
    where: Where
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


class ScenarioError(Exception):
    """A scenario file that cannot be used; ``problems`` says every where and why."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = list(problems)


def parse_duration_ms(text: object) -> int:
    """``"250ms"`` -> 250, ``"1.5m"`` -> 90000, ``0`` -> 0. Raises ValueError otherwise."""
    if text == 0 and not isinstance(text, bool):
        return 0
    if not isinstance(text, str):
        raise ValueError(f"expected a duration like 5s, got {text!r}")
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"expected a duration like 5s, got {text!r}")
    return round(float(match.group(1)) * _UNIT_MS[match.group(2)])


def parse_duration_float_ms(text: object) -> float:
    """Like ``parse_duration_ms`` but keeps fractions of a millisecond (processing times)."""
    if text == 0 and not isinstance(text, bool):
        return 0.0
    match = _DURATION.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"expected a duration like 5ms, got {text!r}")
    return float(match.group(1)) * _UNIT_MS[match.group(2)]


def parse_rate_per_s(text: str) -> float:
    match = _RATE.match(text)
    if match is None:
        raise ValueError(f"expected a rate like 100/s, got {text!r}")
    return float(match.group(1)) * 1000 / _UNIT_MS[match.group(2)]


def parse_offsets(value: object) -> tuple[tuple[int, int], ...]:
    """``5`` / ``"10-19"`` / a list of those -> inclusive ranges."""
    items = value if isinstance(value, list) else [value]
    out: list[tuple[int, int]] = []
    for item in items:
        if isinstance(item, int):
            out.append((item, item))
        else:
            a, _, b = str(item).partition("-")
            first, last = int(a), int(b)
            if last < first:
                raise ValueError(f"offset range {item} ends before it starts")
            out.append((first, last))
    return tuple(out)


# ---------------------------------------------------------------------------- YAML with marks


class _Document:
    """A YAML document as plain values plus the position of every value and key."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.marks: dict[Path_, tuple[int, int]] = {}
        self.key_marks: dict[Path_, tuple[int, int]] = {}
        self.problems: list[Problem] = []
        self._constructor = yaml.constructor.SafeConstructor()

    def where(self, path: Path_, *, at_key: bool = False) -> Where:
        if at_key and path in self.key_marks:
            line, col = self.key_marks[path]
            return Where(self.file, line, col)
        probe = path
        while probe not in self.marks and probe:
            probe = probe[:-1]
        line, col = self.marks.get(probe, (1, 1))
        return Where(self.file, line, col)

    def convert(self, node: yaml.Node, path: Path_) -> object:
        self.marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            out: dict[str, object] = {}
            for key_node, value_node in node.value:
                key_mark = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                if key_node.tag == "tag:yaml.org,2002:merge":
                    self.problems.append(
                        Problem(
                            Where(self.file, *key_mark), "YAML merge keys (<<) are not supported"
                        )
                    )
                    continue
                key = (
                    self._constructor.construct_object(key_node)
                    if isinstance(key_node, yaml.ScalarNode)
                    else None
                )
                if not isinstance(key, str):
                    self.problems.append(
                        Problem(
                            Where(self.file, *key_mark),
                            f'expected a text key, got {key!r}; quote it ("{key}")',
                        )
                    )
                    continue
                if key in out:
                    first = self.key_marks[(*path, key)]
                    self.problems.append(
                        Problem(
                            Where(self.file, *key_mark),
                            f"duplicate key {key!r} (first given at line {first[0]})",
                        )
                    )
                    continue
                self.key_marks[(*path, key)] = key_mark
                out[key] = self.convert(value_node, (*path, key))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.convert(item, (*path, i)) for i, item in enumerate(node.value)]
        value: object = self._constructor.construct_object(node)
        return value


def _read_yaml(path: Path, text: str) -> tuple[_Document, object]:
    doc = _Document(str(path))
    try:
        nodes = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = Where(str(path), mark.line + 1, mark.column + 1) if mark else Where(str(path), 1, 1)
        reason = " ".join(x for x in (e.context, e.problem) if x)
        raise ScenarioError([Problem(where, f"not valid YAML: {reason}")]) from None
    if not nodes or nodes[0] is None:
        raise ScenarioError([Problem(Where(str(path), 1, 1), "the file is empty")])
    if len(nodes) > 1:
        line = nodes[1].start_mark.line + 1
        raise ScenarioError(
            [Problem(Where(str(path), line, 1), "expected one YAML document, found several")]
        )
    value = doc.convert(nodes[0], ())
    return doc, value


# ---------------------------------------------------------------------------- loading


def load(path: str | Path) -> Scenario:
    """Read and check one scenario file. Raises ``ScenarioError`` with every problem found."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ScenarioError([Problem(Where(str(p), 1, 1), f"cannot read: {e.strerror}")]) from None
    except UnicodeDecodeError:
        raise ScenarioError([Problem(Where(str(p), 1, 1), "not UTF-8 text")]) from None
    return loads(text, str(p))


def loads(text: str, file: str = "<scenario>") -> Scenario:
    """Like ``load`` for text already in memory; ``file`` names it in messages."""
    doc, value = _read_yaml(Path(file), text)
    schema_problems = Validator().validate(value)
    problems = doc.problems + [_problem(doc, p) for p in schema_problems]
    if problems:
        raise ScenarioError(_sorted(problems))
    assert isinstance(value, dict)
    builder = _Builder(doc, value)
    scenario = builder.build()
    if doc.problems or builder.problems:
        raise ScenarioError(_sorted(doc.problems + builder.problems))
    assert scenario is not None
    return scenario


def _problem(doc: _Document, p: SchemaProblem) -> Problem:
    return Problem(doc.where(p.path, at_key=p.at_key), f"{format_path(p.path)}: {p.message}")


def _sorted(problems: Iterable[Problem]) -> list[Problem]:
    unique = {(p.where.line, p.where.column, p.message): p for p in problems}
    return [unique[k] for k in sorted(unique)]


class _Builder:
    """The meaning pass: the document already fits the schema, so shapes can be trusted."""

    def __init__(self, doc: _Document, raw: dict[str, Any]) -> None:
        self.doc = doc
        self.raw = raw
        self.problems: list[Problem] = []
        self.topics: dict[str, TopicSpec] = {}
        self.consumer_ids: list[str] = []
        self.replica_groups: dict[str, tuple[str, ...]] = {}
        self.send_steps: set[str] = set()
        self.fleet: FleetSpec | None = None

    # -------------------------------------------------------------- helpers
    def fail(self, path: Path_, message: str, *, at_key: bool = False) -> None:
        self.problems.append(
            Problem(self.doc.where(path, at_key=at_key), f"{format_path(path)}: {message}")
        )

    def duration(self, value: object, path: Path_) -> int:
        try:
            return parse_duration_ms(value)
        except ValueError as e:  # the schema lets only valid ones through; belt and braces
            self.fail(path, str(e))
            return 0

    def topic(self, name: str, path: Path_, partition: int | None = None) -> None:
        if name not in self.topics:
            close = difflib.get_close_matches(name, list(self.topics), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            self.fail(
                path, f"unknown topic {name!r}{hint} (given.topics has {', '.join(self.topics)})"
            )
        elif partition is not None and partition >= self.topics[name].partitions:
            self.fail(
                path,
                f"partition {partition} does not exist: {name} has "
                f"{self.topics[name].partitions} partition(s), 0-{self.topics[name].partitions - 1}",
            )

    def consumers(self, value: object, path: Path_) -> tuple[str, ...]:
        names = value if isinstance(value, list) else [value]
        out: list[str] = []
        for i, name in enumerate(names):
            sub = (*path, i) if isinstance(value, list) else path
            name = str(name)
            if name == "all":
                out += self.consumer_ids
            elif name in self.replica_groups:
                out += self.replica_groups[name]
            elif name in self.consumer_ids:
                out.append(name)
            else:
                known = self.consumer_ids + list(self.replica_groups)
                close = difflib.get_close_matches(name, known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                self.fail(sub, f"unknown consumer {name!r}{hint}")
        return tuple(dict.fromkeys(out))

    def acks(self, value: object, path: Path_) -> AckChoice:
        if isinstance(value, str):
            return ((cast(AckName, value), 1.0),)
        assert isinstance(value, dict)
        total = sum(float(v) for v in value.values())
        if abs(total - 1.0) > 1e-9:
            self.fail(path, f"the probabilities add up to {total:g}, expected 1")
        return tuple((cast(AckName, k), float(v)) for k, v in value.items())

    def exact(self, value: object, path: Path_) -> float:
        try:
            return parse_duration_float_ms(value)
        except ValueError as e:
            self.fail(path, str(e))
            return 0.0

    def processing(self, value: object, path: Path_) -> Processing:
        if not isinstance(value, dict):
            return Processing("fixed", self.exact(value, path))
        if "uniform" in value:
            lo = self.exact(value["uniform"][0], (*path, "uniform", 0))
            hi = self.exact(value["uniform"][1], (*path, "uniform", 1))
            if hi < lo:
                self.fail((*path, "uniform"), "the upper bound is below the lower bound")
            return Processing("uniform", lo, hi)
        if "exponential" in value:
            return Processing(
                "exponential", self.exact(value["exponential"], (*path, "exponential"))
            )
        normal = value["normal"]
        return Processing(
            "normal",
            self.exact(normal["mean"], (*path, "normal", "mean")),
            self.exact(normal["stddev"], (*path, "normal", "stddev")),
        )

    def bound(self, value: object, path: Path_, *, durations: bool = False) -> Bound:
        def parse(v: object, p: Path_) -> float:
            return float(self.duration(v, p)) if durations else float(str(v))

        if isinstance(value, dict):
            lo = parse(value["min"], (*path, "min")) if "min" in value else None
            hi = parse(value["max"], (*path, "max")) if "max" in value else None
            if lo is not None and hi is not None and hi < lo:
                self.fail(path, f"max {hi:g} is below min {lo:g}")
            return Bound(lo, hi)
        return Bound.exactly(parse(value, path))

    # -------------------------------------------------------------- the parts
    def build(self) -> Scenario | None:
        raw = self.raw
        given = raw["given"]
        for name, t in given["topics"].items():
            self.topics[name] = TopicSpec(
                name, int(t.get("partitions", 1)), t.get("cleanup.policy") == "compact"
            )
        broker_configs = {k: _config_text(v) for k, v in given.get("broker", {}).items()}
        broker = self._broker_config(broker_configs)
        group = given.get("group", {})
        group_configs = {k: _config_text(v) for k, v in group.get("config", {}).items()}
        if broker is not None:
            self._group_config(broker, group_configs, ("given", "group", "config"))
        classic = self._classic_groups(given.get("classic-groups", {}))
        if "fleet" in given:
            f = given["fleet"]
            self.fleet = FleetSpec(
                instances=f["instances"],
                session_timeout_ms=f.get("session.timeout.ms", 45000),
                heartbeat_interval_ms=f.get("heartbeat.interval.ms", 3000),
                state_partitions=f.get("state.topic.partitions", 8),
            )
            if self.fleet.heartbeat_interval_ms >= self.fleet.session_timeout_ms:
                self.fail(
                    ("given", "fleet", "heartbeat.interval.ms"),
                    f"heartbeat.interval.ms={self.fleet.heartbeat_interval_ms} must be below "
                    f"session.timeout.ms={self.fleet.session_timeout_ms}",
                )
        producers = tuple(
            self._producer(p, ("given", "producers", i))
            for i, p in enumerate(given.get("producers", []))
        )
        self._unique([p.id for p in producers], ("given", "producers"), "producer")
        consumers = [
            c
            for i, spec in enumerate(given.get("consumers", []))
            for c in self._consumer(spec, ("given", "consumers", i))
        ]
        self._unique([c.id for c in consumers], ("given", "consumers"), "consumer")
        self.consumer_ids = [c.id for c in consumers]
        for name in self.replica_groups:
            if name in self.consumer_ids:
                self.fail(
                    ("given", "consumers"), f"{name!r} is both a consumer and a replica group"
                )
        tags = tuple(raw.get("tags", ()))
        targets = cast(
            tuple[Target, ...],
            tuple(raw.get("targets", ("sim", "live") if "live" in tags else ("sim",))),
        )
        if "live" in tags and "live" not in targets:
            self.fail(("targets",), "the scenario is tagged live but its targets exclude live")
        steps = self._steps(raw.get("when", []), broker, group_configs, classic, targets)
        # A consumer starts at its own ``start`` time; without one, at 0 s unless the first
        # step that starts, stops, kills or hangs it is a start step.
        first_verb: dict[str, str] = {}
        for s in steps:
            if isinstance(s.action, ConsumerAction):
                for c in s.action.consumers:
                    first_verb.setdefault(c, s.action.verb)
        consumers = [
            c if c.start_ms is not None or first_verb.get(c.id) == "start" else _with_start(c, 0)
            for c in consumers
        ]
        last = max(
            (
                s.at_ms + (s.action.duration_ms if isinstance(s.action, Advance) else 0)
                for s in steps
            ),
            default=0,
        )
        for p in producers:
            end = (
                p.until_ms
                if p.until_ms is not None
                else p.from_ms
                + (round((p.count or 0) * 1000 / p.rate_per_s) if p.rate_per_s > 0 else 0)
            )
            last = max(last, end)
        duration_ms = (
            self.duration(raw["duration"], ("duration",)) if "duration" in raw else last + SETTLE_MS
        )
        if duration_ms < last:
            self.fail(
                ("duration",),
                f"the story ends at {duration_ms} ms, before its last step at {last} ms",
            )
        expectations = tuple(
            self._expectation(e, ("then", i), targets) for i, e in enumerate(raw["then"])
        )
        self._check_fleet(steps, consumers)
        if "live" in targets:
            self._check_live(steps, consumers, given)
        latency = self.duration(
            given.get("network", {}).get("latency", "1ms"), ("given", "network", "latency")
        )
        return Scenario(
            path=self.doc.file,
            name=raw["name"],
            description=raw.get("description", ""),
            seed=int(raw.get("seed", 0)),
            tags=tags,
            targets=targets,
            duration_ms=duration_ms,
            broker_configs=broker_configs,
            latency_ms=latency,
            topics=self.topics,
            group_id=group.get("id", DEFAULT_GROUP_ID),
            group_configs=group_configs,
            classic_groups=classic,
            producers=producers,
            consumers=tuple(consumers),
            steps=tuple(steps),
            expectations=expectations,
            fleet=self.fleet,
        )

    def _unique(self, ids: Sequence[str], path: Path_, what: str) -> None:
        seen: set[str] = set()
        for i in ids:
            if i in seen:
                self.fail(path, f"two {what}s are called {i!r}")
            seen.add(i)

    def _broker_config(self, configs: dict[str, str]) -> BrokerConfig | None:
        try:
            return BrokerConfig.from_mapping(configs)
        except ConfigError as e:
            key = next((k for k in configs if k in str(e)), None)
            path: Path_ = ("given", "broker", key) if key else ("given", "broker")
            self.fail(path, str(e))
            return None

    def _group_config(
        self, broker: BrokerConfig, configs: Mapping[str, str | None], path: Path_
    ) -> None:
        for key, value in configs.items():
            if value is None:
                continue
            try:
                GroupConfig.defaults(broker).with_overrides(broker, {key: value})
            except ConfigError as e:
                self.fail((*path, key), str(e))

    def _classic_groups(self, raw: dict[str, Any]) -> dict[str, tuple[ClassicOffset, ...]]:
        out: dict[str, tuple[ClassicOffset, ...]] = {}
        for group_id, entries in raw.items():
            items = []
            for i, e in enumerate(entries):
                path = ("given", "classic-groups", group_id, i)
                self.topic(e["topic"], (*path, "topic"), e["partition"])
                items.append(ClassicOffset(e["topic"], e["partition"], e["offset"]))
            out[group_id] = tuple(items)
        return out

    def _producer(self, raw: dict[str, Any], path: Path_) -> ProducerSpec:
        self.topic(raw["topic"], (*path, "topic"), raw.get("partition"))
        rate = parse_rate_per_s(raw["rate"])
        if rate <= 0:
            self.fail((*path, "rate"), "the rate must be above 0")
        if "until" not in raw and "count" not in raw:
            self.fail(
                path, "a producer needs until (a time) or count (records) to know when to stop"
            )
        from_ms = self.duration(raw.get("from", 0), (*path, "from"))
        until_ms = self.duration(raw["until"], (*path, "until")) if "until" in raw else None
        if until_ms is not None and until_ms < from_ms:
            self.fail((*path, "until"), "until comes before from")
        return ProducerSpec(
            id=raw["id"],
            where=self.doc.where(path),
            topic=raw["topic"],
            rate_per_s=rate,
            from_ms=from_ms,
            until_ms=until_ms,
            count=raw.get("count"),
            batch=raw.get("batch", 1),
            keys=raw.get("keys"),
            partition=raw.get("partition"),
            transaction=raw.get("transaction"),
            record_bytes=raw.get("record-bytes", 100),
        )

    def _consumer(self, raw: dict[str, Any], path: Path_) -> list[ConsumerSpec]:
        topics = tuple(raw.get("topics", self.topics))
        for i, t in enumerate(topics):
            self.topic(t, (*path, "topics", i))
        implicit = raw.get("share.acknowledgement.mode", "explicit") == "implicit"
        acks = self.acks(raw.get("acks", "accept"), (*path, "acks"))
        if implicit and (acks != (("accept", 1.0),) or raw.get("rules")):
            self.fail(
                (*path, "share.acknowledgement.mode"),
                "implicit acknowledgement accepts every record; use explicit for other acks or rules",
            )
        rules = tuple(
            self._rule(r, (*path, "rules", i)) for i, r in enumerate(raw.get("rules", []))
        )
        crash = raw.get("crash")
        base = ConsumerSpec(
            id=raw["id"],
            where=self.doc.where(path),
            topics=topics,
            start_ms=self.duration(raw["start"], (*path, "start")) if "start" in raw else None,
            acks=acks,
            rules=rules,
            processing=self.processing(raw.get("processing", 0), (*path, "processing")),
            max_poll_records=raw.get("max.poll.records", 500),
            record_limit=raw.get("share.acquire.mode") == "record_limit",
            implicit=implicit,
            max_wait_ms=raw.get("fetch.max.wait.ms", 500),
            commit_sync=raw.get("commit") == "sync",
            crash_after_records=crash["after-records"] if crash else None,
            crash_how=crash.get("how", "kill") if crash else "kill",
            seed=raw.get("seed"),
            instance=raw.get("instance"),
        )
        n = raw.get("replicas")
        if n is None:
            return [base]
        ids = tuple(f"{base.id}-{i}" for i in range(1, n + 1))
        self.replica_groups[base.id] = ids
        return [_replica(base, i) for i in ids]

    def _rule(self, raw: dict[str, Any], path: Path_) -> AckRule:
        if "topic" in raw:
            self.topic(raw["topic"], (*path, "topic"), raw.get("partition"))
        offsets = None
        if "offsets" in raw:
            try:
                offsets = parse_offsets(raw["offsets"])
            except ValueError as e:
                self.fail((*path, "offsets"), str(e))
        return AckRule(
            acks=self.acks(raw["acks"], (*path, "acks")),
            topic=raw.get("topic"),
            partition=raw.get("partition"),
            offsets=offsets,
            key=raw.get("key"),
            delivery_count=self.bound(raw["delivery-count"], (*path, "delivery-count"))
            if "delivery-count" in raw
            else None,
            from_ms=self.duration(raw["from"], (*path, "from")) if "from" in raw else None,
            until_ms=self.duration(raw["until"], (*path, "until")) if "until" in raw else None,
            processing=self.processing(raw["processing"], (*path, "processing"))
            if "processing" in raw
            else None,
        )

    def _steps(
        self,
        raw: list[dict[str, Any]],
        broker: BrokerConfig | None,
        group_configs: Mapping[str, str],
        classic: Mapping[str, tuple[ClassicOffset, ...]],
        targets: tuple[Target, ...],
    ) -> list[Step]:
        steps: list[Step] = []
        cursor = 0
        for i, s in enumerate(raw):
            path: Path_ = ("when", i)
            if "at" in s and "after" in s:
                self.fail(
                    path, "give at (absolute) or after (relative to the previous step), not both"
                )
            if "at" in s:
                at = self.duration(s["at"], (*path, "at"))
                if at < cursor:
                    self.fail(
                        (*path, "at"),
                        f"at {at} ms comes before the previous step ({cursor} ms); steps are in time order",
                    )
            else:
                at = cursor + (self.duration(s["after"], (*path, "after")) if "after" in s else 0)
            action = self._action(s, path, broker, classic)
            name = s.get("name")
            if name is not None:
                if name in self.send_steps or any(x.name == name for x in steps):
                    self.fail((*path, "name"), f"two steps are named {name!r}")
                if isinstance(action, Send | ResetOffsets | CopyOffsets):
                    self.send_steps.add(name)
            if action is not None:
                steps.append(Step(at, action, self.doc.where(path), name))
            cursor = at + (action.duration_ms if isinstance(action, Advance) else 0)
        return steps

    def _action(
        self,
        s: dict[str, Any],
        path: Path_,
        broker: BrokerConfig | None,
        classic: Mapping[str, tuple[ClassicOffset, ...]],
    ) -> Action | None:
        key = next(k for k in STEP_ACTIONS if k in s)
        value = s[key]
        sub: Path_ = (*path, key)
        if key == "produce":
            self.topic(value["topic"], (*sub, "topic"), value.get("partition"))
            if "key" in value and "keys" in value:
                self.fail(sub, "give key (one key) or keys (how many distinct keys), not both")
            return Produce(
                topic=value["topic"],
                records=value["records"],
                partition=value.get("partition"),
                batch=value.get("batch"),
                key=value.get("key"),
                keys=value.get("keys"),
                transaction=value.get("transaction"),
                record_bytes=value.get("record-bytes", 100),
            )
        if key in ("start", "stop", "kill", "hang"):
            return ConsumerAction(key, self.consumers(value, sub))
        if key == "subscribe":
            for i, t in enumerate(value["topics"]):
                self.topic(t, (*sub, "topics", i))
            return Subscribe(
                self.consumers(value["consumer"], (*sub, "consumer")), tuple(value["topics"])
            )
        if key == "restart-proxy":
            return RestartProxy(self.duration(value.get("downtime", 0), (*sub, "downtime")))
        if key == "kill-instance":
            if "instance" in value and "leader-of" in value:
                self.fail(sub, "give instance (an id) or leader-of (a topic partition), not both")
            if "leader-of" in value:
                leader = value["leader-of"]
                partition = leader.get("partition", 0)
                self.topic(leader["topic"], (*sub, "leader-of", "topic"), partition)
                return KillInstance(leader_of=(leader["topic"], partition))
            return KillInstance(instance=value["instance"])
        if key == "alter-config":
            configs = {k: (None if v is None else _config_text(v)) for k, v in value.items()}
            if broker is not None:
                self._group_config(broker, configs, sub)
            return AlterConfig(configs)
        if key == "reset-offsets":
            if "topic" in value:
                self.topic(value["topic"], (*sub, "topic"), value.get("partition"))
            elif "partition" in value:
                self.fail(sub, "a partition needs its topic")
            to = value["to"]
            if isinstance(to, str) and to.startswith("by_duration:"):
                try:
                    parse_by_duration_ms(to.removeprefix("by_duration:"))
                except ConfigError as e:
                    self.fail((*sub, "to"), str(e))
            return ResetOffsets(to, value.get("topic"), value.get("partition"))
        if key == "copy-offsets":
            if value["from"] not in classic:
                self.fail(
                    (*sub, "from"),
                    f"unknown classic group {value['from']!r}: declare it in given.classic-groups",
                )
            return CopyOffsets(value["from"])
        if key == "compact":
            self.topic(value, sub)
            if value in self.topics and not self.topics[value].compacted:
                self.fail(sub, f"topic {value!r} is not compacted: give it cleanup.policy: compact")
            return Compact(value)
        if key == "delete-records":
            self.topic(value["topic"], (*sub, "topic"), value.get("partition"))
            return DeleteRecords(value["topic"], value["before"], value.get("partition"))
        if key == "advance":
            return Advance(self.duration(value, sub))
        # send
        consumer = self.consumers(value["consumer"], (*sub, "consumer"))
        ack = value.get("acknowledge")
        if ack is not None:
            self.consumers(ack["held-by"], (*sub, "acknowledge", "held-by"))
        for i, t in enumerate(value.get("forget", [])):
            self.topic(t, (*sub, "forget", i))
        return Send(
            consumer=consumer[0] if consumer else value["consumer"],
            api=value["api"],
            epoch=value.get("epoch", "current"),
            ack_held_by=ack["held-by"] if ack else None,
            ack_type=ack["type"] if ack else "accept",
            forget=tuple(value.get("forget", [])),
        )

    def _expectation(
        self, raw: dict[str, Any], path: Path_, targets: tuple[Target, ...]
    ) -> Expectation:
        kind = next(k for k in EXPECT_KINDS if k in raw)
        value = raw[kind]
        sub: Path_ = (*path, kind)
        subject: dict[str, object] = {}
        checks: dict[str, Bound | str] = {}
        allowed: tuple[str, ...] = ()
        if kind in ("record", "records"):
            subject = dict(value)
            self.topic(value["topic"], (*sub, "topic"), value.get("partition"))
            if "offsets" in value:
                try:
                    subject["offsets"] = parse_offsets(value["offsets"])
                except ValueError as e:
                    self.fail((*sub, "offsets"), str(e))
            allowed = ("delivered", "delivery-count", "final", "archived")
        elif kind == "consumer":
            if value != "*":
                self.consumers(value, sub)
            subject = {"consumer": value}
            allowed = (
                "received",
                "accepted",
                "released",
                "rejected",
                "lock-lost",
                "ack-errors",
                "fetches",
                "max-per-fetch",
            )
        elif kind == "totals":
            checks = {k: self.bound(v, (*sub, k)) for k, v in value.items()}
        elif kind == "invariant":
            subject = {"name": value}
        elif kind == "throughput":
            subject = {
                "from": self.duration(value.get("from", 0), (*sub, "from")),
                "to": self.duration(value["to"], (*sub, "to")) if "to" in value else None,
            }
            checks = {"rate": Bound(value.get("min"), value.get("max"))}
        elif kind == "latency":
            checks = {k: self.bound(v, (*sub, k), durations=True) for k, v in value.items()}
        elif kind == "no-pause":
            subject = {
                "consumers": self.consumers(value["consumers"], (*sub, "consumers")),
                "from": self.duration(value.get("from", 0), (*sub, "from")),
                "to": self.duration(value["to"], (*sub, "to")) if "to" in value else None,
            }
            checks = {"max-gap": Bound(None, self.duration(value["max-gap"], (*sub, "max-gap")))}
        elif kind == "partition":
            self.topic(value["topic"], (*sub, "topic"), value.get("partition"))
            subject = {"topic": value["topic"], "partition": value.get("partition", 0)}
            allowed = ("start-offset", "in-flight-max")
        elif kind == "response":
            if value["step"] not in self.send_steps:
                self.fail(
                    (*sub, "step"),
                    f"no send, reset-offsets or copy-offsets step is named {value['step']!r}",
                )
            subject = {"step": value["step"]}
            allowed = ("error", "ack-error")
        elif kind == "dlq":
            subject = dict(value)
            if "source-topic" in value:
                self.topic(
                    value["source-topic"], (*sub, "source-topic"), value.get("source-partition")
                )
            if "source-offsets" in value:
                try:
                    subject["source-offsets"] = parse_offsets(value["source-offsets"])
                except ValueError as e:
                    self.fail((*sub, "source-offsets"), str(e))
            allowed = ("count", "cause", "delivery-count", "copied", "dlq-partition")
        else:  # group
            for k, v in value.items():
                checks[k] = v if k == "state" else self.bound(v, (*sub, k))
        for key in raw:
            if key in (kind, "targets", "because"):
                continue
            if key not in allowed:
                expected = ", ".join(allowed) if allowed else "nothing else"
                self.fail(
                    (*path, key),
                    f"{key} does not apply to a {kind} expectation (it takes {expected})",
                    at_key=True,
                )
                continue
            v = raw[key]
            if key in ("final", "archived", "cause"):
                checks[key] = str(v)
            elif key == "copied":
                checks[key] = str(bool(v)).lower()
            elif key in ("error", "ack-error"):
                if v not in ErrorCode.__members__:
                    close = difflib.get_close_matches(v, list(ErrorCode.__members__), n=1)
                    hint = f"; did you mean {close[0]}?" if close else ""
                    self.fail((*path, key), f"unknown Kafka error {v!r}{hint}")
                checks[key] = str(v)
            else:
                checks[key] = self.bound(v, (*path, key))
        if kind in ("record", "records", "consumer", "partition", "response", "dlq") and not checks:
            self.fail(path, f"a {kind} expectation needs something to check ({', '.join(allowed)})")
        if "archived" in checks and checks.get("final", "ARCHIVED") != "ARCHIVED":
            self.fail((*path, "archived"), "archived applies only with final: ARCHIVED")
        default: tuple[Target, ...] = ("sim",) if kind in SIM_ONLY_KINDS else targets
        wanted = cast(tuple[Target, ...], tuple(raw.get("targets", default)))
        for t in wanted:
            if t not in targets:
                self.fail((*path, "targets"), f"the scenario does not run on {t}")
        return Expectation(
            kind=kind,
            subject=subject,
            checks=checks,
            targets=wanted,
            where=self.doc.where(path),
            because=raw.get("because"),
            text=yaml.safe_dump(raw, default_flow_style=True, sort_keys=False, width=1000).strip(),
        )

    def _check_fleet(self, steps: Sequence[Step], consumers: Sequence[ConsumerSpec]) -> None:
        """Steps and consumers that name instances need given.fleet, and instances it has."""
        fleet = self.fleet
        killed: list[int] = []
        for i, step in enumerate(steps):
            a = step.action
            if isinstance(a, RestartProxy) and fleet is not None:
                self.problems.append(
                    Problem(
                        step.where,
                        f"when[{i}]: restart-proxy restarts a single proxy; in a fleet use "
                        "kill-instance",
                    )
                )
            if not isinstance(a, KillInstance):
                continue
            if fleet is None:
                self.problems.append(
                    Problem(
                        step.where,
                        f"when[{i}]: kill-instance needs a fleet: add given.fleet "
                        "(e.g. {instances: 2, session.timeout.ms: 6000})",
                    )
                )
                continue
            if a.instance is not None and a.instance >= fleet.instances:
                self.problems.append(
                    Problem(
                        step.where,
                        f"when[{i}]: unknown instance {a.instance}: the fleet has "
                        f"{fleet.instances} instance(s), 0-{fleet.instances - 1}",
                    )
                )
            elif a.instance is not None and a.instance in killed:
                self.problems.append(
                    Problem(step.where, f"when[{i}]: instance {a.instance} is killed already")
                )
            killed.append(a.instance if a.instance is not None else -1 - i)
            if len(killed) >= fleet.instances:
                self.problems.append(
                    Problem(
                        step.where,
                        f"when[{i}]: this would kill every instance of the fleet "
                        f"({fleet.instances}); at least one must survive",
                    )
                )
        for c in consumers:
            if c.instance is None:
                continue
            if fleet is None:
                self.problems.append(
                    Problem(c.where, f"consumer {c.id}: instance needs a fleet: add given.fleet")
                )
            elif c.instance >= fleet.instances:
                self.problems.append(
                    Problem(
                        c.where,
                        f"consumer {c.id}: unknown instance {c.instance}: the fleet has "
                        f"{fleet.instances} instance(s), 0-{fleet.instances - 1}",
                    )
                )

    def _check_live(
        self, steps: Sequence[Step], consumers: Sequence[ConsumerSpec], given: dict[str, Any]
    ) -> None:
        for i, step in enumerate(steps):
            a = step.action
            if isinstance(a, SIM_ONLY_ACTIONS) or (
                isinstance(a, ConsumerAction) and a.verb in SIM_ONLY_VERBS
            ):
                self.problems.append(
                    Problem(
                        step.where, f"when[{i}]: this step runs only in sim; add targets: [sim]"
                    )
                )
        for i, step in enumerate(steps):
            if isinstance(step.action, Produce) and step.action.transaction is not None:
                self.problems.append(
                    Problem(
                        step.where, f"when[{i}]: transactions run only in sim; add targets: [sim]"
                    )
                )
        for c in consumers:
            choices = [c.acks, *(r.acks for r in c.rules)]
            if any(name == "none" and p > 0 for acks in choices for name, p in acks):
                self.problems.append(
                    Problem(
                        c.where,
                        f"consumer {c.id}: acks none runs only in sim (librdkafka's explicit mode "
                        "refuses to poll again while records are unacknowledged); add targets: [sim]",
                    )
                )
            if c.crash_after_records is not None and c.crash_how == "hang":
                self.problems.append(
                    Problem(
                        c.where,
                        f"consumer {c.id}: crash how: hang runs only in sim (librdkafka keeps "
                        "heartbeating from its own thread); add targets: [sim]",
                    )
                )
        for i, p in enumerate(given.get("producers", [])):
            if "transaction" in p:
                self.fail(
                    ("given", "producers", i, "transaction"),
                    "transactions run only in sim; add targets: [sim]",
                    at_key=True,
                )
        if self.fleet is not None and self.fleet.session_timeout_ms < LIVE_MIN_FLEET_SESSION_MS:
            self.fail(
                ("given", "fleet", "session.timeout.ms"),
                f"{self.fleet.session_timeout_ms} is below the cluster's "
                f"group.min.session.timeout.ms ({LIVE_MIN_FLEET_SESSION_MS} by default), which "
                "a live fleet cannot go under; raise it or add targets: [sim]",
            )
        if "network" in given:
            self.fail(
                ("given", "network"),
                "network latency is simulated only; add targets: [sim]",
                at_key=True,
            )


def _config_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _with_start(c: ConsumerSpec, start_ms: int) -> ConsumerSpec:
    from dataclasses import replace

    return replace(c, start_ms=start_ms)


def _replica(c: ConsumerSpec, replica_id: str) -> ConsumerSpec:
    from dataclasses import replace

    return replace(c, id=replica_id, replica_of=c.id)
