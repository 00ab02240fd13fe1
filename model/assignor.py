"""The simple share-group assignor as a pure function (Kafka's share ``SimpleAssignor``).

Balance first: with M subscribers and P partitions of a topic, M <= P gives each partition to
one member, spread so members differ by at most one partition; M > P gives every member one
partition and every partition ceil(M/P) or floor(M/P) members (a partition may be shared).
Deterministic: the same members and topics always give the same assignment.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

Assignment = dict[str, dict[str, tuple[int, ...]]]  # member -> topic -> partitions


def assign(
    subscriptions: Mapping[str, Sequence[str]], partition_counts: Mapping[str, int]
) -> Assignment:
    """Assign the partitions of every subscribed topic that exists (``partition_counts``)."""
    members = sorted(subscriptions)
    result: Assignment = {m: {} for m in members}
    load = dict.fromkeys(members, 0)
    topics = sorted({t for m in members for t in subscriptions[m] if t in partition_counts})
    for topic in topics:
        subscribers = [m for m in members if topic in subscriptions[m]]
        count = partition_counts[topic]
        if count <= 0:
            continue
        chosen: dict[str, list[int]] = {}
        if len(subscribers) > count:
            # Every subscriber gets one partition; each partition is shared by ceil(M/P) at most.
            order = sorted(subscribers, key=lambda m: (load[m], m))
            for i, member in enumerate(order):
                chosen.setdefault(member, []).append(i % count)
        else:
            for partition in range(count):
                member = min(subscribers, key=lambda m: (load[m], m))
                chosen.setdefault(member, []).append(partition)
                load[member] += 1
        for member, partitions in chosen.items():
            if len(subscribers) > count:
                load[member] += len(partitions)
            result[member][topic] = tuple(sorted(partitions))
    return result
