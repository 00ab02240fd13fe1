"""Share-group configuration: Kafka's names, defaults and bounds.

Broker configs as in Kafka's ``ShareGroupConfig.java`` and ``GroupCoordinatorConfig.java``;
group configs as in ``GroupConfig.java``.

Broker-level values (``group.share.*``) bound the per-group overrides (``share.*``).
Everything here is a frozen value; validation raises ``ConfigError`` naming the key.

Dead-letter queue (KIP-1191, Kafka 4.4): the group configs ``errors.deadletterqueue.topic.name``
and ``errors.deadletterqueue.copy.record.enable`` (``GroupConfig.java``) and the cluster configs
``errors.deadletterqueue.auto.create.topics.enable`` and ``errors.deadletterqueue.topic.name.prefix``
(``GroupCoordinatorConfig.java``), with Kafka's defaults. The redelivery back-off is the proxy's
own and lives in its ``sharegroup.`` namespace: ``sharegroup.share.record.redelivery.backoff.ms``
(0 = none, the default) and ``sharegroup.share.record.redelivery.backoff.max.ms``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Final


class ConfigError(ValueError):
    """A config value out of Kafka's range, or an unknown key. The message names the key."""


@dataclass(frozen=True, slots=True)
class IntRange:
    low: int
    high: int


# Broker configs: key -> (default, valid range), from ShareGroupConfig / GroupCoordinatorConfig.
BROKER_INT_CONFIGS: Final[dict[str, tuple[int, IntRange]]] = {
    "group.share.record.lock.duration.ms": (30000, IntRange(1000, 3600000)),
    "group.share.min.record.lock.duration.ms": (15000, IntRange(1000, 30000)),
    "group.share.max.record.lock.duration.ms": (60000, IntRange(30000, 3600000)),
    "group.share.delivery.count.limit": (5, IntRange(2, 10)),
    "group.share.min.delivery.count.limit": (2, IntRange(2, 5)),
    "group.share.max.delivery.count.limit": (10, IntRange(5, 25)),
    "group.share.partition.max.record.locks": (2000, IntRange(100, 10000)),
    "group.share.min.partition.max.record.locks": (100, IntRange(100, 2000)),
    "group.share.max.partition.max.record.locks": (4000, IntRange(2000, 10000)),
    "group.share.max.share.sessions": (2000, IntRange(1, 2**31 - 1)),
    "group.share.max.size": (200, IntRange(1, 1000)),
    "group.share.session.timeout.ms": (45000, IntRange(1, 2**31 - 1)),
    "group.share.min.session.timeout.ms": (45000, IntRange(1, 2**31 - 1)),
    "group.share.max.session.timeout.ms": (60000, IntRange(1, 2**31 - 1)),
    "group.share.heartbeat.interval.ms": (5000, IntRange(1, 2**31 - 1)),
    "group.share.min.heartbeat.interval.ms": (5000, IntRange(1, 2**31 - 1)),
    "group.share.max.heartbeat.interval.ms": (15000, IntRange(1, 2**31 - 1)),
    "group.share.assignment.interval.ms": (1000, IntRange(0, 15000)),
}

_TRIPLES: Final = (
    "record.lock.duration.ms",
    "delivery.count.limit",
    "partition.max.record.locks",
    "session.timeout.ms",
    "heartbeat.interval.ms",
)


DLQ_AUTO_CREATE_KEY: Final = "errors.deadletterqueue.auto.create.topics.enable"
DLQ_PREFIX_KEY: Final = "errors.deadletterqueue.topic.name.prefix"
DLQ_TOPIC_KEY: Final = "errors.deadletterqueue.topic.name"
DLQ_COPY_KEY: Final = "errors.deadletterqueue.copy.record.enable"
# The topic config that marks a topic as a DLQ topic (``TopicConfig.java``).
DLQ_TOPIC_ENABLE_KEY: Final = "errors.deadletterqueue.group.enable"
BACKOFF_KEY: Final = "sharegroup.share.record.redelivery.backoff.ms"
BACKOFF_MAX_KEY: Final = "sharegroup.share.record.redelivery.backoff.max.ms"
# The level of Kafka's ``share.version`` feature the proxy emulates (``ShareVersion.java``):
# 1 = KIP-932's share groups, 2 = with KIP-1191's dead-letter queue. A proxy config, since the
# proxy, not the upstream cluster, holds the share groups.
SHARE_VERSION_KEY: Final = "sharegroup.share.version"
SHARE_VERSION_DLQ: Final = 2  # the first level that dead-letters (``ShareVersion.SV_2``)
SHARE_VERSION_LATEST: Final = 2
BROKER_DLQ_KEYS: Final = (DLQ_AUTO_CREATE_KEY, DLQ_PREFIX_KEY, SHARE_VERSION_KEY)


