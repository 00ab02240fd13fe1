"""Admin requests the proxy answers itself, wholly or in part.

Share groups live in the proxy, so the upstream cluster knows nothing of them:

* IncrementalAlterConfigs / DescribeConfigs on GROUP resources (type 32) set and show share-group
  configs (``share.*``, KIP-932's group configs); other resources in the same request go upstream and the
  answers are merged in request order.
* ListGroups adds the share groups (type ``share``, protocol type ``share``) to the upstream's list.

Everything here talks to the upstream through ``Cluster`` connections with kafka-python classes.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from model import ErrorCode
from proxy import wire
from proxy.connection import ClientConnection
from proxy.server import Proxy
from proxy.shares import ShareService
from proxy.state_store import StateWriteError
from sharegroup.core.configs import ConfigsCore
from sharegroup.core.messages import Refused
from sharegroup.persist.records import GroupConfigs

log = logging.getLogger("sharegroup.admin")

DESCRIBE_GROUPS = 15
GROUP_RESOURCE = 32
BROKER_RESOURCES = {4, 8}  # BROKER, BROKER_LOGGER: must go to that broker
SOURCE_DEFAULT = 5
SOURCE_GROUP = 8
TYPE_STRING, TYPE_INT = 2, 3


class AdminHandlers:
    def __init__(self, proxy: Proxy, shares: ShareService) -> None:
        self.proxy = proxy
        self.shares = shares
        self.configs = ConfigsCore(shares.engine)
        proxy.local_handlers[wire.INCREMENTAL_ALTER_CONFIGS] = self.incremental_alter_configs
        proxy.local_handlers[wire.DESCRIBE_CONFIGS] = self.describe_configs
        proxy.local_handlers[wire.LIST_GROUPS] = self.list_groups
        proxy.local_handlers[DESCRIBE_GROUPS] = self.describe_groups

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
            code, message = await self._alter_group(res, req.validate_only)
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

    async def _alter_group(self, res: Any, validate_only: bool) -> tuple[ErrorCode, str | None]:
        group_id = res.resource_name
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
            return self._describe_group(resp_cls.DescribeConfigsResult, res, head.api_version)

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

    def _describe_group(self, result_cls: Any, res: Any, version: int) -> Any:
        described = self.configs.describe(res.resource_name, res.configuration_keys)
        entry_cls = result_cls.DescribeConfigsResourceResult
        configs = [
            entry_cls(
                name=d.name,
                value=d.value,
                read_only=False,
                config_source=SOURCE_GROUP if d.is_override else SOURCE_DEFAULT,
                is_default=not d.is_override,
                is_sensitive=False,
                synonyms=[],
                config_type=TYPE_INT if d.value.isdigit() else TYPE_STRING,
                documentation=None,
            )
            for d in described
        ]
        return result_cls(
            error_code=0,
            error_message=None,
            resource_type=GROUP_RESOURCE,
            resource_name=res.resource_name,
            configs=configs,
        )

    # ------------------------------------------------------------------ groups
    async def list_groups(self, conn: ClientConnection, req: Any, head: wire.RequestHead) -> Any:
        resp_cls = wire.response_class(wire.LIST_GROUPS)
        types = [t.lower() for t in (getattr(req, "types_filter", None) or [])]
        states = [s.lower() for s in (getattr(req, "states_filter", None) or [])]
        groups: list[Any] = []
        error = 0
        if not types or any(t != "share" for t in types):
            resp = await self._upstream(conn, req, head, None)
            groups.extend(resp.groups)
            error = resp.error_code
        if not types or "share" in types:
            for group_id, entry in sorted(self.shares.engine.groups.items()):
                state = entry.group.state
                if states and state.lower() not in states:
                    continue
                groups.append(
                    resp_cls.ListedGroup(
                        group_id=group_id,
                        protocol_type="share",
                        group_state=state,
                        group_type="share",
                    )
                )
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
        engine = self.shares.engine
        answers: dict[int, Any] = {}
        upstream: list[tuple[int, str]] = []
        for i, group_id in enumerate(req.groups):
            entry = engine.group(group_id)
            if entry is None:
                upstream.append((i, group_id))
                continue
            answers[i] = group_cls(
                error_code=0,
                error_message=None,
                group_id=group_id,
                group_state=entry.group.state,
                protocol_type="share",
                protocol_data="simple",
                members=[
                    member_cls(
                        member_id=m.member_id,
                        group_instance_id=None,
                        client_id=m.client_id,
                        client_host=m.client_host,
                        member_metadata=b"",
                        member_assignment=b"",
                    )
                    for m in entry.group.members.values()
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
