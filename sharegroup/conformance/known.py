"""Known differences between the model and Apache Kafka 4.4, tolerated unless ``strict``.

Each entry is a difference found by the conformance test and documented in
docs/conformance.md ("Differences found"), where the reproduction and Kafka's source are given.
Kafka is the reference: these are to be fixed in ``model/`` (and so in the proxy); until then the
conformance machine recognises exactly these answers, counts them per id, and keeps its model
in step with what Kafka did, so that a run goes on to find other differences. Remove an entry
once the model is fixed; ``--strict`` (``strict=True``) turns all of them into failures.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class KnownDifference:
    id: str
    summary: str


KNOWN: dict[str, KnownDifference] = {
    k.id: k
    for k in [
        KnownDifference(
            "acquired-split",
            "AcquiredRecords boundaries: Kafka returns one entry per in-flight (cached) batch and "
            "merges only inside one batch; the model merges contiguous ranges with equal delivery "
            "counts across cached batches (same offsets and counts)",
        ),
        KnownDifference(
            "reacquire-cached-batch",
            "batch_optimized re-acquisition: Kafka acquires whole cached in-flight batches (one "
            "per earlier AcquiredRecords entry, or up to the end of the log batch for record_limit "
            "acquisitions), even past MaxRecords; the model stops at the end of the log batch "
            "where MaxRecords is reached",
        ),
        KnownDifference(
            "throttle-cached-batch",
            "poison-record throttling near the delivery limit: Kafka halves the size of the "
            "cached in-flight batch the records belong to, the model the AVAILABLE run that is "
            "left of it; after part of a halved batch was delivered, Kafka hands out more of "
            "that batch than the model",
        ),
        KnownDifference(
            "ack-after-log-start-move",
            "acknowledging at or past a share partition's start after DeleteRecords moved it past "
            "every cached record: Kafka answers INVALID_REQUEST (its cache still ends at the old "
            "records), the model INVALID_RECORD_STATE (nothing in flight); nothing is applied "
            "either way",
        ),
        KnownDifference(
            "kafka-error-after-log-start-move",
            "Kafka answers some acknowledgements of a partition whose log start DeleteRecords "
            "moved with a top-level UNKNOWN_SERVER_ERROR (an exception inside the broker); the "
            "model answers per partition; the example ends there",
        ),
    ]
}
