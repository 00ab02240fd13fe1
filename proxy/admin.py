"""Admin requests the proxy answers itself, wholly or in part.

Share groups live in the proxy, so the upstream cluster knows nothing of them:

* IncrementalAlterConfigs / DescribeConfigs on GROUP resources (type 32) set and show
  share-group configs (``share.*``, Kafka's ``GroupConfig``); other resources in the same
  request go upstream and the answers are merged in request order. In a fleet, a GROUP
  resource's change is written by the instance coordinating the group; any other instance
  passes it on there (``ShareService.forward_group_configs``) and answers with its result.
* ListGroups adds the share groups (type ``share``, protocol type ``share``) to the upstream's list.
* DescribeGroups and DeleteGroups answer share groups here and pass the other groups upstream.

The decisions are the core's (``sharegroup.core.admin.AdminCore``,
``sharegroup.core.configs.ConfigsCore``); this driver decodes, persists what they say before
applying it (configs, tombstones), asks the upstream through ``Cluster`` connections with
kafka-python classes, and encodes the merged answers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from model import ErrorCode
from proxy import wire
from proxy.connection import ClientConnection
from proxy.server import LocalHandler, Proxy
from proxy.shares import ShareService
from proxy.state_store import StateWriteError
from sharegroup.core.admin import SHARE, SIMPLE_ASSIGNOR, AdminCore, GroupDeletion, NotShareGroup
from sharegroup.core.configs import ConfigsCore
from sharegroup.core.messages import Refused
from sharegroup.persist.records import GroupConfigs, Tombstone

log = logging.getLogger("sharegroup.admin")

DESCRIBE_GROUPS = 15
DELETE_GROUPS = 42
GROUP_RESOURCE = 32
BROKER_RESOURCES = {4, 8}  # BROKER, BROKER_LOGGER: must go to that broker
# The client id of requests one fleet instance passes on to another (proxy.fleet_service).
FORWARDED_CLIENT_ID = "sharegroup-fleet-forward"
# How long a group config change waits for its coordinator to become known, and how often it
# asks again meanwhile.
FORWARD_RETRY_S = 5.0
FORWARD_RETRY_EVERY_S = 0.2


class AdminHandlers:
    def __init__(self, proxy: Proxy, shares: ShareService) -> None:
        self.proxy = proxy
        self.shares = shares
        self.configs = ConfigsCore(shares.engine)
        self.admin = AdminCore(shares.engine)
        self.handlers: dict[int, LocalHandler] = {
            wire.INCREMENTAL_ALTER_CONFIGS: self.incremental_alter_configs,
            wire.DESCRIBE_CONFIGS: self.describe_configs,
            wire.LIST_GROUPS: self.list_groups,
            DESCRIBE_GROUPS: self.describe_groups,
            DELETE_GROUPS: self.delete_groups,
        }
        for key in self.handlers:
            proxy.local_handlers[key] = self.handle

    async def handle(self, conn: ClientConnection, request: Any, head: wire.RequestHead) -> Any:
        """Answer one admin request; its observers are the share service's (``answered``)."""
        started = time.perf_counter()
        response = await self.handlers[head.api_key](conn, request, head)
        self.shares.answered(head, response, time.perf_counter() - started)
        return response

    async def _upstream(
        self, conn: ClientConnection, request: Any, head: wire.RequestHead, node: int | None
    ) -> Any:
        target = await self.proxy.cluster.connection(node if node is not None else conn.node_id)
        version = target.version_for(head.api_key, head.api_version)
        return await target.request(request, version)

    # ------------------------------------------------------------------ configs
    async def _split_resources(
        self,
        conn: ClientConnection,
        head: wire.RequestHead,
        resources: list[Any],
        local: Callable[[Any], Awaitable[Any]],
        upstream_request: Callable[[list[Any]], Any],
        answers_of: Callable[[Any], list[Any]],
    ) -> list[Any]:
        """Answer GROUP resources here and send the others upstream (BROKER resources to
        their own broker), one request per broker; answers come back in request order."""
        answers: dict[int, Any] = {}
        by_node: dict[int | None, list[tuple[int, Any]]] = {}
        for i, res in enumerate(resources):
            if res.resource_type == GROUP_RESOURCE:
                answers[i] = await local(res)
                continue
            own_broker = res.resource_type in BROKER_RESOURCES and res.resource_name.isdigit()
            by_node.setdefault(int(res.resource_name) if own_broker else None, []).append((i, res))
        for node, items in by_node.items():
            resp = await self._upstream(conn, upstream_request([r for _, r in items]), head, node)
            for (i, _), answer in zip(items, answers_of(resp), strict=True):
                answers[i] = answer
        return [answers[i] for i in range(len(resources))]

    async def incremental_alter_configs(
        self, conn: ClientConnection, req: Any, head: wire.RequestHead
    ) -> Any:
        resp_cls = wire.response_class(wire.INCREMENTAL_ALTER_CONFIGS)
        req_cls = wire.request_class(wire.INCREMENTAL_ALTER_CONFIGS)

        async def local(res: Any) -> Any:
            code, message = await self._alter_group(conn, res, req.validate_only, head)
            return resp_cls.AlterConfigsResourceResponse(
                error_code=int(code),
                error_message=message,
                resource_type=res.resource_type,
                resource_name=res.resource_name,
            )

        responses = await self._split_resources(
            conn,
            head,
            req.resources,
            local,
            lambda rs: req_cls(
                version=head.api_version, resources=rs, validate_only=req.validate_only
            ),
            lambda resp: list(resp.responses),
        )
        return resp_cls(version=head.api_version, throttle_time_ms=0, responses=responses)

    async def _alter_group(
        self, conn: ClientConnection, res: Any, validate_only: bool, head: wire.RequestHead
    ) -> tuple[int, str | None]:
        group_id = res.resource_name
        deadline = trio.current_time() + FORWARD_RETRY_S
        while not self.shares.coordinates(group_id):
            # Fleet mode: only the instance coordinating the group writes its configs (its
            # state partition); Kafka's tools send these to any broker, so pass it on there.
            # A request passed on by another instance is not passed on again: views of the
            # fleet that differ for a moment must not send it round in circles.
            forward = self.shares.forward_group_configs
            if forward is None or conn.client_id.startswith(FORWARDED_CLIENT_ID):
                return (
                    ErrorCode.COORDINATOR_NOT_AVAILABLE,
                    f"this instance does not coordinate group {group_id} (the fleet is "
                    "rebalancing); retry",
                )
            code, message = await forward(res, validate_only, head.api_version)
            # Kafka's admin clients do not retry a resource's error themselves: a coordinator
            # not known yet (mid-rebalance) gets a few seconds to become known (maybe here).
            if code != ErrorCode.COORDINATOR_NOT_AVAILABLE or trio.current_time() >= deadline:
                return code, message
            await trio.sleep(FORWARD_RETRY_EVERY_S)
        change = self.configs.plan(
            group_id, [(c.name, c.config_operation, c.value) for c in res.configs or ()]
        )
        if isinstance(change, Refused):
            return change.code, change.message
        if validate_only:
            return ErrorCode.NONE, None
        self.configs.apply(change)
        store = self.shares.store
        if store is not None:
            try:
                await store.write([GroupConfigs(group_id, change.after)])
            except StateWriteError as e:
                self.configs.undo(change)
                if e.fenced:  # the group's state partition moved to another instance
                    return ErrorCode.COORDINATOR_NOT_AVAILABLE, f"configs not persisted: {e}"
                return ErrorCode.UNKNOWN_SERVER_ERROR, f"configs not persisted: {e}"
        self.shares.group_configs_changed(group_id)
        log.info("group %s configs %s", group_id, change.changes)
        return ErrorCode.NONE, None

    async def describe_configs(
        self, conn: ClientConnection, req: Any, head: wire.RequestHead
    ) -> Any:
        resp_cls = wire.response_class(wire.DESCRIBE_CONFIGS)
        req_cls = wire.request_class(wire.DESCRIBE_CONFIGS)

        async def local(res: Any) -> Any:
            return self._describe_group(
                resp_cls.DescribeConfigsResult, res, bool(req.include_synonyms)
            )

        results = await self._split_resources(
            conn,
            head,
            req.resources,
            local,
            lambda rs: req_cls(
                version=head.api_version,
                resources=rs,
                include_synonyms=req.include_synonyms,
                include_documentation=req.include_documentation,
            ),
            lambda resp: list(resp.results),
        )
        return resp_cls(version=head.api_version, throttle_time_ms=0, results=results)

    def _describe_group(self, result_cls: Any, res: Any, include_synonyms: bool) -> Any:
        entry_cls = result_cls.DescribeConfigsResourceResult
        synonym_cls = entry_cls.DescribeConfigsSynonym
        described = self.admin.describe_configs(
            res.resource_name, res.configuration_keys, include_synonyms=include_synonyms
        )
        return result_cls(
            error_code=0,
            error_message=None,
            resource_type=GROUP_RESOURCE,
            resource_name=res.resource_name,
            configs=[
                entry_cls(
                    name=c.name,
                    value=c.value,
                    read_only=c.read_only,
                    config_source=c.source,
                    is_default=c.is_default,
                    is_sensitive=c.is_sensitive,
                    synonyms=[
                        synonym_cls(name=y.name, value=y.value, source=y.source) for y in c.synonyms
                    ],
                    config_type=c.config_type,
                    documentation=c.documentation,
                )
                for c in described
            ],
        )

    # ------------------------------------------------------------------ groups
    async def list_groups(self, conn: ClientConnection, req: Any, head: wire.RequestHead) -> Any:
        resp_cls = wire.response_class(wire.LIST_GROUPS)
        fleet = self.shares.persistence.fleet_mode
        coordinates = self.shares.coordinates if fleet else None
        brokers = self.proxy.cluster.brokers
        listing = self.admin.list_groups(
            getattr(req, "types_filter", None) or [],
            getattr(req, "states_filter", None) or [],
            coordinates,
            lists_share_groups=conn.node_id == min(brokers, default=conn.node_id),
        )
        groups: list[Any] = []
        error = 0
        if listing.ask_upstream:
            resp = await self._upstream(conn, req, head, None)
            keep = self.admin.keeps_upstream((g.group_id for g in resp.groups), coordinates)
            groups.extend(g for g, kept in zip(resp.groups, keep, strict=True) if kept)
            error = resp.error_code
        groups += [
            resp_cls.ListedGroup(
                group_id=g.group_id, protocol_type=SHARE, group_state=g.state, group_type=SHARE
            )
            for g in listing.share_groups
        ]
        return resp_cls(
            version=head.api_version, throttle_time_ms=0, error_code=error, groups=groups
        )

    async def describe_groups(
        self, conn: ClientConnection, req: Any, head: wire.RequestHead
    ) -> Any:
        """Share groups are described here (protocol type ``share``); others upstream."""
        resp_cls = wire.response_class(DESCRIBE_GROUPS)
        group_cls = resp_cls.DescribedGroup
        member_cls = group_cls.DescribedGroupMember
        answers: dict[int, Any] = {}
        upstream: list[tuple[int, str]] = []
        for i, group_id in enumerate(req.groups):
            info = self.admin.describe_group(group_id)
            if isinstance(info, NotShareGroup):
                upstream.append((i, group_id))
                continue
            answers[i] = group_cls(
                error_code=0,
                error_message=None,
                group_id=info.group_id,
                group_state=info.state,
                protocol_type=SHARE,
                protocol_data=SIMPLE_ASSIGNOR,
                members=[
                    member_cls(
                        member_id=m.member_id,
                        group_instance_id=None,
                        client_id=m.client_id,
                        client_host=m.client_host,
                        member_metadata=b"",
                        member_assignment=b"",
                    )
                    for m in info.members
                ],
                authorized_operations=None,  # a bitfield in kafka-python: None = not requested
            )
        if upstream:
            req_cls = wire.request_class(DESCRIBE_GROUPS)
            sub = req_cls(
                version=head.api_version,
                groups=[g for _, g in upstream],
                include_authorized_operations=req.include_authorized_operations,
            )
            resp = await self._upstream(conn, sub, head, None)
            for (i, _), answer in zip(upstream, resp.groups, strict=True):
                answers[i] = answer
        return resp_cls(
            version=head.api_version,
            throttle_time_ms=0,
            groups=[answers[i] for i in range(len(req.groups))],
        )

    async def delete_groups(self, conn: ClientConnection, req: Any, head: wire.RequestHead) -> Any:
        """Share groups are deleted here (``AdminCore.delete_group``), other groups upstream."""
        resp_cls = wire.response_class(DELETE_GROUPS)
        result_cls = resp_cls.DeletableGroupResult
        codes: dict[int, int] = {}
        upstream: list[tuple[int, str]] = []
        for i, group_id in enumerate(req.groups_names):
            store = self.shares.store
            decision = self.admin.delete_group(
                group_id,
                None if store is None else store.replay.partitions.keys(),
                fenced=self.shares.fenced,
            )
            if isinstance(decision, NotShareGroup):
                upstream.append((i, group_id))
            elif isinstance(decision, Refused):
                codes[i] = int(decision.code)
            else:
                codes[i] = int(await self._delete_share_group(decision))
        if upstream:
            sub = wire.request_class(DELETE_GROUPS)(
                version=head.api_version, groups_names=[g for _, g in upstream]
            )
            resp = await self._upstream(conn, sub, head, None)
            answered = self.admin.upstream_codes(
                [g for _, g in upstream], {r.group_id: r.error_code for r in resp.results}
            )
            for i, group_id in upstream:
                codes[i] = answered[group_id]
        return resp_cls(
            version=head.api_version,
            throttle_time_ms=0,
            results=[
                result_cls(group_id=g, error_code=codes[i]) for i, g in enumerate(req.groups_names)
            ],
        )

    async def _delete_share_group(self, deletion: GroupDeletion) -> ErrorCode:
        store = self.shares.store
        if store is not None:
            try:
                await store.write([Tombstone(k) for k in deletion.tombstones])
            except StateWriteError as e:
                log.warning("share group %s not deleted: %s", deletion.group_id, e)
                return ErrorCode.UNKNOWN_SERVER_ERROR
        code = self.admin.apply_delete(deletion)
        if code == ErrorCode.NONE:
            log.info("share group %s deleted", deletion.group_id)
        return code
