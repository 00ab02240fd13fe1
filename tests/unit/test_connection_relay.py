"""Unit tests for the relay in ``proxy/connection.py`` against a fake broker on a real socket.

Large relayed answers are passed on to the client while they arrive, by the upstream reader
rather than the writer. They must still come back in request order: after a slower answer the
proxy makes itself, before the answers that follow, byte for byte. A broker that goes away in
the middle of an answer, or a client that does, closes that client connection and nothing else.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import random
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, cast

import pytest
import trio

from proxy import wire
from proxy.connection import ClientConnection
from proxy.framing import FrameBuffer, frame
from proxy.server import Features, Proxy, ProxyConfig
from proxy.streams import FrameReader

ANSWER_BYTES = 2_000_000
SLOW_S = 0.3

# What the fake broker does with one request: gets (stream, correlation id), sends the answer.
Behaviour = Callable[[trio.SocketStream, int], Awaitable[None]]


class HangUp(Exception):
    """The fake broker closes the connection."""


def answer_body(correlation_id: int) -> bytes:
    return random.Random(correlation_id).randbytes(ANSWER_BYTES)


async def answer_in_pieces(stream: trio.SocketStream, correlation_id: int) -> None:
    data = frame(struct.pack(">i", correlation_id) + answer_body(correlation_id))
    for start in range(0, len(data), 150_000):
        await stream.send_all(data[start : start + 150_000])
        await trio.sleep(0.002)


class StubProxy:
    """What ClientConnection uses of a Proxy; ListGroups is answered here, slowly."""

    def __init__(self, broker_port: int) -> None:
        self.config = ProxyConfig(bootstrap=[])
        self.share_handler = None
        self.authz = None
        self.internal_topic = None
        self.local_handlers = {wire.LIST_GROUPS: self.slow_list_groups}
        self.broker_port = broker_port
        self.closed: list[ClientConnection] = []

    async def slow_list_groups(self, conn: object, req: object, head: wire.RequestHead) -> Any:
        await trio.sleep(SLOW_S)
        resp_cls = wire.response_class(wire.LIST_GROUPS)
        return resp_cls(version=head.api_version, throttle_time_ms=0, error_code=0, groups=[])

    def advertised_versions(self, node_id: int) -> dict[int, tuple[int, int]]:
        return {wire.FETCH: (0, 12), wire.LIST_GROUPS: (0, 3), wire.API_VERSIONS: (0, 3)}

    def advertised_features(self, node_id: int) -> Features:
        return Features({}, {"share.version": (2, 2)}, 0)

    def upstream_address(self, node_id: int) -> tuple[str, int]:
        return "127.0.0.1", self.broker_port

    async def connection_closed(self, conn: ClientConnection) -> None:
        self.closed.append(conn)


def fetch(correlation_id: int) -> bytes:
    msg = wire.fetch_request(12, [], max_wait_ms=100, min_bytes=1)  # the stub never reads it
    msg.API_VERSION = 12
    return wire.encode_request(msg, correlation_id, "relay-unit")


def list_groups(correlation_id: int) -> bytes:
    msg = wire.request_class(wire.LIST_GROUPS)(version=3)
    msg.API_VERSION = 3
    return wire.encode_request(msg, correlation_id, "relay-unit")


def api_versions(correlation_id: int) -> bytes:
    return wire.encode_request(wire.api_versions_request(3), correlation_id, "relay-unit")


@asynccontextmanager
async def proxied(behaviour: Behaviour) -> AsyncIterator[tuple[trio.SocketStream, StubProxy]]:
    """A fake broker answering with ``behaviour``, one ClientConnection in front of it, and
    the client's end of that connection."""
    async with trio.open_nursery() as nursery:

        async def broker(stream: trio.SocketStream) -> None:
            reader = FrameReader(stream.socket)
            async with stream:
                with contextlib.suppress(trio.BrokenResourceError, HangUp):
                    while (request := await reader.next_frame()) is not None:
                        await behaviour(stream, struct.unpack_from(">i", request, 8)[0])

        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, broker, 0, host="127.0.0.1")
        )
        stub = StubProxy(listeners[0].socket.getsockname()[1])
        with socket.create_server(("127.0.0.1", 0)) as listener:
            client_sock = socket.create_connection(listener.getsockname())
            server_sock, _ = listener.accept()
        client = trio.SocketStream(trio.socket.from_stdlib_socket(client_sock))
        server = trio.SocketStream(trio.socket.from_stdlib_socket(server_sock))
        conn = ClientConnection(cast(Proxy, stub), server, node_id=0)
        nursery.start_soon(conn.run)
        async with client:
            yield client, stub
        with trio.fail_after(10):
            while not stub.closed:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()


