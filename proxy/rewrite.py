"""Broker-address rewriting: every address a client sees is one of the proxy's.

Pure functions over decoded responses. ``BrokerMap`` says which proxy port stands for which
upstream node id; Metadata, FindCoordinator and DescribeCluster answers are rewritten with it,
and Metadata answers also get topic ids where the upstream has none. These are the only
standard responses that carry broker addresses at the versions the proxy advertises (Produce
above v9 and Fetch above v15 add leader endpoints, so the proxy does not advertise those).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any


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
