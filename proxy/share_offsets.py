"""The share admin APIs: DescribeShareGroupOffsets (90), AlterShareGroupOffsets (91) and
DeleteShareGroupOffsets (92), so that Kafka's own admin tooling works against the proxy.

The decisions are ``sharegroup.core.offsets.OffsetsCore``'s (an empty group for altering and
deleting, as in Kafka); this driver decodes, asks the upstream for high watermarks (lag),
persists what a plan says (a reset snapshot under a new state epoch, or tombstones) and only
then applies it, so both are durable before the answer goes out.
"""

from __future__ import annotations

import time
from typing import Any

from model import ErrorCode
from proxy import messages, wire
from proxy.connection import ClientConnection
from proxy.shares import ShareService
from proxy.state_store import StateWriteError
from proxy.upstream import UpstreamError
from sharegroup.core.messages import Refused
from sharegroup.core.offsets import OffsetsCore, TopicInfo
from sharegroup.engine import PartitionKey
from sharegroup.persist.policy import reset_snapshot
from sharegroup.persist.records import Record, Tombstone


class ShareOffsets:
    def __init__(self, service: ShareService) -> None:
        self.service = service
        self.core = OffsetsCore(service.engine)

    async def handle(self, conn: ClientConnection, req: Any, head: wire.RequestHead) -> Any:
        if head.api_key == 90:
            return await self.describe(req, head)
        refusal = self._not_here(req, head)
        if refusal is not None:
            code, message = refusal
            if head.api_key == 91:
                cls: Any = messages.AlterShareGroupOffsetsResponse
            else:
                cls = messages.DeleteShareGroupOffsetsResponse
            return cls(
                version=head.api_version,
                throttle_time_ms=0,
                error_code=int(code),
                error_message=message,
                responses=[],
            )
        if head.api_key == 91:
            return await self.alter(req, head)
        return await self.delete(req, head)

    def _not_here(self, req: Any, head: wire.RequestHead) -> tuple[ErrorCode, str] | None:
        """In a fleet: altering or deleting offsets needs the group's coordinator (else
        NOT_COORDINATOR, and the client finds it) that also owns the state of every share
        partition touched, since only the owner of a state partition writes it. Otherwise the
        request is refused whole, before anything changes."""
        service = self.service
        if not service.coordinates(req.group_id):
            return ErrorCode.NOT_COORDINATOR, "not the coordinator of this group"
        if not service.fleet_mode:
            return None
        topics = service.proxy.cluster.topics
        touched: list[tuple[str, int]] = []
        for t in req.topics or ():
            info = topics.get(t.topic_name)
            if info is None:
                continue
            if head.api_key == 91:
                touched += [(t.topic_name, p.partition_index) for p in t.partitions or ()]
            else:
                touched += [(t.topic_name, p) for p in info.partitions]
        elsewhere = [
            f"{name}-{p}"
            for name, p in touched
            if not service.leads((req.group_id, topics[name].topic_id, p))
        ]
        if elsewhere:
            return ErrorCode.INVALID_REQUEST, (
                "the share state of "
                + ", ".join(sorted(elsewhere))
                + " is owned by other instances of the proxy fleet, and only its owner writes"
                " it: alter or delete these offsets while one instance runs"
            )
        return None

    # ------------------------------------------------------------------ helpers
    def _durable(self) -> dict[PartitionKey, int] | None:
        store = self.service.store
        if store is None:
            return None
        own = {k: d.start_offset for k, d in store.replay.partitions.items()}
        everyone = self.service.durable_start_offsets
        # In a fleet, the share partitions other instances own, as the state topic says.
        return own if everyone is None else {**everyone(), **own}

    def _topics(self) -> dict[str, TopicInfo]:
        return {
            name: TopicInfo(info.topic_id, frozenset(info.partitions))
            for name, info in self.service.proxy.cluster.topics.items()
        }

    async def _high_watermark(self, key: PartitionKey) -> int | None:
        cluster = self.service.proxy.cluster
        name = cluster.topic_names.get(key[1])
        if name is None:
            return None
        leader = cluster.leader_of(name, key[2])
        try:
            conn = await cluster.connection(leader)
            part = await self.service.upstream.fetch_one(
                conn, name, key[2], 0, max_bytes=1, max_wait_ms=1
            )
        except UpstreamError:
            return None
        return int(part.high_watermark)

    def known_partitions(self, group_id: str) -> dict[PartitionKey, int]:
        """A group's share partitions with their start offsets, as DescribeShareGroupOffsets
        answers them (stored ones when there is a state store)."""
        return self.core.known_partitions(group_id, self._durable())

    async def lag(self, key: PartitionKey, start_offset: int) -> int:
        """The lag DescribeShareGroupOffsets v1 answers (-1 when the log cannot be read)."""
        hwm = await self._high_watermark(key)
        return -1 if hwm is None else self.core.lag(key, start_offset, hwm)

    # ------------------------------------------------------------------ 90
    async def describe(self, req: Any, head: wire.RequestHead) -> Any:
        resp = messages.DescribeShareGroupOffsetsResponse
        group_cls = resp.DescribeShareGroupOffsetsResponseGroup
        topic_cls = group_cls.DescribeShareGroupOffsetsResponseTopic
        part_cls = topic_cls.DescribeShareGroupOffsetsResponsePartition
        cluster = self.service.proxy.cluster
        groups = []
        for g in req.groups or ():
            if not self.service.coordinates(g.group_id):
                groups.append(
                    group_cls(
                        group_id=g.group_id,
                        topics=[],
                        error_code=int(ErrorCode.NOT_COORDINATOR),
                        error_message="not the coordinator of this group",
                    )
                )
                continue
            wanted = (
                None
                if g.topics is None
                else [(t.topic_name, p) for t in g.topics for p in t.partitions or ()]
            )
            described = self.core.describe(
                g.group_id, wanted, self._topics(), cluster.topic_names, self._durable()
            )
            if isinstance(described, Refused):
                groups.append(
                    group_cls(
                        group_id=g.group_id,
                        topics=[],
                        error_code=int(described.code),
                        error_message=described.message,
                    )
                )
                continue
            by_topic: dict[str, list[Any]] = {}
            for d in described:
                lag = -1
                if d.lag_of is not None and head.api_version >= 1:
                    lag = await self.lag(d.lag_of, d.start_offset)
                known = d.code == ErrorCode.NONE
                by_topic.setdefault(d.topic, []).append(
                    part_cls(
                        partition_index=d.partition,
                        start_offset=d.start_offset,
                        leader_epoch=0 if known else -1,
                        lag=lag,
                        error_code=int(d.code),
                        error_message=d.message,
                    )
                )
            topics = [
                topic_cls(
                    topic_name=name,
                    topic_id=cluster.topics[name].topic_id if name in cluster.topics else None,
                    partitions=parts,
                )
                for name, parts in by_topic.items()
            ]
            groups.append(
                group_cls(group_id=g.group_id, topics=topics, error_code=0, error_message=None)
            )
        return resp(version=head.api_version, throttle_time_ms=0, groups=groups)

    # ------------------------------------------------------------------ 91
    async def alter(self, req: Any, head: wire.RequestHead) -> Any:
        resp = messages.AlterShareGroupOffsetsResponse
        topic_cls = resp.AlterShareGroupOffsetsResponseTopic
        part_cls = topic_cls.AlterShareGroupOffsetsResponsePartition
        service = self.service

        def top(code: ErrorCode, message: str) -> Any:
            return resp(
                version=head.api_version,
                throttle_time_ms=0,
                error_code=int(code),
                error_message=message,
                responses=[],
            )

        topics = req.topics or ()
        if req.group_id and self.core.check_empty(req.group_id) is None and not service.fenced:
            await service.ensure_topics([t.topic_name for t in topics])
        plan = self.core.alter(
            req.group_id,
            [
                (t.topic_name, p.partition_index, p.start_offset)
                for t in topics
                for p in t.partitions
            ],
            self._topics(),
            fenced=service.fenced,
        )
        if isinstance(plan, Refused):
            return top(plan.code, plan.message)
        if service.store is not None:
            now = int(time.time() * 1000)
            records: list[Record] = [
                reset_snapshot(key, start, service.store.replay.partitions.get(key), now)
                for key, start in plan.resets
            ]
            try:
                await service.store.write(records)
            except StateWriteError as e:
                return top(ErrorCode.UNKNOWN_SERVER_ERROR, f"offsets could not be persisted: {e}")
        self.core.apply_resets(req.group_id, plan.resets)
        cluster = service.proxy.cluster
        by_topic: dict[str, list[Any]] = {}
        for r in plan.results:
            by_topic.setdefault(r.topic, []).append(
                part_cls(
                    partition_index=r.partition, error_code=int(r.code), error_message=r.message
                )
            )
        return resp(
            version=head.api_version,
            throttle_time_ms=0,
            error_code=0,
            error_message=None,
            responses=[
                topic_cls(
                    topic_name=name,
                    topic_id=cluster.topics[name].topic_id if name in cluster.topics else None,
                    partitions=parts,
                )
                for name, parts in by_topic.items()
            ],
        )

    # ------------------------------------------------------------------ 92
    async def delete(self, req: Any, head: wire.RequestHead) -> Any:
        resp = messages.DeleteShareGroupOffsetsResponse
        topic_cls = resp.DeleteShareGroupOffsetsResponseTopic
        service = self.service

        def top(code: ErrorCode, message: str) -> Any:
            return resp(
                version=head.api_version,
                throttle_time_ms=0,
                error_code=int(code),
                error_message=message,
                responses=[],
            )

        plan = self.core.delete(
            req.group_id,
            [t.topic_name for t in req.topics or ()],
            self._topics(),
            self._durable(),
        )
        if isinstance(plan, Refused):
            return top(plan.code, plan.message)
        if service.store is not None:
            try:
                await service.store.write([Tombstone(k) for k in plan.forget])
            except StateWriteError as e:
                return top(ErrorCode.UNKNOWN_SERVER_ERROR, f"could not be persisted: {e}")
        self.core.apply_deletes(req.group_id, plan.forget)
        return resp(
            version=head.api_version,
            throttle_time_ms=0,
            error_code=0,
            error_message=None,
            responses=[
                topic_cls(
                    topic_name=name,
                    topic_id=topic_id,
                    error_code=int(code),
                    error_message=message,
                )
                for name, topic_id, code, message in plan.results
            ],
        )
