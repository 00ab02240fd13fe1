"""The share-group engine core: every group, share partition and share session of a proxy.

Synchronous and I/O-free, like the model it is built on: the Trio driver in ``proxy/shares.py``
(live) and the simulator (virtual time) both call it with ``now_ms`` and do the I/O around it —
reading record batches from the log, persisting the returned deltas.

It adds to the model what spans groups and partitions: group configs (broker defaults from
``--config``, per-group overrides as Kafka's GROUP config resources), the share partitions of
each group keyed by (group, topic id, partition), share sessions per proxy node, and the
release of a member's records when its session or connection goes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from uuid import UUID

from model import (
    AckBatch,
    BrokerConfig,
    ErrorCode,
    GroupConfig,
    HeartbeatResult,
    ShareApiError,
    ShareGroup,
    SharePartition,
    ShareSessionCache,
    StateDelta,
)
from model.session import ClosedSession

PartitionKey = tuple[str, UUID, int]  # (group id, topic id, partition)


@dataclass(slots=True)
class GroupEntry:
    group: ShareGroup
    overrides: dict[str, str] = field(default_factory=dict)
    config: GroupConfig = field(default_factory=GroupConfig)
    partitions: set[tuple[UUID, int]] = field(default_factory=set)
    # Whether the group exists as Kafka's group coordinator sees it (listed, described,
    # deletable): a member joined or it has share-partition state. Configs alone, which
    # outlive a deleted group as in Kafka, do not make a group.
    exists: bool = False


@dataclass(frozen=True, slots=True)
class Change:
    """A persisted change of one share partition, for the state store and for observers."""

    key: PartitionKey
    delta: StateDelta
    cause: str  # "ack", "release", "expiry", "session-close", "log-start", "acquire"


class ShareEngine:
    def __init__(self, broker_config: BrokerConfig | None = None) -> None:
        self.broker_config = broker_config or BrokerConfig.from_mapping()
        # Whether a driver writes DLQ records (the proxy does). Without one, a group's DLQ
        # topic is accepted but records are archived directly: ARCHIVING would never end.
        self.dead_letter_queues = False
        self.groups: dict[str, GroupEntry] = {}
        self.partitions: dict[PartitionKey, SharePartition] = {}
        self.sessions: dict[int, ShareSessionCache] = {}

    @property
    def dead_letters(self) -> bool:
        """Groups with a DLQ topic dead-letter: a driver writes the records, and the emulated
        ``share.version`` is at KIP-1191's level (``SharePartition.isDLQEnabledForGroup``).
        Otherwise their DLQ configs are kept but records are archived, as Kafka 4.4 does with
        ``share.version=1``."""
        return self.dead_letter_queues and self.broker_config.dlq_supported

    # ------------------------------------------------------------------ groups and configs
    def group(self, group_id: str, *, create: bool = False) -> GroupEntry | None:
        entry = self.groups.get(group_id)
        if entry is None and create:
            config = GroupConfig.defaults(self.broker_config)
            entry = GroupEntry(self._new_group(group_id, config), {}, config)
            self.groups[group_id] = entry
        return entry

    def _new_group(self, group_id: str, config: GroupConfig) -> ShareGroup:
        return ShareGroup(
            group_id,
            max_size=self.broker_config["group.share.max.size"],
            session_timeout_ms=config.session_timeout_ms,
            heartbeat_interval_ms=config.heartbeat_interval_ms,
        )

    def group_config(self, group_id: str) -> GroupConfig:
        entry = self.groups.get(group_id)
        return entry.config if entry is not None else GroupConfig.defaults(self.broker_config)

    def set_group_configs(self, group_id: str, overrides: dict[str, str | None]) -> GroupConfig:
        """Set (value) or delete (None) group configs; validated before anything changes."""
        entry = self.group(group_id, create=True)
        assert entry is not None
        merged = dict(entry.overrides)
        for key, value in overrides.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        config = GroupConfig.defaults(self.broker_config).with_overrides(self.broker_config, merged)
        entry.overrides = merged
        entry.config = config
        entry.group.session_timeout_ms = config.session_timeout_ms
        entry.group.heartbeat_interval_ms = config.heartbeat_interval_ms
        for (g, _, _), sp in self.partitions.items():
            if g == group_id:
                sp.reconfigure(
                    delivery_count_limit=config.delivery_count_limit,
                    max_in_flight=config.partition_max_record_locks,
                    lock_duration_ms=config.record_lock_duration_ms,
                    renew_enabled=config.renew_acknowledge_enable,
                    redelivery_backoff_ms=config.redelivery_backoff_ms,
                    redelivery_backoff_max_ms=config.redelivery_backoff_max_ms,
                    dlq_enabled=config.dlq_enabled and self.dead_letters,
                )
        return config

    def heartbeat(
        self,
        group_id: str,
        member_id: str,
        member_epoch: int,
        *,
        now_ms: int,
        partition_counts: dict[str, int],
        subscribed_topic_names: Sequence[str] | None,
        rack_id: str | None = None,
        client_id: str = "",
        client_host: str = "",
    ) -> HeartbeatResult:
        if not group_id:
            raise ShareApiError(ErrorCode.INVALID_GROUP_ID, "group id must not be empty")
        entry = self.group(group_id, create=member_epoch == 0)
        if entry is None:
            raise ShareApiError(ErrorCode.GROUP_ID_NOT_FOUND, f"group {group_id} does not exist")
        result = entry.group.heartbeat(
            member_id,
            member_epoch,
            now_ms=now_ms,
            partition_counts=partition_counts,
            subscribed_topic_names=subscribed_topic_names,
            rack_id=rack_id,
            client_id=client_id,
            client_host=client_host,
        )
        entry.exists = True
        return result

    def delete_group(self, group_id: str) -> list[PartitionKey]:
        """Delete an empty share group and its share partitions (DeleteGroups); its configs
        stay, as in Kafka. Returns the share partitions dropped, whose state the caller
        deletes durably. Raises ShareApiError, with nothing changed, if the group does not
        exist or has members."""
        entry = self.groups.get(group_id)
        if entry is None or not entry.exists:
            raise ShareApiError(ErrorCode.GROUP_ID_NOT_FOUND, f"Group {group_id} not found.")
        if entry.group.members:
            raise ShareApiError(ErrorCode.NON_EMPTY_GROUP, f"Group {group_id} is not empty.")
        dropped = [key for key in self.partitions if key[0] == group_id]
        for key in dropped:
            del self.partitions[key]
        if entry.overrides:
            self.groups[group_id] = GroupEntry(
                self._new_group(group_id, entry.config), entry.overrides, entry.config
            )
        else:
            del self.groups[group_id]
        return dropped

    # ------------------------------------------------------------------ share partitions
    def share_partition(self, key: PartitionKey) -> SharePartition | None:
        return self.partitions.get(key)

    def add_partition(self, key: PartitionKey, sp: SharePartition) -> SharePartition:
        """Install a share partition built by the driver (at its start offset, or recovered)."""
        config = self.group_config(key[0])
        sp.reconfigure(
            delivery_count_limit=config.delivery_count_limit,
            max_in_flight=config.partition_max_record_locks,
            lock_duration_ms=config.record_lock_duration_ms,
            renew_enabled=config.renew_acknowledge_enable,
            redelivery_backoff_ms=config.redelivery_backoff_ms,
            redelivery_backoff_max_ms=config.redelivery_backoff_max_ms,
            dlq_enabled=config.dlq_enabled and self.dead_letters,
        )
        self.partitions[key] = sp
        entry = self.group(key[0], create=True)
        assert entry is not None
        entry.partitions.add((key[1], key[2]))
        entry.exists = True
        return sp

    def new_partition(self, key: PartitionKey, start_offset: int) -> SharePartition:
        return self.add_partition(key, SharePartition(start_offset))

    def acknowledge(
        self, key: PartitionKey, member_id: str, batches: Sequence[AckBatch], now_ms: int
    ) -> Change:
        """Apply one partition's acknowledgements; raises ShareApiError with nothing changed."""
        sp = self.partitions.get(key)
        if sp is None:
            raise ShareApiError(
                ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"no share partition {key[1]}-{key[2]} here"
            )
        # No expire_locks here: an expired lock already refuses the acknowledgement, and the
        # expiry itself is the timer's to apply and persist.
        return Change(key, sp.acknowledge(member_id, batches, now_ms=now_ms), "ack")

    def release(
        self,
        group_id: str,
        member_id: str,
        partitions: Iterable[tuple[UUID, int]],
        cause: str,
        *,
        now_ms: int | None = None,
    ) -> list[Change]:
        """Release a member's records: they are available again after the group's redelivery
        back-off (counted from ``now_ms``; none without it), or archived at the limit."""
        out = []
        for topic_id, partition in partitions:
            key = (group_id, topic_id, partition)
            sp = self.partitions.get(key)
            if sp is not None:
                delta = sp.release_member(member_id, now_ms=now_ms)
                if not delta.empty:
                    out.append(Change(key, delta, cause))
        return out

    # ------------------------------------------------------------------ sessions
    def session_cache(self, node_id: int) -> ShareSessionCache:
        cache = self.sessions.get(node_id)
        if cache is None:
            cache = ShareSessionCache(self.broker_config["group.share.max.share.sessions"])
            self.sessions[node_id] = cache
        return cache

    def close_session(
        self, node_id: int, group_id: str, member_id: str, *, now_ms: int | None = None
    ) -> list[Change]:
        closed = self.session_cache(node_id).close(group_id, member_id)
        return self._release_closed([closed] if closed else [], "session-close", now_ms)

    def connection_closed(
        self, node_id: int, connection_id: int, *, now_ms: int | None = None
    ) -> list[Change]:
        """The connection's share sessions go; their members' records are released, after
        the redelivery back-off counted from ``now_ms`` (the caller's clock)."""
        closed = self.session_cache(node_id).connection_closed(connection_id)
        return self._release_closed(closed, "connection-close", now_ms)

    def _release_closed(
        self, closed: list[ClosedSession], cause: str, now_ms: int | None
    ) -> list[Change]:
        out: list[Change] = []
        for session in closed:
            parts = [(t if isinstance(t, UUID) else UUID(str(t)), p) for t, p in session.partitions]
            out.extend(
                self.release(session.group_id, session.member_id, parts, cause, now_ms=now_ms)
            )
        return out

    # ------------------------------------------------------------------ time
    def next_deadline_ms(self) -> int | None:
        deadlines = [
            d for sp in self.partitions.values() if (d := sp.next_deadline_ms()) is not None
        ]
        deadlines += [
            d for e in self.groups.values() if (d := e.group.next_deadline_ms()) is not None
        ]
        return min(deadlines, default=None)

    def tick(self, now_ms: int, partition_counts: dict[str, int]) -> tuple[list[Change], list[str]]:
        """Expire due locks and member sessions. Returns the changes and the fenced members."""
        changes = []
        for key, sp in self.partitions.items():
            due = sp.next_deadline_ms()
            if due is not None and due <= now_ms:
                delta = sp.expire_locks(now_ms)
                if not delta.empty:
                    changes.append(Change(key, delta, "expiry"))
        fenced = []
        for group_id, entry in self.groups.items():
            due = entry.group.next_deadline_ms()
            if due is not None and due <= now_ms:
                fenced += [
                    f"{group_id}/{m}" for m in entry.group.expire_members(now_ms, partition_counts)
                ]
        return changes, fenced
