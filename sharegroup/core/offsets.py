"""The decisions of the share-group offsets APIs: DescribeShareGroupOffsets (90),
AlterShareGroupOffsets (91) and DeleteShareGroupOffsets (92), as Kafka's GroupCoordinator
makes them: altering or deleting needs an empty group (NON_EMPTY_GROUP otherwise); altering
starts a share partition afresh at the new start offset; deleting forgets it.

The driver persists what the plan says (reset snapshots, tombstones) before it calls
``apply``, so an answer never claims a change that is not durable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar
from uuid import UUID

from model import ErrorCode, RecordState, SharePartition
from sharegroup.core.messages import Refused
from sharegroup.engine import PartitionKey, ShareEngine

FENCED = "this proxy instance was fenced by a newer one"
NOT_OWNED = "the share state of this partition is owned by another instance of the fleet"

T = TypeVar("T")


def by_owner(
    items: Iterable[T], owner_of: Callable[[T], int], me: int
) -> tuple[list[T], dict[int, list[T]]]:
    """A fleet's split of an offsets change: the items whose share state this instance
    (``me``) owns, and those of every other instance, in the order given. Only the owner of a
    state partition writes it, so the coordinator writes its own part and passes each other
    part on to its owner."""
    mine: list[T] = []
    others: dict[int, list[T]] = {}
    for item in items:
        owner = owner_of(item)
        if owner == me:
            mine.append(item)
        else:
            others.setdefault(owner, []).append(item)
    return mine, others


@dataclass(frozen=True, slots=True)
class TopicInfo:
    """What the driver knows of a topic: its id and partitions."""

    topic_id: UUID
    partitions: frozenset[int]


@dataclass(frozen=True, slots=True)
class PartitionResult:
    topic: str
    partition: int
    code: ErrorCode = ErrorCode.NONE
    message: str | None = None


@dataclass(slots=True)
class AlterPlan:
    """Per-partition results, and the share partitions to start afresh (key, start offset)
    once their reset snapshots are durable."""

    results: list[PartitionResult] = field(default_factory=list)
    resets: list[tuple[PartitionKey, int]] = field(default_factory=list)


@dataclass(slots=True)
class DeletePlan:
    """Per-topic results, and the share partitions to forget once their tombstones are
    durable."""

    results: list[tuple[str, UUID | None, ErrorCode, str | None]] = field(default_factory=list)
    forget: list[PartitionKey] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class DescribedOffset:
    """One partition of DescribeShareGroupOffsets: its start offset (-1 unknown) and, for
    ``lag_of`` set, the key whose lag the driver computes with the log's high watermark."""

    topic: str
    partition: int
    start_offset: int = -1
    code: ErrorCode = ErrorCode.NONE
    message: str | None = None
    lag_of: PartitionKey | None = None


