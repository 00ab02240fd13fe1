"""The one adapter between the proxy and kafka-python's protocol classes.

Everything that decodes or encodes a Kafka message goes through here: kafka-python 3's
JSON-schema classes for the standard APIs, ours (``proxy.messages``) for the share APIs. The
only bytes read by hand are the fixed start of a request header (api key, version,
correlation id), which every Kafka request shares, the ``acks`` field of a Produce request,
which decides whether a response will come at all, and the few header fields of a record batch
that locate it in a Fetch answer (``scan_batches``): record batches are never decoded.
"""

from __future__ import annotations

import importlib
import io
import pkgutil
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import kafka.protocol as _kafka_protocol
from kafka.protocol.api_message import ApiMessage
from kafka.protocol.metadata import ApiVersionsRequest, ApiVersionsResponse

from proxy.framing import FrameError

_HEAD = struct.Struct(">hhi")
_HEADER_PEEK_BYTES = 4096
_INT16 = struct.Struct(">h")

PRODUCE = 0
FETCH = 1
LIST_OFFSETS = 2
METADATA = 3
FIND_COORDINATOR = 10
LIST_GROUPS = 16
API_VERSIONS = 18
DELETE_RECORDS = 21
DESCRIBE_CONFIGS = 32
INCREMENTAL_ALTER_CONFIGS = 44
DESCRIBE_CLUSTER = 60


BatchSpan = tuple[int, int, int, int, bool]


@dataclass(frozen=True, slots=True)
class RequestHead:
    api_key: int
    api_version: int
    correlation_id: int


def _all_subclasses(cls: Any) -> Iterator[Any]:
    sub: Any
    for sub in cls.__subclasses__():
        yield sub
        yield from _all_subclasses(sub)


def _load_kafka_classes() -> tuple[dict[int, type[ApiMessage]], dict[int, type[ApiMessage]]]:
    for info in pkgutil.walk_packages(_kafka_protocol.__path__, "kafka.protocol."):
        if ".old" in info.name or "generate_stubs" in info.name:
            continue
        importlib.import_module(info.name)
    requests: dict[int, type[ApiMessage]] = {}
    responses: dict[int, type[ApiMessage]] = {}
    for cls in _all_subclasses(ApiMessage):
        if getattr(cls, "_class_version", None) is not None or getattr(cls, "_json", None) is None:
            continue
        target = requests if cls.is_request() else responses
        target.setdefault(cls.API_KEY, cls)
    return requests, responses


REQUESTS, RESPONSES = _load_kafka_classes()


def register(request_cls: type[ApiMessage], response_cls: type[ApiMessage]) -> None:
    """Add our own message classes (the share APIs) to the tables."""
    REQUESTS[request_cls.API_KEY] = request_cls
    RESPONSES[response_cls.API_KEY] = response_cls


def max_version(api_key: int) -> int | None:
    cls = REQUESTS.get(api_key)
    return None if cls is None else int(cls.max_version)


def peek_head(frame: bytes | bytearray, offset: int = 0) -> RequestHead:
    """The fixed start of a request header, at ``offset`` (4 when the size prefix is there)."""
    if len(frame) - offset < _HEAD.size:
        raise FrameError(
            f"request of {len(frame) - offset} bytes is too short for a request header"
        )
    return RequestHead(*_HEAD.unpack_from(frame, offset))


def decode_request(frame: bytes, head: RequestHead) -> Any:
    """Decode a whole request (header and body) with its class; FrameError if it cannot be."""
    cls = REQUESTS.get(head.api_key)
    if cls is None:
        raise FrameError(f"no codec for API key {head.api_key}")
    try:
        msg = cls.decode(frame, version=head.api_version, header=True)
    except Exception as e:
        raise FrameError(
            f"malformed {cls.__name__} v{head.api_version}: {type(e).__name__}: {e}"
        ) from e
    _refuse_nulls(msg, cls._struct, head.api_version, cls.__name__)
    return msg


