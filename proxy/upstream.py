"""The proxy's own client of the upstream cluster.

``Cluster`` keeps what the proxy knows of the real brokers (node ids, addresses, the API
versions each supports, topic metadata) and one ``BrokerConnection`` per broker for the proxy's
own requests (metadata refresh, fetches for share partitions, offset lookups, state writes).
Client traffic does not use these connections: each client connection gets its own upstream
connection (see ``proxy.connection``) so that relayed bytes keep their order and their
correlation ids.
"""

from __future__ import annotations

import itertools
import logging
import ssl
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from proxy import wire
from proxy.framing import FrameError
from proxy.sasl import SaslError, SaslSettings
from proxy.security import UpstreamSecurity
from proxy.streams import FrameReader, close_quietly, raw_socket

log = logging.getLogger("sharegroup.upstream")

CLIENT_ID = "sharegroup-proxy"
ZERO_UUID = uuid.UUID(int=0)
SASL_HANDSHAKE = 17
SASL_AUTHENTICATE = 36
# A SASL session with a lifetime (the broker's connections.max.reauth.ms) is not used for new
# requests once this share of it has passed; a new connection logs in again.
SESSION_RETIRE_FACTOR = 0.8
NO_SECURITY = UpstreamSecurity()


class UpstreamError(Exception):
    """The upstream cluster could not be reached or answered with an error we cannot handle."""


@dataclass(slots=True)
class BrokerInfo:
    node_id: int
    host: str
    port: int
    rack: str | None = None


@dataclass(slots=True)
class PartitionInfo:
    partition: int
    leader: int
    leader_epoch: int


@dataclass(slots=True)
class TopicInfo:
    name: str
    topic_id: uuid.UUID
    partitions: dict[int, PartitionInfo] = field(default_factory=dict)


async def open_stream(
    host: str, port: int, timeout_s: float = 10.0, *, tls: ssl.SSLContext | None = None
) -> trio.abc.Stream:
    """A TCP connection, with TLS (handshake done) when ``tls`` is given. UpstreamError when
    the handshake fails; OSError or TooSlowError when the broker cannot be reached."""
    with trio.fail_after(timeout_s):
        stream = await trio.open_tcp_stream(host, port)
        if tls is None:
            return stream
        secured = trio.SSLStream(stream, tls, server_hostname=host)
        try:
            await secured.do_handshake()
        except (trio.BrokenResourceError, trio.ClosedResourceError) as e:
            await close_quietly(stream)
            raise UpstreamError(
                f"TLS handshake with {host}:{port} failed: {e.__cause__ or e}"
            ) from e
        return secured


