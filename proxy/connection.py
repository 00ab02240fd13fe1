"""One client connection: frames in, answers out, in order.

Each request is either answered by the proxy (ApiVersions, the share APIs), relayed to the
upstream broker this proxy port stands for and its answer rewritten (Metadata, FindCoordinator,
DescribeCluster), or relayed byte for byte. Answers go back in request order, as a Kafka broker
sends them, through a queue of *slots*: each request gets a slot when it arrives, and the writer
task waits for slots in order.

A relayed answer that is not in yet when it is read (a Fetch answer of several megabytes) is not
assembled: once the writer has reached its slot, the upstream reader itself passes the answer on
to the client as its bytes arrive and then marks the slot sent, so the client starts receiving
while the broker is still sending. Until the writer gets there the upstream reader waits and the
broker's bytes wait in the socket; nothing an earlier slot waits for depends on this connection's
upstream reader.

A client connection gets its own upstream connection, so relayed requests keep their correlation
ids and their order without any mapping. Bad input (a frame over the size limit, garbage, an API
or version nobody here speaks) closes this connection only, as Kafka does, with a log line naming
the client; an ApiVersions request of an unknown version gets UNSUPPORTED_VERSION and the list.
"""

from __future__ import annotations

import itertools
import logging
import struct
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio

from proxy import fetch_answer, wire
from proxy.client_auth import (
    ROUNDS,
    SASL_AUTHENTICATE,
    SASL_HANDSHAKE,
    AuthRefused,
    ClientAuth,
)
from proxy.fetch_answer import Buffer
from proxy.framing import FrameError
from proxy.internal_topic import GUARDED
from proxy.rewrite import rewrite_describe_cluster, rewrite_find_coordinator, rewrite_metadata
from proxy.streams import (
    FrameReader,
    SendFailed,
    TruncatedFrame,
    close_quietly,
    raw_socket,
    send_nowait,
    send_parts,
)
from proxy.upstream import UpstreamError, open_stream

if TYPE_CHECKING:
    from proxy.server import Proxy

log = logging.getLogger("sharegroup.proxy")

_connection_ids = itertools.count(1)
REWRITTEN = {wire.METADATA, wire.FIND_COORDINATOR, wire.DESCRIBE_CLUSTER}


class CloseConnection(Exception):
    """Stop serving this client (after logging why)."""


_CID = struct.Struct(">i")
CREATE_ACLS, DELETE_ACLS = 30, 31
TLS_HANDSHAKE_TIMEOUT_S = 30.0
# Enough of a request to read its header and, for Produce, the transactional id and acks.
_HEAD_BYTES = 1 << 16


class _Lazy:
    """The body of a request without its size prefix, copied only if someone needs it."""

    __slots__ = ("_bytes", "framed")

    def __init__(self, framed: bytearray) -> None:
        self.framed = framed
        self._bytes: bytes | None = None

    def body(self) -> bytes:
        if self._bytes is None:
            self._bytes = bytes(memoryview(self.framed)[4:])
        return self._bytes

    def head(self) -> bytes:
        return bytes(memoryview(self.framed)[4 : 4 + _HEAD_BYTES])


class Slot:
    """The place of one answer in the reply order: ``set`` with the whole answer (or None:
    close the connection here) for the writer to send, or ``set_streamed`` once the upstream
    reader has sent the answer itself, in its turn (see ``ClientConnection._writer``)."""

    __slots__ = ("data", "event", "sent", "streamed", "turn")

    def __init__(self) -> None:
        self.event = trio.Event()
        # One buffer, or a list of buffers written in order (a ShareFetch answer's parts).
        self.data: bytes | bytearray | list[Buffer] | None = None
        self.streamed = False
        self.turn: trio.Event | None = None  # set by the writer when it reaches this slot
        self.sent: trio.Event | None = None  # set by the writer once it has sent the answer

    def set(self, data: bytes | bytearray | list[Buffer] | None) -> None:
        self.data = data
        self.event.set()

    def set_streamed(self) -> None:
        self.streamed = True
        self.event.set()


async def _after_answer(slot: Slot, then: Callable[[], None]) -> None:
    await slot.event.wait()
    then()


