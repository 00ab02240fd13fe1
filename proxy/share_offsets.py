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
from proxy.admin import FORWARDED_CLIENT_ID
from proxy.connection import ClientConnection
from proxy.shares import ShareService
from proxy.state_store import StateWriteError
from proxy.upstream import UpstreamError
from sharegroup.core.messages import Refused
from sharegroup.core.offsets import NOT_OWNED, OffsetsCore, PartitionResult, TopicInfo, by_owner
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
        # In a fleet the coordinator passes the parts of a change owned by other instances
        # on to them (``_pass_on``); such a part is written by its owner, not checked again.
        # (Only over PLAINTEXT listeners, the only ones instances pass requests on over.)
        plaintext = self.service.proxy.config.listen_protocol.upper() == "PLAINTEXT"
        forwarded = plaintext and conn.client_id.startswith(FORWARDED_CLIENT_ID)
        if not forwarded and not self.service.coordinates(req.group_id):
            return self._top(head, ErrorCode.NOT_COORDINATOR, "not the coordinator of this group")
        if head.api_key == 91:
            return await self.alter(req, head, forwarded=forwarded)
        return await self.delete(req, head, forwarded=forwarded)

    @staticmethod
    def _top(head: wire.RequestHead, code: ErrorCode, message: str) -> Any:
        """An answer with a top-level error and nothing else (APIs 91 and 92)."""
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

    def _owner_of(self, key: PartitionKey) -> int:
        """The fleet instance that owns ``key``'s share state (this one outside a fleet)."""
        service = self.service
        if service.share_owner is None or service.leads(key):
            return service.instance_id
        name = service.proxy.cluster.topic_names.get(key[1], "")
        return service.share_owner(key[1], name, key[2])

    async def _pass_on(self, owner: int, request: Any, head: wire.RequestHead) -> Any:
        """``request`` (91 or 92, this group, the part ``owner`` owns) sent to instance
        ``owner``; its answer, or an answer with the top-level error why it could not be had."""
        forward = self.service.forward_request
        if forward is None:
            return self._top(head, ErrorCode.NOT_COORDINATOR, "not in a fleet")
        try:
            resp = await forward(owner, request, head.api_key, head.api_version)
        except UpstreamError as e:
            return self._top(head, ErrorCode.COORDINATOR_NOT_AVAILABLE, f"{e}; retry")
        return resp

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
    async def alter(self, req: Any, head: wire.RequestHead, *, forwarded: bool = False) -> Any:
        resp = messages.AlterShareGroupOffsetsResponse
        topic_cls = resp.AlterShareGroupOffsetsResponseTopic
        part_cls = topic_cls.AlterShareGroupOffsetsResponsePartition
        service = self.service

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
            return self._top(head, plan.code, plan.message)
        results = {(r.topic, r.partition): r for r in plan.results}
        cluster = service.proxy.cluster
        mine, others = by_owner(plan.resets, lambda r: self._owner_of(r[0]), service.instance_id)
        if forwarded:  # a part passed on by the coordinator: owned elsewhere now, not here
            for key, _ in (r for rs in others.values() for r in rs):
                name = cluster.topic_names.get(key[1], "")
                results[(name, key[2])] = PartitionResult(
                    name, key[2], ErrorCode.NOT_LEADER_OR_FOLLOWER, NOT_OWNED
                )
            others = {}
        if service.store is not None and mine:
            now = int(time.time() * 1000)
            records: list[Record] = [
                reset_snapshot(key, start, service.store.replay.partitions.get(key), now)
                for key, start in mine
            ]
            try:
                await service.store.write(records)
            except StateWriteError as e:
                return self._top(
                    head, ErrorCode.UNKNOWN_SERVER_ERROR, f"offsets could not be persisted: {e}"
                )
        self.core.apply_resets(req.group_id, mine)
        for owner, resets in others.items():
            by_topic: dict[str, list[Any]] = {}
            for key, start in resets:
                by_topic.setdefault(cluster.topic_names.get(key[1], ""), []).append(
                    messages.AlterShareGroupOffsetsRequest.AlterShareGroupOffsetsRequestTopic.AlterShareGroupOffsetsRequestPartition(
                        partition_index=key[2], start_offset=start
                    )
                )
            request = messages.AlterShareGroupOffsetsRequest(
                group_id=req.group_id,
                topics=[
                    messages.AlterShareGroupOffsetsRequest.AlterShareGroupOffsetsRequestTopic(
                        topic_name=name, partitions=parts
                    )
                    for name, parts in by_topic.items()
                ],
            )
            answer = await self._pass_on(owner, request, head)
            for name, parts in by_topic.items():
                for part in parts:
                    results[(name, part.partition_index)] = PartitionResult(
                        name,
                        part.partition_index,
                        ErrorCode(answer.error_code),
                        answer.error_message,
                    )
            for t in answer.responses or ():
                for p in t.partitions or ():
                    results[(t.topic_name, p.partition_index)] = PartitionResult(
                        t.topic_name, p.partition_index, ErrorCode(p.error_code), p.error_message
                    )
        grouped: dict[str, list[Any]] = {}
        for r in results.values():
            grouped.setdefault(r.topic, []).append(
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
                for name, parts in grouped.items()
            ],
        )

    # ------------------------------------------------------------------ 92
    async def delete(self, req: Any, head: wire.RequestHead, *, forwarded: bool = False) -> Any:
        resp = messages.DeleteShareGroupOffsetsResponse
        topic_cls = resp.DeleteShareGroupOffsetsResponseTopic
        service = self.service

        plan = self.core.delete(
            req.group_id,
            [t.topic_name for t in req.topics or ()],
            self._topics(),
            self._durable(),
        )
        if isinstance(plan, Refused):
            return self._top(head, plan.code, plan.message)
        mine, others = by_owner(plan.forget, self._owner_of, service.instance_id)
        if forwarded:
            others = {}  # the coordinator passed each owner the topics it owns partitions of
        if service.store is not None and mine:
            try:
                await service.store.write([Tombstone(k) for k in mine])
            except StateWriteError as e:
                return self._top(
                    head, ErrorCode.UNKNOWN_SERVER_ERROR, f"could not be persisted: {e}"
                )
        self.core.apply_deletes(req.group_id, mine)
        results = {
            name: (name, topic_id, code, message) for name, topic_id, code, message in plan.results
        }
        names = service.proxy.cluster.topic_names
        for owner, keys in others.items():
            wanted = sorted({names.get(k[1], "") for k in keys})
            request = messages.DeleteShareGroupOffsetsRequest(
                group_id=req.group_id,
                topics=[
                    messages.DeleteShareGroupOffsetsRequest.DeleteShareGroupOffsetsRequestTopic(
                        topic_name=name
                    )
                    for name in wanted
                ],
            )
            answer = await self._pass_on(owner, request, head)
            failed = {t.topic_name: t for t in answer.responses or () if t.error_code}
            for name in wanted:
                name_, topic_id, code, _message = results[name]
                if code:
                    continue  # the first error of a topic stays
                if answer.error_code:
                    results[name] = (
                        name_,
                        topic_id,
                        ErrorCode(answer.error_code),
                        answer.error_message,
                    )
                elif name in failed:
                    t = failed[name]
                    results[name] = (name_, topic_id, ErrorCode(t.error_code), t.error_message)
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
                for name, topic_id, code, message in results.values()
            ],
        )
