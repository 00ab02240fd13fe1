"""The pure state machine of Kafka share groups (KIP-932).

No I/O, no clock, no randomness: time is an argument, changes come back as values. The engine
(``sharegroup``) and the proxy drive it; property tests hold them to it.
"""

from __future__ import annotations

from model.assignor import assign
from model.config import BrokerConfig, ConfigError, GroupConfig
from model.errors import ErrorCode, ShareApiError
from model.membership import HeartbeatResult, Member, ShareGroup
from model.partition import (
    AckBatch,
    AckType,
    AcquiredRecords,
    AcquireMode,
    Acquisition,
    ArchivingRange,
    DlqCause,
    LogBatch,
    RecordState,
    SharePartition,
    StateBatch,
    StateDelta,
    ack_shape_error,
    redelivery_delay_ms,
)
from model.session import (
    FINAL_EPOCH,
    INITIAL_EPOCH,
    ClosedSession,
    SessionContext,
    ShareSession,
    ShareSessionCache,
    next_epoch,
)

__all__ = [
    "ack_shape_error",
    "FINAL_EPOCH",
    "INITIAL_EPOCH",
    "AckBatch",
    "AckType",
    "AcquireMode",
    "AcquiredRecords",
    "Acquisition",
    "ArchivingRange",
    "DlqCause",
    "BrokerConfig",
    "ClosedSession",
    "ConfigError",
    "ErrorCode",
    "GroupConfig",
    "HeartbeatResult",
    "LogBatch",
    "Member",
    "RecordState",
    "SessionContext",
    "ShareApiError",
    "ShareGroup",
    "SharePartition",
    "ShareSession",
    "ShareSessionCache",
    "StateBatch",
    "StateDelta",
    "assign",
    "next_epoch",
    "redelivery_delay_ms",
]
