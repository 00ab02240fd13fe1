"""The named conformance checks, what they cover, and how results are counted.

Every request the conformance machine sends is tagged with the checks it exercises (an
epoch-0 ShareFetch with acknowledgements exercises ``session.epoch0-acks``, a fetch after a
lock expired exercises ``lock.expiry``, ...). When the answer agrees with the model's
prediction every tag counts as a pass; when it does not, the failure is attributed to the most
specific tag and raised as that check's own exception class, so that Hypothesis shrinks and
reports each failing check separately.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    title: str
    refs: str  # items of the minimal list ("list N", docs/conformance.md), Kafka sources and tests


CHECKS: dict[str, Check] = {
    c.name: c
    for c in [
        # --- sessions (list items 1-3)
        Check(
            "session.open",
            "epoch-0 ShareFetch opens a session; next epoch is 1",
            "list 1, ShareRequestMetadata",
        ),
        Check(
            "session.epoch0-acks",
            "acknowledgements in an epoch-0 ShareFetch: top-level INVALID_REQUEST",
            "list 1, testShareFetchInitialEpochWithAcknowledgements",
        ),
        Check(
            "session.ack-epoch0",
            "ShareAcknowledge with epoch 0: INVALID_SHARE_SESSION_EPOCH",
            "list 1, testShareAcknowledgeInitialRequestError",
        ),
        Check(
            "session.epoch-mismatch",
            "wrong session epoch: INVALID_SHARE_SESSION_EPOCH",
            "testShareFetchRequestInvalidShareSessionEpoch, testShareAcknowledgeRequestInvalidShareSessionEpoch",
        ),
        Check(
            "session.not-found",
            "epoch != 0 without a session: SHARE_SESSION_NOT_FOUND",
            "testShareFetchRequestShareSessionNotFound, testShareAcknowledgeRequestShareSessionNotFound",
        ),
        Check(
            "session.incremental",
            "later epochs add (Topics) and remove (ForgottenTopicsData) partitions, fetch all "
            "session partitions, list only partitions with news",
            "list 2, ShareSessionContext, testShareFetchRequestForgetTopicPartitions",
        ),
        Check(
            "session.close",
            "epoch -1 applies acknowledgements, fetches nothing, closes the session and releases "
            "the member's records",
            "list 3, testShareSessionCloseWithShareFetch, testShareSessionCloseWithShareAcknowledge",
        ),
        Check(
            "session.connection-drop",
            "closing the connection evicts its sessions and releases the member's records",
            "ShareSessionCache, testShareSessionEvictedOnConnectionDrop",
        ),
        Check(
            "session.multi-partition",
            "one session over several partitions; MaxRecords shared by all of them",
            "DelayedShareFetch, testShareFetchRequestSuccessMultiplePartitions",
        ),
        # --- where a share partition starts and how it follows the log (SharePartition)
        Check(
            "init.auto-offset-reset",
            "a new share partition starts at share.auto.offset.reset: earliest, latest "
            "(also when unset) or by_duration",
            "SharePartition, testMaybeInitializeDefaultStartEpochGroupConfigReturnsEarliest/Latest/ByDuration",
        ),
        Check(
            "log-start.move",
            "after DeleteRecords the share partition moves to the log start: records below it "
            "are never delivered again, acknowledgements below it are skipped",
            "SharePartition, testLsoMovementForArchivingBatches, testAcknowledgeBatchPostLsoMovement",
        ),
        # --- acquisition (SharePartition.acquire; list items 4, 8, 9)
        Check(
            "acquire.batch-optimized",
            "batch_optimized acquisition: whole log batches (may exceed MaxRecords), "
            "AcquiredRecords cut near BatchSize at batch boundaries",
            "list 8, SharePartition.acquire, testAcquireWithMaxFetchRecords, testAcquireWithBatchSizeAndMultipleBatches",
        ),
        Check(
            "acquire.record-limit",
            "record_limit acquisition: at most MaxRecords, over as many ranges as needed; the rest stays available",
            "list 8, KIP-1206, testAcquireSingleBatchInRecordLimitMode",
        ),
        Check(
            "acquire.max-records",
            "MaxRecords smaller than what is acquirable",
            "SharePartition.acquire, testShareFetchRequestWithMaxRecordsAndBatchSize",
        ),
        Check(
            "acquire.delivery-count",
            "delivery count 1 on first acquisition, +1 per re-acquisition; archived at the limit",
            "list 4, SharePartition.acquire, testMaxDeliveryCountLimitExceededForRecordBatch",
        ),
        Check(
            "acquire.in-flight-limit",
            "at share.partition.max.record.locks no new records are acquired; re-delivery inside "
            "the window still is",
            "list 9, testAcquireWithMaxInFlightRecordsAndTryAcquireNewBatch",
        ),
        Check(
            "acquire.throttling",
            "records near the delivery limit are handed out in smaller groups, the last "
            "attempt alone",
            "KAFKA-17541, testAcquireRecordsHalvesBatchSizeOnEachFailureUntilSingleRecordOnLastAttempt",
        ),
        Check(
            "acquire.sharing",
            "members of one group get disjoint records of a partition",
            "testShareFetchRequestSuccessfulSharingBetweenMultipleConsumers",
        ),
        Check(
            "records.delivered",
            "the Records of a response hold every acquired record",
            "list 10, ShareFetchResponse.json",
        ),
        # --- acknowledgement (SharePartition.acknowledge; list items 5, 7)
        Check(
            "ack.accept",
            "ACCEPT is terminal (not redelivered), SPSO moves over terminal prefix",
            "list 5, testShareAcknowledgeRequestSuccessAccept",
        ),
        Check(
            "ack.release",
            "RELEASE makes records available again (redelivered with count+1)",
            "list 5, testShareAcknowledgeRequestSuccessRelease",
        ),
        Check(
            "ack.reject", "REJECT is terminal", "list 5, testShareAcknowledgeRequestSuccessReject"
        ),
        Check("ack.gap", "GAP is terminal", "list 5, testAckTypeToRecordStateMapping"),
        Check(
            "ack.per-offset",
            "one acknowledge type per offset",
            "testAcknowledgeMultipleRecordBatchWithGapOffsets",
        ),
        Check(
            "ack.piggybacked",
            "acknowledgements carried by ShareFetch",
            "testShareFetchRequestPiggybackedAccept/Release/Reject",
        ),
        Check(
            "ack.ownership",
            "acknowledging another member's records: INVALID_RECORD_STATE, nothing applied",
            "list 7, testAcknowledgeWithAnotherMember, testAcknowledgeRollbackWithFullBatchError",
        ),
        Check(
            "ack.not-acquired",
            "acknowledging records that are not acquired (available, terminal): "
            "INVALID_RECORD_STATE",
            "testAcknowledgeWhenOffsetNotAcquired",
        ),
        Check(
            "ack.out-of-range",
            "acknowledging beyond the fetched offsets: INVALID_REQUEST",
            "testAcknowledgeOutOfRangeCachedData, testAcknowledgeOutOfRangeCachedDataFirstBatch",
        ),
        Check(
            "ack.malformed",
            "malformed acknowledgement batches (order, type count, type value): INVALID_REQUEST",
            "KafkaApis.validateAcknowledgementBatches, testInvalidAcknowledgeTypeInBatchAcknowledgement",
        ),
        Check(
            "ack.renew",
            "RENEW keeps records acquired and restarts the lock (IsRenewAck)",
            "KIP-1222, testRenewAcknowledgeWithCompleteBatchAck",
        ),
        # --- time (acquisition locks; list item 6)
        Check(
            "lock.expiry",
            "after AcquisitionLockTimeoutMs records are available again (same count); "
            "acknowledging them fails with INVALID_RECORD_STATE",
            "list 6, testAcquisitionLockForAcquiringSingleRecord, "
            "testAcknowledgeAfterAcquisitionLockTimeout",
        ),
        Check(
            "lock.timeout-field",
            "AcquisitionLockTimeoutMs is the group's lock duration (0 with a top-level error)",
            "ShareFetchResponse.json, testScheduleAcquisitionLockTimeoutValueFromGroupConfig",
        ),
        # --- configs (GroupConfig)
        Check(
            "config.dynamic",
            "share.delivery.count.limit and share.partition.max.record.locks changed while running",
            "testDynamicDeliveryCountDecreaseCausesArchival, testDynamicPartitionMaxRecordLocksDecrease",
        ),
        # --- membership (GroupMetadataManager.shareGroupHeartbeat)
        Check(
            "member.join",
            "ShareGroupHeartbeat epoch 0 joins; epoch -1 leaves",
            "GroupMetadataManager.shareGroupHeartbeat, ShareGroupHeartbeatRequestTest",
        ),
        Check(
            "member.errors",
            "unknown member: UNKNOWN_MEMBER_ID; wrong epoch: FENCED_MEMBER_EPOCH",
            "GroupMetadataManager.shareGroupHeartbeat, testFencedMemberCanRejoinWithEpochZero",
        ),
        # --- dead-letter queue (KIP-1191; targets with share.version >= 2)
        Check(
            "dlq.reject",
            "a REJECTed record is written to the group's DLQ topic once, with the cause "
            "'Offset rejected by client.' and its delivery count",
            "KIP-1191, InFlightState.tryUpdateState, ShareGroupDLQManager.CLIENT_REJECT",
        ),
        Check(
            "dlq.delivery-limit",
            "a record released, expired or left by its member at the delivery limit is written "
            "to the DLQ topic once, with the cause 'Offset delivery count exceeded the threshold.'",
            "KIP-1191, SharePartition, ShareGroupDLQManager.DELIVERY_COUNT_EXCEEDED",
        ),
        Check(
            "dlq.record",
            "a DLQ record: Kafka's six __dlq.errors.* headers in order, partition = source "
            "partition mod DLQ partitions, key and value only with "
            "errors.deadletterqueue.copy.record.enable, the source headers never",
            "ShareGroupDLQStateManager.headers, topicProduceData",
        ),
        Check(
            "dlq.gap",
            "records acknowledged with GAP, and records archived without a DLQ cause, are "
            "never dead-lettered",
            "KIP-1191, InFlightState.tryUpdateState",
        ),
        Check(
            "dlq.share-version",
            "below share.version=2 a group's DLQ topic is kept as a config and nothing is "
            "dead-lettered",
            "KIP-1191, SharePartition.isDLQEnabledForGroup, ShareVersion.SV_2",
        ),
        # --- the protocol itself
        Check(
            "protocol.answer",
            "every request gets a well-formed answer on an open connection",
            "the share APIs' message schemas (ShareFetchRequest.json, ...)",
        ),
    ]
}


class ConformanceFailure(AssertionError):
    """A target's answer that differs from the model's prediction."""

    check = ""

    def __init__(self, message: str, steps: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.steps = list(steps or [])


_FAILURE_CLASSES: dict[str, type[ConformanceFailure]] = {}


def failure_class(check: str) -> type[ConformanceFailure]:
    """One exception class per check: Hypothesis tells failures apart by their type."""
    cls = _FAILURE_CLASSES.get(check)
    if cls is None:
        name = "Failure_" + check.replace(".", "_").replace("-", "_")
        cls = type(name, (ConformanceFailure,), {"check": check})
        _FAILURE_CLASSES[check] = cls
    return cls


@dataclass(slots=True)
class Stats:
    """Counters shared by every example of one run."""

    passed: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    examples: int = 0
    steps: int = 0
    inconclusive: int = 0
    known: Counter[str] = field(default_factory=Counter)  # tolerated known differences

    def merge(self, other: Stats) -> None:
        self.passed.update(other.passed)
        self.failed.update(other.failed)
        self.known.update(other.known)
        self.examples += other.examples
        self.steps += other.steps
        self.inconclusive += other.inconclusive
