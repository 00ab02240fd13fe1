"""The typed values that go in and out of the core: decoded requests, what the core asks a
driver to do (log reads, initializations), what the driver reports back, and the answers.

``P`` is the driver's handle of one record batch's bytes (a memoryview of an upstream Fetch
answer in the proxy, an in-memory batch in the simulator): the core never looks inside it, it
only chooses which of them an answer carries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Generic, TypeVar
from uuid import UUID

from model import AckBatch, AcquiredRecords, AcquireMode, ErrorCode, HeartbeatResult, LogBatch
from sharegroup.engine import Change, PartitionKey

P = TypeVar("P")
TopicPartition = tuple[UUID, int]


# ---------------------------------------------------------------------- requests
@dataclass(frozen=True, slots=True)
class ShareFetchRequest:
    """A decoded ShareFetch. ``partitions`` are the request's topic-partitions in request
    order, each with its piggy-backed acknowledgement batches (possibly none). ``renew`` is
    IsRenewAck (false below version 2); ``mode`` is ShareAcquireMode (batch_optimized below
    version 2)."""

    group_id: str | None
    member_id: str
    epoch: int
    partitions: tuple[tuple[TopicPartition, tuple[AckBatch, ...]], ...]
    forget: tuple[TopicPartition, ...] = ()
    max_wait_ms: int = 0
    min_bytes: int = 1
    max_bytes: int = 52_428_800
    max_records: int = 500
    batch_size: int = 500
    mode: AcquireMode | None = AcquireMode.BATCH_OPTIMIZED  # None: a value Kafka does not know
    renew: bool = False


@dataclass(frozen=True, slots=True)
class ShareAcknowledgeRequest:
    """A decoded ShareAcknowledge. ``renew`` is IsRenewAck: None when the request carried an
    invalid value (refused with INVALID_REQUEST)."""

    group_id: str | None
    member_id: str
    epoch: int
    partitions: tuple[tuple[TopicPartition, tuple[AckBatch, ...]], ...]
    renew: bool | None = False


@dataclass(frozen=True, slots=True)
class HeartbeatRequest:
    """A decoded ShareGroupHeartbeat, with who sent it (for ShareGroupDescribe)."""

    group_id: str
    member_id: str
    member_epoch: int
    subscribed_topic_names: tuple[str, ...] | None = None
    rack_id: str | None = None
    client_id: str = ""
    client_host: str = ""


# ---------------------------------------------------------------------- asks and reports
@dataclass(frozen=True, slots=True)
class Refused:
    """The whole request is refused (a top-level error). The driver answers after ``delay_ms``
    (SHARE_SESSION_LIMIT_REACHED waits MaxWaitMs, as Kafka does, so a client that keeps asking
    does not spin)."""

    code: ErrorCode
    message: str
    delay_ms: int = 0


@dataclass(frozen=True, slots=True)
class AckOutcome:
    """One partition's acknowledgements: the error code for the answer, and the change to
    persist when they were applied. ``refused_by_model`` is set when the model refused them
    (the partition's state is unchanged), so a driver may log or trace the batches."""

    tp: TopicPartition
    batches: tuple[AckBatch, ...]
    code: ErrorCode
    message: str | None
    change: Change | None
    refused_by_model: bool = False


class FetchAction(Enum):
    """What a ShareFetch does after its acknowledgements."""

    CLOSE = "close"  # epoch -1: persist, close the session, answer
    ACKS_ONLY = "acks-only"  # renew-only, MaxRecords 0 or MaxBytes 0: persist and answer
    FETCH = "fetch"  # acquire records (while the acknowledgements are being persisted)


@dataclass(frozen=True, slots=True)
class InitNeed:
    """A share partition of the session that does not exist yet: the driver creates it from
    its durable state, or else at the start offset ``reset`` gives (``earliest``, ``latest``
    or ``by_duration:<ISO-8601 duration>``)."""

    key: PartitionKey
    topic: str
    reset: str


@dataclass(frozen=True, slots=True)
class LogRead:
    """Read record batches of one partition's log from ``offset``, about ``max_bytes`` (the
    first batch whole even when larger), at ``isolation`` (0 read_uncommitted, 1
    read_committed)."""

    key: PartitionKey
    topic: str
    offset: int
    max_bytes: int
    isolation: int


@dataclass(frozen=True, slots=True)
class Batches(Generic[P]):
    """A log read's whole record batches in offset order, each with the driver's handle of
    its bytes; ``aborted`` in a LogBatch marks a batch read_committed skips."""

    batches: tuple[tuple[LogBatch, P], ...]
    high_watermark: int = -1


@dataclass(frozen=True, slots=True)
class OutOfRange:
    """OFFSET_OUT_OF_RANGE: the log no longer holds the offset. ``log_start`` is -1 when the
    answer did not tell it (Kafka answers -1 there)."""

    log_start: int
    high_watermark: int = -1


@dataclass(frozen=True, slots=True)
class ReadFailed:
    """The read failed: the partition's answer carries ``code``."""

    code: ErrorCode | int
    message: str


@dataclass(frozen=True, slots=True)
class NoAnswer:
    """The log answered without the partition."""


ReadResult = Batches[P] | OutOfRange | ReadFailed | NoAnswer


@dataclass(frozen=True, slots=True)
class LogStartNeeded:
    """An out-of-range read did not say where the log starts: the driver asks the log and
    reports it with ``PartitionRead.on_log_start``."""

    key: PartitionKey
    topic: str


# ---------------------------------------------------------------------- outcomes
@dataclass(frozen=True, slots=True)
class Acquired(Generic[P]):
    """Records acquired at one partition, and the batches the answer returns for them."""

    records: tuple[AcquiredRecords, ...]
    count: int
    payloads: tuple[P, ...]
    lock_deadline_ms: int


@dataclass(frozen=True, slots=True)
class NoRecords:
    """Nothing acquired at one partition. ``wait_for_log``: the log has nothing new past what
    the share partition has seen, so a waiting fetch watches the log (a long poll upstream);
    otherwise only a change of the share partition's state can give records."""

    wait_for_log: bool = False
    log_start_moved: bool = False  # the driver drops what it holds below the new log start


@dataclass(frozen=True, slots=True)
class PartitionFailed:
    """The partition is answered with an error instead of records."""

    code: ErrorCode | int
    message: str


Outcome = Acquired[P] | NoRecords | PartitionFailed


# ---------------------------------------------------------------------- answers
@dataclass(slots=True)
class PartitionAnswer(Generic[P]):
    """One partition of a ShareFetch or ShareAcknowledge answer. ``ack_code`` None: no
    acknowledgement result (the wire's 0)."""

    topic_id: UUID
    partition: int
    code: ErrorCode | int = ErrorCode.NONE
    message: str | None = None
    ack_code: ErrorCode | None = None
    ack_message: str | None = None
    acquired: tuple[AcquiredRecords, ...] = ()
    payloads: tuple[P, ...] = ()


@dataclass(slots=True)
class FetchAnswer(Generic[P]):
    """A ShareFetch answer: the partitions it lists, in order."""

    partitions: list[PartitionAnswer[P]] = field(default_factory=list)
    lock_timeout_ms: int = 0

    def by_topic(self) -> dict[UUID, list[PartitionAnswer[P]]]:
        out: dict[UUID, list[PartitionAnswer[P]]] = {}
        for p in self.partitions:
            out.setdefault(p.topic_id, []).append(p)
        return out


@dataclass(slots=True)
class AckAnswer:
    """A ShareAcknowledge answer: one entry per acknowledged partition, in request order."""

    partitions: list[PartitionAnswer[None]] = field(default_factory=list)
    lock_timeout_ms: int = 0

    def by_topic(self) -> dict[UUID, list[PartitionAnswer[None]]]:
        out: dict[UUID, list[PartitionAnswer[None]]] = {}
        for p in self.partitions:
            out.setdefault(p.topic_id, []).append(p)
        return out


@dataclass(frozen=True, slots=True)
class HeartbeatAnswer:
    """A ShareGroupHeartbeat answer: ``result`` (None when refused with ``error``), and the
    share partitions of a new assignment the driver creates before the member fetches them."""

    result: HeartbeatResult | None
    error: Refused | None = None
    initialize: tuple[InitNeed, ...] = ()


@dataclass(frozen=True, slots=True)
class DescribedMember:
    member_id: str
    rack_id: str | None
    member_epoch: int
    client_id: str
    client_host: str
    subscribed_topic_names: tuple[str, ...]
    assignment: tuple[tuple[UUID, str, tuple[int, ...]], ...]  # topic id, name, partitions


@dataclass(frozen=True, slots=True)
class DescribedGroup:
    """One group of a ShareGroupDescribe answer (``error`` set for an unknown group)."""

    group_id: str
    error: ErrorCode = ErrorCode.NONE
    message: str | None = None
    state: str = "Dead"
    group_epoch: int = -1
    assignment_epoch: int = -1
    assignor: str = ""
    members: tuple[DescribedMember, ...] = ()
