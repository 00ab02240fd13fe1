"""The proxy server: one listener per upstream broker, a task per client connection.

Port mapping (documented in README): the upstream broker with the lowest node id is served on
the listen port, and each further broker on the next port, in the order the proxy learns of
them (listen port + index). With listen port 0 every listener gets a free port of its own. A
metadata refresh every ``metadata_refresh_s`` picks up brokers that joined; clients learn the
new addresses from the rewritten Metadata answers.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

from model.config import SHARE_VERSION_LATEST
from proxy import wire
from proxy.authz import Authorizer
from proxy.connection import ClientConnection
from proxy.framing import DEFAULT_MAX_FRAME_BYTES
from proxy.internal_topic import InternalTopicGuard
from proxy.rewrite import BrokerMap
from proxy.security import ListenerSecurity, UpstreamSecurity
from proxy.upstream import Cluster, UpstreamError

log = logging.getLogger("sharegroup.proxy")

# Versions the proxy does not advertise even when the upstream does: these responses carry
# broker addresses as tagged fields (Produce v10+, Fetch v16+ NodeEndpoints) that the proxy
# would otherwise have to decode and rewrite on the hot path.
VERSION_CAPS = {wire.PRODUCE: 9, wire.FETCH: 15}
# APIs never relayed: controller/quorum internals with addresses, and the share-group family
# that the proxy answers itself (or, without the engine, does not offer).
NEVER_RELAYED = {55, 76, 77, 78, 79, 80, 83, 84, 85, 86, 87, 88, 89, 90, 91, 92}
DECODED = {wire.METADATA, wire.FIND_COORDINATOR, wire.DESCRIBE_CLUSTER, wire.API_VERSIONS}

SHARE_VERSION_FEATURE = "share.version"


@dataclass(frozen=True, slots=True)
class Features:
    """ApiVersions v3's features: name -> (min, max), and the finalized features' epoch."""

    supported: dict[str, tuple[int, int]]
    finalized: dict[str, tuple[int, int]]
    epoch: int


LocalHandler = Callable[["ClientConnection", Any, wire.RequestHead], Awaitable[Any]]


class ShareHandler(Protocol):
    """What the share-group engine offers the connection layer."""

    api_keys: dict[int, tuple[int, int]]

    async def handle(self, conn: ClientConnection, request: Any, head: wire.RequestHead) -> Any: ...

    async def connection_closed(self, conn: ClientConnection) -> None: ...

    async def run_timers(self) -> None: ...

    async def start(self, nursery: trio.Nursery) -> None: ...

    def log_deleted(self) -> None: ...


class Router(Protocol):
    """Presents several proxy instances as one cluster (``proxy.fleet_service``): applied to
    Metadata, FindCoordinator and DescribeCluster answers after their addresses are ours."""

    def metadata(self, resp: Any) -> None: ...

    def find_coordinator(self, resp: Any, version: int, key: str | None) -> None: ...

    def describe_cluster(self, resp: Any) -> None: ...


@dataclass
class ProxyConfig:
    bootstrap: list[tuple[str, int]]
    listen_host: str = "127.0.0.1"
    listen_port: int = 9192
    advertised_host: str | None = None
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    max_in_flight_requests: int = 1000
    metadata_refresh_s: float = 30.0
    share_configs: dict[str, str] = field(default_factory=dict)
    listen_protocol: str = "PLAINTEXT"  # PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL
    listener: ListenerSecurity = field(default_factory=ListenerSecurity)  # built by build_proxy
    upstream: UpstreamSecurity = field(default_factory=UpstreamSecurity)  # built by build_proxy

    @property
    def host_for_clients(self) -> str:
        return self.advertised_host or self.listen_host


class Proxy:
    def __init__(self, config: ProxyConfig) -> None:
        self.config = config
        self.brokers = BrokerMap(config.host_for_clients, config.listen_port)
        self.brokers.on_new_node = self._new_node
        self.cluster: Cluster
        self.share_handler: ShareHandler | None = None
        # The share.version level ApiVersions reports (set with the share handler).
        self.share_version: int | None = None
        self.authz: Authorizer | None = None  # checks the share APIs against upstream ACLs
        self.internal_topic: InternalTopicGuard | None = None  # keeps clients off the state topic
        self.router: Router | None = None  # set in fleet mode
        # Tasks started once the listeners are open (their addresses known).
        self.after_ready: list[Callable[[], Awaitable[None]]] = []
        self.local_handlers: dict[int, LocalHandler] = {}
        self.listeners: dict[int, list[trio.SocketListener]] = {}
        self._nursery: trio.Nursery | None = None
        self._versions: dict[int, dict[int, tuple[int, int]]] = {}
        self.connections: set[ClientConnection] = set()
        self.find_coordinator_hook: Callable[[Any, wire.RequestHead], None] = lambda resp, head: (
            None
        )
        self.ready = trio.Event()

    # ------------------------------------------------------------------ lifecycle
    async def run(self, *, task_status: trio.TaskStatus[Proxy] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self.cluster = Cluster(
                self.config.bootstrap, nursery, self.config.max_frame_bytes, self.config.upstream
            )
            await self.cluster.refresh()
            if not self.cluster.brokers:
                raise UpstreamError("the upstream cluster reported no brokers")
            if self.authz is not None:
                try:
                    await self.authz.refresh()
                except UpstreamError as e:
                    log.error(
                        "cannot read the upstream ACLs, refusing share APIs (retriably) "
                        "until they can be read: %s",
                        e,
                    )
                nursery.start_soon(self.authz.run)
            if self.share_handler is not None:
                await self.share_handler.start(nursery)  # recover state before serving
            for node_id in sorted(self.cluster.brokers):
                await self._listen(node_id)
            log.info(
                "proxy ready: %s",
                ", ".join(
                    f"node {n} -> {self.config.host_for_clients}:{p}"
                    for n, p in self.brokers.ports.items()
                ),
            )
            self.ready.set()
            task_status.started(self)
            nursery.start_soon(self._refresh_loop)
            if self.share_handler is not None:
                nursery.start_soon(self.share_handler.run_timers)
            for task in self.after_ready:
                nursery.start_soon(task)

    @property
    def bootstrap_address(self) -> tuple[str, int]:
        """Where clients should bootstrap: the port of the first broker."""
        first = next(iter(self.brokers.ports))
        return self.config.host_for_clients, self.brokers.ports[first]

    def _new_node(self, node_id: int) -> None:
        # Called from BrokerMap while rewriting: open the listener in the background. The
        # address handed out is known now only when ports are fixed (listen port + index).
        if self._nursery is not None and node_id not in self.listeners:
            self._nursery.start_soon(self._listen, node_id)

    async def _listen(self, node_id: int) -> None:
        if node_id in self.listeners:
            return
        self.listeners[node_id] = []  # claimed: a concurrent call for this node returns
        try:
            await self.cluster.connection(node_id)  # learn its API versions
        except UpstreamError as e:
            log.warning("broker %s not reachable yet: %s", node_id, e)
        port = self.brokers.reserve(node_id)
        try:
            listeners = await trio.open_tcp_listeners(port, host=self.config.listen_host)
        except OSError as e:
            if not self.ready.is_set():
                raise  # at start-up: the proxy cannot serve as configured, and says so
            # Later (a broker that joined): the others keep being served; the next metadata
            # refresh tries again.
            del self.listeners[node_id]
            log.error("cannot listen for broker %s on port %s: %s", node_id, port, e)
            return
        self.listeners[node_id] = listeners
        actual = listeners[0].socket.getsockname()[1]
        self.brokers.ports[node_id] = actual
        assert self._nursery is not None
        self._nursery.start_soon(self._serve, listeners, node_id)

    async def _serve(self, listeners: list[trio.SocketListener], node_id: int) -> None:
        security = self.config.listener
        served: list[trio.abc.Listener[Any]] = list(listeners)
        if security.ssl_context is not None:
            # The handshake happens in the connection's own task (ClientConnection.run).
            served = [trio.SSLListener(lst, security.ssl_context) for lst in listeners]

        async def handler(stream: trio.abc.Stream) -> None:
            conn = ClientConnection(self, stream, node_id)
            self.connections.add(conn)
            try:
                await conn.run()
            except Exception:
                # A bug in handling one client must not take the proxy down.
                log.exception("unexpected error on connection of %s", conn.describe())
            finally:
                self.connections.discard(conn)

        await trio.serve_listeners(handler, served)

    async def _refresh_loop(self) -> None:
        while True:
            await trio.sleep(self.config.metadata_refresh_s)
            try:
                await self.cluster.refresh()
                for node_id in sorted(self.cluster.brokers):
                    if node_id not in self.listeners:
                        await self._listen(node_id)
            except UpstreamError as e:
                log.warning("metadata refresh failed: %s", e)
            except Exception:  # it runs in the proxy's own nursery
                log.exception("metadata refresh failed")

    # ------------------------------------------------------------------ routing data
    def upstream_address(self, node_id: int) -> tuple[str, int]:
        info = self.cluster.brokers.get(node_id)
        if info is None:
            raise UpstreamError(f"upstream broker {node_id} is gone")
        return info.host, info.port

    def advertised_versions(self, node_id: int) -> dict[int, tuple[int, int]]:
        cached = self._versions.get(node_id)
        if cached is not None:
            return cached
        conn_versions = self._upstream_versions(node_id)
        table: dict[int, tuple[int, int]] = {}
        for key, (low, high) in conn_versions.items():
            if key in NEVER_RELAYED:
                continue
            if key in VERSION_CAPS:
                high = min(high, VERSION_CAPS[key])
            if key in DECODED or key in self.local_handlers:
                ours = wire.max_version(key)
                if ours is None:
                    continue
                high = min(high, ours)
            if high >= low:
                table[key] = (low, high)
        if self.share_handler is not None:
            table.update(self.share_handler.api_keys)
        for key in self.local_handlers:
            ours = wire.max_version(key)
            if key not in table and ours is not None:
                table[key] = (0, ours)
        self._versions[node_id] = table
        return table

    def _upstream_versions(self, node_id: int) -> dict[int, tuple[int, int]]:
        versions = self.cluster.api_versions(node_id)
        if versions is None:
            raise UpstreamError("no upstream API versions known yet")
        return versions

    def advertised_features(self, node_id: int) -> Features:
        """The features an ApiVersions answer of ``node_id`` reports: the upstream broker's,
        with ``share.version`` replaced by the level the proxy's share groups emulate (when it
        serves them). An upstream without ``share.version`` (before Kafka 4.1) gets it too."""
        conn = self.cluster.versioned_connection(node_id)
        if conn is None:
            raise UpstreamError("no upstream API versions known yet")
        supported = dict(conn.supported_features)
        finalized = dict(conn.finalized_features)
        epoch = conn.finalized_features_epoch
        if self.share_version is not None:
            supported[SHARE_VERSION_FEATURE] = (0, SHARE_VERSION_LATEST)
            finalized[SHARE_VERSION_FEATURE] = (self.share_version, self.share_version)
            epoch = max(epoch, 0)
        return Features(supported, finalized, epoch)

    async def prepare_node(self, node_id: int) -> None:
        """Make sure the upstream versions of ``node_id`` are known (connects if needed)."""
        if node_id not in self._versions:
            await self.cluster.connection(node_id)

    async def connection_closed(self, conn: ClientConnection) -> None:
        if self.share_handler is not None:
            await self.share_handler.connection_closed(conn)
