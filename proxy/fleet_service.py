"""Fleet mode: several ``sharegroup proxy`` instances serving one cluster's share groups.

``FleetService`` ties the parts of ``proxy.fleet`` to one proxy:

* membership — the fleet's consumer group assigns state partitions; on assignment the instance
  claims them, replays them and serves their share partitions and groups
  (``ShareService.restore``); on revocation it stops serving them at once (the share APIs
  answer NOT_LEADER_OR_FOLLOWER / NOT_COORDINATOR from then on), gives pending writes their
  time, lets the partitions go, and forgets their in-memory state;
* discovery — ``FleetView``, the fleet's consumer group as the cluster describes it;
* routing — as ``proxy.server.Router``, Metadata, FindCoordinator and DescribeCluster answers
  present every instance's listeners as the cluster's nodes (node id = instance id * 100000 +
  upstream broker id), a partition's leader being the listener of the instance that owns its
  share state and relays to its real upstream leader, and a group's coordinator the listener
  of the instance that owns the group's coordination;
* ``StateFollower`` — every instance knows the configs of the share groups coordinated
  elsewhere (their share partitions may be served here) and every share partition's durable
  start offset (DescribeShareGroupOffsets).
"""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

import trio
from confluent_kafka.admin import AdminClient

from proxy.fleet import (
    VIEW_REFRESH_S,
    FleetIdentity,
    FleetMembership,
    FleetView,
    StateFollower,
    describe_fleet,
    node_id,
)
from proxy.rewrite import Instances, route_describe_cluster, route_find_coordinator, route_metadata
from proxy.server import Proxy
from proxy.shares import ShareService
from proxy.state_partitions import PartitionedStateStore
from sharegroup.persist.partitioning import state_partition_for_group, state_partition_for_share
from sharegroup.persist.records import PartitionKey
from sharegroup.persist.recovery import Replay

log = logging.getLogger("sharegroup.fleet")


class FleetService:
    def __init__(
        self,
        proxy: Proxy,
        service: ShareService,
        store: PartitionedStateStore,
        *,
        instance_id: int,
        group_id: str | None = None,
        session_timeout_ms: int = 45000,
        heartbeat_interval_ms: int = 3000,
    ) -> None:
        self.proxy = proxy
        self.service = service
        self.store = store
        self.instance_id = instance_id
        self.membership = FleetMembership(
            store,
            group_id=group_id,
            session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=heartbeat_interval_ms,
            owner=self,
            on_change=lambda _owned: self._refresh_now.set(),
        )
        self.view = FleetView(self.identity, lambda: set(self.membership.owned))
        self.follower = StateFollower(store)
        self._refresh_now = trio.Event()
        service.persistence.fleet_mode = True
        service.durable_start_offsets = self.follower.start_offsets
        proxy.router = self
        proxy.after_ready.append(self.run)

    def identity(self) -> FleetIdentity:
        return FleetIdentity(
            self.instance_id, self.proxy.config.host_for_clients, dict(self.proxy.brokers.ports)
        )

    # ------------------------------------------------------------------ lifecycle
    async def run(self) -> None:
        """Be a member of the fleet until the proxy stops; then let go and leave, so that the
        others take over at once rather than after the session timeout."""
        self.membership.client_id = self.identity().client_id()
        log.info(
            "fleet instance %d joining %s as %s",
            self.instance_id,
            self.membership.group_id,
            self.membership.client_id,
        )
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self.follower.run, self._configs_changed)
                nursery.start_soon(self._refresh_loop)
                await self.membership.run()
        finally:
            await self.membership.aclose()

    async def claim(self, partitions: list[int]) -> Replay:
        replay = await self.store.claim(partitions)
        await self.service.persistence.restore(replay, partitions)
        return replay

    async def release(self, partitions: list[int], *, wait_s: float) -> None:
        await self.store.release(partitions, wait_s=wait_s)
        self.service.forget_state_partitions(partitions)

    def _configs_changed(self, configs: dict[str, dict[str, str]]) -> None:
        """Configs of groups coordinated elsewhere, as the state topic has them (those
        coordinated here are this instance's own to write)."""
        service = self.service
        for group_id, values in configs.items():
            if not service.coordinates(group_id):
                service.set_stored_configs(group_id, values)
        for group_id in list(service.engine.groups):
            if group_id not in configs and not service.coordinates(group_id):
                service.set_stored_configs(group_id, None)

    async def _refresh_loop(self) -> None:
        admin = AdminClient(self.store.config.client({}))
        group, topic = self.membership.group_id, self.store.config.topic
        while True:
            with trio.move_on_after(VIEW_REFRESH_S):
                await self._refresh_now.wait()
            self._refresh_now = trio.Event()
            try:
                members = await trio.to_thread.run_sync(describe_fleet, admin, group, topic)
            except Exception as e:  # noqa: BLE001 - a failed describe keeps the last view
                log.info("describing the fleet's group %s failed: %s", group, e)
                continue
            before = {i: sorted(f.state_partitions) for i, f in self.view.instances().items()}
            self.view.apply(members)
            after = {i: sorted(f.state_partitions) for i, f in self.view.instances().items()}
            if after != before:
                log.info("fleet: %s", after)

    # ------------------------------------------------------------------ routing
    def _instances(self) -> Instances:
        return {i: (f.identity.host, f.identity.ports) for i, f in self.view.instances().items()}

    def owner_of_share(self, topic_id: UUID | None, name: str, partition: int) -> int:
        if topic_id is None or topic_id.int == 0:
            info = self.proxy.cluster.topics.get(name)
            topic_id = info.topic_id if info is not None else None
        if topic_id is None or self.store.partitions < 1:
            return self.instance_id
        return self.view.owner(
            state_partition_for_share(topic_id, partition, self.store.partitions)
        )

    def owner_of_group(self, key: str) -> int:
        if self.store.partitions < 1:
            return self.instance_id
        return self.view.owner(state_partition_for_group(key, self.store.partitions))

    def metadata(self, resp: Any) -> None:
        route_metadata(resp, self._instances(), node_id, self.instance_id, self.owner_of_share)

    def find_coordinator(self, resp: Any, version: int, key: str | None) -> None:
        route_find_coordinator(resp, version, key, self._instances(), node_id, self.owner_of_group)

    def describe_cluster(self, resp: Any) -> None:
        route_describe_cluster(resp, self._instances(), node_id, self.instance_id)

    def owns(self, key: PartitionKey) -> bool:
        return self.store.owns_share(key[1], key[2])
