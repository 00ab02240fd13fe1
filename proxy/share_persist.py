"""The durable side of the share service.

* Recovery: before serving, the state topic is replayed (fencing any older instance), group
  configs and topic ids come back, and fresh snapshots replace what they supersede.
* Writes: acknowledgements are written and awaited before their answer goes (``persist``);
  other changes (lock expiry, releases) are written in the background (``publish``). A failed
  write rebuilds the share partition from its durable state (``reload``).
* Share partitions on first use (``init_partition``): recovered from the replayed state, or
  started at the offset the upstream gives for the reset, with an initial snapshot written
  before the share partition is served.
* Phase 2 of Kafka's DLQ flow: records that reached ARCHIVING are written to the group's
  dead-letter topic, then archived.

``publish`` is where every change of a share partition goes: persisted, dead-lettered, the
fetches waiting on it woken, and the observers (``on_change``) told.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from uuid import UUID

import trio

from model import ArchivingRange, ConfigError, ErrorCode, RecordState, SharePartition
from proxy.dlq import DlqWriter
from proxy.log_reads import UpstreamLog
from proxy.read_ahead import PartitionWatch
from proxy.server import Proxy
from proxy.state_partitions import PartitionedStateStore
from proxy.state_store import StateWriteError
from proxy.upstream import UpstreamError
from sharegroup.core import InitNeed
from sharegroup.engine import Change, PartitionKey, ShareEngine
from sharegroup.persist.partitioning import state_partition_for_group, state_partition_for_share
from sharegroup.persist.policy import PersistPolicy, initial_snapshot, recovery_snapshots
from sharegroup.persist.records import Record, TopicIdAssigned
from sharegroup.persist.recovery import Replay

log = logging.getLogger("sharegroup.shares")


def wall_clock_ms() -> int:
    """Wall-clock time, for the timestamps of state records (Kafka's are wall-clock too)."""
    return int(time.time() * 1000)


class SharePersistence:
    def __init__(
        self,
        proxy: Proxy,
        engine: ShareEngine,
        store: PartitionedStateStore | None,
        upstream: UpstreamLog,
        watches: dict[PartitionKey, PartitionWatch],
    ) -> None:
        self.proxy = proxy
        self.engine = engine
        self.store = store
        self.upstream = upstream
        self.watches = watches  # shared with the fetch path: their locks and wake-ups
        self.persist_policy = PersistPolicy()
        self.dlq: DlqWriter | None = None  # set by proxy.app: writes DLQ records (KIP-1191)
        self.on_change: list[Callable[[Change], None]] = []  # observers of every change
        # Observers of each share-partition initialization, given the seconds it took.
        self.on_partition_loaded: list[Callable[[float], None]] = []
        self._background: trio.Nursery | None = None  # the proxy's, for DLQ writes
        # Fleet mode (proxy.fleet_service): state partitions are claimed as the fleet's
        # membership assigns them, not all at start.
        self.fleet_mode = False

    @property
    def fenced(self) -> bool:
        return self.store is not None and self.store.fenced

    # ------------------------------------------------------------------ recovery
    async def start(self, nursery: trio.Nursery) -> None:
        """Recover from the state topic (fencing any older instance) before serving."""
        self._background = nursery
        if self.store is None:
            return
        if self.fleet_mode:
            await self.store.open(nursery)  # the fleet's membership claims partitions
        else:
            await self.restore(await self.store.start(nursery), None)
        self.proxy.cluster.on_topic_id_assigned = self._topic_id_assigned

    async def restore(self, replay: Replay, partitions: Sequence[int] | None) -> None:
        """Serve what was claimed: the groups' configs and topic ids replayed, then fresh
        snapshots of everything, and what they supersede dropped (see state_store), in
        ``partitions`` (None: every owned one)."""
        assert self.store is not None
        for group_id, configs in replay.group_configs.items():
            self.set_stored_configs(group_id, configs)
        self.proxy.cluster.restore_topic_ids(replay.topic_ids)
        snapshots = recovery_snapshots(replay, wall_clock_ms())
        try:
            await self.store.prune(snapshots, partitions)
        except* StateWriteError as failed:  # the stores prune side by side: a group
            log.warning("state topic pruning skipped: %s", failed.exceptions[0])

    def set_stored_configs(self, group_id: str, configs: dict[str, str] | None) -> bool:
        """A group's configs as the state topic holds them (None: none), replacing what the
        engine has; whether anything changed."""
        entry = self.engine.group(group_id)
        old = entry.overrides if entry is not None else {}
        new = dict(configs or {})
        if new == old:
            return False
        change: dict[str, str | None] = {k: None for k in old if k not in new}
        change.update(new)
        try:
            self.engine.set_group_configs(group_id, change)
        except ConfigError as e:
            log.warning("ignoring stored configs of group %s: %s", group_id, e)
            return False
        return True

    # ------------------------------------------------------------------ ownership
    def may_exist(self, group_id: str) -> bool:
        """Whether share group ``group_id`` may exist though this instance has no members of
        it in memory: in a fleet (another instance may have coordinated it), or when the
        state topic holds share partitions or configs of it (the proxy restarted)."""
        if self.fleet_mode:
            return True
        store = self.store
        if store is None:
            return False
        return group_id in store.replay.group_configs or any(
            k[0] == group_id for k in store.replay.partitions
        )

    def leads(self, key: PartitionKey) -> bool:
        """Does this instance own the share state of ``key`` (and so serve it)?"""
        return self.store is None or self.store.owns_share(key[1], key[2])

    def coordinates(self, group_id: str | None) -> bool:
        """Does this instance coordinate share group ``group_id``?"""
        return self.store is None or group_id is None or self.store.owns_group(group_id)

    def forget(self, partitions: Sequence[int]) -> None:
        """State partitions this instance no longer owns: their share partitions and the
        membership of the groups they coordinate leave memory (the new owner replays the
        durable state; members rejoin there). Configs stay, as the state topic has them."""
        assert self.store is not None
        gone = set(partitions)
        n = self.store.partitions
        engine = self.engine
        for key in [
            k for k in engine.partitions if state_partition_for_share(k[1], k[2], n) in gone
        ]:
            del engine.partitions[key]
            watch = self.watches.pop(key, None)
            if watch is not None:
                watch.forget_read_ahead()
                watch.notify()
        for group_id, entry in list(engine.groups.items()):
            if state_partition_for_group(group_id, n) in gone:
                entry.group = engine._new_group(group_id, entry.config)
                entry.partitions = {
                    tp for tp in entry.partitions if (group_id, *tp) in engine.partitions
                }

    def _topic_id_assigned(self, name: str, topic_id: UUID) -> None:
        if self.store is not None:
            self.store.write_nowait([TopicIdAssigned(name, topic_id)])

    # ------------------------------------------------------------------ writes
    def _records(self, changes: Sequence[Change]) -> list[Record]:
        assert self.store is not None
        return list(
            self.persist_policy.records(
                changes, self.store.replay.partitions, self.engine.partitions, wall_clock_ms()
            )
        )

    async def persist(self, changes: Sequence[Change]) -> dict[PartitionKey, ErrorCode]:
        """Write changes and wait until they are durable. On failure the partitions go back
        to their durable state (the client is told its acknowledgement failed).

        No lock is held: acknowledgements of one partition are applied and written in the
        same order, each without a checkpoint in between, and are confirmed in that order.
        A write refused before it leaves fails at once, before any other acknowledgement can
        be applied, so rebuilding the partition throws nothing else away; any later failure
        stops this instance's share-group service as a whole (StateStore._fail)."""
        if self.store is None or not changes:
            return {}
        try:
            await self.store.write(self._records(changes))
        except StateWriteError as e:
            code = ErrorCode.NOT_LEADER_OR_FOLLOWER if e.fenced else ErrorCode.UNKNOWN_SERVER_ERROR
            failed = {c.key: code for c in changes}
            for key in failed:
                self.reload(key)
            return failed
        self.dead_letter(changes)
        return {}

    def _persist_later(self, changes: Sequence[Change]) -> None:
        if self.store is not None and changes:
            self.store.write_nowait(self._records(changes))

    def reload(self, key: PartitionKey) -> None:
        """Throw away the in-memory state of a share partition and rebuild it from the store."""
        assert self.store is not None
        durable = self.store.replay.partitions.get(key)
        if durable is None or self.store.fenced or not self.leads(key):
            self.engine.partitions.pop(key, None)
        else:
            self.engine.add_partition(
                key, SharePartition.from_state(durable.start_offset, durable.batches())
            )
            self._dead_letter_partition(key)
        watch = self.watches.get(key)
        if watch is not None:
            watch.notify()

    def publish(self, changes: Sequence[Change], *, persist: bool = True) -> None:
        if persist:
            self._persist_later(changes)
            self.dead_letter(changes)
        for change in changes:
            watch = self.watches.get(change.key)
            if watch is not None:
                watch.notify()
            for callback in self.on_change:
                callback(change)

    # ------------------------------------------------------------------ share partitions
    async def init_partition(self, need: InitNeed) -> None:
        started = time.perf_counter()
        try:
            await self._load_partition(need)
        finally:
            elapsed = time.perf_counter() - started
            for callback in self.on_partition_loaded:
                callback(elapsed)

    async def _load_partition(self, need: InitNeed) -> None:
        key, topic, reset = need.key, need.topic, need.reset
        watch = self.watches.setdefault(key, PartitionWatch())
        async with watch.lock:
            if self.engine.share_partition(key) is not None:
                return
            if self.fenced or not self.leads(key):
                return
            durable = self.store.replay.partitions.get(key) if self.store is not None else None
            if durable is not None:
                self.engine.add_partition(
                    key, SharePartition.from_state(durable.start_offset, durable.batches())
                )
                self._dead_letter_partition(key)  # ARCHIVING found at recovery resumes
                log.info(
                    "share partition %s %s-%s recovered at %d",
                    key[0],
                    topic,
                    key[2],
                    durable.start_offset,
                )
                return
            try:
                start = await self.upstream.start_offset(topic, key[2], reset)
            except UpstreamError as e:
                log.warning("cannot initialize share partition %s-%s: %s", topic, key[2], e)
                return
            sp = SharePartition(start)
            if self.store is not None:
                try:
                    await self.store.write([initial_snapshot(key, start, wall_clock_ms())])
                except StateWriteError as e:
                    log.warning("cannot initialize share partition %s-%s: %s", topic, key[2], e)
                    return
            self.engine.add_partition(key, sp)
            log.info(
                "share partition %s %s-%s starts at %d (%s)", key[0], topic, key[2], start, reset
            )

    # ------------------------------------------------------------------ dead-letter queue
    def dead_letter(self, changes: Sequence[Change]) -> None:
        """Phase 2 of Kafka's DLQ flow for changes that moved records to ARCHIVING: write
        their DLQ records, then archive them (SharePartition.initiateDLQAndArchive)."""
        for change in changes:
            if any(b.state is RecordState.ARCHIVING for b in change.delta.batches):
                self._dead_letter_partition(change.key)

    def _dead_letter_partition(self, key: PartitionKey) -> None:
        sp = self.engine.share_partition(key)
        if sp is None or self._background is None:
            return
        for work in sp.take_archiving():
            self._background.start_soon(self._write_dlq, key, sp, work)

    async def _write_dlq(self, key: PartitionKey, sp: SharePartition, work: ArchivingRange) -> None:
        if self.store is not None:
            await self.store.durable()  # ARCHIVING is persisted before the DLQ write
        group_id, topic_id, partition = key
        config = self.engine.group_config(group_id)
        if self.dlq is not None:
            await self.dlq.write(
                group=group_id,
                dlq_topic=config.dlq_topic_name,
                copy_records=config.dlq_copy_record_enable,
                topic=self.proxy.cluster.topic_names.get(topic_id, str(topic_id)),
                partition=partition,
                work=work,
            )
        if self.engine.share_partition(key) is not sp:
            return  # rebuilt from the store meanwhile: it hands the range out again
        delta = sp.complete_archiving(work.first_offset, work.last_offset)
        if not delta.empty:
            self.publish([Change(key, delta, "dlq")])
