"""What goes to the state topic, and when (pure: no clock, no I/O).

The engine's changes (``StateDelta`` per share partition) become the state records of
``records.py``, decided against what the state topic already holds (``recovery.DurableState``):

* the first write of a share partition is a ShareSnapshot at snapshot epoch 0 with the whole
  state;
* later changes are ShareUpdates carrying only the changed ranges and SPSO, under the snapshot
  epoch they extend (the replay drops an update of a snapshot epoch it no longer holds);
* every ``updates_per_snapshot`` updates of a key
  (``share.coordinator.snapshot.update.records.per.snapshot``, 500 by default) a fresh
  snapshot replaces them, with the snapshot epoch + 1 (Kafka's ``ShareCoordinatorShard`` does
  the same with its snapshot update count);
* a change with no ranges and an unchanged SPSO writes nothing.

At start-up (``recovery_snapshots``) every replayed share partition gets a fresh snapshot
(snapshot epoch + 1), and every group config and topic id is written again, so that everything
below the new instance's claim can be deleted (see docs/persistence.md, Recovery and pruning).
Resetting offsets (``reset_snapshot``) starts a new state epoch, as Kafka's
AlterShareGroupOffsets does (KIP-932).

The proxy (``proxy/shares.py``) and the simulator (``sharegroup/sim``) both write through
these functions, and time comes in as ``now_ms``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from model import SharePartition, StateDelta
from sharegroup.persist.records import (
    GroupConfigs,
    PartitionKey,
    Record,
    Snapshot,
    TopicIdAssigned,
    Update,
)
from sharegroup.persist.recovery import DurableState, Replay

# share.coordinator.snapshot.update.records.per.snapshot (Kafka's default)
DEFAULT_UPDATES_PER_SNAPSHOT = 500
# The proxy is not a partition leader; every record carries leader epoch 0.
LEADER_EPOCH = 0


class PartitionChange(Protocol):
    """A change of one share partition as the engine reports it (``sharegroup.engine.Change``)."""

    @property
    def key(self) -> PartitionKey: ...

    @property
    def delta(self) -> StateDelta: ...


def initial_snapshot(key: PartitionKey, start_offset: int, now_ms: int) -> Snapshot:
    """A share partition initialized at ``start_offset`` (first assignment): nothing in flight."""
    return Snapshot(key, 0, 0, LEADER_EPOCH, start_offset, now_ms, now_ms, ())


def reset_snapshot(
    key: PartitionKey, start_offset: int, known: DurableState | None, now_ms: int
) -> Snapshot:
    """Offsets altered to ``start_offset``: a new state epoch, and a snapshot epoch past any
    update still in the log for the old state."""
    state_epoch = 0 if known is None else known.state_epoch + 1
    snapshot_epoch = 0 if known is None else known.snapshot_epoch + 1
    return Snapshot(
        key, snapshot_epoch, state_epoch, LEADER_EPOCH, start_offset, now_ms, now_ms, ()
    )


def snapshot_of(
    key: PartitionKey, sp: SharePartition, known: DurableState | None, now_ms: int
) -> Snapshot:
    """The whole state of a live share partition, replacing whatever the log holds of it."""
    epoch = 0 if known is None else known.snapshot_epoch + 1
    state_epoch = 0 if known is None else known.state_epoch
    return Snapshot(
        key, epoch, state_epoch, LEADER_EPOCH, sp.start_offset, now_ms, now_ms, sp.state_batches()
    )


@dataclass(frozen=True, slots=True)
class PersistPolicy:
    updates_per_snapshot: int = DEFAULT_UPDATES_PER_SNAPSHOT

    def __post_init__(self) -> None:
        if self.updates_per_snapshot < 1:
            raise ValueError(
                f"updates per snapshot must be at least 1, not {self.updates_per_snapshot}"
            )

    def records(
        self,
        changes: Iterable[PartitionChange],
        durable: Mapping[PartitionKey, DurableState],
        partitions: Mapping[PartitionKey, SharePartition],
        now_ms: int,
    ) -> list[Snapshot | Update]:
        """The records that persist ``changes``.

        ``durable`` is the state as written so far (the writer's own replay, which it applies
        as it writes); ``partitions`` the live share partitions after the changes. The
        decision is made against ``durable`` as it stands: several changes of one key in one
        call are all decided before any is written."""
        out: list[Snapshot | Update] = []
        for change in changes:
            known = durable.get(change.key)
            sp = partitions.get(change.key)
            if known is None or (
                sp is not None and known.updates_since_snapshot + 1 >= self.updates_per_snapshot
            ):
                if sp is not None:
                    out.append(snapshot_of(change.key, sp, known, now_ms))
            elif not change.delta.empty or change.delta.start_offset != known.start_offset:
                out.append(
                    Update(
                        change.key,
                        known.snapshot_epoch,
                        LEADER_EPOCH,
                        change.delta.start_offset,
                        change.delta.batches,
                    )
                )
        return out


def recovery_snapshots(replay: Replay, now_ms: int) -> list[Record]:
    """What a starting instance writes after replaying the log, so that everything before it
    can be deleted: a fresh snapshot of every share partition (snapshot epoch + 1, same state
    epoch), then every group's configs and every assigned topic id."""
    out: list[Record] = [
        Snapshot(
            key,
            d.snapshot_epoch + 1,
            d.state_epoch,
            d.leader_epoch,
            d.start_offset,
            d.create_timestamp,
            now_ms,
            d.batches(),
        )
        for key, d in replay.partitions.items()
    ]
    out += [GroupConfigs(g, dict(c)) for g, c in replay.group_configs.items()]
    out += [TopicIdAssigned(name, tid) for name, tid in replay.topic_ids.items()]
    return out
