"""Authorization of the share-group APIs the proxy answers itself, with the upstream's ACLs.

The upstream cluster stays the source of truth: the proxy reads its ACLs with DescribeAcls on
its own connection, every ``sharegroup.acl.refresh.ms`` (default 5000) and at once after a
CreateAcls or DeleteAcls passes through it, and evaluates them with ``proxy.acl`` for the
principal the client authenticated as upstream (``proxy.client_auth``). DescribeAcls answered
with SECURITY_DISABLED means the upstream has no authorizer: everything is allowed, as there.
Until the first read succeeds, and while the ACLs cannot be read (the proxy's principal may not
read them, the upstream is away), the proxy fails closed, but retriably: everything checked
here is refused with COORDINATOR_LOAD_IN_PROGRESS (14), which Kafka's Java client and
librdkafka retry (a heartbeat after a back-off, a ShareFetch at the next poll, an admin request
until its timeout), instead of the authorization errors, which end a share consumer. Super
users, whose rights come from the proxy's config and not from ACLs, are served as before.

What is checked, as Kafka 4.x's KafkaApis does (its ``handleShare*`` and share-offsets handlers):

* ShareGroupHeartbeat: READ on the group (else GROUP_AUTHORIZATION_FAILED), DESCRIBE on every
  subscribed topic (else TOPIC_AUTHORIZATION_FAILED);
* ShareFetch, ShareAcknowledge: READ on the group (else GROUP_AUTHORIZATION_FAILED for the
  request); READ on each topic, per partition: an unauthorized partition is taken out of the
  request before the handler sees it (no record is acquired from it and no acknowledgement
  applied) and answered with TOPIC_AUTHORIZATION_FAILED; a share-session partition whose
  topic lacks READ is answered so on every ShareFetch, kept out of the handler's session
  meanwhile (``_SessionView``);
* ShareGroupDescribe: DESCRIBE on each group (else that group's GROUP_AUTHORIZATION_FAILED);
* DescribeShareGroupOffsets: DESCRIBE on each group (else that group's 30), and DESCRIBE on
  each topic: a topic named in the request and refused is answered with 29 per partition
  (after the others, with no offset), a group asked for all its topics shows only those the
  client may DESCRIBE;
* AlterShareGroupOffsets / DeleteShareGroupOffsets: READ / DELETE on the group (else 30 for
  the request, nothing changed), and READ on each topic: a refused topic is taken out before
  the handler and answered with 29 (per partition when altering, per topic when deleting),
  listed before the others, unless the handler refuses the whole request.

The admin requests the proxy answers in part (``proxy.admin``) send their non-share parts
upstream on the proxy's own connection, so they are checked here too, as Kafka checks them:
DescribeConfigs / IncrementalAlterConfigs need DESCRIBE_CONFIGS / ALTER_CONFIGS on the topic
(else 29), the group (else 30) or, for BROKER and BROKER_LOGGER resources, the cluster (else
CLUSTER_AUTHORIZATION_FAILED, 31); a refused resource is taken out and answered in its place.
ListGroups lists only the groups the client may DESCRIBE (all, with DESCRIBE on the cluster);
DescribeGroups answers 30 for a group the client may not DESCRIBE.

The split happens here, around the handlers, as KafkaApis splits a request into authorized and
unauthorized parts before the share-partition manager sees it.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from uuid import UUID

import trio

from model import ConfigError, ErrorCode
from proxy import messages, wire
from proxy.acl import CLUSTER_NAME, Acl, AclTable, Op, PatternType, Permission, ResourceType
from proxy.upstream import UpstreamError

if TYPE_CHECKING:
    from proxy.connection import ClientConnection
    from proxy.upstream import Cluster

log = logging.getLogger("sharegroup.authz")

DESCRIBE_ACLS = 29
SECURITY_DISABLED = 54
ACL_KEYS = {"super.users", "allow.everyone.if.no.acl.found", "sharegroup.acl.refresh.ms"}
DEFAULT_REFRESH_MS = 5000
SHARE_HEARTBEAT, SHARE_DESCRIBE, SHARE_FETCH, SHARE_ACKNOWLEDGE = 76, 77, 78, 79
LIST_GROUPS, DESCRIBE_GROUPS, DESCRIBE_CONFIGS, INCREMENTAL_ALTER_CONFIGS = 16, 15, 32, 44
DELETE_GROUPS = 42
DESCRIBE_SHARE_OFFSETS, ALTER_SHARE_OFFSETS, DELETE_SHARE_OFFSETS = 90, 91, 92
# The operation on the group each offsets API needs (Kafka's KafkaApis: DESCRIBE to describe
# share-group offsets, READ to alter them, DELETE to delete them).
_OFFSETS_GROUP_OP = {
    DESCRIBE_SHARE_OFFSETS: Op.DESCRIBE,
    ALTER_SHARE_OFFSETS: Op.READ,
    DELETE_SHARE_OFFSETS: Op.DELETE,
}
CLUSTER_AUTHORIZATION_FAILED = 31
# ConfigResource types: what an ACL check of each names, and the error a refusal gets.
_CONFIG_RESOURCES = {
    2: (ResourceType.TOPIC, ErrorCode.TOPIC_AUTHORIZATION_FAILED),
    32: (ResourceType.GROUP, ErrorCode.GROUP_AUTHORIZATION_FAILED),
    4: (ResourceType.CLUSTER, CLUSTER_AUTHORIZATION_FAILED),
    8: (ResourceType.CLUSTER, CLUSTER_AUTHORIZATION_FAILED),
}


@dataclass(frozen=True)
class AuthzConfig:
    super_users: frozenset[str] = frozenset()
    allow_if_no_acl: bool = False
    refresh_s: float = DEFAULT_REFRESH_MS / 1000
    # Whether clients authenticate (a SASL listener). Without, every client is
    # User:ANONYMOUS, and an upstream that answers DescribeAcls with no ACLs at all is taken
    # to have no authorizer (brokers such as Tansu answer so instead of SECURITY_DISABLED).
    sasl_listener: bool = True


def authz_config(configs: Mapping[str, str], sasl_listener: bool = True) -> AuthzConfig:
    supers = frozenset(s.strip() for s in configs.get("super.users", "").split(";") if s.strip())
    for principal in supers:
        if ":" not in principal:
            raise ConfigError(f"super.users: {principal!r} is not TYPE:NAME (e.g. User:admin)")
    allow = configs.get("allow.everyone.if.no.acl.found", "false").strip().lower()
    if allow not in ("true", "false"):
        raise ConfigError(f"allow.everyone.if.no.acl.found: {allow!r} is not true/false")
    refresh = configs.get("sharegroup.acl.refresh.ms", str(DEFAULT_REFRESH_MS))
    try:
        refresh_ms = int(refresh)
    except ValueError:
        raise ConfigError(f"sharegroup.acl.refresh.ms: {refresh!r} is not an integer") from None
    if not 100 <= refresh_ms <= 3_600_000:
        raise ConfigError(f"sharegroup.acl.refresh.ms={refresh_ms} is outside [100, 3600000]")
    return AuthzConfig(supers, allow == "true", refresh_ms / 1000, sasl_listener)


@dataclass
class _Denied:
    """What was taken out of a request: (topic id, partition) pairs to answer with 29, and
    groups (with their place in the request) to answer with 30. For the offsets APIs: per
    group described (in the order of the groups the handler sees), None when it asked for all
    its topics (those the client may not DESCRIBE are left out of the answer), else the
    topics taken out, (name, partitions), to answer with 29; and for altering or deleting,
    the topics taken out."""

    partitions: list[tuple[UUID, int]] = field(default_factory=list)
    groups: list[tuple[int, str]] = field(default_factory=list)
    described: list[list[tuple[str, list[int]]] | None] = field(default_factory=list)
    topics: list[tuple[str, list[int]]] = field(default_factory=list)
    # Refused partitions whose acknowledgements were not applied (ShareFetch: their
    # acknowledge error is 29 too), and the share-session view to restore should the handler
    # refuse the whole fetch (it then changed no session).
    acked: set[tuple[UUID, int]] = field(default_factory=set)
    restore: tuple[tuple[Any, Any], _SessionView | None] | None = None


@dataclass
class _SessionView:
    """A member's share session on this connection as its client sees it (``held``), and
    the partitions of it kept out of the handler's session because the client may not READ
    their topic (``withheld``): they are answered with 29 on every fetch, as Kafka answers
    them, and go back into the handler's session once READ is allowed again."""

    held: set[tuple[UUID, int]] = field(default_factory=set)
    withheld: set[tuple[UUID, int]] = field(default_factory=set)


