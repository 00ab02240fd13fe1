"""The scenario loader: the schema is complete, and bad files are reported where they are wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from model.config import GROUP_CONFIG_KEYS
from sharegroup.scenario.load import (
    ScenarioError,
    load,
    loads,
    parse_duration_ms,
    parse_offsets,
    parse_rate_per_s,
)
from sharegroup.scenario.schema import ANNOTATIONS, KEYWORDS, load_schema, schema_keywords
from sharegroup.scenario.spec import Advance, ConsumerAction, FleetSpec, KillInstance, Produce

ROOT = Path(__file__).resolve().parents[2]

GOOD = """\
name: a good one
given:
  topics: {orders: {partitions: 2}}
  group: {id: g1, config: {share.auto.offset.reset: earliest}}
  consumers:
    - {id: c1}
    - {id: w, replicas: 3, start: 2s}
when:
  - {at: 1s, produce: {topic: orders, records: 10}}
  - {after: 500ms, advance: 2s}
  - {after: 1s, stop: c1}
then:
  - {records: {topic: orders}, delivered: 1}
"""


def test_a_good_scenario_loads_with_times_and_replicas() -> None:
    s = loads(GOOD, "good.yaml")
    assert [c.id for c in s.consumers] == ["c1", "w-1", "w-2", "w-3"]
    assert s.consumers[0].start_ms == 0
    assert s.consumers[1].start_ms == 2000
    assert [step.at_ms for step in s.steps] == [1000, 1500, 4500]
    assert isinstance(s.steps[0].action, Produce)
    assert isinstance(s.steps[1].action, Advance)
    assert isinstance(s.steps[2].action, ConsumerAction)
    assert s.duration_ms == 5500  # last step + 1 s settle
    assert s.group_configs == {"share.auto.offset.reset": "earliest"}
    assert s.targets == ("sim",)


def _problems(text: str) -> list[str]:
    with pytest.raises(ScenarioError) as info:
        loads(text, "bad.yaml")
    return [str(p) for p in info.value.problems]


@pytest.mark.parametrize(
    ("old", "new", "where", "fragment"),
    [
        ("partitions: 2", "partitons: 2", "bad.yaml:3:21:", "did you mean 'partitions'"),
        ("records: 10", "records: ten", "bad.yaml:9:48:", "expected an integer, got 'ten'"),
        ("at: 1s", "at: 1sec", "bad.yaml:9:10:", "expected a duration with a unit"),
        (
            "produce: {topic: orders,",
            "produce: {topic: ordres,",
            "bad.yaml:9:31:",
            "did you mean 'orders'",
        ),
        (
            "{after: 1s, stop: c1}",
            "{after: 1s, stop: c9}",
            "bad.yaml:11:23:",
            "unknown consumer 'c9'",
        ),
        (
            "{after: 1s, stop: c1}",
            "{after: 1s, stop: c1, kill: c1}",
            "bad.yaml:11:5:",
            "got 2: stop, kill",
        ),
        (
            "share.auto.offset.reset: earliest",
            "share.auto.offset.reset: earlyest",
            "bad.yaml:4:53:",
            "is not earliest, latest or by_duration",
        ),
        (
            "share.auto.offset.reset: earliest",
            "share.delivery.count.limit: 99",
            "bad.yaml:4:56:",
            "share.delivery.count.limit=99 is outside [2, 10]",
        ),
        (
            "delivered: 1}",
            "delivered: 1, final: DONE}",
            "bad.yaml:13:53:",
            "expected one of AVAILABLE",
        ),
        ("- {id: c1}", "- {id: c1, acks: relase}", "bad.yaml:6:22:", "did you mean release?"),
        ("at: 1s", "at: 1s, after: 1s", "bad.yaml:9:5:", "not both"),
    ],
)
def test_a_bad_value_is_reported_at_its_line_and_column(
    old: str, new: str, where: str, fragment: str
) -> None:
    assert old in GOOD
    problems = _problems(GOOD.replace(old, new, 1))
    assert any(p.startswith(where) and fragment in p for p in problems), problems


def test_every_problem_is_reported_not_just_the_first() -> None:
    text = GOOD.replace("partitions: 2", "partitions: 0").replace("records: 10", "records: -1")
    problems = _problems(text)
    assert len(problems) == 2, problems


def test_duplicate_keys_are_refused() -> None:
    problems = _problems(GOOD.replace("name: a good one\n", "name: a\nname: b\n"))
    assert problems == ["bad.yaml:2:1: duplicate key 'name' (first given at line 1)"]


def test_yaml_syntax_errors_carry_their_position() -> None:
    problems = _problems(GOOD.replace("{id: c1}", "{id: c1"))
    assert len(problems) == 1
    assert problems[0].startswith("bad.yaml:7:") and "not valid YAML" in problems[0]


def test_steps_out_of_time_order_are_refused() -> None:
    text = GOOD.replace("{after: 1s, stop: c1}", "{at: 0s, stop: c1}")
    assert any("comes before the previous step" in p for p in _problems(text))


def test_sim_only_steps_in_a_live_scenario_are_refused() -> None:
    text = GOOD.replace("name: a good one", "name: x\ntags: [live]").replace("stop: c1", "hang: c1")
    assert any("runs only in sim" in p for p in _problems(text))


def test_a_missing_file_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError) as info:
        load(tmp_path / "nope.yaml")
    assert "cannot read" in str(info.value)


def test_the_validator_applies_every_keyword_the_schema_uses() -> None:
    used = schema_keywords(load_schema())
    ignored_names = used - KEYWORDS - ANNOTATIONS
    # Property names of the schema itself show up too; they are all lower-case words with
    # dots or dashes, never JSON Schema keywords.
    unknown = {k for k in ignored_names if k in _JSON_SCHEMA_KEYWORDS}
    assert not unknown, f"schema.json uses keywords the validator ignores: {sorted(unknown)}"


_JSON_SCHEMA_KEYWORDS = {
    "allOf",
    "not",
    "if",
    "then",
    "else",
    "dependentRequired",
    "dependentSchemas",
    "prefixItems",
    "contains",
    "uniqueItems",
    "maxLength",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "patternProperties",
    "unevaluatedProperties",
    "unevaluatedItems",
    "maxProperties",
    "minContains",
    "maxContains",
    "format",
    "$anchor",
    "$dynamicRef",
}


def test_the_schema_lists_exactly_the_group_configs_the_model_knows() -> None:
    schema = load_schema()
    names = schema["$defs"]["groupConfig"]["propertyNames"]["enum"]
    assert sorted(names) == sorted(GROUP_CONFIG_KEYS)


def test_durations_rates_and_offsets_parse_strictly() -> None:
    assert parse_duration_ms("250ms") == 250
    assert parse_duration_ms("1.5m") == 90_000
    assert parse_duration_ms(0) == 0
    for bad in ("5", "5 s", "-1s", 5, "1d"):
        with pytest.raises(ValueError, match="duration"):
            parse_duration_ms(bad)
    assert parse_rate_per_s("5/ms") == 5000
    assert parse_offsets([3, "10-12"]) == ((3, 3), (10, 12))
    with pytest.raises(ValueError, match="ends before"):
        parse_offsets("9-3")


SCENARIOS = sorted((ROOT / "scenarios").glob("*.yaml"))


def test_the_library_has_at_least_25_scenarios_and_8_live_ones() -> None:
    loaded = [load(p) for p in SCENARIOS]
    assert len(loaded) >= 25
    assert sum(1 for s in loaded if "live" in s.targets) >= 8


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_every_library_scenario_validates(path: Path) -> None:
    s = load(path)
    assert s.expectations and s.description


FLEET = """\
name: a fleet
given:
  fleet: {instances: 2, session.timeout.ms: 6000, heartbeat.interval.ms: 500}
  topics: {orders: {partitions: 2}}
  consumers:
    - {id: c1, instance: 1}
    - {id: c2}
