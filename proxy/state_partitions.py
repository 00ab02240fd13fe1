"""The state topic as several partitions, each written by its own ``StateStore``.

A state partition is the unit of ownership (``sharegroup/persist/partitioning.py`` says which
share partitions, groups and topic ids each one holds). This store runs one ``StateStore`` per
state partition this instance owns — its own claim, replay, tail reader, sequence numbers and
pruning — over one shared idempotent producer, and sends each record to the store of its
state partition. A write that touches several state partitions waits for all of them.

An instance owns every state partition (one instance) or those its fleet membership gives it
(``proxy/fleet.py``). A fence on one state partition stops that partition only: ``owns`` says
which partitions this instance still writes, and the share service serves only their share
partitions and groups.

The partition count is the topic's own: a new topic is created with
``sharegroup.state.topic.partitions``; an existing topic keeps the count it has (the mapping
depends on it), which an existing one-partition topic does, with a log line saying so.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import ChainMap
from collections.abc import Callable, Iterable, Mapping, Sequence
from uuid import UUID

import trio
from confluent_kafka import Producer

from proxy.state_store import StateStore, StateWriteError, StoreConfig, Waiter, new_producer
from sharegroup.persist.partitioning import (
    state_partition_for_group,
    state_partition_for_share,
    state_partition_of,
)
from sharegroup.persist.records import PartitionKey, Record
from sharegroup.persist.recovery import DurableState, Replay

log = logging.getLogger("sharegroup.state")


class ReplayView:
    """What the stores of this instance have replayed and written, read as one ``Replay``
    (the keys of different state partitions never overlap)."""

    def __init__(self, stores: Mapping[int, StateStore]) -> None:
        self._stores = stores

    @property
    def partitions(self) -> ChainMap[PartitionKey, DurableState]:
        return ChainMap(*(s.replay.partitions for s in self._stores.values()))

    @property
    def group_configs(self) -> ChainMap[str, dict[str, str]]:
        return ChainMap(*(s.replay.group_configs for s in self._stores.values()))

    @property
    def topic_ids(self) -> ChainMap[str, UUID]:
        return ChainMap(*(s.replay.topic_ids for s in self._stores.values()))


def combined(replays: Sequence[Replay]) -> Replay:
    """One ``Replay`` holding what several state partitions' replays hold."""
    out = Replay()
    for r in replays:
        out.partitions.update(r.partitions)
        out.group_configs.update(r.group_configs)
        out.topic_ids.update(r.topic_ids)
        out.records += r.records
        out.ignored += r.ignored
    return out