def parse_bool(key: str, raw: str) -> bool:
    if raw.lower() not in ("true", "false"):
        raise ConfigError(f"{key}: {raw!r} is not true/false")
    return raw.lower() == "true"


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    """Broker-wide share-group settings (the proxy's ``--config`` values)."""

    values: dict[str, int]
    dlq_auto_create_topics_enable: bool = False
    dlq_topic_name_prefix: str = "dlq."
    share_version: int = SHARE_VERSION_LATEST

    @property
    def dlq_supported(self) -> bool:
        """Groups may dead-letter at all: ``share.version`` is at KIP-1191's level."""
        return self.share_version >= SHARE_VERSION_DLQ

    @classmethod
    def from_mapping(cls, overrides: dict[str, str] | None = None) -> BrokerConfig:
        values = {key: default for key, (default, _) in BROKER_INT_CONFIGS.items()}
        auto_create = False
        prefix = "dlq."
        share_version = SHARE_VERSION_LATEST
        for key, raw in (overrides or {}).items():
            if key == SHARE_VERSION_KEY:
                share_version = _parse_int(key, raw, IntRange(1, SHARE_VERSION_LATEST))
                continue
            if key == DLQ_AUTO_CREATE_KEY:
                auto_create = parse_bool(key, raw)
                continue
            if key == DLQ_PREFIX_KEY:
                prefix = raw
                continue
            if key not in BROKER_INT_CONFIGS:
                raise ConfigError(f"unknown share-group broker config {key!r}")
            values[key] = _parse_int(key, raw, BROKER_INT_CONFIGS[key][1])
        for name in _TRIPLES:
            low = values[f"group.share.min.{name}"]
            default = values[f"group.share.{name}"]
            high = values[f"group.share.max.{name}"]
            if not low <= default <= high:
                raise ConfigError(
                    f"group.share.{name}={default} must lie within "
                    f"group.share.min.{name}={low} and group.share.max.{name}={high}"
                )
        if values["group.share.heartbeat.interval.ms"] >= values["group.share.session.timeout.ms"]:
            raise ConfigError(
                "group.share.heartbeat.interval.ms must be less than group.share.session.timeout.ms"
            )
        if values["group.share.max.share.sessions"] < values["group.share.max.size"]:
            raise ConfigError("group.share.max.share.sessions must be >= group.share.max.size")
        return cls(values, auto_create, prefix, share_version)

    def __getitem__(self, key: str) -> int:
        return self.values[key]


