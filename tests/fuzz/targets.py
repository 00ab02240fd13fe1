"""The fuzz targets: each takes the bytes a client could send and raises ``Crash`` (or lets
an unexpected exception escape) when the proxy would not answer them with a Kafka error or a
clean close. Plain Python: ``tests/fuzz/run.py`` feeds them from atheris, the unit test of the
harness from the seed files."""

from __future__ import annotations

import json
import logging
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import trio
import trio.testing

from proxy import wire
from proxy.app import attach
from proxy.connection import ClientConnection, Slot
from proxy.framing import FrameBuffer, FrameError
from proxy.server import Proxy, ProxyConfig
from proxy.upstream import BrokerInfo, Cluster, PartitionInfo, TopicInfo, UpstreamError

SEEDS = Path(__file__).with_name("seeds")
CLUSTER_FILE = Path(__file__).with_name("cluster.json")
# Virtual seconds a connection may take (long polls, lock timers) before the client hangs up:
# the clock is Trio's MockClock with autojump, so waiting costs no real time.
CONNECTION_VIRTUAL_S = 120.0
MAX_FRAME_BYTES = 1 << 20


class Crash(Exception):
    """The proxy did something other than answer or close cleanly."""


def frames_of(data: bytes) -> Iterator[bytes]:
    """The whole frames in a byte stream (without size prefix); stops at the first bad one."""
    buf = FrameBuffer(MAX_FRAME_BYTES)
    buf.feed(data)
    while True:
        try:
            f = buf.next_frame()
        except FrameError:
            return
        if f is None:
            return
        yield f


# ---------------------------------------------------------------------------- frames


def fuzz_frames(data: bytes) -> None:
    """FrameBuffer fed in chunks whose sizes come from the first bytes."""
    if not data:
        return
    step = data[0] % 17 + 1
    data = data[1:]
    buf = FrameBuffer(MAX_FRAME_BYTES)
    total = 0
    try:
        for i in range(0, len(data), step):
            buf.feed(data[i : i + step])
            while (f := buf.next_frame()) is not None:
                total += 4 + len(f)
    except FrameError:
        return
    if total + buf.buffered != len(data):
        raise Crash(f"frames {total} + buffered {buf.buffered} != fed {len(data)}")


# ---------------------------------------------------------------------------- requests


def decode_one(payload: bytes) -> None:
    """What the connection decodes of one request frame (without its size prefix)."""
    try:
        head = wire.peek_head(payload)
    except FrameError:
        return
    try:
        if head.api_key == wire.PRODUCE:
            wire.produce_expects_response(payload[: 1 << 16], head)
        wire.client_id_of(payload[: 1 << 16], head)
    except FrameError:
        pass
    if head.api_key in wire.REQUESTS:
        try:
            wire.decode_request(payload, head)
        except FrameError:
            return


def fuzz_requests(data: bytes) -> None:
    """Every frame of the stream through the decoders; a stream without a whole frame is
    decoded as one frame's payload, so the fuzzer need not learn the size prefix first."""
    any_frame = False
    for payload in frames_of(data):
        any_frame = True
        decode_one(payload)
    if not any_frame:
        decode_one(data)


# ---------------------------------------------------------------------------- connection


def _load_cluster() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(CLUSTER_FILE.read_text(encoding="utf-8"))
    return loaded


class _NoUpstream:
    """The stand-in upstream connection: knows its API versions, answers nothing."""

    closed = False

    def __init__(self, versions: dict[int, tuple[int, int]]) -> None:
        self.api_versions = versions
        # Kafka 3.9 (the recorded upstream) reports no share.version feature.
        self.supported_features: dict[str, tuple[int, int]] = {}
        self.finalized_features: dict[str, tuple[int, int]] = {}
        self.finalized_features_epoch = -1

    def version_for(self, api_key: int, ours: int) -> int:
        low, high = self.api_versions.get(api_key, (0, ours))
        return max(low, min(high, ours))

    async def request(self, *_args: Any, **_kwargs: Any) -> Any:
        raise UpstreamError("no upstream in the fuzzer")


