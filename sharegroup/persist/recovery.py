"""Replaying the state topic into durable share-partition states (pure).

A snapshot replaces what is known of its key; an update merges into it; a tombstone deletes it
(as Kafka's ``ShareCoordinatorShard`` replays its log). The merge is Kafka's
(``PersisterStateBatchCombiner``): SPSO never moves back, everything below SPSO is dropped, and
where ranges overlap the one with the higher delivery count wins, ties going to the higher state
id — not simply the last write.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from uuid import UUID

from sortedcontainers import SortedDict

from model import RecordState, StateBatch
from sharegroup.persist.records import (
    GroupConfigs,
    PartitionKey,
    Record,
    Snapshot,
    Tombstone,
    TopicIdAssigned,
    Update,
    WriterClaim,
)


@dataclass(slots=True)
class DurableState:
    """What the state topic says of one share partition."""

    start_offset: int
    state_epoch: int = 0
    snapshot_epoch: int = 0
    leader_epoch: int = 0
    updates_since_snapshot: int = 0
    create_timestamp: int = 0
    ranges: SortedDict[int, tuple[int, RecordState, int]] = field(default_factory=SortedDict)

    def batches(self) -> tuple[StateBatch, ...]:
        """The ranges, adjacent equal ones joined."""
        out: list[StateBatch] = []
        for f, (last, s, c) in self.ranges.items():
            if (
                out
                and out[-1].last_offset + 1 == f
                and out[-1].state is s
                and out[-1].delivery_count == c
            ):
                out[-1] = StateBatch(out[-1].first_offset, last, s, c)
            else:
                out.append(StateBatch(f, last, s, c))
        return tuple(out)

    def merge(self, start_offset: int, batches: Iterable[StateBatch]) -> None:
        self.start_offset = max(self.start_offset, start_offset)
        for b in batches:
            self._merge_one(b)
        self._drop_below(self.start_offset)

    def _split(self, offset: int) -> None:
        ranges = self.ranges
        i = ranges.bisect_right(offset) - 1
        if i < 0:
            return
        first, (last, state, count) = ranges.peekitem(i)
        if first < offset <= last:
            ranges[first] = (offset - 1, state, count)
            ranges[offset] = (last, state, count)

    def _merge_one(self, b: StateBatch) -> None:
        lo, hi = b.first_offset, b.last_offset
        if hi < lo:
            return
        self._split(lo)
        self._split(hi + 1)
        ranges = self.ranges
        cursor = lo
        for first in list(ranges.irange(lo, hi)):
            last, state, count = ranges[first]
            if cursor < first:
                ranges[cursor] = (first - 1, b.state, b.delivery_count)
            if (b.delivery_count, int(b.state)) > (count, int(state)):
                ranges[first] = (last, b.state, b.delivery_count)
            cursor = last + 1
        if cursor <= hi:
            ranges[cursor] = (hi, b.state, b.delivery_count)

    def _drop_below(self, offset: int) -> None:
        ranges = self.ranges
        while ranges:
            first, (last, state, count) = ranges.peekitem(0)
            if first >= offset:
                return
            del ranges[first]
            if last >= offset:
                ranges[offset] = (last, state, count)
                return


@dataclass(slots=True)
class Replay:
    partitions: dict[PartitionKey, DurableState] = field(default_factory=dict)
    group_configs: dict[str, dict[str, str]] = field(default_factory=dict)
    topic_ids: dict[str, UUID] = field(default_factory=dict)
    records: int = 0
    owner: UUID | None = None  # the writer of the last claim read
    ignored: int = 0  # records of a writer that no longer owned the topic

    def apply_logged(self, record: Record, writer: UUID | None) -> bool:
        """Apply a record read from the log, written by ``writer`` (None: no writer header).
        A claim makes its writer the owner; from then on a record of any other writer is
        ignored (a fenced instance that went on writing). Returns whether it was applied."""
        if not isinstance(record, WriterClaim) and (
            writer is not None and self.owner is not None and writer != self.owner
        ):
            self.ignored += 1
            return False
        self.apply(record)
        return True

    def apply(self, record: Record) -> None:
        self.records += 1
        if isinstance(record, Snapshot):
            state = DurableState(
                record.start_offset,
                record.state_epoch,
                record.snapshot_epoch,
                record.leader_epoch,
                0,
                record.create_timestamp,
            )
            state.merge(record.start_offset, record.batches)
            self.partitions[record.key] = state
        elif isinstance(record, Update):
            known = self.partitions.get(record.key)
            if known is None or record.snapshot_epoch != known.snapshot_epoch:
                return  # an update of a snapshot that was replaced (e.g. offsets altered)
            known.merge(record.start_offset, record.batches)
            known.updates_since_snapshot += 1
            known.leader_epoch = max(known.leader_epoch, record.leader_epoch)
        elif isinstance(record, Tombstone):
            self.partitions.pop(record.key, None)
        elif isinstance(record, GroupConfigs):
            if record.configs is None:
                self.group_configs.pop(record.group_id, None)
            else:
                self.group_configs[record.group_id] = dict(record.configs)
        elif isinstance(record, TopicIdAssigned):
            self.topic_ids[record.topic_name] = record.topic_id
        elif isinstance(record, WriterClaim):
            self.owner = record.writer_id
