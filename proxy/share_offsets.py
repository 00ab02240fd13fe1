"""The share admin APIs: DescribeShareGroupOffsets (90), AlterShareGroupOffsets (91) and
DeleteShareGroupOffsets (92), so that Kafka's own admin tooling works against the proxy.

Altering or deleting needs an empty group (NON_EMPTY_GROUP otherwise), as in Kafka. Altering
starts the share partition afresh at the new start offset under a new state epoch; deleting
writes tombstones. Both are durable before the answer goes out.
"""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID

from model import ErrorCode, RecordState, SharePartition
from proxy import messages, wire
from proxy.connection import ClientConnection
from proxy.shares import ShareService
from proxy.state_store import StateWriteError
from proxy.upstream import UpstreamError
from sharegroup.persist.policy import reset_snapshot
from sharegroup.persist.records import Record, Tombstone

PartitionKey = tuple[str, UUID, int]


class ShareOffsets:
    def __init__(self, service: ShareService) -> None:
        self.service = service

    async def handle(self, conn: ClientConnection, req: Any, head: wire.RequestHead) -> Any:
        if head.api_key == 90:
            return await self.describe(req, head)
        if head.api_key == 91:
            return await self.alter(req, head)
        return await self.delete(req, head)

    # ------------------------------------------------------------------ helpers
    def _known_partitions(self, group_id: str) -> dict[PartitionKey, int]:
        """Share partitions of a group with their SPSO: in memory, else as stored."""
        out: dict[PartitionKey, int] = {}
        store = self.service.store
        if store is not None:
            # What is durable, as Kafka answers from the share coordinator: an acknowledgement
            # whose write is still in flight (and may fail) does not move the start offset yet.
            for key, durable in store.replay.partitions.items():
                if key[0] == group_id:
                    out[key] = durable.start_offset
            return out
        for key, sp in self.service.engine.partitions.items():
            if key[0] == group_id:
                out[key] = sp.start_offset
        return out

    def _group_exists(self, group_id: str) -> bool:
        entry = self.service.engine.group(group_id)
        return (entry is not None and entry.exists) or bool(self._known_partitions(group_id))

    def _is_empty(self, group_id: str) -> bool:
        entry = self.service.engine.group(group_id)
        return entry is None or not entry.group.members

    async def _lag(self, key: PartitionKey, start: int) -> int:
        cluster = self.service.proxy.cluster
        name = cluster.topic_names.get(key[1])
        if name is None:
            return -1
        leader = cluster.leader_of(name, key[2])
        try:
            conn = await cluster.connection(leader)
            part = await self.service.upstream.fetch_one(
                conn, name, key[2], 0, max_bytes=1, max_wait_ms=1
            )
        except UpstreamError:
            return -1
        done = 0
        sp = self.service.engine.share_partition(key)
        if sp is not None:
            done = sum(
                last - first + 1
                for first, last, state, *_ in sp.ranges()
                if state in (RecordState.ACKNOWLEDGED, RecordState.ARCHIVED)
            )
        return max(0, int(part.high_watermark) - start - done)

    # ------------------------------------------------------------------ 90
    async def describe(self, req: Any, head: wire.RequestHead) -> Any:
        resp = messages.DescribeShareGroupOffsetsResponse
        group_cls = resp.DescribeShareGroupOffsetsResponseGroup
        topic_cls = group_cls.DescribeShareGroupOffsetsResponseTopic
        part_cls = topic_cls.DescribeShareGroupOffsetsResponsePartition
        cluster = self.service.proxy.cluster
        groups = []
        for g in req.groups:
            if not self._group_exists(g.group_id):
                groups.append(
                    group_cls(
                        group_id=g.group_id,
                        topics=[],
                        error_code=int(ErrorCode.GROUP_ID_NOT_FOUND),
                        error_message=f"share group {g.group_id} does not exist",
                    )
                )
                continue
            known = self._known_partitions(g.group_id)
            wanted: list[tuple[str, int]] = []
            if g.topics is None:
                for _, topic_id, partition in sorted(known, key=lambda k: (str(k[1]), k[2])):
                    name = cluster.topic_names.get(topic_id)
                    if name is not None:
                        wanted.append((name, partition))
            else:
                wanted = [(t.topic_name, p) for t in g.topics for p in t.partitions]
            by_topic: dict[str, list[Any]] = {}
            for name, partition in wanted:
                info = cluster.topics.get(name)
                if info is None:
                    by_topic.setdefault(name, []).append(
                        part_cls(
                            partition_index=partition,
                            start_offset=-1,
                            leader_epoch=-1,
                            lag=-1,
                            error_code=int(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION),
                            error_message="unknown topic",
                        )
                    )
                    continue
                key = (g.group_id, info.topic_id, partition)
                start = known.get(key, -1)
                lag = await self._lag(key, start) if start >= 0 and head.api_version >= 1 else -1
                by_topic.setdefault(name, []).append(
                    part_cls(
                        partition_index=partition,
                        start_offset=start,
                        leader_epoch=0,
                        lag=lag,
                        error_code=0,
                        error_message=None,
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

        if not req.group_id:
            return top(ErrorCode.INVALID_GROUP_ID, "group id must not be empty")
        if not self._is_empty(req.group_id):
            return top(ErrorCode.NON_EMPTY_GROUP, f"share group {req.group_id} has members")
        if service.fenced:
            return top(ErrorCode.NOT_COORDINATOR, "this proxy instance was fenced by a newer one")
        cluster = service.proxy.cluster
        await service.ensure_topics([t.topic_name for t in req.topics])
        records: list[Record] = []
        plan: list[tuple[PartitionKey, int]] = []
        answers = []
        now = int(time.time() * 1000)
        for t in req.topics:
            info = cluster.topics.get(t.topic_name)
            parts = []
            for p in t.partitions:
                if info is None or p.partition_index not in info.partitions:
                    parts.append(
                        part_cls(
                            partition_index=p.partition_index,
                            error_code=int(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION),
                            error_message=f"unknown partition {t.topic_name}-{p.partition_index}",
                        )
                    )
                    continue
                if p.start_offset < 0:
                    parts.append(
                        part_cls(
                            partition_index=p.partition_index,
                            error_code=int(ErrorCode.INVALID_REQUEST),
                            error_message="start offset must be >= 0",
                        )
                    )
                    continue
                key = (req.group_id, info.topic_id, p.partition_index)
                durable = service.store.replay.partitions.get(key) if service.store else None
                records.append(reset_snapshot(key, p.start_offset, durable, now))
                plan.append((key, p.start_offset))
                parts.append(
                    part_cls(partition_index=p.partition_index, error_code=0, error_message=None)
                )
            answers.append(
                topic_cls(
                    topic_name=t.topic_name,
                    topic_id=info.topic_id if info else None,
                    partitions=parts,
                )
            )
        if service.store is not None:
            try:
                await service.store.write(records)
            except StateWriteError as e:
                return top(ErrorCode.UNKNOWN_SERVER_ERROR, f"offsets could not be persisted: {e}")
        service.engine.group(req.group_id, create=True)
        for key, start in plan:
            service.engine.add_partition(key, SharePartition(start))
        return resp(
            version=head.api_version,
            throttle_time_ms=0,
            error_code=0,
            error_message=None,
            responses=answers,
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

        if not req.group_id:
            return top(ErrorCode.INVALID_GROUP_ID, "group id must not be empty")
        if not self._group_exists(req.group_id):
            return top(ErrorCode.GROUP_ID_NOT_FOUND, f"share group {req.group_id} does not exist")
        if not self._is_empty(req.group_id):
            return top(ErrorCode.NON_EMPTY_GROUP, f"share group {req.group_id} has members")
        cluster = service.proxy.cluster
        known = self._known_partitions(req.group_id)
        records: list[Record] = []
        doomed: list[PartitionKey] = []
        answers = []
        for t in req.topics:
            info = cluster.topics.get(t.topic_name)
            if info is None:
                answers.append(
                    topic_cls(
                        topic_name=t.topic_name,
                        topic_id=None,
                        error_code=int(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION),
                        error_message="unknown topic",
                    )
                )
                continue
            keys = [k for k in known if k[1] == info.topic_id]
            records += [Tombstone(k) for k in keys]
            doomed += keys
            answers.append(
                topic_cls(
                    topic_name=t.topic_name,
                    topic_id=info.topic_id,
                    error_code=0,
                    error_message=None,
                )
            )
        if service.store is not None:
            try:
                await service.store.write(records)
            except StateWriteError as e:
                return top(ErrorCode.UNKNOWN_SERVER_ERROR, f"could not be persisted: {e}")
        for key in doomed:
            service.engine.partitions.pop(key, None)
            entry = service.engine.group(req.group_id)
            if entry is not None:
                entry.partitions.discard((key[1], key[2]))
        return resp(
            version=head.api_version,
            throttle_time_ms=0,
            error_code=0,
            error_message=None,
            responses=answers,
        )