when:
  - {at: 1s, kill-instance: {instance: 1}}
then:
  - {records: {topic: orders}, delivered: 1}
"""


def test_a_fleet_scenario_loads_with_its_instances_and_kill_step() -> None:
    s = loads(FLEET, "fleet.yaml")
    assert s.fleet == FleetSpec(2, 6000, 500, 8)
    assert [c.instance for c in s.consumers] == [1, None]
    assert s.steps[0].action == KillInstance(instance=1)
    leader = loads(
        FLEET.replace("{instance: 1}}", "{leader-of: {topic: orders, partition: 1}}}"),
        "fleet.yaml",
    )
    assert leader.steps[0].action == KillInstance(leader_of=("orders", 1))


@pytest.mark.parametrize(
    ("old", "new", "fragment"),
    [
        (
            "  fleet: {instances: 2, session.timeout.ms: 6000, heartbeat.interval.ms: 500}\n",
            "",
            "kill-instance needs a fleet: add given.fleet",
        ),
        (
            "  fleet: {instances: 2, session.timeout.ms: 6000, heartbeat.interval.ms: 500}\n",
            "",
            "consumer c1: instance needs a fleet",
        ),
        (
            "kill-instance: {instance: 1}",
            "kill-instance: {instance: 2}",
            "bad.yaml:9:5: when[0]: unknown instance 2: the fleet has 2 instance(s), 0-1",
        ),
        (
            "{id: c1, instance: 1}",
            "{id: c1, instance: 5}",
            "consumer c1: unknown instance 5: the fleet has 2 instance(s), 0-1",
        ),
        (
            "kill-instance: {instance: 1}}",
            "kill-instance: {instance: 1}}\n  - {at: 2s, kill-instance: {instance: 0}}",
            "this would kill every instance of the fleet (2); at least one must survive",
        ),
        (
            "kill-instance: {instance: 1}}",
            "kill-instance: {instance: 1}}\n  - {at: 2s, kill-instance: {instance: 1}}",
            "instance 1 is killed already",
        ),
        (
            "kill-instance: {instance: 1}",
            "kill-instance: {instance: 1, leader-of: {topic: orders}}",
            "give instance (an id) or leader-of (a topic partition), not both",
        ),
        (
            "kill-instance: {instance: 1}",
            "kill-instance: {leader-of: {topic: orders, partition: 2}}",
            "partition 2 does not exist",
        ),
        ("kill-instance: {instance: 1}", "kill-instance: {}", "expected at least 1 key"),
        (
            "kill-instance: {instance: 1}}",
            "restart-proxy: {downtime: 1s}}",
            "restart-proxy restarts a single proxy; in a fleet use kill-instance",
        ),
        (
            "heartbeat.interval.ms: 500",
            "heartbeat.interval.ms: 6000",
            "heartbeat.interval.ms=6000 must be below session.timeout.ms=6000",
        ),
        ("{instances: 2,", "{instances: 0,", "given.fleet.instances"),
        (
            "name: a fleet\n",
            "name: a fleet\ntags: [live]\n",
            None,
        ),
        (
            "session.timeout.ms: 6000",
            "session.timeout.ms: 3000",
            None,
        ),
    ],
)
def test_a_bad_fleet_is_reported_clearly(old: str, new: str, fragment: str | None) -> None:
    assert old in FLEET
    text = FLEET.replace(old, new, 1)
    if fragment is None:
        loads(text, "fine.yaml")  # each alone is fine: live with 6 s, or 3 s in sim only
        return
    problems = _problems(text)
    assert any(fragment in p for p in problems), problems


def test_a_live_fleet_cannot_go_below_the_clusters_minimum_session_timeout() -> None:
    text = FLEET.replace("name: a fleet\n", "name: a fleet\ntags: [live]\n").replace(
        "session.timeout.ms: 6000", "session.timeout.ms: 3000"
    )
    problems = _problems(text)
    assert any(
        "given.fleet.session.timeout.ms: 3000 is below the cluster's group.min.session.timeout.ms"
        in p
        for p in problems
    ), problems