async def read_answers(client: trio.SocketStream, count: int) -> list[bytes]:
    buf = FrameBuffer()
    answers: list[bytes] = []
    with trio.fail_after(30):
        while len(answers) < count:
            while len(answers) < count and (payload := buf.next_frame()) is not None:
                answers.append(payload)
            if len(answers) < count:
                chunk = await client.receive_some(65536)
                assert chunk, f"closed after {len(answers)} answers"
                buf.feed(chunk)
    return answers


async def test_streamed_answers_wait_for_a_slower_local_answer_before_them() -> None:
    async with proxied(answer_in_pieces) as (client, _):
        await client.send_all(
            fetch(1) + list_groups(2) + fetch(3) + fetch(4) + api_versions(5) + fetch(6)
        )
        answers = await read_answers(client, 6)
    assert [struct.unpack_from(">i", a)[0] for a in answers] == [1, 2, 3, 4, 5, 6]
    for i in (0, 2, 3, 5):
        assert answers[i][4:] == answer_body(i + 1)
    assert wire.decode_response(answers[1], wire.LIST_GROUPS, 3).error_code == 0
    assert wire.decode_response(answers[4], wire.API_VERSIONS, 3).error_code == 0


async def test_a_slow_client_holds_the_broker_back_and_gets_everything() -> None:
    async with proxied(answer_in_pieces) as (client, _):
        await client.send_all(fetch(1) + fetch(2) + list_groups(3) + fetch(4))
        await trio.sleep(0.5)  # the proxy cannot send: it must stop reading the broker
        buf = FrameBuffer()
        answers: list[bytes] = []
        with trio.fail_after(30):
            while len(answers) < 4:
                chunk = await client.receive_some(4096)  # and then a slow reader
                assert chunk
                buf.feed(chunk)
                while (payload := buf.next_frame()) is not None:
                    answers.append(payload)
    assert [struct.unpack_from(">i", a)[0] for a in answers] == [1, 2, 3, 4]
    assert [a[4:] for a in (answers[0], answers[1], answers[3])] == [
        answer_body(1),
        answer_body(2),
        answer_body(4),
    ]


async def test_broker_gone_mid_answer_closes_the_client(caplog: pytest.LogCaptureFixture) -> None:
    async def half_then_close(stream: trio.SocketStream, correlation_id: int) -> None:
        data = frame(struct.pack(">i", correlation_id) + answer_body(correlation_id))
        await stream.send_all(data[: len(data) // 2])
        raise HangUp

    caplog.set_level(logging.INFO, "sharegroup.proxy")
    async with proxied(half_then_close) as (client, _):
        await client.send_all(fetch(1))
        received = bytearray()
        with trio.fail_after(10):
            while chunk := await client.receive_some(65536):
                received += chunk
    assert 0 < len(received) < ANSWER_BYTES
    assert received == frame(struct.pack(">i", 1) + answer_body(1))[: len(received)]
    assert "upstream broker connection closed" in caplog.text


async def test_client_gone_mid_answer_ends_its_connection_only() -> None:
    async with proxied(answer_in_pieces) as (client, stub):
        await client.send_all(fetch(1) + fetch(2))
        await client.receive_some(65536)
        client.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    assert len(stub.closed) == 1


async def test_api_versions_reports_the_share_version_feature() -> None:
    """ApiVersions v3 carries the features: share.version as the proxy's share groups have
    it (Kafka clients and tools read the DLQ gate there); v0-2 have no feature fields."""
    async with proxied(answer_in_pieces) as (client, _):
        msg = wire.api_versions_request(2)
        await client.send_all(api_versions(1) + wire.encode_request(msg, 2, "relay-unit"))
        answers = await read_answers(client, 2)
    v3 = wire.decode_response(answers[0], wire.API_VERSIONS, 3)
    assert [(f.name, f.min_version_level, f.max_version_level) for f in v3.finalized_features] == [
        ("share.version", 2, 2)
    ]
    assert v3.finalized_features_epoch == 0
    assert wire.decode_response(answers[1], wire.API_VERSIONS, 2).error_code == 0