ISOLATION_LEVELS: Final = ("read_uncommitted", "read_committed")
_DURATION = re.compile(
    r"^P(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)


def parse_by_duration_ms(text: str) -> int:
    """Parse the ISO-8601 duration of ``share.auto.offset.reset=by_duration:<duration>``."""
    match = _DURATION.match(text)
    if match is None or text in ("P", "PT") or text.endswith("T"):
        raise ConfigError(
            f"share.auto.offset.reset: {text!r} is not an ISO-8601 duration like PT1H"
        )
    days = int(match.group("d") or 0)
    hours = int(match.group("h") or 0)
    minutes = int(match.group("m") or 0)
    seconds = float(match.group("s") or 0)
    return int(((days * 24 + hours) * 60 + minutes) * 60_000 + seconds * 1000)


@dataclass(frozen=True, slots=True)
class GroupConfig:
    """The effective settings of one share group (group overrides over broker defaults)."""

    record_lock_duration_ms: int = 30000
    delivery_count_limit: int = 5
    partition_max_record_locks: int = 2000
    session_timeout_ms: int = 45000
    heartbeat_interval_ms: int = 5000
    auto_offset_reset: str = "latest"
    isolation_level: str = "read_uncommitted"
    renew_acknowledge_enable: bool = True
    assignment_interval_ms: int = 1000
    dlq_topic_name: str = ""
    dlq_copy_record_enable: bool = False
    redelivery_backoff_ms: int = 0
    redelivery_backoff_max_ms: int = 60000

    @property
    def dlq_enabled(self) -> bool:
        """The group has a dead-letter queue (``SharePartition.isDLQEnabledForGroup``)."""
        return bool(self.dlq_topic_name)

    @classmethod
    def defaults(cls, broker: BrokerConfig) -> GroupConfig:
        return cls(
            record_lock_duration_ms=broker["group.share.record.lock.duration.ms"],
            delivery_count_limit=broker["group.share.delivery.count.limit"],
            partition_max_record_locks=broker["group.share.partition.max.record.locks"],
            session_timeout_ms=broker["group.share.session.timeout.ms"],
            heartbeat_interval_ms=broker["group.share.heartbeat.interval.ms"],
            assignment_interval_ms=broker["group.share.assignment.interval.ms"],
        )

    def with_overrides(self, broker: BrokerConfig, overrides: dict[str, str]) -> GroupConfig:
        """Apply ``share.*`` group configs, validated against the broker's min/max bounds."""
        changes: dict[str, int | str | bool] = {}
        for key, raw in overrides.items():
            if key in _GROUP_INT_KEYS:
                field, name = _GROUP_INT_KEYS[key]
                bounds = IntRange(
                    broker[f"group.share.min.{name}"], broker[f"group.share.max.{name}"]
                )
                changes[field] = _parse_int(key, raw, bounds)
            elif key == "share.assignment.interval.ms":
                changes["assignment_interval_ms"] = _parse_int(key, raw, IntRange(0, 15000))
            elif key == "share.auto.offset.reset":
                if raw not in ("earliest", "latest"):
                    if not raw.startswith("by_duration:"):
                        raise ConfigError(
                            f"share.auto.offset.reset: {raw!r} is not earliest, latest "
                            "or by_duration:<ISO-8601 duration>"
                        )
                    parse_by_duration_ms(raw.removeprefix("by_duration:"))
                changes["auto_offset_reset"] = raw
            elif key == "share.isolation.level":
                if raw not in ISOLATION_LEVELS:
                    raise ConfigError(
                        f"share.isolation.level: {raw!r} is not read_uncommitted or read_committed"
                    )
                changes["isolation_level"] = raw
            elif key == "share.renew.acknowledge.enable":
                changes["renew_acknowledge_enable"] = parse_bool(key, raw)
            elif key == DLQ_TOPIC_KEY:
                # GroupConfig.validate: internal names are refused when the config is set; the
                # prefix and the topic itself are checked at each DLQ write, as Kafka does.
                if raw.startswith("__"):
                    raise ConfigError(f"{key}: DLQ topic name must not start with '__'")
                changes["dlq_topic_name"] = raw
            elif key == DLQ_COPY_KEY:
                changes["dlq_copy_record_enable"] = parse_bool(key, raw)
            elif key == BACKOFF_KEY:
                changes["redelivery_backoff_ms"] = _parse_int(key, raw, IntRange(0, 3600000))
            elif key == BACKOFF_MAX_KEY:
                changes["redelivery_backoff_max_ms"] = _parse_int(key, raw, IntRange(1, 3600000))
            else:
                raise ConfigError(f"unknown share group config {key!r}")
        result = replace(self, **changes)  # type: ignore[arg-type]
        if result.heartbeat_interval_ms >= result.session_timeout_ms:
            raise ConfigError(
                "share.heartbeat.interval.ms must be less than share.session.timeout.ms"
            )
        if result.redelivery_backoff_max_ms < result.redelivery_backoff_ms:
            raise ConfigError(f"{BACKOFF_MAX_KEY} must be >= {BACKOFF_KEY}")
        return result


_GROUP_INT_KEYS: Final[dict[str, tuple[str, str]]] = {
    "share.record.lock.duration.ms": ("record_lock_duration_ms", "record.lock.duration.ms"),
    "share.delivery.count.limit": ("delivery_count_limit", "delivery.count.limit"),
    "share.partition.max.record.locks": (
        "partition_max_record_locks",
        "partition.max.record.locks",
    ),
    "share.session.timeout.ms": ("session_timeout_ms", "session.timeout.ms"),
    "share.heartbeat.interval.ms": ("heartbeat_interval_ms", "heartbeat.interval.ms"),
}

GROUP_CONFIG_KEYS: Final = (
    *_GROUP_INT_KEYS,
    "share.assignment.interval.ms",
    "share.auto.offset.reset",
    "share.isolation.level",
    "share.renew.acknowledge.enable",
    BACKOFF_KEY,
    BACKOFF_MAX_KEY,
    DLQ_TOPIC_KEY,
    DLQ_COPY_KEY,
)


def _parse_int(key: str, raw: str, bounds: IntRange) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{key}: {raw!r} is not an integer") from None
    if not bounds.low <= value <= bounds.high:
        raise ConfigError(f"{key}={value} is outside [{bounds.low}, {bounds.high}]")
    return value