class OffsetsCore:
    """The offsets APIs over one engine. ``durable`` arguments are the start offsets of the
    share partitions as stored (None without a state store: the engine's are used), as Kafka
    answers from the share coordinator: an acknowledgement whose write is in flight does not
    move a start offset yet."""

    def __init__(self, engine: ShareEngine) -> None:
        self.engine = engine

    def known_partitions(
        self, group_id: str, durable: Mapping[PartitionKey, int] | None
    ) -> dict[PartitionKey, int]:
        """The group's share partitions with their start offsets."""
        if durable is not None:
            return {k: start for k, start in durable.items() if k[0] == group_id}
        return {k: sp.start_offset for k, sp in self.engine.partitions.items() if k[0] == group_id}

    def group_exists(self, group_id: str, durable: Mapping[PartitionKey, int] | None) -> bool:
        """As Kafka's group coordinator sees it: a member joined or it has share-partition
        state (configs alone do not make a group)."""
        entry = self.engine.group(group_id)
        return (entry is not None and entry.exists) or bool(
            self.known_partitions(group_id, durable)
        )

    def check_empty(self, group_id: str) -> Refused | None:
        """Offsets change only in a group without members."""
        entry = self.engine.group(group_id)
        if entry is not None and entry.group.members:
            return Refused(ErrorCode.NON_EMPTY_GROUP, f"share group {group_id} has members")
        return None

    # ------------------------------------------------------------------ 90
    def describe(
        self,
        group_id: str,
        wanted: Sequence[tuple[str, int]] | None,
        topics: Mapping[str, TopicInfo],
        topic_names: Mapping[UUID, str],
        durable: Mapping[PartitionKey, int] | None,
    ) -> Refused | list[DescribedOffset]:
        """``wanted`` None: every share partition of the group, in topic id order."""
        if not self.group_exists(group_id, durable):
            return Refused(ErrorCode.GROUP_ID_NOT_FOUND, f"share group {group_id} does not exist")
        known = self.known_partitions(group_id, durable)
        if wanted is None:
            wanted = [
                (topic_names[tid], p)
                for _, tid, p in sorted(known, key=lambda k: (str(k[1]), k[2]))
                if tid in topic_names
            ]
        out: list[DescribedOffset] = []
        for name, partition in wanted:
            info = topics.get(name)
            if info is None:
                out.append(
                    DescribedOffset(
                        name, partition, -1, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "unknown topic"
                    )
                )
                continue
            key = (group_id, info.topic_id, partition)
            start = known.get(key, -1)
            out.append(DescribedOffset(name, partition, start, lag_of=key if start >= 0 else None))
        return out

    def lag(self, key: PartitionKey, start_offset: int, high_watermark: int) -> int:
        """Records from the start offset to the high watermark not yet acknowledged or
        archived."""
        done = 0
        sp = self.engine.share_partition(key)
        if sp is not None:
            done = sum(
                last - first + 1
                for first, last, state, *_ in sp.ranges()
                if state in (RecordState.ACKNOWLEDGED, RecordState.ARCHIVED)
            )
        return max(0, high_watermark - start_offset - done)

    # ------------------------------------------------------------------ 91
    def alter(
        self,
        group_id: str,
        targets: Sequence[tuple[str, int, int]],
        topics: Mapping[str, TopicInfo],
        *,
        fenced: bool = False,
    ) -> Refused | AlterPlan:
        """``targets``: (topic, partition, new start offset) in request order."""
        if not group_id:
            return Refused(ErrorCode.INVALID_GROUP_ID, "group id must not be empty")
        refused = self.check_empty(group_id)
        if refused is not None:
            return refused
        if fenced:
            return Refused(ErrorCode.NOT_COORDINATOR, FENCED)
        plan = AlterPlan()
        for name, partition, start in targets:
            info = topics.get(name)
            if info is None or partition not in info.partitions:
                plan.results.append(
                    PartitionResult(
                        name,
                        partition,
                        ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                        f"unknown partition {name}-{partition}",
                    )
                )
                continue
            if start < 0:
                plan.results.append(
                    PartitionResult(
                        name, partition, ErrorCode.INVALID_REQUEST, "start offset must be >= 0"
                    )
                )
                continue
            plan.resets.append(((group_id, info.topic_id, partition), start))
            plan.results.append(PartitionResult(name, partition))
        return plan

    def apply_resets(self, group_id: str, resets: Sequence[tuple[PartitionKey, int]]) -> None:
        """The reset snapshots are durable: the share partitions start afresh."""
        self.engine.group(group_id, create=True)
        for key, start in resets:
            self.engine.add_partition(key, SharePartition(start))

    # ------------------------------------------------------------------ 92
    def delete(
        self,
        group_id: str,
        topic_names: Sequence[str],
        topics: Mapping[str, TopicInfo],
        durable: Mapping[PartitionKey, int] | None,
    ) -> Refused | DeletePlan:
        if not group_id:
            return Refused(ErrorCode.INVALID_GROUP_ID, "group id must not be empty")
        if not self.group_exists(group_id, durable):
            return Refused(ErrorCode.GROUP_ID_NOT_FOUND, f"share group {group_id} does not exist")
        refused = self.check_empty(group_id)
        if refused is not None:
            return refused
        known = self.known_partitions(group_id, durable)
        plan = DeletePlan()
        for name in topic_names:
            info = topics.get(name)
            if info is None:
                plan.results.append(
                    (name, None, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "unknown topic")
                )
                continue
            plan.forget += [k for k in known if k[1] == info.topic_id]
            plan.results.append((name, info.topic_id, ErrorCode.NONE, None))
        return plan

    def apply_deletes(self, group_id: str, keys: Sequence[PartitionKey]) -> None:
        """The tombstones are durable: the share partitions are forgotten."""
        for key in keys:
            self.engine.partitions.pop(key, None)
            entry = self.engine.group(group_id)
            if entry is not None:
                entry.partitions.discard((key[1], key[2]))
