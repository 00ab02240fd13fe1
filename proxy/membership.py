"""ShareGroupHeartbeat (76) and ShareGroupDescribe (77), driven for the share service: the
core decides (``ShareCore.heartbeat``, ``ShareCore.describe``); this decodes, learns the
subscribed topics the proxy does not know yet, creates the share partitions a new assignment
needs and encodes the answers."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import trio

from model import ErrorCode
from proxy import messages, wire
from proxy.connection import ClientConnection
from proxy.lock_timer import LockTimer, now_ms
from proxy.server import Proxy
from proxy.share_persist import SharePersistence
from proxy.upstream import UpstreamError
from sharegroup.core import DescribedGroup, HeartbeatRequest, ShareCore

log = logging.getLogger("sharegroup.shares")


async def ensure_topics(proxy: Proxy, names: Sequence[str]) -> None:
    """Learn the topics of ``names`` the proxy does not know yet (a failed refresh is logged:
    the caller answers with what is known)."""
    missing = [n for n in names if n not in proxy.cluster.topics]
    if missing:
        try:
            await proxy.cluster.refresh(missing)
        except UpstreamError as e:
            log.warning("metadata refresh for %s failed: %s", missing, e)


class Membership:
    def __init__(
        self,
        proxy: Proxy,
        core: ShareCore,
        persistence: SharePersistence,
        timer: LockTimer,
    ) -> None:
        self.proxy = proxy
        self.core = core
        self.persistence = persistence
        self.timer = timer

    async def heartbeat(self, conn: ClientConnection, req: Any, head: wire.RequestHead) -> Any:
        resp_cls = messages.ShareGroupHeartbeatResponse
        subscribed = req.subscribed_topic_names
        if not self.persistence.fenced:
            await ensure_topics(self.proxy, self.core.topics_to_know(req.group_id, subscribed))
        cluster = self.proxy.cluster
        answer = self.core.heartbeat(
            HeartbeatRequest(
                req.group_id,
                req.member_id,
                req.member_epoch,
                None if subscribed is None else tuple(subscribed),
                req.rack_id,
                conn.client_id,
                "/" + conn.peer.rsplit(":", 1)[0],  # as Kafka: InetAddress.toString()
            ),
            now_ms=now_ms(),
            partition_counts=cluster.partition_counts(),
            topic_ids=cluster.topic_ids(),
            fenced=self.persistence.fenced or not self.persistence.coordinates(req.group_id),
            may_exist=self.persistence.may_exist,
        )
        result = answer.result
        if result is None:
            assert answer.error is not None
            return resp_cls(
                version=head.api_version,
                throttle_time_ms=0,
                error_code=int(answer.error.code),
                error_message=answer.error.message,
                member_id=None,
                member_epoch=0,
                heartbeat_interval_ms=0,
                assignment=None,
            )
        self.timer.kick()
        assignment = None
        if answer.initialize:
            async with trio.open_nursery() as nursery:
                for need in answer.initialize:
                    nursery.start_soon(self.persistence.init_partition, need)
        if result.assignment is not None:
            cluster = self.proxy.cluster
            assignment = resp_cls.Assignment(
                topic_partitions=[
                    resp_cls.Assignment.TopicPartitions(
                        topic_id=cluster.topics[name].topic_id, partitions=list(parts)
                    )
                    for name, parts in sorted(result.assignment.items())
                    if name in cluster.topics
                ]
            )
        return resp_cls(
            version=head.api_version,
            throttle_time_ms=0,
            error_code=0,
            error_message=None,
            member_id=result.member_id,
            member_epoch=result.member_epoch,
            heartbeat_interval_ms=result.heartbeat_interval_ms,
            assignment=assignment,
        )

    def describe(self, req: Any, head: wire.RequestHead) -> Any:
        resp_cls = messages.ShareGroupDescribeResponse
        group_cls = resp_cls.DescribedGroup
        member_cls = group_cls.Member
        topics_cls = member_cls.Assignment.TopicPartitions
        # A null GroupIds array (malformed) names no group.
        described = [
            g
            if self.persistence.coordinates(g.group_id)
            else DescribedGroup(g.group_id, ErrorCode.NOT_COORDINATOR, "not the coordinator")
            for g in self.core.describe(list(req.group_ids or ()), self.proxy.cluster.topic_ids())
        ]
        groups = [
            group_cls(
                error_code=int(g.error),
                error_message=g.message,
                group_id=g.group_id,
                group_state=g.state,
                group_epoch=g.group_epoch,
                assignment_epoch=g.assignment_epoch,
                assignor_name=g.assignor,
                members=[
                    member_cls(
                        member_id=m.member_id,
                        rack_id=m.rack_id,
                        member_epoch=m.member_epoch,
                        client_id=m.client_id,
                        client_host=m.client_host,
                        subscribed_topic_names=list(m.subscribed_topic_names),
                        assignment=member_cls.Assignment(
                            topic_partitions=[
                                topics_cls(topic_id=tid, topic_name=name, partitions=list(ps))
                                for tid, name, ps in m.assignment
                            ]
                        ),
                    )
                    for m in g.members
                ],
                authorized_operations=-(2**31),
            )
            for g in described
        ]
        return resp_cls(version=head.api_version, throttle_time_ms=0, groups=groups)
