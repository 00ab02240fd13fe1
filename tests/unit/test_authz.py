"""The share-API checks around the handlers (proxy/authz.py), with a table of ACLs and no
broker: what is taken out of a request and what the answer gets instead."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

import trio
import trio.testing

from proxy import messages, wire
from proxy.acl import Acl, AclTable, Op, PatternType, Permission, ResourceType
from proxy.authz import Authorizer, AuthzConfig
from proxy.upstream import UpstreamError

ALLOWED, DENIED = uuid.uuid4(), uuid.uuid4()


def authorizer(*acls: Acl) -> Authorizer:
    cluster = SimpleNamespace(
        topic_names={ALLOWED: "allowed", DENIED: "denied"},
        topics={
            "allowed": SimpleNamespace(topic_id=ALLOWED),
            "denied": SimpleNamespace(topic_id=DENIED),
        },
    )
    authz = Authorizer(lambda: cluster, AuthzConfig())  # type: ignore[arg-type, return-value]
    authz.table = AclTable(acls)
    authz.current = True
    return authz


def allow(kind: ResourceType, name: str, op: Op) -> Acl:
    return Acl(kind, name, PatternType.LITERAL, "User:alice", "*", op, Permission.ALLOW)


def conn() -> Any:
    return SimpleNamespace(
        auth=SimpleNamespace(principal="User:alice"), peer_host="127.0.0.1", share_sessions={}
    )


def fetch_request(epoch: int, *topics: uuid.UUID) -> Any:
    cls = messages.ShareFetchRequest
    return cls(
        version=1,
        group_id="g",
        member_id="m",
        share_session_epoch=epoch,
        max_wait_ms=0,
        min_bytes=1,
        max_bytes=1 << 20,
        max_records=500,
        batch_size=500,
        topics=[
            cls.FetchTopic(
                topic_id=t,
                partitions=[
                    cls.FetchTopic.FetchPartition(partition_index=0, acknowledgement_batches=[])
                ],
            )
            for t in topics
        ],
        forgotten_topics_data=[],
    )


def empty_fetch_response() -> Any:
    return messages.ShareFetchResponse(
        version=1,
        throttle_time_ms=0,
        error_code=0,
        error_message=None,
        acquisition_lock_timeout_ms=1000,
        responses=[],
        node_endpoints=[],
    )


def test_unauthorized_topic_is_taken_out_and_answered_with_29() -> None:
    authz = authorizer(
        allow(ResourceType.GROUP, "g", Op.READ), allow(ResourceType.TOPIC, "allowed", Op.READ)
    )
    c = conn()
    request = fetch_request(0, ALLOWED, DENIED)
    refusal, denied = authz.before(c, 78, request, 1)
    assert refusal is None
    assert [t.topic_id for t in request.topics] == [ALLOWED]
    response = authz.after(c, 78, denied, empty_fetch_response())
    wire.encode_response(response, 1)
    (topic,) = response.responses
    assert topic.topic_id == DENIED
    assert [(p.error_code, p.records, p.acquired_records) for p in topic.partitions] == [
        (29, b"", [])
    ]


def test_without_group_read_the_whole_fetch_is_refused() -> None:
    authz = authorizer(allow(ResourceType.TOPIC, "allowed", Op.READ))
    refusal, _ = authz.before(conn(), 78, fetch_request(0, ALLOWED), 1)
    assert refusal is not None and refusal.error_code == 30
    wire.encode_response(refusal, 1)


def test_a_session_partition_without_read_gets_29_on_every_fetch_and_returns_with_read() -> None:
    """As Kafka: a partition whose topic loses READ stays in the client's share session and
    is answered with 29 on each fetch; the handler's session no longer has it (so nothing is
    acquired from it) until READ is back, when it is fetched again."""
    group_read = allow(ResourceType.GROUP, "g", Op.READ)
    both = AclTable(
        [
            group_read,
            allow(ResourceType.TOPIC, "allowed", Op.READ),
            allow(ResourceType.TOPIC, "denied", Op.READ),
        ]
    )
    only_allowed = AclTable([group_read, allow(ResourceType.TOPIC, "allowed", Op.READ)])
    authz = authorizer()
    authz.table = both
    c = conn()
    authz.before(c, 78, fetch_request(0, ALLOWED, DENIED), 1)
    authz.table = only_allowed
    for epoch in (1, 2, 3):  # incremental: the session holds both
        request = fetch_request(epoch)
        request.max_wait_ms = 500
        refusal, denied = authz.before(c, 78, request, 1)
        assert refusal is None
        forgotten = [(t.topic_id, t.partitions) for t in request.forgotten_topics_data]
        # Forgotten from the handler's session once, when READ is lost.
        assert forgotten == ([(DENIED, [0])] if epoch == 1 else [])
        assert request.topics == []
        assert request.max_wait_ms == 500  # the allowed partition is still waited for
        response = authz.after(c, 78, denied, empty_fetch_response())
        assert [(t.topic_id, t.partitions[0].error_code) for t in response.responses] == [
            (DENIED, 29)
        ]
    authz.table = both
    request = fetch_request(4)
    refusal, denied = authz.before(c, 78, request, 1)
    assert [(t.topic_id, [p.partition_index for p in t.partitions]) for t in request.topics] == [
        (DENIED, [0])
    ]  # added back to the handler's session
    response = authz.after(c, 78, denied, empty_fetch_response())
    assert response.responses == []


def test_only_refused_partitions_are_answered_at_once_and_their_acks_get_29() -> None:
    authz = authorizer(allow(ResourceType.GROUP, "g", Op.READ))
    c = conn()
    authz.before(c, 78, fetch_request(0, DENIED), 1)
    request = fetch_request(1, DENIED)
    request.max_wait_ms = 500
    ack_cls = messages.ShareFetchRequest.FetchTopic.FetchPartition.AcknowledgementBatch
    request.topics[0].partitions[0].acknowledgement_batches = [
        ack_cls(first_offset=0, last_offset=0, acknowledge_types=[1])
    ]
    refusal, denied = authz.before(c, 78, request, 1)
    assert refusal is None and request.topics == []  # the acknowledgement is not applied
    assert request.max_wait_ms == 0  # nothing to wait for, as Kafka answers
    response = authz.after(c, 78, denied, empty_fetch_response())
    wire.encode_response(response, 1)
    ((part,),) = [t.partitions for t in response.responses]
    assert (part.error_code, part.acknowledge_error_code) == (29, 29)


def test_a_fetch_the_handler_refuses_leaves_the_session_view_unchanged() -> None:
    authz = authorizer(
        allow(ResourceType.GROUP, "g", Op.READ), allow(ResourceType.TOPIC, "allowed", Op.READ)
    )
    c = conn()
    authz.before(c, 78, fetch_request(0, ALLOWED), 1)
    before = {k: (set(v.held), set(v.withheld)) for k, v in c.share_sessions.items()}
    request = fetch_request(7, DENIED)  # a wrong epoch: the handler changes no session
    _, denied = authz.before(c, 78, request, 1)
    refused = empty_fetch_response()
    refused.error_code = 71  # INVALID_SHARE_SESSION_EPOCH
    authz.after(c, 78, denied, refused)
    assert {k: (v.held, v.withheld) for k, v in c.share_sessions.items()} == before


def test_heartbeat_needs_group_read_and_topic_describe() -> None:
    cls = messages.ShareGroupHeartbeatRequest
    request = cls(
        version=1,
        group_id="g",
        member_id="m",
        member_epoch=0,
        rack_id=None,
        subscribed_topic_names=["allowed"],
    )
    refusal, _ = authorizer().before(conn(), 76, request, 1)
    assert refusal.error_code == 30
    refusal, _ = authorizer(allow(ResourceType.GROUP, "g", Op.READ)).before(conn(), 76, request, 1)
    assert refusal.error_code == 29
    ok = authorizer(
        allow(ResourceType.GROUP, "g", Op.READ), allow(ResourceType.TOPIC, "allowed", Op.READ)
    )
    assert ok.before(conn(), 76, request, 1) == (None, None)
    wire.encode_response(refusal, 1)


def test_describe_configs_refused_resources_are_answered_in_place() -> None:
    authz = authorizer(allow(ResourceType.GROUP, "seen", Op.DESCRIBE_CONFIGS))
    req_cls = wire.request_class(32)
    request = req_cls(
        version=4,
        resources=[
            req_cls.DescribeConfigsResource(
                resource_type=t, resource_name=n, configuration_keys=None
            )
            for t, n in ((32, "hidden"), (2, "topic"), (32, "seen"), (4, "1"))
        ],
        include_synonyms=False,
        include_documentation=False,
    )
    refused = authz.admin.before(
        conn(),
        32,
        request,
    )
    assert [r.resource_name for r in request.resources] == ["seen"]
    resp_cls = wire.response_class(32)
    response = resp_cls(
        version=4,
        throttle_time_ms=0,
        results=[
            resp_cls.DescribeConfigsResult(
                error_code=0, error_message=None, resource_type=32, resource_name="seen", configs=[]
            )
        ],
    )
    response = authz.admin.after(conn(), 32, refused, response)
    assert [(r.resource_name, r.error_code) for r in response.results] == [
        ("hidden", 30),
        ("topic", 29),
        ("seen", 0),
        ("1", 31),
    ]
    wire.encode_response(response, 1)


def test_describe_share_group_offsets_answers_30_for_groups_without_describe() -> None:
    authz = authorizer(allow(ResourceType.GROUP, "seen", Op.DESCRIBE))
    req_cls = messages.DescribeShareGroupOffsetsRequest
    group_cls = req_cls.DescribeShareGroupOffsetsRequestGroup
    request = req_cls(
        version=1,
        groups=[group_cls(group_id=g, topics=None) for g in ("hidden", "seen", "also-hidden")],
    )
    refusal, denied = authz.before(conn(), 90, request, 1)
    assert refusal is None
    assert [g.group_id for g in request.groups] == ["seen"]
    resp_cls = messages.DescribeShareGroupOffsetsResponse
    response = resp_cls(
        version=1,
        throttle_time_ms=0,
        groups=[
            resp_cls.DescribeShareGroupOffsetsResponseGroup(
                group_id="seen", topics=[], error_code=0, error_message=None
            )
        ],
    )
    response = authz.after(conn(), 90, denied, response)
    assert [(g.group_id, g.error_code) for g in response.groups] == [
        ("hidden", 30),
        ("seen", 0),
        ("also-hidden", 30),
    ]
    wire.encode_response(response, 1)


def test_altering_share_group_offsets_needs_read_and_deleting_them_delete_on_the_group() -> None:
    authz = authorizer(
        allow(ResourceType.GROUP, "readable", Op.READ),
        allow(ResourceType.GROUP, "deletable", Op.DELETE),
    )
    alter = messages.AlterShareGroupOffsetsRequest
    delete = messages.DeleteShareGroupOffsetsRequest
    outcomes = {}
    for group in ("readable", "deletable"):
        for key, cls in ((91, alter), (92, delete)):
            refusal, _ = authz.before(conn(), key, cls(version=0, group_id=group, topics=[]), 0)
            outcomes[(key, group)] = None if refusal is None else refusal.error_code
            if refusal is not None:
                assert refusal.responses == []
                wire.encode_response(refusal, 1)
    assert outcomes == {
        (91, "readable"): None,
        (92, "readable"): 30,
        (91, "deletable"): 30,
        (92, "deletable"): None,
    }


def test_delete_groups_needs_delete_on_each_group_before_anything_is_deleted() -> None:
    authz = authorizer(allow(ResourceType.GROUP, "mine", Op.DELETE))
    request = wire.request_class(42)(version=2, groups_names=["theirs", "mine"])
    refused = authz.admin.before(conn(), 42, request)
    assert request.groups_names == ["mine"]  # the handler never sees "theirs"
    resp_cls = wire.response_class(42)
    response = resp_cls(
        version=2,
        throttle_time_ms=0,
        results=[resp_cls.DeletableGroupResult(group_id="mine", error_code=0)],
    )
    response = authz.admin.after(conn(), 42, refused, response)
    assert [(r.group_id, r.error_code) for r in response.results] == [("theirs", 30), ("mine", 0)]
    wire.encode_response(response, 1)


def test_describe_share_group_offsets_answers_29_for_named_topics_without_describe() -> None:
    authz = authorizer(
        allow(ResourceType.GROUP, "g", Op.DESCRIBE),
        allow(ResourceType.TOPIC, "seen", Op.DESCRIBE),
    )
    req_cls = messages.DescribeShareGroupOffsetsRequest
    group_cls = req_cls.DescribeShareGroupOffsetsRequestGroup
    topic_req = group_cls.DescribeShareGroupOffsetsRequestTopic
    request = req_cls(
        version=1,
        groups=[
            group_cls(
                group_id="g",
                topics=[topic_req(topic_name=n, partitions=[0, 1]) for n in ("hidden", "seen")],
            ),
            group_cls(group_id="g", topics=None),
        ],
    )
    refusal, denied = authz.before(conn(), 90, request, 1)
    assert refusal is None
    assert [t.topic_name for t in request.groups[0].topics or ()] == ["seen"]
    assert request.groups[1].topics is None
    resp_cls = messages.DescribeShareGroupOffsetsResponse
    group_resp = resp_cls.DescribeShareGroupOffsetsResponseGroup
    topic_resp = group_resp.DescribeShareGroupOffsetsResponseTopic
    part_resp = topic_resp.DescribeShareGroupOffsetsResponsePartition

    def described(*names: str) -> Any:
        return group_resp(
            group_id="g",
            error_code=0,
            error_message=None,
            topics=[
                topic_resp(
                    topic_name=n,
                    topic_id=ALLOWED,
                    partitions=[
                        part_resp(
                            partition_index=0,
                            start_offset=7,
                            leader_epoch=0,
                            lag=0,
                            error_code=0,
                            error_message=None,
                        )
                    ],
                )
                for n in names
            ],
        )

    response = resp_cls(
        version=1, throttle_time_ms=0, groups=[described("seen"), described("hidden", "seen")]
    )
    response = authz.after(conn(), 90, denied, response)
    wire.encode_response(response, 1)
    named, every = response.groups
    assert [
        (t.topic_name, [(p.partition_index, p.start_offset, p.error_code) for p in t.partitions])
        for t in named.topics
    ] == [("seen", [(0, 7, 0)]), ("hidden", [(0, -1, 29), (1, -1, 29)])]
    # Asked for all its topics: the one the client may not DESCRIBE is left out.
    assert [t.topic_name for t in every.topics] == ["seen"]


def test_altering_and_deleting_offsets_need_read_on_each_topic() -> None:
    authz = authorizer(
        allow(ResourceType.GROUP, "g", Op.READ),
        allow(ResourceType.GROUP, "g", Op.DELETE),
        allow(ResourceType.TOPIC, "allowed", Op.READ),
        allow(ResourceType.TOPIC, "denied", Op.DESCRIBE),  # DESCRIBE is not enough
    )
    alter = messages.AlterShareGroupOffsetsRequest
    alter_topic = alter.AlterShareGroupOffsetsRequestTopic
    request = alter(
        version=0,
        group_id="g",
        topics=[
            alter_topic(
                topic_name=n,
                partitions=[
                    alter_topic.AlterShareGroupOffsetsRequestPartition(
                        partition_index=0, start_offset=0
                    )
                ],
            )
            for n in ("allowed", "denied")
        ],
    )
    refusal, denied = authz.before(conn(), 91, request, 0)
    assert refusal is None
    assert [t.topic_name for t in request.topics] == ["allowed"]  # the handler never sees it
    resp = messages.AlterShareGroupOffsetsResponse
    topic_resp = resp.AlterShareGroupOffsetsResponseTopic
    response = resp(
        version=0,
        throttle_time_ms=0,
        error_code=0,
        error_message=None,
        responses=[
            topic_resp(
                topic_name="allowed",
                topic_id=ALLOWED,
                partitions=[
                    topic_resp.AlterShareGroupOffsetsResponsePartition(
                        partition_index=0, error_code=0, error_message=None
                    )
                ],
            )
        ],
    )
    response = authz.after(conn(), 91, denied, response)
    wire.encode_response(response, 0)
    assert [
        (t.topic_name, [(p.partition_index, p.error_code) for p in t.partitions])
        for t in response.responses
    ] == [("denied", [(0, 29)]), ("allowed", [(0, 0)])]
    assert response.responses[0].topic_id == DENIED  # the id of a topic that exists

    delete = messages.DeleteShareGroupOffsetsRequest
    delete_request = delete(
        version=0,
        group_id="g",
        topics=[
            delete.DeleteShareGroupOffsetsRequestTopic(topic_name=n) for n in ("allowed", "denied")
        ],
    )
    refusal, denied = authz.before(conn(), 92, delete_request, 0)
    assert refusal is None
    assert [t.topic_name for t in delete_request.topics] == ["allowed"]
    dresp = messages.DeleteShareGroupOffsetsResponse
    delete_response = dresp(
        version=0,
        throttle_time_ms=0,
        error_code=0,
        error_message=None,
        responses=[
            dresp.DeleteShareGroupOffsetsResponseTopic(
                topic_name="allowed", topic_id=ALLOWED, error_code=0, error_message=None
            )
        ],
    )
    delete_response = authz.after(conn(), 92, denied, delete_response)
    wire.encode_response(delete_response, 0)
    assert [(t.topic_name, t.error_code) for t in delete_response.responses] == [
        ("denied", 29),
        ("allowed", 0),
    ]
    # A group-level refusal by the handler stands alone, as in Kafka.
    refused_whole = dresp(
        version=0, throttle_time_ms=0, error_code=69, error_message="x", responses=[]
    )
    assert authz.after(conn(), 92, denied, refused_whole).responses == []


class FlakyAclReader:
    """The proxy's upstream connection as the authorizer sees it: DescribeAcls answers with
    ``acls``, or fails (the upstream away) while ``failing``."""

    def __init__(self, *acls: Acl) -> None:
        self.api_versions = {29: (0, 3)}
        self.acls = acls
        self.failing = False
        self.topic_names = {ALLOWED: "allowed", DENIED: "denied"}
        self.topics: dict[str, Any] = {}

    async def connection(self) -> FlakyAclReader:
        if self.failing:
            raise UpstreamError("connection to 127.0.0.1:9092 lost")
        return self

    def version_for(self, key: int, want: int) -> int:
        return want

    async def request(self, request: Any, version: int) -> Any:
        return SimpleNamespace(
            error_code=0,
            error_message=None,
            resources=[
                SimpleNamespace(
                    resource_type=int(a.resource_type),
                    resource_name=a.name,
                    pattern_type=int(a.pattern),
                    acls=[
                        SimpleNamespace(
                            principal=a.principal,
                            host=a.host,
                            operation=int(a.operation),
                            permission_type=int(a.permission),
                        )
                    ],
                )
                for a in self.acls
            ],
        )


async def test_acls_that_cannot_be_read_refuse_retriably_and_never_serve(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A secured upstream whose ACLs cannot be read: every share API is refused with
    COORDINATOR_LOAD_IN_PROGRESS (14), which clients retry, not with 29/30, which end a share
    consumer; nothing reaches the handler; a super user is still served; and the first read
    that succeeds again restores the ACLs."""
    reader = FlakyAclReader(
        allow(ResourceType.GROUP, "g", Op.READ), allow(ResourceType.TOPIC, "allowed", Op.READ)
    )
    config = AuthzConfig(super_users=frozenset({"User:admin"}), refresh_s=5.0)
    authz = Authorizer(lambda: reader, config)  # type: ignore[arg-type, return-value]
    alice = conn()
    admin: Any = SimpleNamespace(
        auth=SimpleNamespace(principal="User:admin"), peer_host="127.0.0.1", share_sessions={}
    )
    heartbeat = messages.ShareGroupHeartbeatRequest(
        version=1,
        group_id="g",
        member_id="m",
        member_epoch=0,
        rack_id=None,
        subscribed_topic_names=["allowed"],
    )

    # Before the first read: refused, retriably.
    refusal, _ = authz.before(alice, 78, fetch_request(0, ALLOWED), 1)
    assert refusal is not None and refusal.error_code == 14
    async with trio.open_nursery() as nursery:
        await authz.refresh()
        nursery.start_soon(authz.run)
        request = fetch_request(0, ALLOWED)
        assert authz.before(alice, 78, request, 1)[0] is None
        assert [t.topic_id for t in request.topics] == [ALLOWED]

        reader.failing = True  # the upstream goes away
        await trio.sleep(config.refresh_s + 0.1)
        for key, req in ((78, fetch_request(1, ALLOWED)), (76, heartbeat)):
            refusal, _ = authz.before(alice, key, req, 1)
            assert refusal is not None and refusal.error_code == 14, key
            wire.encode_response(refusal, 1)
        refusal, _ = authz.before(alice, 78, fetch_request(1, ALLOWED), 1)
        assert refusal.responses == []  # no partition, so no record
        ack = messages.ShareAcknowledgeRequest(
            version=1, group_id="g", member_id="m", share_session_epoch=1, topics=[]
        )
        assert authz.before(alice, 79, ack, 1)[0].error_code == 14
        alter = messages.AlterShareGroupOffsetsRequest(version=0, group_id="g", topics=[])
        assert authz.before(alice, 91, alter, 0)[0].error_code == 14
        list_groups = wire.response_class(16)(
            version=4,
            throttle_time_ms=0,
            error_code=0,
            groups=[
                wire.response_class(16).ListedGroup(
                    group_id="g", protocol_type="share", group_state="Empty"
                )
            ],
        )
        listed = authz.admin.after(alice, 16, [], list_groups)
        assert (listed.error_code, listed.groups) == (14, [])
        # A super user's rights need no ACL.
        assert authz.before(admin, 78, fetch_request(0, ALLOWED), 1)[0] is None

        reader.failing = False  # back: within the retry interval, not a whole refresh period
        await trio.sleep(1.1)
        assert authz.before(alice, 78, fetch_request(0, ALLOWED), 1)[0] is None
        refusal, _ = authz.before(alice, 76, heartbeat, 1)
        assert refusal is None
        nursery.cancel_scope.cancel()
