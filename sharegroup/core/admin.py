"""The decisions of the group admin APIs for share groups, which live in the proxy (the
upstream cluster knows nothing of them), as Kafka's GroupCoordinator makes them:

* ListGroups (16): which share groups are listed (type ``share``, protocol type ``share``)
  under the request's types and states filters, and whether the upstream is asked at all;
* DescribeGroups (15): a share group is described here (protocol type ``share``), any other
  group id goes upstream;
* DeleteGroups (42): a share group with members is NON_EMPTY_GROUP; an empty one has its
  share-partition state tombstoned first, then is forgotten (its configs stay, as in Kafka);
  other group ids go upstream;
* DescribeConfigs (32) on GROUP resources: each share config's effective value, its source
  (the group's own override or the broker default) and Kafka's synonyms.

A group exists as Kafka's group coordinator sees it: a member joined or it has share-partition
state. Configs alone do not make a group, so such a group is neither listed nor described.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from model import ErrorCode, GroupConfig, ShareApiError
from model.config import BACKOFF_KEY, BACKOFF_MAX_KEY, DLQ_COPY_KEY, DLQ_TOPIC_KEY
from sharegroup.core.messages import Refused
from sharegroup.core.offsets import FENCED
from sharegroup.engine import PartitionKey, ShareEngine

SHARE = "share"  # the group type and protocol type of a share group
SIMPLE_ASSIGNOR = "simple"  # DescribeGroups' ProtocolData of a share group

# DescribeConfigs' ConfigSource and ConfigType values (Kafka's DescribeConfigsResponse).
SOURCE_GROUP = 8  # GROUP_CONFIG: the group's own override
SOURCE_DEFAULT = 5  # DEFAULT_CONFIG: the broker's value
TYPE_STRING, TYPE_INT = 2, 3


def group_config_values(config: GroupConfig) -> dict[str, str]:
    """A group's effective share configs as DescribeConfigs shows them, in Kafka's order."""
    return {
        "share.session.timeout.ms": str(config.session_timeout_ms),
        "share.heartbeat.interval.ms": str(config.heartbeat_interval_ms),
        "share.record.lock.duration.ms": str(config.record_lock_duration_ms),
        "share.delivery.count.limit": str(config.delivery_count_limit),
        "share.partition.max.record.locks": str(config.partition_max_record_locks),
        "share.auto.offset.reset": config.auto_offset_reset,
        "share.isolation.level": config.isolation_level,
        "share.renew.acknowledge.enable": str(config.renew_acknowledge_enable).lower(),
        "share.assignment.interval.ms": str(config.assignment_interval_ms),
        BACKOFF_KEY: str(config.redelivery_backoff_ms),
        BACKOFF_MAX_KEY: str(config.redelivery_backoff_max_ms),
        DLQ_TOPIC_KEY: config.dlq_topic_name,
        DLQ_COPY_KEY: str(config.dlq_copy_record_enable).lower(),
    }


@dataclass(frozen=True, slots=True)
class ListedGroup:
    group_id: str
    state: str


@dataclass(frozen=True, slots=True)
class GroupListing:
    """ListGroups: whether the upstream's groups are asked for, and the share groups."""

    ask_upstream: bool
    share_groups: tuple[ListedGroup, ...]


@dataclass(frozen=True, slots=True)
class GroupMemberInfo:
    member_id: str
    client_id: str
    client_host: str


@dataclass(frozen=True, slots=True)
class ShareGroupInfo:
    """DescribeGroups of a share group: protocol type ``share``, protocol data ``simple``,
    no member metadata or assignment bytes."""

    group_id: str
    state: str
    members: tuple[GroupMemberInfo, ...]


@dataclass(frozen=True, slots=True)
class GroupDeletion:
    """An empty share group to delete: tombstones for these share partitions are written
    first, then ``AdminCore.apply_delete`` forgets the group."""

    group_id: str
    tombstones: tuple[PartitionKey, ...]


@dataclass(frozen=True, slots=True)
class NotShareGroup:
    """The group id names no share group: the upstream cluster answers for it."""

    group_id: str


@dataclass(frozen=True, slots=True)
class ConfigSynonym:
    name: str
    value: str
    source: int


@dataclass(frozen=True, slots=True)
class DescribedConfig:
    name: str
    value: str
    source: int
    is_default: bool
    config_type: int
    synonyms: tuple[ConfigSynonym, ...]
    read_only: bool = False
    is_sensitive: bool = False
    documentation: str | None = None  # Kafka's own text is not repeated here