class ClientConnection:
    def __init__(self, proxy: Proxy, stream: trio.abc.Stream, node_id: int) -> None:
        self.proxy = proxy
        self.stream = stream
        # The client's socket when its bytes are read and written directly; None under TLS,
        # where they go through the SSLStream (and large answers are relayed a bufferful at a
        # time instead of with splice).
        self.sock = raw_socket(stream)
        self.node_id = node_id
        self.id = next(_connection_ids)
        transport = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream
        self.peer_host = "?"
        try:
            assert isinstance(transport, trio.SocketStream)
            host, port, *_ = transport.socket.getpeername()
            self.peer = f"{host}:{port}"
            self.peer_host = str(host)
        except (OSError, AssertionError):
            self.peer = "?"
        self.client_id = ""
        # The principal (User:name): from the client's SASL exchange the upstream accepted.
        self.auth = ClientAuth(proxy.config.listener.sasl)
        # The share-session partitions of each (group, member) on this connection, for the
        # authorizer (proxy.authz), which keeps those the client may not READ out of the
        # share service's session and answers them with 29.
        self.share_sessions: dict[tuple[Any, Any], Any] = {}
        self._last_words: Slot | None = None  # an answer to send before closing
        self._upstream: trio.abc.Stream | None = None
        self._upstream_sock: trio.socket.SocketType | None = None
        self._pending: deque[tuple[Slot, wire.RequestHead]] = deque()
        # The key of each FindCoordinator v0-3 in flight (its answer does not name it), for
        # the fleet's router: correlation id -> key.
        self._coordinator_keys: dict[int, str] = {}
        # The slot the writer has reached: everything before it has been sent, and nothing
        # more will be until its event is set.
        self._turn: Slot | None = None

    def describe(self) -> str:
        who = f"client {self.peer}"
        if self.client_id:
            who += f" ({self.client_id})"
        if self.auth.sasl and self.auth.principal is not None:
            who += f" as {self.auth.principal}"
        return f"{who} on node {self.node_id} port"

    async def run(self) -> None:
        if isinstance(self.stream, trio.SSLStream) and not await self._handshake(self.stream):
            await close_quietly(self.stream)
            return
        send, receive = trio.open_memory_channel[Slot](self.proxy.config.max_in_flight_requests)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer, receive, nursery.cancel_scope)
                try:
                    await self._reader(send, nursery)
                except CloseConnection as bad:
                    # Bad input: read no further, but answer the requests before it, as Kafka
                    # does (it reads a request only once the one before has been answered).
                    # The writer cancels the nursery when it reaches the closing slot.
                    log.warning("closing connection of %s: %s", self.describe(), bad)
                    closing = Slot()
                    closing.set(None)
                    await send.send(closing)
                    await trio.sleep_forever()
                finally:
                    send.close()
                # The client is gone: nothing can be answered any more, so stop waiting for
                # long polls and let connection_closed release what this client held.
                nursery.cancel_scope.cancel()
        except* CloseConnection as closed:
            for reason in closed.exceptions:
                log.warning("closing connection of %s: %s", self.describe(), reason)
        except* UpstreamError as lost:
            for problem in lost.exceptions:
                log.warning("closing connection of %s: upstream: %s", self.describe(), problem)
        except* (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            with trio.CancelScope(shield=True):
                await self.proxy.connection_closed(self)
                if self._upstream is not None:
                    await close_quietly(self._upstream)
                await close_quietly(self.stream)

    async def _handshake(self, stream: trio.SSLStream[trio.abc.Stream]) -> bool:
        """The TLS handshake of a client; False (logged) when it fails, e.g. for a client
        speaking plaintext to a TLS listener or one without a required certificate."""
        with trio.move_on_after(TLS_HANDSHAKE_TIMEOUT_S):
            try:
                await stream.do_handshake()
            except (trio.BrokenResourceError, trio.ClosedResourceError) as e:
                cause = e.__cause__ or e
                log.info("TLS handshake with %s failed: %s", self.describe(), cause)
                return False
            return True
        log.info("TLS handshake with %s timed out", self.describe())
        return False

    async def _reader(self, send: trio.MemorySendChannel[Slot], nursery: trio.Nursery) -> None:
        reader = FrameReader(
            self.sock if self.sock is not None else self.stream, self.proxy.config.max_frame_bytes
        )
        while True:
            try:
                framed = await reader.next_frame()
            except TruncatedFrame as e:
                log.info("%s closed mid-frame (%d bytes pending)", self.describe(), e.pending)
                return
            except FrameError as e:
                raise CloseConnection(str(e)) from e
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                return
            if framed is None:
                return
            slot = await self._dispatch(framed, nursery)
            if slot is not None:
                try:
                    send.send_nowait(slot)  # without a trip through the scheduler
                except trio.WouldBlock:
                    await send.send(slot)  # max_in_flight_requests answers are pending
            if reader.buffered:
                # More requests are in already: let other tasks run before reading them (a
                # reader that finds nothing waits, which lets them run anyway).
                await trio.lowlevel.checkpoint()

    async def _writer(
        self, receive: trio.MemoryReceiveChannel[Slot], scope: trio.CancelScope
    ) -> None:
        async for slot in receive:
            self._turn = slot
            if slot.turn is not None:
                slot.turn.set()  # the upstream reader is waiting to stream this answer
            await slot.event.wait()
            if slot.streamed:
                continue  # sent by the upstream reader
            if slot.data is None:
                scope.cancel()
                return
            try:
                if isinstance(slot.data, list):
                    await send_parts(self.sock, self.stream, slot.data)
                else:
                    sent = send_nowait(self.sock, slot.data)
                    if sent < len(slot.data):
                        with memoryview(slot.data) as view:
                            await self.stream.send_all(view[sent:])
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                scope.cancel()
                return
            if slot.sent is not None:
                slot.sent.set()

    # ------------------------------------------------------------------ routing
    async def _dispatch(self, framed: bytearray, nursery: trio.Nursery) -> Slot | None:
        """Route one request. ``framed`` still has its size prefix: relayed requests go out
        as they came, and only the requests the proxy decodes are copied."""
        try:
            head = wire.peek_head(framed, 4)
        except FrameError as e:
            raise CloseConnection(str(e)) from e
        payload = _Lazy(framed)
        key, version = head.api_key, head.api_version
        if key == wire.API_VERSIONS:
            slot = Slot()
            slot.set(await self._api_versions(payload.body(), head))
            return slot
        try:
            self.auth.gate(key)
        except AuthRefused as e:
            raise CloseConnection(str(e)) from e
        share = self.proxy.share_handler
        if share is not None and key in share.api_keys:
            low, high = share.api_keys[key]
            if not low <= version <= high:
                raise CloseConnection(f"unsupported version {version} of API {key}")
            request = self._decode(payload.body(), head)
            slot = Slot()
            nursery.start_soon(self._answer_locally, share, request, head, slot)
            return slot
        advertised = self.proxy.advertised_versions(self.node_id)
        if key not in advertised:
            raise CloseConnection(f"API key {key} is not supported here")
        low, high = advertised[key]
        if not low <= version <= high:
            raise CloseConnection(f"unsupported version {version} of API key {key}")
        local = self.proxy.local_handlers.get(key)
        if local is not None:
            request = self._decode(payload.body(), head)
            slot = Slot()
            nursery.start_soon(self._answer_with, local, request, head, slot)
            return slot
        if key in (SASL_HANDSHAKE, SASL_AUTHENTICATE):
            refusal = self._sasl_request(self._decode(payload.body(), head), head)
            if refusal is not None:
                return refusal
        if not self.client_id:
            self._learn_client_id(payload.head(), head)
        try:
            expects = key != wire.PRODUCE or wire.produce_expects_response(payload.head(), head)
        except FrameError as e:
            raise CloseConnection(str(e)) from e
        guard = self.proxy.internal_topic
        if guard is not None and key in GUARDED and guard.may_name(framed, key, version):
            refusal = guard.refusal(key, version, self._decode(payload.body(), head))
            if refusal is not None:
                if not expects:  # acks=0: no answer to carry the error, so close, as Kafka does
                    raise CloseConnection(f"acks=0 Produce to the internal topic {guard.name}")
                slot = Slot()
                slot.set(wire.encode_response(refusal, head.correlation_id))
                return slot
        relay_slot = Slot() if expects else None
        if key == wire.FIND_COORDINATOR and version < 4 and self.proxy.router is not None:
            request = self._decode(payload.body(), head)
            self._coordinator_keys[head.correlation_id] = request.key or ""
        if key == wire.DELETE_RECORDS and share is not None:
            # Share partitions' read-ahead may hold records this deletes: drop it now, and
            # again once the broker answered (a read-ahead may have raced the deletion).
            share.log_deleted()
            if relay_slot is not None:
                nursery.start_soon(_after_answer, relay_slot, share.log_deleted)
        if key in (CREATE_ACLS, DELETE_ACLS) and self.proxy.authz and relay_slot is not None:
            nursery.start_soon(_after_answer, relay_slot, self.proxy.authz.refresh_soon)
        await self._relay(framed, head, relay_slot, nursery)
        return relay_slot

    def _sasl_request(self, request: Any, head: wire.RequestHead) -> Slot | None:
        """Follow the client's SASL exchange; a slot with the answer when it is refused here
        (a mechanism the proxy cannot follow), None when it is to be relayed."""
        try:
            if head.api_key == SASL_AUTHENTICATE:
                self.auth.authenticate(request)
                return None
            error = self.auth.handshake(head.api_version, request)
        except AuthRefused as e:
            raise CloseConnection(str(e)) from e
        if not error:
            return None
        response = wire.response_class(SASL_HANDSHAKE)(
            version=head.api_version, error_code=error, mechanisms=list(ROUNDS)
        )
        slot = Slot()
        slot.set(wire.encode_response(response, head.correlation_id))
        return slot

    def _decode(self, payload: bytes, head: wire.RequestHead) -> Any:
        try:
            request = wire.decode_request(payload, head)
        except FrameError as e:
            raise CloseConnection(str(e)) from e
        if request.header is not None and request.header.client_id:
            self.client_id = request.header.client_id
        return request

    def _learn_client_id(self, payload: bytes, head: wire.RequestHead) -> None:
        try:
            self.client_id = wire.client_id_of(payload, head) or ""
        except FrameError:
            self.client_id = ""

    async def _answer_locally(
        self, share: Any, request: Any, head: wire.RequestHead, slot: Slot
    ) -> None:
        authz = self.proxy.authz
        denied = None
        if authz is not None:
            refusal, denied = authz.before(self, head.api_key, request, head.api_version)
            if refusal is not None:
                slot.set(wire.encode_response(refusal, head.correlation_id))
                return
        try:
            response = await share.handle(self, request, head)
            if authz is not None:
                response = authz.after(self, head.api_key, denied, response)
        except CloseConnection as e:
            log.warning("closing connection of %s: %s", self.describe(), e)
            slot.set(None)
            return
        if head.api_key == fetch_answer.SHARE_FETCH:
            slot.set(fetch_answer.encode_parts(response, head.correlation_id))
        else:
            slot.set(wire.encode_response(response, head.correlation_id))

    async def _answer_with(
        self, handler: Any, request: Any, head: wire.RequestHead, slot: Slot
    ) -> None:
        authz = self.proxy.authz
        try:
            refused = authz.admin.before(self, head.api_key, request) if authz else []
            response = await handler(self, request, head)
            if authz is not None:
                response = authz.admin.after(self, head.api_key, refused, response)
        except (CloseConnection, UpstreamError) as e:
            log.warning("closing connection of %s: %s", self.describe(), e)
            slot.set(None)
            return
        slot.set(wire.encode_response(response, head.correlation_id))

    async def _api_versions(self, payload: bytes, head: wire.RequestHead) -> bytes | bytearray:
        table = self.proxy.advertised_versions(self.node_id)
        top = wire.max_version(wire.API_VERSIONS) or 0
        if not 0 <= head.api_version <= top:
            # Kafka answers an unknown ApiVersions version with v0, UNSUPPORTED_VERSION and
            # the list, so that the client can pick a version it shares with us.
            resp = wire.api_versions_response(
                version=0,
                error_code=35,
                api_keys=wire.api_version_entries(table),
            )
            return wire.encode_response(resp, head.correlation_id)
        request = self._decode(payload, head)
        del request
        fields: dict[str, Any] = {}
        if head.api_version >= 3:
            # The cluster's features, with share.version as the proxy's share groups have it.
            features = self.proxy.advertised_features(self.node_id)
            fields = wire.api_versions_features(
                features.supported, features.finalized, features.epoch
            )
        resp = wire.api_versions_response(
            version=head.api_version,
            error_code=0,
            api_keys=wire.api_version_entries(table),
            throttle_time_ms=0,
            **fields,
        )
        return wire.encode_response(resp, head.correlation_id)

    # ------------------------------------------------------------------ relay
    async def _relay(
        self, framed: bytearray, head: wire.RequestHead, slot: Slot | None, nursery: trio.Nursery
    ) -> None:
        # Only the reader task sends upstream, one request after the other.
        if self._upstream is None:
            broker = self.proxy.upstream_address(self.node_id)
            try:
                # TLS as the proxy's own connections, but never with the proxy's client
                # certificate; SASL is the client's own exchange, relayed.
                self._upstream = await open_stream(
                    *broker, tls=self.proxy.config.upstream.relay_ssl_context
                )
            except (OSError, trio.TooSlowError) as e:
                raise UpstreamError(f"cannot reach broker {self.node_id} at {broker}: {e}") from e
            self._upstream_sock = raw_socket(self._upstream)
            nursery.start_soon(self._upstream_reader, self._upstream, nursery.cancel_scope)
        if slot is not None:
            self._pending.append((slot, head))
        try:
            sent = send_nowait(self._upstream_sock, framed)
            if sent < len(framed):
                with memoryview(framed) as view:
                    await self._upstream.send_all(view[sent:])
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
            raise UpstreamError(f"send to broker {self.node_id} failed: {e}") from e

    async def _upstream_reader(self, upstream: trio.abc.Stream, scope: trio.CancelScope) -> None:
        sock = raw_socket(upstream)
        reader = FrameReader(
            sock if sock is not None else upstream, self.proxy.config.max_frame_bytes
        )
        try:
            await self._relay_answers(reader)
        except SendFailed:
            scope.cancel()  # the client is gone: as the writer does
            return
        except (
            trio.BrokenResourceError,
            trio.ClosedResourceError,
            OSError,
            FrameError,
            UpstreamError,
        ) as e:
            log.info("upstream connection for %s ended: %s", self.describe(), e)
        finally:
            reader.close()
        # The broker went away (or misbehaved): the client must reconnect, as it would if the
        # broker had dropped it. Everything still waiting is answered by closing, after the
        # answer the broker sent before it closed (a failed authentication) is out.
        if self._last_words is not None and self._last_words.sent is not None:
            with trio.move_on_after(5):
                await self._last_words.sent.wait()
        for slot, _ in self._pending:
            slot.set(None)
        self._pending.clear()
        raise CloseConnection("upstream broker connection closed")

    async def _relay_answers(self, reader: FrameReader) -> None:
        """Hand each upstream answer to its slot until the upstream connection ends."""
        while (peeked := await reader.peek_frame(_CID.size)) is not None:
            size, cid = peeked
            if not self._pending:
                raise UpstreamError("an answer came for no request")
            slot, head = self._pending.popleft()
            if size < _CID.size or _CID.unpack(cid)[0] != head.correlation_id:
                raise UpstreamError("answers came out of order")
            if head.api_key in REWRITTEN:
                framed = await reader.next_frame()
                assert framed is not None  # peeked: the frame has begun
                slot.set(self._rewrite(bytes(memoryview(framed)[4:]), head))
            elif head.api_key == SASL_AUTHENTICATE:
                framed = await reader.next_frame()
                assert framed is not None
                self._sasl_answer(framed, head, slot)
            elif reader.frame_is_buffered():
                slot.set(await reader.next_frame())  # passed on untouched, size prefix and all
            else:
                # Passed on untouched too, but sent by this task as it arrives, once the
                # writer has reached this slot (earlier answers are out, later ones wait).
                if self._turn is not slot:
                    slot.turn = trio.Event()
                    await slot.turn.wait()
                await reader.relay_frame(self.sock if self.sock is not None else self.stream)
                slot.set_streamed()

    def _sasl_answer(self, framed: bytearray, head: wire.RequestHead, slot: Slot) -> None:
        """Pass a SaslAuthenticate answer on untouched, and learn from it whether the upstream
        accepted the client (and so its principal)."""
        resp = wire.decode_response(bytes(memoryview(framed)[4:]), head.api_key, head.api_version)
        if resp.error_code:
            log.info(
                "%s failed SASL authentication upstream (error %d)",
                self.describe(),
                resp.error_code,
            )
            slot.sent = trio.Event()
            self._last_words = slot
        slot.set(framed)
        try:
            self.auth.answer(resp)
        except AuthRefused as e:
            raise UpstreamError(str(e)) from e
        if self.auth.principal is not None and not resp.error_code:
            log.debug("%s authenticated as %s", self.describe(), self.auth.principal)

    def _rewrite(self, payload: bytes, head: wire.RequestHead) -> bytes | bytearray:
        resp = wire.decode_response(payload, head.api_key, head.api_version)
        proxy = self.proxy
        router = proxy.router
        if head.api_key == wire.METADATA:
            proxy.cluster.apply_metadata(resp)
            rewrite_metadata(resp, proxy.brokers, proxy.cluster.topic_id_for)
            if router is not None:
                router.metadata(resp)
        elif head.api_key == wire.FIND_COORDINATOR:
            proxy.find_coordinator_hook(resp, head)
            rewrite_find_coordinator(resp, proxy.brokers, head.api_version)
            if router is not None:
                key = self._coordinator_keys.pop(head.correlation_id, None)
                router.find_coordinator(resp, head.api_version, key)
        else:
            rewrite_describe_cluster(resp, proxy.brokers)
            if router is not None:
                router.describe_cluster(resp)
        return wire.encode_response(resp, head.correlation_id)
