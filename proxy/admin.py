"""Admin requests the proxy answers itself, wholly or in part.

Share groups live in the proxy, so the upstream cluster knows nothing of them:

* IncrementalAlterConfigs / DescribeConfigs on GROUP resources (type 32) set and show share-group
  configs (``share.*``, Kafka's ``GroupConfig``); other resources in the same request go upstream and the
  answers are merged in request order.
* ListGroups adds the share groups (type ``share``, protocol type ``share``) to the upstream's list.
* DescribeGroups and DeleteGroups answer share groups here and pass the other groups upstream.

Everything here talks to the upstream through ``Cluster`` connections with kafka-python classes.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from model import ErrorCode, GroupConfig, ShareApiError
from model.config import (
    BACKOFF_KEY,
    BACKOFF_MAX_KEY,
    DLQ_COPY_KEY,
    DLQ_TOPIC_KEY,
)
from proxy import wire
from proxy.connection import ClientConnection
from proxy.server import Proxy
from proxy.shares import ShareService
from proxy.state_store import StateWriteError
from sharegroup.core.configs import ConfigsCore
from sharegroup.core.messages import Refused
from sharegroup.persist.records import GroupConfigs, Tombstone

log = logging.getLogger("sharegroup.admin")

DESCRIBE_GROUPS = 15
DELETE_GROUPS = 42
GROUP_RESOURCE = 32
BROKER_RESOURCES = {4, 8}  # BROKER, BROKER_LOGGER: must go to that broker
SOURCE_DEFAULT = 5
SOURCE_GROUP = 8
TYPE_STRING, TYPE_INT = 2, 3


def _group_config_values(config: GroupConfig) -> dict[str, str]:
    """A group's effective share configs as DescribeConfigs shows them."""
    return {
        "share.session.timeout.ms": str(config.session_timeout_ms),
        "share.heartbeat.interval.ms": str(config.heartbeat_interval_ms),
        "share.record.lock.duration.ms": str(config.record_lock_duration_ms),
        "share.delivery.count.limit": str(config.delivery_count_limit),
        "share.partition.max.record.locks": str(config.partition_max_record_locks),
        "share.auto.offset.reset": config.auto_offset_reset,
        "share.isolation.level": config.isolation_level,
        "share.renew.acknowledge.enable": str(config.renew_acknowledge_enable).lower(),
        "share.assignment.interval.ms": str(config.assignment_interval_ms),
        BACKOFF_KEY: str(config.redelivery_backoff_ms),
        BACKOFF_MAX_KEY: str(config.redelivery_backoff_max_ms),
        DLQ_TOPIC_KEY: config.dlq_topic_name,
        DLQ_COPY_KEY: str(config.dlq_copy_record_enable).lower(),
    }


class AdminHandlers:
    def __init__(self, proxy: Proxy, shares: ShareService) -> None:
        self.proxy = proxy
        self.shares = shares
        self.configs = ConfigsCore(shares.engine)
        proxy.local_handlers[wire.INCREMENTAL_ALTER_CONFIGS] = self.incremental_alter_configs
        proxy.local_handlers[wire.DESCRIBE_CONFIGS] = self.describe_configs
        proxy.local_handlers[wire.LIST_GROUPS] = self.list_groups
        proxy.local_handlers[DESCRIBE_GROUPS] = self.describe_groups
        proxy.local_handlers[DELETE_GROUPS] = self.delete_groups

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
        engine = self.shares.engine
        entry = engine.group(res.resource_name)
        overrides = entry.overrides if entry is not None else {}
        values = _group_config_values(engine.group_config(res.resource_name))
        defaults = _group_config_values(GroupConfig.defaults(engine.broker_config))
        wanted = res.configuration_keys
        entry_cls = result_cls.DescribeConfigsResourceResult
        synonym_cls = entry_cls.DescribeConfigsSynonym
        configs = []
        for name, value in values.items():
            if wanted and name not in wanted:
                continue
            is_override = name in overrides
            # Kafka's synonyms, most specific first: the group's own value, then the broker
            # default it overrides (named group.share.* where the broker has such a config).
            synonyms = []
            if include_synonyms:
                if is_override:
                    synonyms.append(synonym_cls(name=name, value=value, source=SOURCE_GROUP))
                default_name = "group." + name
                if default_name not in engine.broker_config.values:
                    default_name = name
                synonyms.append(
                    synonym_cls(name=default_name, value=defaults[name], source=SOURCE_DEFAULT)
                )
            configs.append(
                entry_cls(
                    name=name,
                    value=value,
                    read_only=False,
                    config_source=SOURCE_GROUP if is_override else SOURCE_DEFAULT,
                    is_default=not is_override,
                    is_sensitive=False,
                    synonyms=synonyms,
                    config_type=TYPE_INT if value.isdigit() else TYPE_STRING,
                    documentation=None,
                )
            )
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
                if not entry.exists:
                    continue
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
            if entry is None or not entry.exists:
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

    async def delete_groups(self, conn: ClientConnection, req: Any, head: wire.RequestHead) -> Any:
        """Share groups are deleted here (state tombstoned first, configs kept, as in Kafka);
        other groups upstream. A share group with members answers NON_EMPTY_GROUP."""
        resp_cls = wire.response_class(DELETE_GROUPS)
        result_cls = resp_cls.DeletableGroupResult
        engine = self.shares.engine
        codes: dict[int, int] = {}
        upstream: list[tuple[int, str]] = []
        for i, group_id in enumerate(req.groups_names):
            entry = engine.group(group_id)
            if entry is None or not entry.exists:
                upstream.append((i, group_id))
            elif entry.group.members:
                codes[i] = int(ErrorCode.NON_EMPTY_GROUP)
            elif self.shares.fenced:
                codes[i] = int(ErrorCode.NOT_COORDINATOR)
            else:
                codes[i] = await self._delete_share_group(group_id)
        if upstream:
            sub = wire.request_class(DELETE_GROUPS)(
                version=head.api_version, groups_names=[g for _, g in upstream]
            )
            resp = await self._upstream(conn, sub, head, None)
            by_id = {r.group_id: r.error_code for r in resp.results}
            for i, group_id in upstream:
                codes[i] = by_id.get(group_id, int(ErrorCode.GROUP_ID_NOT_FOUND))
        return resp_cls(
            version=head.api_version,
            throttle_time_ms=0,
            results=[
                result_cls(group_id=g, error_code=codes[i]) for i, g in enumerate(req.groups_names)
            ],
        )

    async def _delete_share_group(self, group_id: str) -> int:
        engine = self.shares.engine
        store = self.shares.store
        if store is not None:
            keys = {k for k in engine.partitions if k[0] == group_id}
            keys |= {k for k in store.replay.partitions if k[0] == group_id}
            try:
                await store.write([Tombstone(k) for k in sorted(keys, key=str)])
            except StateWriteError as e:
                log.warning("share group %s not deleted: %s", group_id, e)
                return int(ErrorCode.UNKNOWN_SERVER_ERROR)
        try:
            engine.delete_group(group_id)
        except ShareApiError as e:  # a member joined while the tombstones were written
            return int(e.code)
        log.info("share group %s deleted", group_id)
        return int(ErrorCode.NONE)