class AdminCore:
    def __init__(self, engine: ShareEngine) -> None:
        self.engine = engine

    def _share_group(self, group_id: str) -> bool:
        entry = self.engine.group(group_id)
        return entry is not None and entry.exists

    # ------------------------------------------------------------------ ListGroups
    def list_groups(
        self,
        types: Sequence[str],
        states: Sequence[str],
        coordinates: Callable[[str], bool] | None = None,
        *,
        lists_share_groups: bool = True,
    ) -> GroupListing:
        """``types``/``states``: the request's filters (empty: no filter), any case.

        As a Kafka broker lists only the groups it coordinates, so that the answers of all
        the nodes an admin client asks list each group once, a node lists only the groups
        ``coordinates`` says are coordinated here (every group when None): in a fleet, those
        whose state partition this instance owns, share groups and the upstream's relayed
        groups alike (``keeps_upstream``). Of the nodes of one instance (one per upstream
        broker), only one lists share groups (``lists_share_groups``)."""
        wanted_types = [t.lower() for t in types]
        wanted_states = [s.lower() for s in states]
        ask_upstream = not wanted_types or any(t != SHARE for t in wanted_types)
        listed: list[ListedGroup] = []
        if lists_share_groups and (not wanted_types or SHARE in wanted_types):
            for group_id, entry in sorted(self.engine.groups.items()):
                if not entry.exists:
                    continue
                if coordinates is not None and not coordinates(group_id):
                    continue
                state = entry.group.state
                if wanted_states and state.lower() not in wanted_states:
                    continue
                listed.append(ListedGroup(group_id, state))
        return GroupListing(ask_upstream, tuple(listed))

    @staticmethod
    def keeps_upstream(
        group_ids: Iterable[str], coordinates: Callable[[str], bool] | None
    ) -> list[bool]:
        """Which of the upstream's listed groups this node lists too (see ``list_groups``):
        in a fleet, the groups FindCoordinator routes to this instance."""
        return [coordinates is None or coordinates(g) for g in group_ids]

    # ------------------------------------------------------------------ DescribeGroups
    def describe_group(self, group_id: str) -> ShareGroupInfo | NotShareGroup:
        entry = self.engine.group(group_id)
        if entry is None or not entry.exists:
            return NotShareGroup(group_id)
        return ShareGroupInfo(
            group_id,
            entry.group.state,
            tuple(
                GroupMemberInfo(m.member_id, m.client_id, m.client_host)
                for m in entry.group.members.values()
            ),
        )

    # ------------------------------------------------------------------ DeleteGroups
    def delete_group(
        self, group_id: str, durable: Iterable[PartitionKey] | None, *, fenced: bool = False
    ) -> GroupDeletion | NotShareGroup | Refused:
        """``durable``: the keys of the stored share partitions (None without a state
        store); nothing changes until ``apply_delete``."""
        entry = self.engine.group(group_id)
        if entry is None or not entry.exists:
            return NotShareGroup(group_id)
        if entry.group.members:
            return Refused(ErrorCode.NON_EMPTY_GROUP, f"Group {group_id} is not empty.")
        if fenced:
            return Refused(ErrorCode.NOT_COORDINATOR, FENCED)
        if durable is None:
            return GroupDeletion(group_id, ())
        keys = {k for k in self.engine.partitions if k[0] == group_id}
        keys |= {k for k in durable if k[0] == group_id}
        return GroupDeletion(group_id, tuple(sorted(keys, key=str)))

    def apply_delete(self, deletion: GroupDeletion) -> ErrorCode:
        """The tombstones are durable: the group goes. A member that joined meanwhile keeps
        it (NON_EMPTY_GROUP)."""
        try:
            self.engine.delete_group(deletion.group_id)
        except ShareApiError as e:
            return e.code
        return ErrorCode.NONE

    @staticmethod
    def upstream_codes(asked: Sequence[str], answered: Mapping[str, int]) -> dict[str, int]:
        """The upstream's DeleteGroups codes of the group ids sent to it; one it left out of
        its answer is GROUP_ID_NOT_FOUND."""
        return {g: answered.get(g, int(ErrorCode.GROUP_ID_NOT_FOUND)) for g in asked}

    # ------------------------------------------------------------------ DescribeConfigs
    def describe_configs(
        self, group_id: str, keys: Sequence[str] | None, *, include_synonyms: bool
    ) -> list[DescribedConfig]:
        """The share configs of a GROUP resource (``keys`` empty or None: all of them).
        Kafka's synonyms, most specific first: the group's own value, then the broker default
        it overrides (named ``group.share.*`` where the broker has such a config)."""
        engine = self.engine
        entry = engine.group(group_id)
        overrides = entry.overrides if entry is not None else {}
        values = group_config_values(engine.group_config(group_id))
        defaults = group_config_values(GroupConfig.defaults(engine.broker_config))
        out: list[DescribedConfig] = []
        for name, value in values.items():
            if keys and name not in keys:
                continue
            is_override = name in overrides
            synonyms: list[ConfigSynonym] = []
            if include_synonyms:
                if is_override:
                    synonyms.append(ConfigSynonym(name, value, SOURCE_GROUP))
                default_name = "group." + name
                if default_name not in engine.broker_config.values:
                    default_name = name
                synonyms.append(ConfigSynonym(default_name, defaults[name], SOURCE_DEFAULT))
            out.append(
                DescribedConfig(
                    name=name,
                    value=value,
                    source=SOURCE_GROUP if is_override else SOURCE_DEFAULT,
                    is_default=not is_override,
                    config_type=TYPE_INT if value.isdigit() else TYPE_STRING,
                    synonyms=tuple(synonyms),
                )
            )
        return out