# While the upstream ACLs cannot be read: a retriable refusal (see the module text), and how
# soon the proxy tries to read them again.
ACLS_UNKNOWN = ErrorCode.COORDINATOR_LOAD_IN_PROGRESS
ACLS_UNKNOWN_MESSAGE = "the proxy cannot read the upstream ACLs at the moment; retry"
RETRY_WHILE_FAILING_S = 1.0


class Authorizer:
    def __init__(self, cluster: Callable[[], Cluster], config: AuthzConfig) -> None:
        self._cluster = cluster
        self.config = config
        self.table = AclTable([], config.super_users)  # nothing allowed until the first read
        # Whether ``table`` holds the upstream's ACLs as last read; False before the first read
        # and after a failed read of a cluster with an authorizer.
        self.current = False
        # Requests refused retriably because the ACLs were unknown, by API key.
        self.unknown_refusals: Counter[int] = Counter()
        self.loaded = trio.Event()
        self._wake = trio.Event()
        self.reads = 0
        self.admin = AdminChecks(self)

    # ------------------------------------------------------------------ reading the ACLs
    async def refresh(self) -> None:
        cluster = self._cluster()
        conn = await cluster.connection()
        if DESCRIBE_ACLS not in conn.api_versions:
            # A broker without ACL APIs has no authorizer either.
            self.table = AclTable(None)
            self.current = True
            self.reads += 1
            self.loaded.set()
            return
        version = conn.version_for(DESCRIBE_ACLS, 3)
        request = wire.request_class(DESCRIBE_ACLS)(
            resource_type_filter=int(ResourceType.ANY),
            resource_name_filter=None,
            pattern_type_filter=int(PatternType.ANY),
            principal_filter=None,
            host_filter=None,
            operation=int(Op.ANY),
            permission_type=int(Permission.ANY),
        )
        resp = await conn.request(request, version)
        if resp.error_code == SECURITY_DISABLED:
            table = AclTable(None)
        elif resp.error_code:
            raise UpstreamError(
                f"DescribeAcls failed with error {resp.error_code}: {resp.error_message} "
                "(the proxy's principal needs DESCRIBE on the cluster)"
            )
        else:
            acls = [
                Acl(
                    ResourceType(r.resource_type),
                    r.resource_name,
                    PatternType(r.pattern_type),
                    a.principal,
                    a.host,
                    Op(a.operation),
                    Permission(a.permission_type),
                )
                for r in resp.resources
                if r.resource_type in ResourceType._value2member_map_
                and r.pattern_type in PatternType._value2member_map_
                for a in r.acls
                if a.operation in Op._value2member_map_
                and a.permission_type in Permission._value2member_map_
            ]
            if not acls and not self.config.sasl_listener:
                table = AclTable(None)
            else:
                table = AclTable(
                    acls, self.config.super_users, allow_if_no_acl=self.config.allow_if_no_acl
                )
        self.table = table
        self.current = True
        self.reads += 1
        self.loaded.set()

    def refresh_soon(self) -> None:
        """Read the ACLs again now (after a CreateAcls or DeleteAcls went through)."""
        self._wake.set()

    async def run(self) -> None:
        failing = not self.current
        while True:
            wait = min(self.config.refresh_s, RETRY_WHILE_FAILING_S) if failing else None
            with trio.move_on_after(wait or self.config.refresh_s):
                await self._wake.wait()
            self._wake = trio.Event()
            try:
                await self.refresh()
            except UpstreamError as e:
                if not self.table.enabled:
                    # The upstream had no authorizer when last read: there are no ACLs to go
                    # stale, and one is only added with a broker restart, after which the
                    # next read sees it. Refusing here would stop share groups on every
                    # outage of an open cluster.
                    if not failing:
                        log.warning("cannot read the upstream ACLs (it has no authorizer): %s", e)
                    failing = True
                    continue
                # Fail closed: stale ACLs could allow what a new DENY refuses.
                if not failing:
                    log.error(
                        "cannot read the upstream ACLs, refusing share APIs (retriably) "
                        "until they can be read: %s",
                        e,
                    )
                failing = True
                self.current = False
                self.table = AclTable([], self.config.super_users)
                continue
            if failing:
                log.info("upstream ACLs read again (%d ACLs)", len(self.table))
                failing = False

    # ------------------------------------------------------------------ decisions
    def unknown(self, conn: ClientConnection) -> bool:
        """Whether this client's rights cannot be decided now: the ACLs are not current
        (the client is not a super user, whose rights need no ACL)."""
        return not self.current and conn.auth.principal not in self.config.super_users

    def allowed(self, conn: ClientConnection, op: Op, kind: ResourceType, name: str) -> bool:
        principal = conn.auth.principal
        if principal is None:
            return False
        return self.table.authorize(principal, conn.peer_host, op, kind, name)

    def _topic_allowed(self, conn: ClientConnection, op: Op, topic_id: UUID | None) -> bool:
        if topic_id is None:
            return False
        name = self._cluster().topic_names.get(topic_id)
        if name is None:
            return True  # unknown to the proxy: the handler answers UNKNOWN_TOPIC_ID
        return self.allowed(conn, op, ResourceType.TOPIC, name)

    def before(
        self, conn: ClientConnection, key: int, request: Any, version: int
    ) -> tuple[Any, _Denied | None]:
        """Check a share request before its handler: (the refusal to answer with, or None;
        what was taken out of ``request``, for ``after``). An unauthorized part of a
        ShareFetch/ShareAcknowledge is taken out of ``request``."""
        if self.unknown(conn):
            refusal = _unknown_answer(key, request, version)
            if refusal is not None:
                self.unknown_refusals[key] += 1
                return refusal, None
        if key == SHARE_HEARTBEAT:
            return self._heartbeat(conn, request, version), None
        if key in (SHARE_FETCH, SHARE_ACKNOWLEDGE):
            group = request.group_id or ""
            if not self.allowed(conn, Op.READ, ResourceType.GROUP, group):
                code = ErrorCode.GROUP_AUTHORIZATION_FAILED
                return _fetch_like_error(key, version, code, group), None
            denied = _Denied()
            kept = []
            requested = {
                (t.topic_id, p.partition_index) for t in request.topics for p in t.partitions
            }
            for topic in request.topics:
                if self._topic_allowed(conn, Op.READ, topic.topic_id):
                    kept.append(topic)
                    continue
                for p in topic.partitions:
                    denied.partitions.append((topic.topic_id, p.partition_index))
                    if p.acknowledgement_batches:
                        denied.acked.add((topic.topic_id, p.partition_index))
            request.topics = kept
            if key == SHARE_FETCH:
                self._share_session(conn, request, requested, denied)
            return None, denied
        if key == DESCRIBE_SHARE_OFFSETS:
            denied = _Denied()
            kept_groups = []
            for i, g in enumerate(request.groups or ()):
                if not self.allowed(conn, Op.DESCRIBE, ResourceType.GROUP, g.group_id):
                    denied.groups.append((i, g.group_id))
                    continue
                kept_groups.append(g)
                if g.topics is None:
                    denied.described.append(None)
                    continue
                kept_topics, refused = [], []
                for t in g.topics:
                    if self.allowed(conn, Op.DESCRIBE, ResourceType.TOPIC, t.topic_name):
                        kept_topics.append(t)
                    else:
                        refused.append((t.topic_name, list(t.partitions or ())))
                g.topics = kept_topics
                denied.described.append(refused)
            request.groups = kept_groups
            return None, denied
        if key in (ALTER_SHARE_OFFSETS, DELETE_SHARE_OFFSETS):
            group = request.group_id or ""
            if not self.allowed(conn, _OFFSETS_GROUP_OP[key], ResourceType.GROUP, group):
                return messages.SHARE_RESPONSES[key](
                    version=version,
                    throttle_time_ms=0,
                    error_code=int(ErrorCode.GROUP_AUTHORIZATION_FAILED),
                    error_message=f"not authorized to change the offsets of group {group}",
                    responses=[],
                ), None
            # READ on each topic, for altering and for deleting alike.
            denied = _Denied()
            kept = []
            for t in request.topics or ():
                if self.allowed(conn, Op.READ, ResourceType.TOPIC, t.topic_name):
                    kept.append(t)
                elif key == ALTER_SHARE_OFFSETS:
                    denied.topics.append((t.topic_name, [p.partition_index for p in t.partitions]))
                else:
                    denied.topics.append((t.topic_name, []))
            request.topics = kept
            return None, denied
        return None, None

    def _share_session(
        self,
        conn: ClientConnection,
        request: Any,
        requested: set[tuple[UUID, int]],
        denied: _Denied,
    ) -> None:
        """Keep the partitions of this member's share session whose topic the client may not
        READ out of the handler's session (forgotten there when they lose READ, added back
        when they regain it), and answer every one of them with 29 on each fetch, as Kafka
        keeps them in the session and answers them."""
        sessions: dict[tuple[Any, Any], _SessionView] = conn.share_sessions
        key = (request.group_id, request.member_id)
        epoch = request.share_session_epoch
        old = sessions.get(key)
        denied.restore = (
            key,
            None if old is None else _SessionView(set(old.held), set(old.withheld)),
        )
        if epoch in (0, -1):
            sessions.pop(key, None)
            if epoch == -1:
                return  # closing: nothing more is fetched
        view = sessions.setdefault(key, _SessionView())
        forgotten = {(t.topic_id, p) for t in request.forgotten_topics_data for p in t.partitions}
        # As Kafka's share session: the request's partitions are added, then the forgotten
        # ones removed.
        view.held |= requested
        view.held -= forgotten
        view.withheld -= forgotten
        refused = {tp for tp in view.held if not self._topic_allowed(conn, Op.READ, tp[0])}
        # Forgetting a partition the handler's session lacks (one stripped from this
        # request's additions) changes nothing there.
        lost = refused - view.withheld
        regained = view.withheld - refused - requested
        view.withheld = refused
        if lost:
            forgotten_cls = messages.ShareFetchRequest.ForgottenTopic
            request.forgotten_topics_data = [
                *request.forgotten_topics_data,
                *(
                    forgotten_cls(topic_id=t, partitions=ps)
                    for t, ps in _by_topic(sorted(lost, key=_tp_order)).items()
                ),
            ]
        if regained:
            topic_cls = messages.ShareFetchRequest.FetchTopic
            part_cls = topic_cls.FetchPartition
            request.topics = [
                *request.topics,
                *(
                    topic_cls(
                        topic_id=t,
                        partitions=[
                            part_cls(partition_index=p, acknowledgement_batches=[]) for p in ps
                        ],
                    )
                    for t, ps in _by_topic(sorted(regained, key=_tp_order)).items()
                ),
            ]
        listed = set(denied.partitions)
        denied.partitions += sorted(refused - listed, key=_tp_order)
        if refused and not view.held - refused:
            # Nothing the client may read: answered at once, as Kafka does.
            request.max_wait_ms = 0

    def after(self, conn: ClientConnection, key: int, denied: _Denied | None, response: Any) -> Any:
        """Add the partitions taken out by ``before`` to the answer, with error 29; filter a
        ShareGroupDescribe answer."""
        if key == SHARE_DESCRIBE:
            return self.filter_describe(conn, response)
        if key == DESCRIBE_SHARE_OFFSETS:
            if denied is not None:
                self._describe_offsets_topics(conn, denied, response)
            if denied is not None and denied.groups:
                group_cls = type(response).DescribeShareGroupOffsetsResponseGroup
                groups = list(response.groups)
                for i, group_id in denied.groups:
                    groups.insert(
                        i,
                        group_cls(
                            group_id=group_id,
                            topics=[],
                            error_code=int(ErrorCode.GROUP_AUTHORIZATION_FAILED),
                            error_message=f"not authorized to describe group {group_id}",
                        ),
                    )
                response.groups = groups
            return response
        if key in (ALTER_SHARE_OFFSETS, DELETE_SHARE_OFFSETS):
            # Refused topics come first, as Kafka lists them; a group-level error (a group
            # with members, say) stands alone.
            if denied is not None and denied.topics and not response.error_code:
                response.responses = [
                    *(self._offsets_topic_refusal(key, response, t) for t in denied.topics),
                    *response.responses,
                ]
            return response
        if denied is not None and denied.restore is not None and response.error_code:
            session_key, view = denied.restore
            if view is None:
                conn.share_sessions.pop(session_key, None)
            else:
                conn.share_sessions[session_key] = view
        if denied is None or not denied.partitions or response.error_code:
            return response
        topic_cls: Any = (
            messages.ShareFetchResponse.ShareFetchableTopicResponse
            if key == SHARE_FETCH
            else messages.ShareAcknowledgeResponse.ShareAcknowledgeTopicResponse
        )
        part_cls = topic_cls.PartitionData
        by_topic: dict[UUID, list[int]] = {}
        for topic_id, partition in denied.partitions:
            if partition not in by_topic.setdefault(topic_id, []):
                by_topic[topic_id].append(partition)
        for topic_id, partitions in by_topic.items():
            entries = []
            for partition in partitions:
                fields: dict[str, Any] = {
                    "partition_index": partition,
                    "error_code": int(ErrorCode.TOPIC_AUTHORIZATION_FAILED),
                    "error_message": "not authorized to read the topic",
                    "current_leader": part_cls.LeaderIdAndEpoch(leader_id=-1, leader_epoch=-1),
                }
                if key == SHARE_FETCH:
                    acked = (topic_id, partition) in denied.acked
                    fields |= {
                        "acknowledge_error_code": int(ErrorCode.TOPIC_AUTHORIZATION_FAILED)
                        if acked
                        else 0,
                        "acknowledge_error_message": "not authorized to read the topic"
                        if acked
                        else None,
                        "records": b"",
                        "acquired_records": [],
                    }
                entries.append(part_cls(**fields))
            response.responses.append(topic_cls(topic_id=topic_id, partitions=entries))
        return response

    def _describe_offsets_topics(
        self, conn: ClientConnection, denied: _Denied, response: Any
    ) -> None:
        """DescribeShareGroupOffsets: a group asked for all its topics shows only those the
        client may DESCRIBE; topics named and refused are answered after the others, with 29
        per partition, no offset and no topic id."""
        topic_cls = type(response).DescribeShareGroupOffsetsResponseGroup
        topic_cls = topic_cls.DescribeShareGroupOffsetsResponseTopic
        part_cls = topic_cls.DescribeShareGroupOffsetsResponsePartition
        for group, refused in zip(response.groups, denied.described, strict=False):
            if refused is None:
                group.topics = [
                    t
                    for t in group.topics
                    if self.allowed(conn, Op.DESCRIBE, ResourceType.TOPIC, t.topic_name)
                ]
            elif refused and not group.error_code:
                group.topics = [
                    *group.topics,
                    *(
                        topic_cls(
                            topic_name=name,
                            topic_id=None,
                            partitions=[
                                part_cls(
                                    partition_index=p,
                                    start_offset=-1,
                                    leader_epoch=0,
                                    lag=-1,
                                    error_code=int(ErrorCode.TOPIC_AUTHORIZATION_FAILED),
                                    error_message=f"not authorized to describe topic {name}",
                                )
                                for p in partitions
                            ],
                        )
                        for name, partitions in refused
                    ),
                ]

    def _offsets_topic_refusal(self, key: int, response: Any, topic: tuple[str, list[int]]) -> Any:
        """One refused topic of AlterShareGroupOffsets (29 per partition, with the topic's id
        when known) or DeleteShareGroupOffsets (29 for the topic)."""
        name, partitions = topic
        code = int(ErrorCode.TOPIC_AUTHORIZATION_FAILED)
        message = f"not authorized to read topic {name}"
        if key == DELETE_SHARE_OFFSETS:
            return type(response).DeleteShareGroupOffsetsResponseTopic(
                topic_name=name, topic_id=None, error_code=code, error_message=message
            )
        topic_cls = type(response).AlterShareGroupOffsetsResponseTopic
        part_cls = topic_cls.AlterShareGroupOffsetsResponsePartition
        info = self._cluster().topics.get(name)
        return topic_cls(
            topic_name=name,
            topic_id=None if info is None else info.topic_id,
            partitions=[
                part_cls(partition_index=p, error_code=code, error_message=message)
                for p in partitions
            ],
        )

    def _heartbeat(self, conn: ClientConnection, request: Any, version: int) -> Any:
        group = request.group_id or ""
        code: ErrorCode = ErrorCode.NONE
        message: str | None = None
        if not self.allowed(conn, Op.READ, ResourceType.GROUP, group):
            code = ErrorCode.GROUP_AUTHORIZATION_FAILED
            message = f"not authorized to read group {group}"
        else:
            refused = sorted(
                t
                for t in request.subscribed_topic_names or ()
                if not self.allowed(conn, Op.DESCRIBE, ResourceType.TOPIC, t)
            )
            if refused:
                code = ErrorCode.TOPIC_AUTHORIZATION_FAILED
                message = "not authorized to describe topics: " + ", ".join(refused)
        if code == ErrorCode.NONE:
            return None
        return _heartbeat_error(version, code, message)

    def filter_describe(self, conn: ClientConnection, response: Any) -> Any:
        """ShareGroupDescribe: groups the client may not DESCRIBE get error 30 and no detail
        (14 for all while the ACLs are unknown)."""
        unknown = self.unknown(conn)
        response.groups = [
            _described_group_error(g.group_id, ACLS_UNKNOWN)
            if unknown
            else g
            if self.allowed(conn, Op.DESCRIBE, ResourceType.GROUP, g.group_id)
            else _described_group_error(g.group_id, ErrorCode.GROUP_AUTHORIZATION_FAILED)
            for g in response.groups
        ]
        return response