def _refuse_nulls(obj: Any, struct: Any, version: int, where: str) -> None:
    """kafka-python reads a null (length -1) into any string, bytes or array field; Kafka's
    own readers refuse one in a field that is not nullable at this version ("non-nullable
    field ... was serialized as null") and the request fails to parse. Only a field's
    nullableVersions allow it, so the handlers never meet a None where the schema has none."""
    for field in struct.fields.values():
        if not field.for_version_q(version) or field.tagged_field_q(version):
            continue
        value = getattr(obj, field.name, None)
        if value is None:
            if field.nullable_for_version_q(version):
                continue
            raise FrameError(
                f"malformed {where} v{version}: non-nullable field {field._name} was "
                "serialized as null"
            )
        if field.is_struct_array():
            for item in value:
                _refuse_nulls(item, field.array_of, version, where)
        elif field.is_array():
            if any(item is None for item in value):  # Kafka has no nullable array elements
                raise FrameError(
                    f"malformed {where} v{version}: an element of {field._name} was "
                    "serialized as null"
                )
        elif field.is_struct():
            _refuse_nulls(value, field, version, where)


def decode_response(frame: bytes | bytearray | memoryview, api_key: int, version: int) -> Any:
    """Decode a whole response (header and body); FrameError if it cannot be.

    kafka-python's ``decode(header=True)`` copies the whole frame to parse the header; a
    Fetch answer is megabytes, so the header is parsed from a copy of its first bytes only and
    the body decoded from a view of the frame."""
    cls = RESPONSES[api_key]
    try:
        view = memoryview(frame)
        head = io.BytesIO(bytes(view[:_HEADER_PEEK_BYTES]))
        header = cls.parse_header(head, version=version)
        if head.tell() >= _HEADER_PEEK_BYTES:  # tagged fields beyond the peek: never in practice
            return cls.decode(bytes(view), version=version, header=True)
        msg = cls.decode(view[head.tell() :], version=version)
        msg._header = header
        return msg
    except Exception as e:
        raise FrameError(f"malformed {cls.__name__} v{version}: {type(e).__name__}: {e}") from e


def encode_response(msg: Any, correlation_id: int) -> bytearray:
    """Frame a response object with a response header carrying ``correlation_id``. The
    encoder's own fresh bytearray is returned: a copy into bytes would cost a second
    allocation of the whole frame (megabytes for a ShareFetch answer)."""
    msg.with_header(correlation_id=correlation_id)
    data: bytearray = msg.encode(header=True, framed=True)
    return data


def encode_request(msg: Any, correlation_id: int, client_id: str) -> bytes:
    msg.with_header(correlation_id=correlation_id, client_id=client_id)
    data: bytearray = msg.encode(header=True, framed=True)
    return bytes(data)  # requests are small


def response_class(api_key: int) -> Any:
    return RESPONSES[api_key]


def request_class(api_key: int) -> Any:
    return REQUESTS[api_key]


def produce_expects_response(frame: bytes, head: RequestHead) -> bool:
    """False for a Produce request with acks=0, which gets no response."""
    cls = REQUESTS[PRODUCE]
    try:
        data = io.BytesIO(frame)
        cls.parse_header(data, version=head.api_version)
        pos = data.tell()
        if head.api_version >= 3:  # TransactionalId (nullable string) comes first
            if cls.flexible_version_q(head.api_version):
                length, pos = _read_uvarint(frame, pos)
                pos += max(length - 1, 0)
            else:
                (length,) = _INT16.unpack_from(frame, pos)
                pos += 2 + max(length, 0)
        (acks,) = _INT16.unpack_from(frame, pos)
    except Exception as e:
        raise FrameError(f"malformed Produce request: {e}") from e
    return bool(acks != 0)


def client_id_of(frame: bytes, head: RequestHead) -> str | None:
    """The client id from a request header (None when we have no class for the API)."""
    cls = REQUESTS.get(head.api_key)
    if cls is None or head.api_version > cls.max_version:
        return None
    try:
        header = cls.parse_header(io.BytesIO(frame), version=head.api_version)
    except Exception as e:
        raise FrameError(f"malformed request header: {e}") from e
    client_id: str | None = header.client_id
    return client_id


def _read_uvarint(data: bytes, pos: int) -> tuple[int, int]:
    shift = 0
    value = 0
    while True:
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7
        if shift > 35:
            raise FrameError("varint too long")


