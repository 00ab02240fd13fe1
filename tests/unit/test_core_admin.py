"""The group admin APIs' decisions for share groups (``sharegroup/core/admin.py``): ListGroups,
DescribeGroups, DeleteGroups and DescribeConfigs of GROUP resources, one named test each, with
no I/O: the engine as the proxy holds it, stored share partitions as a set of keys."""

from __future__ import annotations

from uuid import UUID

from model import BrokerConfig, ErrorCode, SharePartition
from sharegroup.core.admin import (
    SOURCE_DEFAULT,
    SOURCE_GROUP,
    TYPE_INT,
    TYPE_STRING,
    AdminCore,
    ConfigSynonym,
    GroupDeletion,
    ListedGroup,
    NotShareGroup,
    ShareGroupInfo,
)
from sharegroup.core.messages import Refused
from sharegroup.engine import ShareEngine

T1 = UUID("01a2058e-3f4b-4c5d-8e6f-708192a3b4c5")
T2 = UUID("fedcba98-7654-4321-8fed-cba987654321")
LOCK = "share.record.lock.duration.ms"
RESET = "share.auto.offset.reset"


def make() -> AdminCore:
    return AdminCore(ShareEngine(BrokerConfig.from_mapping()))


def join(core: AdminCore, group: str, member: str = "m1") -> None:
    core.engine.heartbeat(
        group,
        member,
        0,
        now_ms=0,
        partition_counts={"t1": 1},
        subscribed_topic_names=["t1"],
        client_id="c-" + member,
        client_host="/127.0.0.1",
    )


def with_state(core: AdminCore, group: str, topic_id: UUID = T1, partition: int = 0) -> None:
    """A group without members that has share-partition state (it exists for Kafka)."""
    core.engine.add_partition((group, topic_id, partition), SharePartition(0))


def configs_only(core: AdminCore, group: str) -> None:
    core.engine.set_group_configs(group, {LOCK: "20000"})


# ---------------------------------------------------------------- ListGroups
def test_list_without_filters_asks_upstream_and_lists_share_groups_by_id() -> None:
    core = make()
    join(core, "b")
    with_state(core, "a")
    got = core.list_groups([], [])
    assert got.ask_upstream
    assert got.share_groups == (ListedGroup("a", "Empty"), ListedGroup("b", "Stable"))


def test_list_leaves_out_a_group_that_only_has_configs() -> None:
    core = make()
    configs_only(core, "c")
    with_state(core, "a")
    assert [g.group_id for g in core.list_groups([], []).share_groups] == ["a"]


def test_list_of_type_share_only_does_not_ask_upstream() -> None:
    core = make()
    with_state(core, "a")
    got = core.list_groups(["Share"], [])
    assert not got.ask_upstream
    assert [g.group_id for g in got.share_groups] == ["a"]


def test_list_of_other_types_asks_upstream_and_lists_no_share_group() -> None:
    core = make()
    with_state(core, "a")
    got = core.list_groups(["consumer"], [])
    assert got.ask_upstream and got.share_groups == ()
    both = core.list_groups(["consumer", "share"], [])
    assert both.ask_upstream and [g.group_id for g in both.share_groups] == ["a"]


def test_list_filters_share_groups_by_state_in_any_case() -> None:
    core = make()
    join(core, "b")
    with_state(core, "a")
    assert core.list_groups([], ["STABLE"]).share_groups == (ListedGroup("b", "Stable"),)
    assert core.list_groups([], ["empty"]).share_groups == (ListedGroup("a", "Empty"),)
    assert core.list_groups([], ["Dead"]).share_groups == ()


def test_a_node_lists_only_the_groups_coordinated_there() -> None:
    """In a fleet every group is listed by the instance that coordinates it, share groups and
    the upstream's alike, so that the answers of all nodes list each group once."""
    core = make()
    with_state(core, "a")
    with_state(core, "b")
    here = {"a", "classic-1"}.__contains__
    assert [g.group_id for g in core.list_groups([], [], here).share_groups] == ["a"]
    assert core.keeps_upstream(["classic-1", "classic-2"], here) == [True, False]
    assert core.keeps_upstream(["classic-1", "classic-2"], None) == [True, True]


def test_only_one_node_of_an_instance_lists_share_groups() -> None:
    core = make()
    with_state(core, "a")
    got = core.list_groups([], [], lists_share_groups=False)
    assert got.ask_upstream and got.share_groups == ()


# ---------------------------------------------------------------- DescribeGroups
def test_describe_of_a_share_group_lists_its_members() -> None:
    core = make()
    join(core, "g", "m1")
    join(core, "g", "m2")
    got = core.describe_group("g")
    assert isinstance(got, ShareGroupInfo)
    assert got.state == "Stable"
    assert [(m.member_id, m.client_id, m.client_host) for m in got.members] == [
        ("m1", "c-m1", "/127.0.0.1"),
        ("m2", "c-m2", "/127.0.0.1"),
    ]


def test_describe_sends_unknown_and_config_only_groups_upstream() -> None:
    core = make()
    configs_only(core, "c")
    assert core.describe_group("nope") == NotShareGroup("nope")
    assert core.describe_group("c") == NotShareGroup("c")