class BrokerConnection:
    """Request/response over one TCP connection; responses come back in request order.

    With ``security`` the connection uses TLS and logs in with the proxy's own SASL credentials
    before it is used (``start``)."""

    def __init__(
        self,
        host: str,
        port: int,
        max_frame_bytes: int,
        security: UpstreamSecurity | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.security = security or NO_SECURITY
        self.client_id = CLIENT_ID  # sent in every request's header
        self._stream: trio.abc.Stream | None = None
        self._pending: deque[tuple[int, int, int, trio.Event, list[Any]]] = deque()
        self._cids = itertools.count(1)
        self._send_lock = trio.Lock()
        self._max_frame_bytes = max_frame_bytes
        self.api_versions: dict[int, tuple[int, int]] = {}
        # The cluster's features from ApiVersions v3+: name -> (min, max) supported and
        # finalized, and the finalized features' epoch (-1 when the broker reported none).
        self.supported_features: dict[str, tuple[int, int]] = {}
        self.finalized_features: dict[str, tuple[int, int]] = {}
        self.finalized_features_epoch = -1
        self._closed = False
        self._retire_at = float("inf")  # trio time after which no new request should use it
        # Observers of every request, given the request and the seconds until its answer
        # (or its failure); ``Cluster`` shares its own list with the connections it keeps.
        self.on_request: list[Callable[[Any, float], None]] = []

    @property
    def closed(self) -> bool:
        """True once the connection is closed, or its SASL session is near its end (callers
        then open a new connection)."""
        return self._closed or trio.current_time() >= self._retire_at

    async def start(self, nursery: trio.Nursery) -> None:
        self._stream = await open_stream(self.host, self.port, tls=self.security.ssl_context)
        nursery.start_soon(self._reader)
        resp = await self.request(wire.api_versions_request(3), 3)
        if resp.error_code:
            resp = await self.request(wire.api_versions_request(0), 0)
        self.api_versions = {k.api_key: (k.min_version, k.max_version) for k in resp.api_keys}
        if resp.API_VERSION >= 3:
            self.supported_features = {
                f.name: (f.min_version, f.max_version) for f in resp.supported_features or ()
            }
            self.finalized_features = {
                f.name: (f.min_version_level, f.max_version_level)
                for f in resp.finalized_features or ()
            }
            self.finalized_features_epoch = resp.finalized_features_epoch
        if self.security.sasl is not None:
            try:
                await self._login(self.security.sasl)
            except BaseException:
                await self.aclose()
                raise

    async def _login(self, sasl: SaslSettings) -> None:
        """SaslHandshake, then SaslAuthenticate round trips until the mechanism is done."""
        where = f"{self.host}:{self.port}"
        handshake = wire.request_class(SASL_HANDSHAKE)(mechanism=sasl.mechanism)
        resp = await self.request(handshake, 1)
        if resp.error_code:
            raise UpstreamError(
                f"SASL mechanism {sasl.mechanism} is not enabled on {where} "
                f"(it offers {', '.join(resp.mechanisms) or 'none'})"
            )
        version = self.version_for(SASL_AUTHENTICATE, 2)
        try:
            authenticator = sasl.authenticator()
            message: bytes | None = authenticator.first()
            while message is not None:
                request = wire.request_class(SASL_AUTHENTICATE)(auth_bytes=message)
                resp = await self.request(request, version)
                if resp.error_code:
                    raise UpstreamError(
                        f"SASL authentication with {where} failed "
                        f"(error {resp.error_code}): {resp.error_message}"
                    )
                message = authenticator.step(bytes(resp.auth_bytes or b""))
        except SaslError as e:
            raise UpstreamError(f"SASL authentication with {where}: {e}") from None
        lifetime_ms = getattr(resp, "session_lifetime_ms", 0) or 0
        if lifetime_ms > 0:
            self._retire_at = trio.current_time() + lifetime_ms / 1000 * SESSION_RETIRE_FACTOR

    def version_for(self, api_key: int, highest: int | None = None) -> int:
        """The highest version both sides speak (and not above ``highest``)."""
        theirs = self.api_versions.get(api_key)
        ours = wire.max_version(api_key)
        if theirs is None or ours is None:
            raise UpstreamError(f"broker {self.host}:{self.port} does not support API {api_key}")
        version = min(theirs[1], ours, highest if highest is not None else ours)
        if version < theirs[0]:
            raise UpstreamError(f"no common version of API {api_key} with {self.host}:{self.port}")
        return version

    async def request(self, msg: Any, version: int, timeout_s: float = 30.0) -> Any:
        if not self.on_request:
            return await self._request(msg, version, timeout_s)
        started = time.perf_counter()
        try:
            return await self._request(msg, version, timeout_s)
        finally:
            elapsed = time.perf_counter() - started
            for observe in self.on_request:
                observe(msg, elapsed)

    async def _request(self, msg: Any, version: int, timeout_s: float) -> Any:
        if self._closed or self._stream is None:
            raise UpstreamError(f"connection to {self.host}:{self.port} is closed")
        cid = next(self._cids)
        done = trio.Event()
        box: list[Any] = []
        msg.API_VERSION = version
        data = wire.encode_request(msg, cid, self.client_id)
        expects = msg.expect_response()
        # Shielded: a request cancelled half-way through its bytes would corrupt the stream,
        # and one cancelled after queueing must still be sent to keep answers in step.
        with trio.CancelScope(shield=True):
            async with self._send_lock:
                if expects:
                    self._pending.append((cid, msg.API_KEY, version, done, box))
                try:
                    await self._stream.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
                    await self.aclose()
                    raise UpstreamError(f"send to {self.host}:{self.port} failed: {e}") from e
        if not expects:
            return None
        with trio.move_on_after(timeout_s) as scope:
            await done.wait()
        if scope.cancelled_caught:
            await self.aclose()
            raise UpstreamError(f"no answer from {self.host}:{self.port} in {timeout_s}s")
        if not box or isinstance(box[0], BaseException):
            raise UpstreamError(f"connection to {self.host}:{self.port} lost") from (
                box[0] if box else None
            )
        return box[0]

    async def _reader(self) -> None:
        assert self._stream is not None
        sock = raw_socket(self._stream)
        reader = FrameReader(
            sock if sock is not None else self._stream, self._max_frame_bytes, trusted=True
        )
        try:
            while (framed := await reader.next_frame()) is not None:
                if not self._pending:  # an answer nobody waits for (closed meanwhile)
                    raise FrameError("an answer to no request")
                _cid, api_key, version, done, box = self._pending.popleft()
                try:
                    box.append(wire.decode_response(memoryview(framed)[4:], api_key, version))
                except Exception as e:  # noqa: BLE001 - handed to the waiting caller
                    box.append(e)
                done.set()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError, FrameError) as e:
            log.info("upstream %s:%s closed: %s", self.host, self.port, e)
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        self._closed = True
        while self._pending:
            *_, done, box = self._pending.popleft()
            box.append(UpstreamError("connection closed"))
            done.set()
        if self._stream is not None:
            await close_quietly(self._stream)


