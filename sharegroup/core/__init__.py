"""The sans-I/O share-group core: every decision of ShareGroupHeartbeat, ShareGroupDescribe,
ShareFetch and ShareAcknowledge (``service``), of the offsets APIs 90-92 (``offsets``), of
GROUP config resources (``configs``) and of ListGroups, DescribeGroups and DeleteGroups for
share groups (``admin``), with no sockets, no clock and no tasks.

In the spirit of h11: a driver decodes a request into the typed values of ``messages``, hands
it to ``ShareCore`` with ``now_ms``, and the core answers with what it needs next (a log read,
share partitions to initialize, changes to persist) and finally a typed answer. The Trio proxy
(``proxy/``) and the simulator (``sharegroup/sim/``) are the two drivers; both run this code,
so the scenarios test the proxy's decisions. Layer 1: it imports ``model``, the engine
(``sharegroup.engine``, itself pure) and the standard library only.
"""

from __future__ import annotations

from sharegroup.core.messages import (
    AckAnswer,
    AckOutcome,
    Acquired,
    Batches,
    DescribedGroup,
    DescribedMember,
    FetchAction,
    FetchAnswer,
    HeartbeatAnswer,
    HeartbeatRequest,
    InitNeed,
    LogRead,
    LogStartNeeded,
    NoAnswer,
    NoRecords,
    Outcome,
    OutOfRange,
    PartitionAnswer,
    PartitionFailed,
    ReadFailed,
    ReadResult,
    Refused,
    ShareAcknowledgeRequest,
    ShareFetchRequest,
)
from sharegroup.core.service import (
    DEFAULT_MAX_RECORDS,
    PARTITION_FETCH_BYTES,
    PartitionRead,
    Round,
    ShareAcknowledge,
    ShareCore,
    ShareFetch,
    Turn,
)

__all__ = [
    "DEFAULT_MAX_RECORDS",
    "PARTITION_FETCH_BYTES",
    "AckAnswer",
    "AckOutcome",
    "Acquired",
    "Batches",
    "DescribedGroup",
    "DescribedMember",
    "FetchAction",
    "FetchAnswer",
    "HeartbeatAnswer",
    "HeartbeatRequest",
    "InitNeed",
    "LogRead",
    "LogStartNeeded",
    "NoAnswer",
    "NoRecords",
    "OutOfRange",
    "Outcome",
    "PartitionAnswer",
    "PartitionFailed",
    "PartitionRead",
    "ReadFailed",
    "ReadResult",
    "Refused",
    "Round",
    "ShareAcknowledge",
    "ShareAcknowledgeRequest",
    "ShareCore",
    "ShareFetch",
    "ShareFetchRequest",
    "Turn",
]