# The fields of a v2 record batch header that locating batches needs: base offset, batch
# length, magic, attributes and last offset delta (partition leader epoch and CRC skipped).
_BATCH_FIELDS = struct.Struct(">qi4xb4xhi")
_BATCH_HEADER_BYTES = 61  # the whole v2 batch header
_BATCH_LENGTH_MIN = _BATCH_HEADER_BYTES - 12  # what follows the base offset and length


def scan_batches(records: bytes | bytearray | memoryview | None) -> list[BatchSpan]:
    """(start, end, first offset, last offset, is control) of every whole v2 record batch, in
    order; stops at a partial batch (the end of a Fetch answer) or a legacy message set.

    Read straight from the bytes, five header fields a batch, nothing decoded: with small
    producer batches a 4 MiB Fetch answer holds a thousand of them."""
    out: list[BatchSpan] = []
    if not records:
        return out
    size = len(records)
    unpack = _BATCH_FIELDS.unpack_from
    pos = 0
    while pos + _BATCH_HEADER_BYTES <= size:
        base, length, magic, attributes, last_delta = unpack(records, pos)
        end = pos + 12 + length
        if end > size or length < _BATCH_LENGTH_MIN or magic != 2:
            break
        out.append((pos, end, base, base + last_delta, bool(attributes & 0x20)))
        pos = end
    return out


def fetch_request(
    version: int,
    parts: Sequence[tuple[str, int, int, int]],
    *,
    max_wait_ms: int,
    min_bytes: int,
    isolation_level: int = 0,
) -> Any:
    """A sessionless Fetch of (topic, partition, fetch offset, max bytes) entries, as a
    consumer outside any group sends it; max_bytes is the sum of the entries'."""
    cls = request_class(FETCH)
    by_topic: dict[str, list[Any]] = {}
    for topic, partition, offset, max_bytes in parts:
        by_topic.setdefault(topic, []).append(
            cls.FetchTopic.FetchPartition(
                partition=partition,
                current_leader_epoch=-1,
                fetch_offset=offset,
                last_fetched_epoch=-1,
                log_start_offset=-1,
                partition_max_bytes=max_bytes,
            )
        )
    return cls(
        version=version,
        replica_id=-1,
        max_wait_ms=max_wait_ms,
        min_bytes=min_bytes,
        max_bytes=max(sum(p[3] for p in parts), 1),
        isolation_level=isolation_level,
        session_id=0,
        session_epoch=-1,
        topics=[cls.FetchTopic(topic=t, partitions=ps) for t, ps in by_topic.items()],
        forgotten_topics_data=[],
        rack_id="",
    )


def metadata_request(version: int, topics: Sequence[str] | None) -> Any:
    """A Metadata request for ``topics`` (every topic when None) that creates none."""
    cls = request_class(METADATA)
    return cls(
        version=version,
        topics=None
        if topics is None
        else [cls.MetadataRequestTopic(name=t, topic_id=None) for t in topics],
        allow_auto_topic_creation=False,
        include_topic_authorized_operations=False,
    )


def api_versions_request(version: int = 3) -> Any:
    return ApiVersionsRequest(
        version=version, client_software_name="sharegroup", client_software_version="0.1.0"
    )


def api_versions_response(**fields: Any) -> Any:
    return ApiVersionsResponse(**fields)


def api_versions_features(
    supported: dict[str, tuple[int, int]], finalized: dict[str, tuple[int, int]], epoch: int
) -> dict[str, Any]:
    """ApiVersions v3's tagged feature fields: name -> (min, max) each."""
    sup = ApiVersionsResponse.SupportedFeatureKey
    fin = ApiVersionsResponse.FinalizedFeatureKey
    return {
        "supported_features": [
            sup(name=n, min_version=lo, max_version=hi) for n, (lo, hi) in sorted(supported.items())
        ],
        "finalized_features_epoch": epoch,
        "finalized_features": [
            fin(name=n, min_version_level=lo, max_version_level=hi)
            for n, (lo, hi) in sorted(finalized.items())
        ],
    }


def api_version_entries(table: dict[int, tuple[int, int]]) -> list[Any]:
    entry = ApiVersionsResponse.ApiVersion
    return [entry(api_key=k, min_version=v[0], max_version=v[1]) for k, v in sorted(table.items())]