class Cluster:
    """What the proxy knows about the upstream cluster, refreshed from Metadata."""

    def __init__(
        self,
        bootstrap: Sequence[tuple[str, int]],
        nursery: trio.Nursery,
        max_frame_bytes: int,
        security: UpstreamSecurity | None = None,
    ) -> None:
        self.bootstrap = list(bootstrap)
        self.security = security or NO_SECURITY
        self._nursery = nursery
        self._max_frame_bytes = max_frame_bytes
        self.brokers: dict[int, BrokerInfo] = {}
        self.topics: dict[str, TopicInfo] = {}
        self.topic_names: dict[uuid.UUID, str] = {}
        self.cluster_id: str | None = None
        self.controller_id = -1
        self._connections: dict[int, BrokerConnection] = {}
        self._bootstrap_conn: BrokerConnection | None = None
        self._lock = trio.Lock()
        self.assigned_ids = 0  # how many topic ids the proxy had to make up
        self._restored_ids: dict[str, uuid.UUID] = {}
        self.on_topic_id_assigned: Callable[[str, uuid.UUID], None] | None = None
        # Observers of the requests on the shared connections (``connection``), as
        # ``BrokerConnection.on_request``; connections of a caller's own are not observed.
        self.on_request: list[Callable[[Any, float], None]] = []

    # ------------------------------------------------------------------ connections
    async def connection(self, node_id: int | None = None) -> BrokerConnection:
        """A live connection to ``node_id`` (or to any broker)."""
        if node_id is None:
            for live in self._connections.values():
                if not live.closed:
                    return live
            if self.brokers:
                node_id = min(self.brokers)
            else:
                return await self._bootstrap()
        conn = self._connections.get(node_id)
        if conn is None or conn.closed:
            info = self.brokers.get(node_id)
            if info is None:
                await self.refresh()
                info = self.brokers.get(node_id)
                if info is None:
                    raise UpstreamError(f"unknown upstream broker {node_id}")
            conn = BrokerConnection(info.host, info.port, self._max_frame_bytes, self.security)
            conn.on_request = self.on_request
            try:
                await conn.start(self._nursery)
            except (OSError, trio.TooSlowError) as e:
                raise UpstreamError(
                    f"cannot connect to broker {node_id} at {info.host}:{info.port}: {e}"
                ) from e
            self._connections[node_id] = conn
        return conn

    def api_versions(self, node_id: int) -> dict[int, tuple[int, int]] | None:
        """The API versions of broker ``node_id`` as its connection learned them, else those of
        any connection that knows them (None before any does)."""
        conn = self.versioned_connection(node_id)
        return conn.api_versions if conn is not None else None

    def versioned_connection(self, node_id: int) -> BrokerConnection | None:
        """The connection to ``node_id`` once it knows the broker's ApiVersions answer (API
        versions and features), else any connection that does (None before any does)."""
        conn = self._connections.get(node_id) or self._bootstrap_conn
        if conn is not None and conn.api_versions:
            return conn
        for c in self._connections.values():
            if c.api_versions:
                return c
        return None

    async def open_connection(self, node_id: int) -> BrokerConnection:
        """A new connection to broker ``node_id`` of the caller's own (not shared), for
        requests that must not wait behind others (long polls, read-ahead)."""
        info = self.brokers.get(node_id)
        if info is None:
            raise UpstreamError(f"unknown broker {node_id}")
        conn = BrokerConnection(info.host, info.port, self._max_frame_bytes, self.security)
        await conn.start(self._nursery)
        return conn

    async def _bootstrap(self) -> BrokerConnection:
        if self._bootstrap_conn is not None and not self._bootstrap_conn.closed:
            return self._bootstrap_conn
        errors = []
        for host, port in self.bootstrap:
            conn = BrokerConnection(host, port, self._max_frame_bytes, self.security)
            conn.on_request = self.on_request
            try:
                await conn.start(self._nursery)
            except (OSError, trio.TooSlowError, UpstreamError) as e:
                errors.append(f"{host}:{port}: {e}")
                continue
            self._bootstrap_conn = conn
            return conn
        raise UpstreamError("no bootstrap server reachable: " + "; ".join(errors))

    # ------------------------------------------------------------------ metadata
    async def refresh(self, topics: Sequence[str] | None = None) -> None:
        """Refresh brokers and topics (all topics when ``topics`` is None)."""
        async with self._lock:
            conn = await self._any_connection()
            version = conn.version_for(wire.METADATA, 12)
            resp = await conn.request(wire.metadata_request(version, topics), version)
            self.apply_metadata(resp)

    async def _any_connection(self) -> BrokerConnection:
        for conn in self._connections.values():
            if not conn.closed:
                return conn
        return await self._bootstrap()

    def apply_metadata(self, resp: Any) -> None:
        """Learn brokers and topics from a Metadata response (ours or a client's)."""
        brokers = {
            b.node_id: BrokerInfo(b.node_id, b.host, b.port, getattr(b, "rack", None))
            for b in resp.brokers
        }
        if brokers:
            self.brokers = brokers
        self.cluster_id = getattr(resp, "cluster_id", None) or self.cluster_id
        self.controller_id = getattr(resp, "controller_id", -1)
        for t in resp.topics:
            if t.error_code or not t.name:
                continue
            topic_id = self.topic_id_for(t.name, getattr(t, "topic_id", None))
            info = self.topics.get(t.name)
            if info is None or info.topic_id != topic_id:
                info = TopicInfo(t.name, topic_id)
                self.topics[t.name] = info
                self.topic_names[topic_id] = t.name
            info.partitions = {
                p.partition_index: PartitionInfo(
                    p.partition_index, p.leader_id, getattr(p, "leader_epoch", -1)
                )
                for p in t.partitions
            }

    def topic_id_for(self, name: str, upstream_id: uuid.UUID | None) -> uuid.UUID:
        """The upstream's topic id, or a stable one made from the cluster id and topic name
        when the upstream has none (brokers before topic ids). Stable across proxy restarts
        and identical on every proxy instance of one cluster."""
        if upstream_id is not None and upstream_id != ZERO_UUID:
            return upstream_id
        known = self.topics.get(name)
        if known is not None:
            return known.topic_id
        restored = self._restored_ids.get(name)
        if restored is not None:
            return restored
        self.assigned_ids += 1
        assigned = uuid.uuid5(uuid.NAMESPACE_URL, f"kafka://{self.cluster_id or ''}/{name}")
        self._restored_ids[name] = assigned
        if self.on_topic_id_assigned is not None:
            self.on_topic_id_assigned(name, assigned)
        return assigned

    def restore_topic_ids(self, ids: dict[str, uuid.UUID]) -> None:
        """Topic ids assigned earlier (from the state topic) win over fresh ones."""
        self._restored_ids.update(ids)
        for name, topic_id in ids.items():
            info = self.topics.get(name)
            if info is not None and info.topic_id != topic_id and name in self._restored_ids:
                self.topic_names.pop(info.topic_id, None)
                info.topic_id = topic_id
                self.topic_names[topic_id] = name

    def partition_counts(self) -> dict[str, int]:
        """Partitions per known topic (what the share-group assignor assigns)."""
        return {name: len(t.partitions) for name, t in self.topics.items()}

    def topic_ids(self) -> dict[str, uuid.UUID]:
        return {name: info.topic_id for name, info in self.topics.items()}

    def leader_of(self, topic: str, partition: int) -> int | None:
        info = self.topics.get(topic)
        if info is None or partition not in info.partitions:
            return None
        leader = info.partitions[partition].leader
        return leader if leader >= 0 else None

    async def aclose(self) -> None:
        for conn in list(self._connections.values()):
            await conn.aclose()
        if self._bootstrap_conn is not None:
            await self._bootstrap_conn.aclose()


def parse_host_port(text: str, default_port: int = 9092) -> tuple[str, int]:
    """'host:port' (or '[v6]:port', or a bare host) -> (host, port)."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.lstrip(":")
        return host, int(port) if port else default_port
    host, sep, port = text.rpartition(":")
    if not sep:
        return text, default_port
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"bad port in {text!r}")
    return host, int(port)


def parse_servers(text: str) -> list[tuple[str, int]]:
    servers = [parse_host_port(s) for s in text.split(",") if s.strip()]
    if not servers:
        raise ValueError("no servers given")
    return servers