class PartitionedStateStore:
    def __init__(self, config: StoreConfig) -> None:
        self.config = config
        self.partitions = 0  # the topic's partition count, known once started
        self.stores: dict[int, StateStore] = {}
        self.replay = ReplayView(self.stores)
        self._producer: Producer | None = None
        self._nursery: trio.Nursery | None = None
        # Observers of every awaited write: the seconds until durable, or None when it failed.
        self.on_write: list[Callable[[float | None], None]] = []

    @property
    def fenced(self) -> bool:
        """True when this instance writes no state partition at all (none owned, or every
        one it owns fenced)."""
        return not any(self.owns(p) for p in self.stores)

    def owns(self, partition: int) -> bool:
        """Does this instance write state partition ``partition`` (claimed, not fenced)?"""
        store = self.stores.get(partition)
        return store is not None and not store.fenced

    def owns_share(self, topic_id: UUID, partition: int) -> bool:
        """Does this instance own the share partitions of this topic partition?"""
        return self.partitions > 0 and self.owns(
            state_partition_for_share(topic_id, partition, self.partitions)
        )

    def owns_group(self, group_id: str) -> bool:
        """Does this instance coordinate this share group?"""
        return self.partitions > 0 and self.owns(
            state_partition_for_group(group_id, self.partitions)
        )

    async def start(self, nursery: trio.Nursery) -> Replay:
        """Open the topic and claim every state partition (one instance owns all)."""
        await self.open(nursery)
        return await self.claim(range(self.partitions))

    async def open(self, nursery: trio.Nursery) -> None:
        """Create the topic unless it exists and learn its partition count; the stores'
        readers will run in ``nursery``. Claims nothing."""
        probe = StateStore(self.config)
        self.partitions = await trio.to_thread.run_sync(probe.create_topic)
        if self.partitions != self.config.partitions:
            log.warning(
                "state topic %s has %d partition(s), not the %d of "
                "sharegroup.state.topic.partitions: keeping %d, since which state partition "
                "holds a share partition depends on the count (the setting applies to a new "
                "topic)",
                self.config.topic,
                self.partitions,
                self.config.partitions,
                self.partitions,
            )
        self._producer = new_producer(self.config)
        self._nursery = nursery

    async def claim(self, partitions: Iterable[int]) -> Replay:
        """Take state partitions: each gets a store that claims it, replays it through the
        claim and reads its tail from there. Returns what they replayed, as one ``Replay``;
        the partitions are served (written) only once all of them are replayed."""
        assert self._nursery is not None, "open() first"
        fresh: dict[int, StateStore] = {}
        for p in partitions:
            if p in self.stores or p in fresh:
                continue
            if not 0 <= p < self.partitions:
                raise ValueError(f"state topic {self.config.topic} has no partition {p}")
            fresh[p] = StateStore(
                dataclasses.replace(self.config, partition=p, create_topic=False), self._producer
            )
        replays: dict[int, Replay] = {}
        nursery = self._nursery

        async def start_one(p: int) -> None:
            replays[p] = await fresh[p].start(nursery)

        async with trio.open_nursery() as starting:
            for p in fresh:
                starting.start_soon(start_one, p)
        self.stores.update(fresh)
        out = combined([replays[p] for p in sorted(replays)])
        self._rehome(fresh)
        return out

    def _rehome(self, fresh: Mapping[int, StateStore]) -> None:
        """Share partitions replayed from a state partition the mapping does not name (a
        topic written under the earlier, group-qualified mapping) move to the replay of the
        partition it names when this instance owns that one too: the start-up snapshots then
        write them there, and pruning drops them here. Otherwise they stay, and so does the
        log of their partition (``keep_log``), until one instance owning both moves them."""
        for p, store in fresh.items():
            misplaced = [
                k
                for k in store.replay.partitions
                if state_partition_for_share(k[1], k[2], self.partitions) != p
            ]
            for key in misplaced:
                home = state_partition_for_share(key[1], key[2], self.partitions)
                target = self.stores.get(home)
                if target is None:
                    store.keep_log = True
                    log.error(
                        "state partition %d holds share partition %s, whose state partition "
                        "is %d, not owned here: run one instance without fleet mode once to "
                        "move it (nothing of partition %d is pruned meanwhile)",
                        p,
                        key,
                        home,
                        p,
                    )
                    continue
                target.replay.partitions[key] = store.replay.partitions.pop(key)
            if misplaced:
                log.warning("state partition %d: %d share partitions moved", p, len(misplaced))

    async def release(self, partitions: Iterable[int], *, wait_s: float = 10.0) -> None:
        """Let state partitions go: no new write is taken for them at once, writes already
        made get up to ``wait_s`` to be confirmed, then their readers stop (what is still
        unconfirmed fails, fenced) and another instance may claim them."""
        leaving = [self.stores.pop(p) for p in partitions if p in self.stores]
        with trio.move_on_after(wait_s):
            for store in leaving:
                while store.pending and not store.fenced:
                    await trio.sleep(0.01)
        for store in leaving:
            await store.stop()

    def partition_of(self, record: Record) -> int | None:
        return state_partition_of(record, self.partitions)

    def _by_store(self, records: Sequence[Record]) -> dict[int, list[Record]]:
        """The records of each state partition, in the order given."""
        out: dict[int, list[Record]] = {}
        for record in records:
            p = self.partition_of(record)
            if p is None:
                raise ValueError("a writer claim is written by the store of its partition")
            out.setdefault(p, []).append(record)
        return out

    def _store(self, partition: int) -> StateStore:
        store = self.stores.get(partition)
        if store is None:
            raise StateWriteError(
                f"state partition {partition} is not owned by this instance", fenced=True
            )
        return store

    async def write(self, records: Sequence[Record]) -> None:
        """Persist records, each in its state partition; returns once all are durable and
        this instance still owns their partitions, else raises (the first error met)."""
        started = time.perf_counter()
        try:
            await self._write(records)
        except BaseException:
            for observe in self.on_write:
                observe(None)
            raise
        elapsed = time.perf_counter() - started
        for observe in self.on_write:
            observe(elapsed)

    async def _write(self, records: Sequence[Record]) -> None:
        groups = self._by_store(records)
        if len(groups) == 1:
            ((p, recs),) = groups.items()
            await self._store(p).write(recs)
            return
        # Every store takes its records now, before anything waits (as one store's write
        # does): records are computed from the written state, which must not change between.
        waiters = []
        for p, recs in groups.items():
            store = self._store(p)
            waiters.append((store, store.begin_write(recs)))
        errors: list[StateWriteError] = []

        async def confirm(store: StateStore, waiter: Waiter) -> None:
            try:
                await store.confirmed(waiter)
            except StateWriteError as e:
                errors.append(e)

        async with trio.open_nursery() as nursery:
            for store, waiter in waiters:
                nursery.start_soon(confirm, store, waiter)
        if errors:
            raise errors[0]

    async def durable(self) -> None:
        """Wait until everything written so far, in every owned state partition, is durable
        (or failed)."""
        async with trio.open_nursery() as nursery:
            for store in list(self.stores.values()):
                nursery.start_soon(store.durable)

    def write_nowait(self, records: Sequence[Record]) -> None:
        for p, recs in self._by_store(records).items():
            store = self.stores.get(p)
            if store is None:
                log.error("state write of %d records to unowned partition %d", len(recs), p)
                continue
            store.write_nowait(recs)

    async def prune(
        self, snapshots: Sequence[Record], partitions: Iterable[int] | None = None
    ) -> int:
        """Each store (of ``partitions``, default all owned) writes the fresh snapshots of its
        partition and deletes below its claim; returns how many records were deleted below
        the claims, in all."""
        groups = self._by_store(snapshots)
        chosen = set(self.stores if partitions is None else partitions) & set(self.stores)
        pruned: list[int] = []

        async def prune_one(store: StateStore, recs: list[Record]) -> None:
            if store.keep_log:
                if recs:
                    await store.write(recs)
            elif recs:
                pruned.append(await store.prune(recs))
            elif store.claim_offset > 0:
                # Nothing lives in this partition: everything below the claim is void.
                await trio.to_thread.run_sync(store.delete_below, store.claim_offset)
                pruned.append(store.claim_offset)

        async with trio.open_nursery() as nursery:
            for p, store in self.stores.items():
                if p in chosen:
                    nursery.start_soon(prune_one, store, groups.get(p, []))
        return sum(pruned)

    async def aclose(self) -> None:
        for store in self.stores.values():
            await store.aclose()
