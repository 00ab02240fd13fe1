"""The dead-letter-queue record of share groups as Kafka 4.4 writes it (KIP-1191).

Pure: header names and values, the DLQ partition, and reading a DLQ record's headers back.
The proxy's DLQ writer (``proxy/dlq.py``) builds records from here and ``sharegroup dlq``
reads them; both follow ``ShareGroupDLQStateManager`` in Kafka's ``server`` module:

* headers, all UTF-8 strings, in this order: ``__dlq.errors.topic`` (the source topic's name,
  or its topic id when the name is unknown), ``__dlq.errors.partition``,
  ``__dlq.errors.offset``, ``__dlq.errors.group``, ``__dlq.errors.delivery.count`` (when
  known) and ``__dlq.errors.message`` (the cause, ``ShareGroupDLQManager``'s two texts);
* key and value are the source record's only with ``errors.deadletterqueue.copy.record.enable``,
  otherwise null; the source record's headers are never copied;
* the DLQ partition is the source partition modulo the DLQ topic's partition count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from model import DlqCause

HEADER_TOPIC: Final = "__dlq.errors.topic"
HEADER_PARTITION: Final = "__dlq.errors.partition"
HEADER_OFFSET: Final = "__dlq.errors.offset"
HEADER_GROUP: Final = "__dlq.errors.group"
HEADER_DELIVERY_COUNT: Final = "__dlq.errors.delivery.count"
HEADER_MESSAGE: Final = "__dlq.errors.message"

# The header ``sharegroup dlq redrive`` puts on each record it copies back (see docs/dlq.md).
REDRIVE_MARKER: Final = "sharegroup.redrive.dlq"

CAUSE_BY_MESSAGE: Final = {c.message: c for c in DlqCause}


def dlq_headers(
    topic: str,
    partition: int,
    offset: int,
    group: str,
    delivery_count: int | None,
    cause: DlqCause | None,
) -> list[tuple[str, bytes]]:
    """The headers of one DLQ record, in Kafka's order."""
    headers = [
        (HEADER_TOPIC, topic.encode()),
        (HEADER_PARTITION, str(partition).encode()),
        (HEADER_OFFSET, str(offset).encode()),
        (HEADER_GROUP, group.encode()),
    ]
    if delivery_count is not None:
        headers.append((HEADER_DELIVERY_COUNT, str(delivery_count).encode()))
    if cause is not None:
        headers.append((HEADER_MESSAGE, cause.message.encode()))
    return headers


def dlq_partition(source_partition: int, dlq_partitions: int) -> int:
    """Where a source partition's DLQ records go (``ProduceRequestHandler``)."""
    if dlq_partitions <= 0:
        raise ValueError(f"a DLQ topic has at least one partition, not {dlq_partitions}")
    return source_partition % dlq_partitions


@dataclass(frozen=True, slots=True)
class DlqOrigin:
    """What a DLQ record's headers say about its source record."""

    topic: str
    partition: int
    offset: int
    group: str
    delivery_count: int | None
    message: str | None

    @property
    def cause(self) -> DlqCause | None:
        return CAUSE_BY_MESSAGE.get(self.message or "")


def parse_headers(headers: Sequence[tuple[str, bytes | None]] | None) -> DlqOrigin | None:
    """The origin a DLQ record names, or None when it lacks Kafka's DLQ headers."""
    found: dict[str, str] = {}
    for name, value in headers or ():
        if name.startswith("__dlq.errors.") and value is not None:
            found[name] = value.decode("utf-8", "replace")
    try:
        count = found.get(HEADER_DELIVERY_COUNT)
        return DlqOrigin(
            topic=found[HEADER_TOPIC],
            partition=int(found[HEADER_PARTITION]),
            offset=int(found[HEADER_OFFSET]),
            group=found[HEADER_GROUP],
            delivery_count=int(count) if count is not None else None,
            message=found.get(HEADER_MESSAGE),
        )
    except (KeyError, ValueError):
        return None


def validate_dlq_topic(
    group: str,
    topic: str,
    *,
    prefix: str,
    exists: bool,
    marked: bool,
    auto_create: bool,
) -> str | None:
    """Why share group ``group`` cannot write its DLQ topic, or None. The checks and their
    order are Kafka's (``ProduceRequestHandler.validateDlqTopic``), made before every write."""
    if not topic:
        return f"share group {group} has no DLQ topic (errors.deadletterqueue.topic.name)"
    if topic.startswith("__"):
        return f"share group {group}: DLQ topic {topic!r} starts with '__' (internal topics)"
    if exists and not marked:
        return (
            f"share group {group}: topic {topic!r} is not marked as a DLQ topic "
            "(errors.deadletterqueue.group.enable=true)"
        )
    if not exists and not auto_create:
        return (
            f"share group {group}: DLQ topic {topic!r} does not exist and "
            "errors.deadletterqueue.auto.create.topics.enable is false"
        )
    if prefix and not topic.startswith(prefix):
        return (
            f"share group {group}: DLQ topic {topic!r} lacks the prefix {prefix!r} "
            "(errors.deadletterqueue.topic.name.prefix)"
        )
    return None