class StandInCluster(Cluster):
    """Kafka 3.9's metadata and versions, recorded with the seeds; no connection is made."""

    def __init__(self, nursery: trio.Nursery, recorded: dict[str, Any]) -> None:
        super().__init__([("127.0.0.1", 9)], nursery, MAX_FRAME_BYTES)
        versions = {int(k): (int(v[0]), int(v[1])) for k, v in recorded["api_versions"].items()}
        self._bootstrap_conn = _NoUpstream(versions)  # type: ignore[assignment]
        self.cluster_id = recorded["cluster_id"]
        self.brokers = {0: BrokerInfo(0, "127.0.0.1", 9, None)}
        for name, info in recorded["topics"].items():
            topic_id = uuid.UUID(info["topic_id"])
            t = TopicInfo(name, topic_id)
            t.partitions = {p: PartitionInfo(p, 0, 0) for p in range(int(info["partitions"]))}
            self.topics[name] = t
            self.topic_names[topic_id] = name

    async def connection(self, node_id: int | None = None) -> Any:
        raise UpstreamError("no upstream in the fuzzer")

    async def refresh(self, topics: Any = None) -> None:
        raise UpstreamError("no upstream in the fuzzer")


class FuzzConnection(ClientConnection):
    """The real connection, except that a relayed request goes nowhere: its answer slot is
    marked sent with nothing, so the requests after it are served as usual."""

    relayed = 0

    async def _relay(
        self, framed: bytearray, head: wire.RequestHead, slot: Slot | None, nursery: trio.Nursery
    ) -> None:
        FuzzConnection.relayed += 1
        if slot is not None:
            slot.set_streamed()


class _PeerSocket:
    """A socket-pair end that reports a TCP peer address, as a client connection has."""

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self._sock = sock

    def getpeername(self) -> tuple[str, int]:
        return ("127.0.0.1", 40000)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def _stream(sock: trio.socket.SocketType) -> trio.SocketStream:
    """A socket-pair stream whose socket reports a TCP peer address, as a client's does."""
    stream = trio.SocketStream(sock)
    stream.socket = _PeerSocket(sock)  # type: ignore[assignment]
    return stream


class _ErrorLog(logging.Handler):
    """Errors the proxy logs while serving one input: each is a crash (a bug that was
    contained, but a bug)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


_ERRORS = _ErrorLog()


async def _serve_one(data: bytes, recorded: dict[str, Any]) -> bytes:
    answers = bytearray()
    async with trio.open_nursery() as nursery:
        proxy = Proxy(ProxyConfig(bootstrap=[("127.0.0.1", 9)], max_frame_bytes=MAX_FRAME_BYTES))
        proxy.cluster = StandInCluster(nursery, recorded)
        attach(proxy)
        client, server = trio.socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        conn = FuzzConnection(proxy, _stream(server), 0)

        async def client_side() -> None:
            stream = trio.SocketStream(client)
            try:
                await stream.send_all(data)
                with trio.move_on_after(CONNECTION_VIRTUAL_S):
                    while chunk := await stream.receive_some(1 << 16):
                        answers.extend(chunk)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass
            finally:
                await stream.aclose()

        nursery.start_soon(client_side)
        await conn.run()
        nursery.cancel_scope.cancel()
    return bytes(answers)


def serve(data: bytes, recorded: dict[str, Any] | None = None) -> bytes:
    """One client connection that sends ``data`` and reads until the proxy is done with it;
    returns what the proxy sent back. Raises Crash if the proxy logged an error."""
    _ERRORS.records.clear()
    logger = logging.getLogger("sharegroup")  # the proxy's loggers are all below it
    logger.addHandler(_ERRORS)
    try:
        answers = trio.run(
            _serve_one,
            data,
            recorded if recorded is not None else _recorded(),
            clock=trio.testing.MockClock(autojump_threshold=0),
        )
    finally:
        logger.removeHandler(_ERRORS)
    if _ERRORS.records:
        first = _ERRORS.records[0]
        raise Crash(f"the proxy logged an error: {first.getMessage()}\n{first.exc_text or ''}")
    return answers


_RECORDED: dict[str, Any] = {}


def _recorded() -> dict[str, Any]:
    if not _RECORDED:
        _RECORDED.update(_load_cluster())
    return _RECORDED


def fuzz_connection(data: bytes) -> None:
    serve(data)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "frames": fuzz_frames,
    "requests": fuzz_requests,
    "connection": fuzz_connection,
}
