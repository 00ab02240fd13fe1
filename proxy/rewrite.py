"""Broker-address rewriting: every address a client sees is one of the proxy's.

Pure functions over decoded responses. ``BrokerMap`` says which proxy port stands for which
upstream node id; Metadata, FindCoordinator and DescribeCluster answers are rewritten with it,
and Metadata answers also get topic ids where the upstream has none. These are the only
standard responses that carry broker addresses at the versions the proxy advertises (Produce
above v9 and Fetch above v15 add leader endpoints, so the proxy does not advertise those).
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

NodeId = Callable[[int, int], int]  # (instance id, upstream broker id) -> node id


class BrokerMap:
    """node id -> (advertised host, proxy port). New node ids get the next port."""

    def __init__(self, advertised_host: str, base_port: int) -> None:
        self.advertised_host = advertised_host
        self.base_port = base_port
        self.ports: dict[int, int] = {}
        self.on_new_node: Callable[[int], None] | None = None

    def reserve(self, node_id: int) -> int:
        """The port for ``node_id``, chosen now if new (0: let the listener pick one)."""
        port = self.ports.get(node_id)
        if port is None:
            port = self.base_port + len(self.ports) if self.base_port else 0
            self.ports[node_id] = port
        return port

    def port_for(self, node_id: int) -> int:
        """Like ``reserve``, and tells ``on_new_node`` about a node seen for the first time."""
        if node_id in self.ports:
            return self.ports[node_id]
        self.reserve(node_id)
        if self.on_new_node is not None:
            self.on_new_node(node_id)
        return self.ports[node_id]

    def address(self, node_id: int) -> tuple[str, int]:
        return self.advertised_host, self.port_for(node_id)


def rewrite_metadata(
    resp: Any, brokers: BrokerMap, topic_id_for: Callable[[str, uuid.UUID | None], uuid.UUID]
) -> None:
    for b in resp.brokers:
        b.host, b.port = brokers.address(b.node_id)
    for t in resp.topics:
        if hasattr(t, "topic_id") and t.name and not t.error_code:
            t.topic_id = topic_id_for(t.name, t.topic_id)


def rewrite_find_coordinator(resp: Any, brokers: BrokerMap, version: int) -> None:
    if version >= 4:
        for c in resp.coordinators:
            if c.node_id >= 0 and not c.error_code:
                c.host, c.port = brokers.address(c.node_id)
    elif resp.node_id >= 0 and not resp.error_code:
        resp.host, resp.port = brokers.address(resp.node_id)


def rewrite_describe_cluster(resp: Any, brokers: BrokerMap) -> None:
    for b in resp.brokers:
        b.host, b.port = brokers.address(b.broker_id)


# ---------------------------------------------------------------------------- a fleet
# The answers above, presented as a fleet: every node is one instance's listener for one
# upstream broker, with node id ``fleet_node(instance, broker)``. ``Instances`` maps an
# instance id to its advertised host and its port per upstream broker id.

Instances = Mapping[int, tuple[str, Mapping[int, int]]]


def _fleet_brokers(
    brokers: Sequence[Any], instances: Instances, node: NodeId, attr: str
) -> list[Any]:
    out: list[Any] = []
    for instance_id, (host, ports) in sorted(instances.items()):
        for b in brokers:
            upstream = getattr(b, attr)
            if upstream in ports:
                entry = copy.copy(b)
                setattr(entry, attr, node(instance_id, upstream))
                entry.host, entry.port = host, ports[upstream]
                out.append(entry)
    return out


def route_metadata(
    resp: Any,
    instances: Instances,
    node: NodeId,
    me: int,
    owner_of: Callable[[uuid.UUID | None, str, int], int],
) -> None:
    """After ``rewrite_metadata``: the brokers are the fleet's nodes, and a partition's leader
    (and its replicas) are nodes of the instance that owns its share state (``owner_of``
    topic id, name, partition), each relaying to the partition's real upstream broker."""
    resp.brokers = _fleet_brokers(resp.brokers, instances, node, "node_id")
    if getattr(resp, "controller_id", -1) >= 0:
        resp.controller_id = node(me, resp.controller_id)
    for t in resp.topics:
        topic_id = getattr(t, "topic_id", None)
        for p in t.partitions or ():
            owner = owner_of(topic_id, t.name, p.partition_index)
            if owner not in instances:
                owner = me
            if p.leader_id >= 0:
                p.leader_id = node(owner, p.leader_id)
            p.replica_nodes = [node(owner, r) for r in p.replica_nodes or ()]
            p.isr_nodes = [node(owner, r) for r in p.isr_nodes or ()]
            if getattr(p, "offline_replicas", None):
                p.offline_replicas = [node(owner, r) for r in p.offline_replicas]


def route_find_coordinator(
    resp: Any,
    version: int,
    key: str | None,
    instances: Instances,
    node: NodeId,
    owner_of_key: Callable[[str], int],
) -> None:
    """After ``rewrite_find_coordinator``: a key's coordinator is a node of the instance that
    owns the key's state partition (a share group's coordination; any other group or a
    transactional id is only relayed, by whichever instance this picks). ``key`` is the
    request's (v0-3 answers do not name it)."""
    if version >= 4:
        for c in resp.coordinators:
            if c.node_id >= 0 and not c.error_code:
                _route(c, owner_of_key(c.key), instances, node)
    elif key is not None and resp.node_id >= 0 and not resp.error_code:
        _route(resp, owner_of_key(key), instances, node)


def _route(entry: Any, owner: int, instances: Instances, node: NodeId) -> None:
    host_ports = instances.get(owner)
    upstream = entry.node_id
    if host_ports is None or upstream not in host_ports[1]:
        return
    entry.node_id = node(owner, upstream)
    entry.host, entry.port = host_ports[0], host_ports[1][upstream]


def route_describe_cluster(resp: Any, instances: Instances, node: NodeId, me: int) -> None:
    resp.brokers = _fleet_brokers(resp.brokers, instances, node, "broker_id")
    if getattr(resp, "controller_id", -1) >= 0:
        resp.controller_id = node(me, resp.controller_id)
