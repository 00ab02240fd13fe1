"""The fleet's routing of Metadata, FindCoordinator and DescribeCluster answers (pure), the
identity an instance publishes in its fleet consumer's client.id, the fleet view built from a
describe of that group, and the fleet-mode configs."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from model import ConfigError
from proxy import wire
from proxy.app import fleet_settings, split_configs
from proxy.fleet import NODE_ID_STRIDE, FleetIdentity, FleetView, node_id
from proxy.rewrite import route_describe_cluster, route_find_coordinator, route_metadata

TOPIC = uuid.UUID(int=7)
# Instance 0 and 2 of a fleet over upstream brokers 1 and 2.
INSTANCES = {0: ("a", {1: 9001, 2: 9002}), 2: ("b", {1: 9201, 2: 9202})}


def metadata() -> Any:
    m = wire.response_class(wire.METADATA)
    part = m.MetadataResponseTopic.MetadataResponsePartition
    return m(
        version=12,
        throttle_time_ms=0,
        brokers=[
            m.MetadataResponseBroker(node_id=1, host="a", port=9001, rack=None),
            m.MetadataResponseBroker(node_id=2, host="a", port=9002, rack="r2"),
        ],
        cluster_id="c",
        controller_id=2,
        topics=[
            m.MetadataResponseTopic(
                error_code=0,
                name="t",
                topic_id=TOPIC,
                is_internal=False,
                partitions=[
                    part(
                        error_code=0,
                        partition_index=p,
                        leader_id=1 + p % 2,
                        leader_epoch=0,
                        replica_nodes=[1, 2],
                        isr_nodes=[1 + p % 2],
                        offline_replicas=[],
                    )
                    for p in range(4)
                ],
                authorized_operations=0,
            )
        ],
    )


def test_node_ids_keep_the_upstream_ids_for_instance_zero() -> None:
    assert node_id(0, 3) == 3
    assert node_id(2, 3) == 2 * NODE_ID_STRIDE + 3


def test_metadata_names_every_listener_and_leaders_on_the_owning_instance() -> None:
    resp = metadata()
    owners = {0: 0, 1: 2, 2: 2, 3: 0}
    route_metadata(resp, INSTANCES, node_id, 0, lambda tid, name, p: owners[p])
    assert [(b.node_id, b.host, b.port, b.rack) for b in resp.brokers] == [
        (1, "a", 9001, None),
        (2, "a", 9002, "r2"),
        (200001, "b", 9201, None),
        (200002, "b", 9202, "r2"),
    ]
    assert resp.controller_id == 2
    parts = resp.topics[0].partitions
    # The leader is the owner's listener for the partition's real leader (1 + p % 2).
    assert [p.leader_id for p in parts] == [1, 200002, 200001, 2]
    assert parts[1].replica_nodes == [200001, 200002] and parts[1].isr_nodes == [200002]
    assert parts[0].replica_nodes == [1, 2]


def test_metadata_owner_unknown_to_the_view_is_the_answering_instance() -> None:
    resp = metadata()
    route_metadata(resp, INSTANCES, node_id, 2, lambda tid, name, p: 5)
    assert {p.leader_id // NODE_ID_STRIDE for p in resp.topics[0].partitions} == {2}


def test_find_coordinator_names_the_owner_of_the_key() -> None:
    f = wire.response_class(wire.FIND_COORDINATOR)
    v4 = f(
        version=4,
        throttle_time_ms=0,
        coordinators=[
            f.Coordinator(
                key="g", node_id=2, host="a", port=9002, error_code=0, error_message=None
            ),
            f.Coordinator(key="h", node_id=-1, host="", port=-1, error_code=15, error_message="x"),
        ],
    )
    route_find_coordinator(v4, 4, None, INSTANCES, node_id, lambda key: 2)
    assert (v4.coordinators[0].node_id, v4.coordinators[0].host, v4.coordinators[0].port) == (
        200002,
        "b",
        9202,
    )
    assert v4.coordinators[1].node_id == -1  # an error stays as it is
    v3 = f(
        version=3,
        throttle_time_ms=0,
        error_code=0,
        error_message=None,
        node_id=1,
        host="a",
        port=9001,
    )
    route_find_coordinator(v3, 3, "g", INSTANCES, node_id, lambda key: 2 if key == "g" else 0)
    assert (v3.node_id, v3.host, v3.port) == (200001, "b", 9201)


def test_describe_cluster_lists_the_fleet() -> None:
    d = wire.response_class(wire.DESCRIBE_CLUSTER)
    resp = d(
        version=1,
        throttle_time_ms=0,
        error_code=0,
        error_message=None,
        endpoint_type=1,
        cluster_id="c",
        controller_id=1,
        brokers=[d.DescribeClusterBroker(broker_id=1, host="a", port=9001, rack=None)],
        authorized_operations=0,
    )
    route_describe_cluster(resp, INSTANCES, node_id, 2)
    assert [(b.broker_id, b.port) for b in resp.brokers] == [(1, 9001), (200001, 9201)]
    assert resp.controller_id == 200001


def test_identity_round_trips_through_the_client_id() -> None:
    me = FleetIdentity(3, "proxy-b.example", {1: 9192, 2: 9193})
    assert me.client_id() == "sharegroup-fleet/3/proxy-b.example/1=9192,2=9193"
    assert FleetIdentity.parse(me.client_id()) == me
    for other in ("rdkafka", "sharegroup-fleet/x/h/1=2", "sharegroup-fleet/1/h/1:2"):
        assert FleetIdentity.parse(other) is None


def test_view_from_a_describe_and_what_this_instance_owns() -> None:
    me = FleetIdentity(0, "a", {1: 9001})
    owned = {0, 1}
    view = FleetView(lambda: me, lambda: owned)
    view.apply(
        [
            ("sharegroup-fleet/0/a/1=9001", [0]),  # a stale describe of this instance
            ("sharegroup-fleet/1/b/1=9101", [2, 3]),
            ("some-other-client", [4]),
        ]
    )
    assert view.owner(1) == 0  # what this instance owns, it says itself
    assert view.owner(3) == 1
    assert view.owner(4) == 0  # nobody known: this instance answers (and refuses)
    assert sorted(view.instances()) == [0, 1]
    assert view.instances()[0].state_partitions == {0, 1}


def test_fleet_configs() -> None:
    assert fleet_settings({}) is None
    assert fleet_settings(
        {"sharegroup.fleet.enabled": "true", "sharegroup.fleet.instance.id": "4"}
    ) == {
        "instance_id": 4,
        "group_id": None,
        "session_timeout_ms": 45000,
        "heartbeat_interval_ms": 3000,
    }
    for bad, message in (
        ({"sharegroup.fleet.enabled": "yes"}, "not true/false"),
        ({"sharegroup.fleet.enabled": "true"}, "needs sharegroup.fleet.instance.id"),
        (
            {"sharegroup.fleet.enabled": "true", "sharegroup.fleet.instance.id": "-1"},
            "outside",
        ),
        (
            {
                "sharegroup.fleet.enabled": "true",
                "sharegroup.fleet.instance.id": "1",
                "sharegroup.fleet.session.timeout.ms": "6000",
                "sharegroup.fleet.heartbeat.interval.ms": "6000",
            },
            "must be below",
        ),
        (
            {
                "sharegroup.fleet.enabled": "true",
                "sharegroup.fleet.instance.id": "1",
                "sharegroup.state.enable": "false",
            },
            "needs sharegroup.state.enable=true",
        ),
    ):
        with pytest.raises(ConfigError, match=message):
            split_configs(bad)