# ---------------------------------------------------------------- DeleteGroups
def test_delete_sends_unknown_and_config_only_groups_upstream() -> None:
    core = make()
    configs_only(core, "c")
    assert core.delete_group("nope", set()) == NotShareGroup("nope")
    assert core.delete_group("c", set()) == NotShareGroup("c")


def test_delete_of_a_group_with_members_is_non_empty_group_even_when_fenced() -> None:
    core = make()
    join(core, "g")
    got = core.delete_group("g", set(), fenced=True)
    assert isinstance(got, Refused) and got.code == ErrorCode.NON_EMPTY_GROUP
    assert core.engine.group("g") is not None


def test_delete_on_a_fenced_instance_is_not_coordinator() -> None:
    core = make()
    with_state(core, "g")
    got = core.delete_group("g", set(), fenced=True)
    assert isinstance(got, Refused) and got.code == ErrorCode.NOT_COORDINATOR


def test_delete_tombstones_the_groups_partitions_in_memory_and_stored() -> None:
    core = make()
    with_state(core, "g", T1, 0)
    with_state(core, "other", T1, 0)
    stored = {("g", T2, 3), ("g", T1, 0), ("other", T2, 0)}
    got = core.delete_group("g", stored)
    assert got == GroupDeletion("g", tuple(sorted([("g", T1, 0), ("g", T2, 3)], key=str)))
    assert core.engine.share_partition(("g", T1, 0)) is not None  # nothing before it is durable


def test_delete_without_a_state_store_writes_no_tombstones() -> None:
    core = make()
    with_state(core, "g")
    assert core.delete_group("g", None) == GroupDeletion("g", ())


def test_apply_delete_forgets_the_group_and_its_partitions_but_keeps_its_configs() -> None:
    core = make()
    with_state(core, "g")
    core.engine.set_group_configs("g", {LOCK: "20000"})
    deletion = core.delete_group("g", set())
    assert isinstance(deletion, GroupDeletion)
    assert core.apply_delete(deletion) == ErrorCode.NONE
    assert core.engine.share_partition(("g", T1, 0)) is None
    assert core.describe_group("g") == NotShareGroup("g")
    assert core.engine.group_config("g").record_lock_duration_ms == 20000


def test_apply_delete_after_a_member_joined_meanwhile_is_non_empty_group() -> None:
    core = make()
    with_state(core, "g")
    deletion = core.delete_group("g", set())
    assert isinstance(deletion, GroupDeletion)
    join(core, "g")  # while the tombstones were written
    assert core.apply_delete(deletion) == ErrorCode.NON_EMPTY_GROUP
    assert core.engine.share_partition(("g", T1, 0)) is not None


def test_a_group_the_upstream_left_out_of_its_answer_is_group_id_not_found() -> None:
    got = AdminCore.upstream_codes(["a", "b"], {"a": 0})
    assert got == {"a": 0, "b": int(ErrorCode.GROUP_ID_NOT_FOUND)}


# ---------------------------------------------------------------- DescribeConfigs
def test_describe_configs_shows_defaults_as_default_config() -> None:
    got = {c.name: c for c in make().describe_configs("g", None, include_synonyms=False)}
    lock = got[LOCK]
    assert (lock.value, lock.source, lock.is_default, lock.synonyms) == (
        "30000",
        SOURCE_DEFAULT,
        True,
        (),
    )
    assert got[RESET].value == "latest"


def test_describe_configs_shows_an_override_as_group_config() -> None:
    core = make()
    core.engine.set_group_configs("g", {LOCK: "20000"})
    got = {c.name: c for c in core.describe_configs("g", None, include_synonyms=False)}
    assert (got[LOCK].value, got[LOCK].source, got[LOCK].is_default) == (
        "20000",
        SOURCE_GROUP,
        False,
    )
    assert got[RESET].source == SOURCE_DEFAULT


def test_synonyms_list_the_override_then_the_broker_default_under_its_broker_name() -> None:
    core = make()
    core.engine.set_group_configs("g", {LOCK: "20000"})
    got = {c.name: c for c in core.describe_configs("g", None, include_synonyms=True)}
    assert got[LOCK].synonyms == (
        ConfigSynonym(LOCK, "20000", SOURCE_GROUP),
        ConfigSynonym("group." + LOCK, "30000", SOURCE_DEFAULT),
    )
    # No group.share.auto.offset.reset on the broker: the default keeps the group's name.
    assert got[RESET].synonyms == (ConfigSynonym(RESET, "latest", SOURCE_DEFAULT),)


def test_describe_configs_answers_only_the_keys_asked_for() -> None:
    got = make().describe_configs("g", [RESET, "no.such.config"], include_synonyms=False)
    assert [c.name for c in got] == [RESET]
    every = make().describe_configs("g", [], include_synonyms=False)
    assert len(every) == 13


def test_config_types_are_int_for_numbers_and_string_otherwise() -> None:
    got = {c.name: c for c in make().describe_configs("g", None, include_synonyms=False)}
    assert got[LOCK].config_type == TYPE_INT
    assert got[RESET].config_type == TYPE_STRING
    assert all(c.documentation is None and not c.read_only for c in got.values())
