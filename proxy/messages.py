"""The share-group API messages (KIP-932): ShareGroupHeartbeat (76), ShareGroupDescribe (77),
ShareFetch (78), ShareAcknowledge (79), DescribeShareGroupOffsets (90), AlterShareGroupOffsets (91)
and DeleteShareGroupOffsets (92).

kafka-python 3 builds each class from ``proxy/schemas/<ClassName>.json`` (our own schemas, written
from the field tables of Kafka's message schemas, e.g. ``ShareFetchRequest.json``): fields become snake_case attributes, nested
structs become nested classes named after the schema type (``ShareFetchResponse.
ShareFetchableTopicResponse.PartitionData``), and ``encode``/``decode`` handle the flexible
(compact) encoding and the request header v2 / response header v1.

Declaring a response class registers it in kafka-python's ``ResponseClassRegistry`` by API key.

This module only declares classes; it must not encode, decode or hold state. Only ``proxy/wire.py``
(and tests) should import it.

Typing: mypy cannot see fields that a metaclass builds from JSON, and kafka-python's ``encode`` and
``decode`` are untyped. So under ``TYPE_CHECKING`` the names come from ``proxy/_message_types.pyi``,
a stub generated from these very classes by ``tools/gen_stubs.py`` (a unit test fails when it is
stale). There, every class derives from ``ShareMessage``, which types ``encode``/``decode``/
``with_header``; at runtime ``ShareMessage`` is simply kafka-python's ``ApiMessage``.

kafka-python accepts every version from 0 up to the maximum of ``validVersions`` (it clamps the
minimum to 0). ``valid_versions`` keeps the declared range; the caller must refuse versions below
``valid_versions[0]`` (v0 of APIs 76-79 was removed in Kafka 4.1).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kafka.protocol.api_message import ApiMessage

from proxy import schemas

__all__ = [
    "SHARE_REQUESTS",
    "SHARE_RESPONSES",
    "AlterShareGroupOffsetsRequest",
    "AlterShareGroupOffsetsResponse",
    "DeleteShareGroupOffsetsRequest",
    "DeleteShareGroupOffsetsResponse",
    "DescribeShareGroupOffsetsRequest",
    "DescribeShareGroupOffsetsResponse",
    "ShareAcknowledgeRequest",
    "ShareAcknowledgeResponse",
    "ShareFetchRequest",
    "ShareFetchResponse",
    "ShareGroupDescribeRequest",
    "ShareGroupDescribeResponse",
    "ShareGroupHeartbeatRequest",
    "ShareGroupHeartbeatResponse",
    "ShareMessage",
]

if TYPE_CHECKING:
    from proxy._message_types import (
        AlterShareGroupOffsetsRequest,
        AlterShareGroupOffsetsResponse,
        DeleteShareGroupOffsetsRequest,
        DeleteShareGroupOffsetsResponse,
        DescribeShareGroupOffsetsRequest,
        DescribeShareGroupOffsetsResponse,
        ShareAcknowledgeRequest,
        ShareAcknowledgeResponse,
        ShareFetchRequest,
        ShareFetchResponse,
        ShareGroupDescribeRequest,
        ShareGroupDescribeResponse,
        ShareGroupHeartbeatRequest,
        ShareGroupHeartbeatResponse,
        ShareMessage,
    )
else:
    ShareMessage = ApiMessage

    class ShareGroupHeartbeatRequest(ApiMessage, load_json=schemas):
        pass

    class ShareGroupHeartbeatResponse(ApiMessage, load_json=schemas):
        pass

    class ShareGroupDescribeRequest(ApiMessage, load_json=schemas):
        pass

    class ShareGroupDescribeResponse(ApiMessage, load_json=schemas):
        pass

    class ShareFetchRequest(ApiMessage, load_json=schemas):
        pass

    class ShareFetchResponse(ApiMessage, load_json=schemas):
        pass

    class ShareAcknowledgeRequest(ApiMessage, load_json=schemas):
        pass

    class ShareAcknowledgeResponse(ApiMessage, load_json=schemas):
        pass

    class DescribeShareGroupOffsetsRequest(ApiMessage, load_json=schemas):
        pass

    class DescribeShareGroupOffsetsResponse(ApiMessage, load_json=schemas):
        pass

    class AlterShareGroupOffsetsRequest(ApiMessage, load_json=schemas):
        pass

    class AlterShareGroupOffsetsResponse(ApiMessage, load_json=schemas):
        pass

    class DeleteShareGroupOffsetsRequest(ApiMessage, load_json=schemas):
        pass

    class DeleteShareGroupOffsetsResponse(ApiMessage, load_json=schemas):
        pass


# Keyed by API key, in the order of Kafka's ``ApiKeys``.
SHARE_REQUESTS: dict[int, type[ShareMessage]] = {
    76: ShareGroupHeartbeatRequest,
    77: ShareGroupDescribeRequest,
    78: ShareFetchRequest,
    79: ShareAcknowledgeRequest,
    90: DescribeShareGroupOffsetsRequest,
    91: AlterShareGroupOffsetsRequest,
    92: DeleteShareGroupOffsetsRequest,
}

SHARE_RESPONSES: dict[int, type[ShareMessage]] = {
    76: ShareGroupHeartbeatResponse,
    77: ShareGroupDescribeResponse,
    78: ShareFetchResponse,
    79: ShareAcknowledgeResponse,
    90: DescribeShareGroupOffsetsResponse,
    91: AlterShareGroupOffsetsResponse,
    92: DeleteShareGroupOffsetsResponse,
}
