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
* group configs — an IncrementalAlterConfigs change of a GROUP resource that reaches an
  instance not coordinating the group is sent, as an IncrementalAlterConfigs of that resource
  alone, to the coordinating instance's listener (``forward_group_configs``), whose answer is
  the client's; PLAINTEXT listeners only (``docs/persistence.md``);
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

from model import ErrorCode
from proxy import wire
from proxy.admin import FORWARDED_CLIENT_ID
from proxy.fleet import (
    VIEW_REFRESH_S,
    FleetIdentity,
    FleetMembership,
    FleetView,
    StateFollower,
    describe_fleet,
    node_id,
)
from proxy.kafka_handles import keep
from proxy.rewrite import Instances, route_describe_cluster, route_find_coordinator, route_metadata
from proxy.server import Proxy
from proxy.shares import ShareService
from proxy.state_partitions import PartitionedStateStore
from proxy.upstream import BrokerConnection, UpstreamError
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
        service.forward_group_configs = self.forward_group_configs
        service.share_owner = self.owner_of_share
        service.instance_id = instance_id
        service.forward_request = self.forward_request
        service.leader_hint = self.leader_hint
        self._nursery: trio.Nursery | None = None
        self._forward_conns: dict[tuple[str, int], BrokerConnection] = {}
        self._forward_lock = trio.Lock()
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
                self._nursery = nursery
                nursery.start_soon(self.follower.run, self._configs_changed)
                nursery.start_soon(self._refresh_loop)
                await self.membership.run()
        finally:
            self._nursery = None
            for conn in self._forward_conns.values():
                await conn.aclose()
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
        admin = keep(AdminClient(self.store.config.client({})))
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

    def leader_hint(self, topic_id: UUID, partition: int) -> tuple[int, int, str, int] | None:
        """Where another instance serves this share partition: its node for the partition's
        upstream leader (node id, leader epoch, host, port); None when no other instance is
        known to own it."""
        cluster = self.proxy.cluster
        name = cluster.topic_names.get(topic_id)
        info = cluster.topics.get(name) if name is not None else None
        part = info.partitions.get(partition) if info is not None else None
        if name is None or part is None or part.leader < 0:
            return None
        owner = self.owner_of_share(topic_id, name, partition)
        instance = self.view.instances().get(owner)
        if owner == self.instance_id or instance is None:
            return None
        port = instance.identity.ports.get(part.leader)
        if port is None:
            return None
        return node_id(owner, part.leader), part.leader_epoch, instance.identity.host, port

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

    # ------------------------------------------------------------------ group configs
    async def forward_group_configs(
        self, resource: Any, validate_only: bool, version: int
    ) -> tuple[int, str | None]:
        """Send one GROUP resource's config change to the instance coordinating the group
        and give back its answer for it (error code, message). The client was authorized
        here already; the coordinating instance checks the request again, as coming from
        this instance's connection (on a PLAINTEXT listener: User:ANONYMOUS)."""
        group_id = resource.resource_name
        partition = state_partition_for_group(group_id, self.store.partitions)
        owner = self.view.owner(partition)
        listener = self._listener_of(owner)
        if listener is None:
            return (
                ErrorCode.COORDINATOR_NOT_AVAILABLE,
                f"the coordinator of group {group_id} (state partition {partition}) is not "
                "known yet (the fleet is rebalancing); retry",
            )
        host, port = listener
        where = f"instance {owner} at {host}:{port}"
        if self.proxy.config.listen_protocol.upper() != "PLAINTEXT":
            return (
                ErrorCode.INVALID_REQUEST,
                f"group {group_id} is coordinated by {where}; with "
                f"{self.proxy.config.listen_protocol} listeners the fleet does not pass group "
                "config changes on: send them to the group's coordinator",
            )
        try:
            conn = await self._forward_connection(host, port)
            request = wire.request_class(wire.INCREMENTAL_ALTER_CONFIGS)(
                version=version, resources=[resource], validate_only=validate_only
            )
            resp = await conn.request(
                request, conn.version_for(wire.INCREMENTAL_ALTER_CONFIGS, version), 15.0
            )
        except (UpstreamError, OSError, trio.TooSlowError) as e:
            self._refresh_now.set()
            log.info("group %s configs not passed on to %s: %s", group_id, where, e)
            return ErrorCode.COORDINATOR_NOT_AVAILABLE, f"cannot reach {where}: {e}; retry"
        answers = [r for r in resp.responses if r.resource_name == group_id]
        if len(answers) != 1:
            return (
                ErrorCode.COORDINATOR_NOT_AVAILABLE,
                f"no answer for group {group_id} from {where}",
            )
        log.info(
            "group %s configs passed on to %s: error %d", group_id, where, answers[0].error_code
        )
        return answers[0].error_code, answers[0].error_message

    async def forward_request(self, owner: int, request: Any, api_key: int, version: int) -> Any:
        """Send ``request`` to instance ``owner``'s listener as this instance (client id
        ``FORWARDED_CLIENT_ID/<id>``) and return its answer; UpstreamError when the instance
        is not known or cannot be reached. PLAINTEXT listeners only (as group configs)."""
        listener = self._listener_of(owner)
        if listener is None:
            raise UpstreamError(f"instance {owner} is not known (the fleet is rebalancing)")
        host, port = listener
        if self.proxy.config.listen_protocol.upper() != "PLAINTEXT":
            raise UpstreamError(
                f"instance {owner} at {host}:{port} owns it; with "
                f"{self.proxy.config.listen_protocol} listeners the fleet does not pass "
                "requests on"
            )
        try:
            conn = await self._forward_connection(host, port)
            request.API_VERSION = version
            return await conn.request(request, conn.version_for(api_key, version), 30.0)
        except (OSError, trio.TooSlowError) as e:
            self._refresh_now.set()
            raise UpstreamError(f"cannot reach instance {owner} at {host}:{port}: {e}") from e
        except UpstreamError:
            self._refresh_now.set()
            raise

    def _listener_of(self, owner: int) -> tuple[str, int] | None:
        """Where another instance takes requests passed on to it (its listener for the
        lowest upstream broker id); None, and the fleet described again now, when it is
        this instance or not known."""
        instance = self.view.instances().get(owner)
        if owner == self.instance_id or instance is None or not instance.identity.ports:
            self._refresh_now.set()
            return None
        return instance.identity.host, instance.identity.ports[min(instance.identity.ports)]

    async def _forward_connection(self, host: str, port: int) -> BrokerConnection:
        """A live connection to another instance's listener, kept for the next change."""
        async with self._forward_lock:
            conn = self._forward_conns.get((host, port))
            if conn is not None and not conn.closed:
                return conn
            if self._nursery is None:
                raise UpstreamError("the fleet service is not running")
            conn = BrokerConnection(host, port, self.proxy.config.max_frame_bytes)
            conn.client_id = f"{FORWARDED_CLIENT_ID}/{self.instance_id}"
            await conn.start(self._nursery)
            self._forward_conns[(host, port)] = conn
            return conn