class AdminChecks:
    """The checks of the admin requests ``proxy.admin`` answers (see the module text)."""

    def __init__(self, authz: Authorizer) -> None:
        self.authz = authz

    def before(self, conn: ClientConnection, key: int, request: Any) -> list[tuple[int, Any, int]]:
        """Take the resources the client may not touch out of a config request: (index,
        resource, error code) of each, for ``after``. While the ACLs are unknown, every one is
        taken out, with the retriable error."""
        unknown = self.authz.unknown(conn)
        if key == DELETE_GROUPS:
            # DELETE on each group, checked before anything is deleted (upstream groups are
            # checked upstream as well, on the client's own connection).
            kept_names: list[str] = []
            refused_groups: list[tuple[int, Any, int]] = []
            for i, name in enumerate(request.groups_names):
                if unknown:
                    refused_groups.append((i, name, int(ACLS_UNKNOWN)))
                elif self.authz.allowed(conn, Op.DELETE, ResourceType.GROUP, name):
                    kept_names.append(name)
                else:
                    refused_groups.append((i, name, int(ErrorCode.GROUP_AUTHORIZATION_FAILED)))
            request.groups_names = kept_names
            return refused_groups
        if key not in (DESCRIBE_CONFIGS, INCREMENTAL_ALTER_CONFIGS):
            return []
        op = Op.DESCRIBE_CONFIGS if key == DESCRIBE_CONFIGS else Op.ALTER_CONFIGS
        kept: list[Any] = []
        refused: list[tuple[int, Any, int]] = []
        for i, res in enumerate(request.resources):
            kind, code = _CONFIG_RESOURCES.get(
                res.resource_type, (ResourceType.CLUSTER, CLUSTER_AUTHORIZATION_FAILED)
            )
            name = CLUSTER_NAME if kind == ResourceType.CLUSTER else res.resource_name
            if unknown:
                refused.append((i, res, int(ACLS_UNKNOWN)))
            elif self.authz.allowed(conn, op, kind, name):
                kept.append(res)
            else:
                refused.append((i, res, int(code)))
        request.resources = kept
        return refused

    def after(
        self, conn: ClientConnection, key: int, refused: list[tuple[int, Any, int]], response: Any
    ) -> Any:
        unknown = self.authz.unknown(conn)
        if key == LIST_GROUPS:
            if unknown:
                response.error_code = int(ACLS_UNKNOWN)
                response.groups = []
            elif not self.authz.allowed(conn, Op.DESCRIBE, ResourceType.CLUSTER, CLUSTER_NAME):
                response.groups = [
                    g
                    for g in response.groups
                    if self.authz.allowed(conn, Op.DESCRIBE, ResourceType.GROUP, g.group_id)
                ]
            return response
        if key == DESCRIBE_GROUPS:
            group_cls = type(response).DescribedGroup
            response.groups = [
                g
                if not unknown
                and self.authz.allowed(conn, Op.DESCRIBE, ResourceType.GROUP, g.group_id)
                else group_cls(
                    error_code=int(
                        ACLS_UNKNOWN if unknown else ErrorCode.GROUP_AUTHORIZATION_FAILED
                    ),
                    error_message=None,
                    group_id=g.group_id,
                    group_state="",
                    protocol_type="",
                    protocol_data="",
                    members=[],
                    authorized_operations=None,
                )
                for g in response.groups
            ]
            return response
        if not refused:
            return response
        if key == DELETE_GROUPS:
            result_cls = type(response).DeletableGroupResult
            results = list(response.results)
            for i, name, code in refused:
                results.insert(i, result_cls(group_id=name, error_code=code))
            response.results = results
            return response
        if key == DESCRIBE_CONFIGS:
            answers, entry_cls = list(response.results), type(response).DescribeConfigsResult
        else:
            answers = list(response.responses)
            entry_cls = type(response).AlterConfigsResourceResponse
        for i, res, code in refused:
            fields: dict[str, Any] = {
                "error_code": code,
                "error_message": ACLS_UNKNOWN_MESSAGE if code == ACLS_UNKNOWN else "not authorized",
                "resource_type": res.resource_type,
                "resource_name": res.resource_name,
            }
            if key == DESCRIBE_CONFIGS:
                fields["configs"] = []
            answers.insert(i, entry_cls(**fields))
        if key == DESCRIBE_CONFIGS:
            response.results = answers
        else:
            response.responses = answers
        return response


