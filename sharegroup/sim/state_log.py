"""The simulator's state topic: the proxy's durable store, in memory, on the real records.

``StateLog`` is one partition of the topic: records as the proxy produces them to
``__sharegroup_state``, i.e. the key and value bytes of ``sharegroup.persist.records.encode``
and the ``sharegroup.writer`` header (writer id + sequence number). ``StateWriter`` is one
proxy instance's side of it, step for step what ``proxy/state_store.py`` does without the
cluster:

* ``start``: append a WriterClaim, replay the log from its start through that claim with
  ``Replay.apply_logged`` (decoding every record; a record of a writer that no longer owns the
  topic is ignored), then prune: fresh snapshots of everything (``policy.recovery_snapshots``)
  and everything below the claim deleted, as DeleteRecords does;
* ``write``: join adjacent equal state batches (``records.joined``), encode, append, and apply to the writer's own view of the state (``replay``), which
  the persistence policy decides the next write against.

A write here cannot fail (the log is memory), so confirmation is immediate. After a simulated
proxy restart, share partitions, group configs and topic ids come back only through this replay.

``StateTopic`` is the whole topic: its partitions, the writer that holds each (one
``StateWriter`` per claimed partition, as ``proxy/state_partitions.py`` keeps one store per
state partition), every record written to the partition ``sharegroup.persist.partitioning``
names for it. A fleet's instances claim partitions of it; a single proxy claims them all.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from uuid import UUID

from sharegroup.persist.partitioning import (
    state_partition_for_group,
    state_partition_for_share,
    state_partition_for_topic_name,
    state_partition_of,
)
from sharegroup.persist.policy import recovery_snapshots
from sharegroup.persist.records import (
    Record,
    WriterClaim,
    decode,
    encode,
    joined,
    read_writer_header,
    writer_header,
)
from sharegroup.persist.recovery import Replay


@dataclass(frozen=True, slots=True)
class LoggedRecord:
    """One record of the state topic as stored: key, value (None: tombstone), writer header."""

    key: bytes
    value: bytes | None
    writer: bytes


class StateLog:
    """One state-topic partition: records at offsets from ``start_offset`` to ``end_offset``."""

    def __init__(self) -> None:
        self.records: list[LoggedRecord] = []
        self.start_offset = 0  # the log start; DeleteRecords moves it

    @property
    def end_offset(self) -> int:
        return self.start_offset + len(self.records)

    def append(self, record: LoggedRecord) -> int:
        """Append a record; returns its offset."""
        self.records.append(record)
        return self.end_offset - 1

    def read(self, offset: int) -> Iterator[tuple[int, LoggedRecord]]:
        """Records from ``offset`` (or the log start, if later) to the end."""
        first = max(offset, self.start_offset)
        for i in range(first - self.start_offset, len(self.records)):
            yield self.start_offset + i, self.records[i]

    def delete_below(self, offset: int) -> None:
        """DeleteRecords: the log start moves up to ``offset``."""
        offset = min(max(offset, self.start_offset), self.end_offset)
        del self.records[: offset - self.start_offset]
        self.start_offset = offset


class StateWriter:
    """One proxy instance's store on the ``StateLog``; see the module docstring."""

    def __init__(self, log: StateLog, writer_id: UUID) -> None:
        self.log = log
        self.writer_id = writer_id
        self.replay = Replay()  # the state as this instance wrote it (see proxy/state_store.py)
        self.claim_offset = -1
        self._seq = 0

    def _append(self, record: Record, seq: int) -> int:
        key, value = encode(record)
        return self.log.append(LoggedRecord(key, value, writer_header(self.writer_id, seq)))

    def start(self, now_ms: int) -> Replay:
        """Claim the topic and replay it through the claim; then prune. Returns the replay
        (the state the instance starts from, before its own pruning snapshots)."""
        self.claim_offset = self._append(WriterClaim(self.writer_id, now_ms, "sim", 0), 0)
        replay = Replay()
        for offset, logged in self.log.read(self.log.start_offset):
            writer = read_writer_header(logged.writer)
            replay.apply_logged(decode(logged.key, logged.value), writer and writer[0])
            if offset >= self.claim_offset:
                break
        if replay.owner != self.writer_id:
            raise AssertionError("the simulated state topic has a claim after this instance's")
        self.replay = replay
        snapshots = recovery_snapshots(replay, now_ms)
        if snapshots:
            self.write(snapshots)
            self.log.delete_below(self.claim_offset)
        return replay

    def write(self, records: Sequence[Record]) -> None:
        for record in records:
            record = joined(record)
            self._seq += 1
            self._append(record, self._seq)
            self.replay.apply(record)


class StateTopic:
    """The state topic's partitions and the writer holding each. ``replay`` is the durable
    state of every claimed partition together, as their writers know it (what the persistence
    policy and the creation of share partitions read); a claim replaces a partition's part of
    it with what that partition's replay holds."""

    def __init__(self, partitions: int = 1) -> None:
        self.logs = [StateLog() for _ in range(partitions)]
        self.writers: dict[int, StateWriter] = {}
        self.former: dict[int, StateWriter] = {}  # the last writer of a partition nobody holds
        self.replay = Replay()

    @property
    def partitions(self) -> int:
        return len(self.logs)

    def claim(self, partitions: Iterable[int], writer_id: UUID, now_ms: int) -> Replay:
        """``writer_id`` claims ``partitions``: a claim in each, replayed through it and
        pruned (``StateWriter.start``). Returns what the replays of those partitions hold."""
        claimed = Replay()
        for p in sorted(partitions):
            writer = StateWriter(self.logs[p], writer_id)
            writer.start(now_ms)
            self._adopt(p, writer.replay, claimed)
            writer.replay = self.replay  # its writes keep the shared view current
            self.writers[p] = writer
        return claimed

    def release(self, partitions: Iterable[int]) -> None:
        """The writer of ``partitions`` is gone (its process died or stopped)."""
        for p in partitions:
            writer = self.writers.pop(p, None)
            if writer is not None:
                self.former[p] = writer

    def write(self, records: Sequence[Record]) -> None:
        n = self.partitions
        for record in records:
            p = state_partition_of(record, n)
            writer = self.writers.get(p) if p is not None else None
            if writer is None:
                raise AssertionError(f"no instance holds state partition {p} for {record!r}")
            writer.write([record])

    def _adopt(self, p: int, replay: Replay, claimed: Replay) -> None:
        n = self.partitions
        view = self.replay
        for key in [k for k in view.partitions if state_partition_for_share(k[1], k[2], n) == p]:
            del view.partitions[key]
        for group in [g for g in view.group_configs if state_partition_for_group(g, n) == p]:
            del view.group_configs[group]
        for name in [t for t in view.topic_ids if state_partition_for_topic_name(t, n) == p]:
            del view.topic_ids[name]
        view.partitions.update(replay.partitions)
        view.group_configs.update(replay.group_configs)
        view.topic_ids.update(replay.topic_ids)
        claimed.partitions.update(replay.partitions)
        claimed.group_configs.update(replay.group_configs)
        claimed.topic_ids.update(replay.topic_ids)