def _fetch_like_error(key: int, version: int, code: ErrorCode, group: str) -> Any:
    cls = messages.ShareFetchResponse if key == SHARE_FETCH else messages.ShareAcknowledgeResponse
    return cls(
        version=version,
        throttle_time_ms=0,
        error_code=int(code),
        error_message=f"not authorized to read group {group}",
        acquisition_lock_timeout_ms=0,
        responses=[],
        node_endpoints=[],
    )


def _heartbeat_error(version: int, code: ErrorCode, message: str | None) -> Any:
    return messages.ShareGroupHeartbeatResponse(
        version=version,
        throttle_time_ms=0,
        error_code=int(code),
        error_message=message,
        member_id=None,
        member_epoch=0,
        heartbeat_interval_ms=0,
        assignment=None,
    )


def _described_group_error(group_id: str, code: ErrorCode) -> Any:
    return messages.ShareGroupDescribeResponse.DescribedGroup(
        error_code=int(code),
        error_message=ACLS_UNKNOWN_MESSAGE if code == ACLS_UNKNOWN else None,
        group_id=group_id,
        group_state="",
        group_epoch=-1,
        assignment_epoch=-1,
        assignor_name="",
        members=[],
        authorized_operations=-2147483648,
    )


def _unknown_answer(key: int, request: Any, version: int) -> Any:
    """The retriable refusal of a whole share request while the ACLs are unknown: nothing of
    it is done (no record acquired, no acknowledgement applied, no offset changed)."""
    code, message = ACLS_UNKNOWN, ACLS_UNKNOWN_MESSAGE
    if key == SHARE_HEARTBEAT:
        return _heartbeat_error(version, code, message)
    if key in (SHARE_FETCH, SHARE_ACKNOWLEDGE):
        cls = (
            messages.ShareFetchResponse if key == SHARE_FETCH else messages.ShareAcknowledgeResponse
        )
        return cls(
            version=version,
            throttle_time_ms=0,
            error_code=int(code),
            error_message=message,
            acquisition_lock_timeout_ms=0,
            responses=[],
            node_endpoints=[],
        )
    if key == SHARE_DESCRIBE:
        return messages.ShareGroupDescribeResponse(
            version=version,
            throttle_time_ms=0,
            groups=[_described_group_error(g, code) for g in request.group_ids or ()],
        )
    if key == DESCRIBE_SHARE_OFFSETS:
        resp = messages.DescribeShareGroupOffsetsResponse
        group_cls = resp.DescribeShareGroupOffsetsResponseGroup
        return resp(
            version=version,
            throttle_time_ms=0,
            groups=[
                group_cls(
                    group_id=g.group_id, topics=[], error_code=int(code), error_message=message
                )
                for g in request.groups or ()
            ],
        )
    if key in (ALTER_SHARE_OFFSETS, DELETE_SHARE_OFFSETS):
        return messages.SHARE_RESPONSES[key](
            version=version,
            throttle_time_ms=0,
            error_code=int(code),
            error_message=message,
            responses=[],
        )
    return None  # not an API checked here


def _tp_order(tp: tuple[UUID, int]) -> tuple[str, int]:
    return (str(tp[0]), tp[1])


def _by_topic(partitions: list[tuple[UUID, int]]) -> dict[UUID, list[int]]:
    out: dict[UUID, list[int]] = {}
    for topic_id, partition in partitions:
        out.setdefault(topic_id, []).append(partition)
    return out
