"""A loaded scenario as frozen values: what ``load.py`` produces and both runners consume.

Times are integer milliseconds (``*_ms``); every part that can fail later (a step, an
expectation) keeps its ``Where`` so a run can point at the line that asked for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Target = Literal["sim", "live"]
AckName = Literal["accept", "release", "reject", "none"]


@dataclass(frozen=True, slots=True)
class Where:
    """A place in a scenario file (1-based line and column, as editors count)."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True, slots=True)
class Bound:
    """An inclusive bound on a measured number; ``None`` means unbounded on that side."""

    min: float | None = None
    max: float | None = None

    @classmethod
    def exactly(cls, value: float) -> Bound:
        return cls(value, value)

    def holds(self, value: float) -> bool:
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)

    def __str__(self) -> str:
        if self.min is not None and self.min == self.max:
            return f"{self.min:g}"
        if self.max is None:
            return f">= {self.min:g}"
        if self.min is None:
            return f"<= {self.max:g}"
        return f"{self.min:g}..{self.max:g}"


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int = 1
    compacted: bool = False


AckChoice = tuple[tuple[AckName, float], ...]  # outcome -> probability; sums to 1


@dataclass(frozen=True, slots=True)
class Processing:
    """Per-record processing time: ``fixed`` (a), ``uniform`` (a..b), ``exponential`` (mean a),
    ``normal`` (mean a, standard deviation b; never below 0)."""

    kind: Literal["fixed", "uniform", "exponential", "normal"] = "fixed"
    a_ms: float = 0.0
    b_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class AckRule:
    """Overrides the consumer's behaviour for the records it matches (first match wins)."""

    acks: AckChoice
    topic: str | None = None
    partition: int | None = None
    offsets: tuple[tuple[int, int], ...] | None = None
    key: str | None = None
    delivery_count: Bound | None = None
    from_ms: int | None = None
    until_ms: int | None = None
    processing: Processing | None = None


@dataclass(frozen=True, slots=True)
class ConsumerSpec:
    id: str
    where: Where
    topics: tuple[str, ...]
    start_ms: int | None = None
    acks: AckChoice = (("accept", 1.0),)
    rules: tuple[AckRule, ...] = ()
    processing: Processing = field(default_factory=Processing)
    max_poll_records: int = 500
    record_limit: bool = False
    implicit: bool = False
    max_wait_ms: int = 500
    commit_sync: bool = False
    crash_after_records: int | None = None
    crash_how: Literal["kill", "hang"] = "kill"
    seed: int | None = None
    replica_of: str | None = None  # the id in the file when this is one of ``replicas``
    instance: int | None = None  # in a fleet: the instance it bootstraps from


@dataclass(frozen=True, slots=True)
class ProducerSpec:
    id: str
    where: Where
    topic: str
    rate_per_s: float
    from_ms: int = 0
    until_ms: int | None = None
    count: int | None = None
    batch: int = 1
    keys: int | None = None
    partition: int | None = None
    transaction: Literal["commit", "abort"] | None = None
    record_bytes: int = 100


# ---------------------------------------------------------------------------- steps


@dataclass(frozen=True, slots=True)
class Produce:
    topic: str
    records: int
    partition: int | None = None
    batch: int | None = None
    key: str | None = None
    keys: int | None = None
    transaction: Literal["commit", "abort"] | None = None
    record_bytes: int = 100


@dataclass(frozen=True, slots=True)
class ConsumerAction:
    """start, stop (graceful close), kill (process dies), hang (stops, connection stays)."""

    verb: Literal["start", "stop", "kill", "hang"]
    consumers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Subscribe:
    consumers: tuple[str, ...]
    topics: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RestartProxy:
    downtime_ms: int = 0


@dataclass(frozen=True, slots=True)
class KillInstance:
    """An instance of the fleet dies (SIGKILL): ``instance``, or the one leading the share
    partitions of ``leader_of`` (topic, partition) when the step runs."""

    instance: int | None = None
    leader_of: tuple[str, int] | None = None


@dataclass(frozen=True, slots=True)
class AlterConfig:
    configs: Mapping[str, str | None]


@dataclass(frozen=True, slots=True)
class ResetOffsets:
    to: str | int  # earliest | latest | by_duration:... | an offset
    topic: str | None = None
    partition: int | None = None


@dataclass(frozen=True, slots=True)
class CopyOffsets:
    from_group: str


@dataclass(frozen=True, slots=True)
class Compact:
    topic: str


@dataclass(frozen=True, slots=True)
class DeleteRecords:
    topic: str
    before: int
    partition: int | None = None


@dataclass(frozen=True, slots=True)
class Advance:
    duration_ms: int


@dataclass(frozen=True, slots=True)
class Send:
    """A hand-made request in a consumer's name (sim only): probes of the session rules."""

    consumer: str
    api: Literal["ShareFetch", "ShareAcknowledge"]
    epoch: int | Literal["current"] = "current"
    ack_held_by: str | None = None
    ack_type: str = "accept"
    forget: tuple[str, ...] = ()


Action = (
    Produce
    | ConsumerAction
    | Subscribe
    | RestartProxy
    | KillInstance
    | AlterConfig
    | ResetOffsets
    | CopyOffsets
    | Compact
    | DeleteRecords
    | Advance
    | Send
)


@dataclass(frozen=True, slots=True)
class Step:
    at_ms: int
    action: Action
    where: Where
    name: str | None = None


# ---------------------------------------------------------------------------- expectations

ExpectKind = Literal[
    "record",
    "records",
    "consumer",
    "totals",
    "invariant",
    "throughput",
    "latency",
    "no-pause",
    "partition",
    "response",
    "group",
    "dlq",
]


@dataclass(frozen=True, slots=True)
class Expectation:
    """One ``then`` item: ``kind`` names what it looks at, ``subject`` which one, ``checks``
    the measured names and their bounds (or expected names, for states and errors)."""

    kind: ExpectKind
    subject: Mapping[str, object]
    checks: Mapping[str, Bound | str]
    targets: tuple[Target, ...]
    where: Where
    because: str | None = None
    text: str = ""  # the expectation as written, for reports


@dataclass(frozen=True, slots=True)
class ClassicOffset:
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class FleetSpec:
    """Several proxy instances sharing the share groups' work (docs/persistence.md, A fleet of
    instances): the state topic's partitions divided among them, a dead one's taken over by
    the others after the fleet's session timeout."""

    instances: int
    session_timeout_ms: int = 45000
    heartbeat_interval_ms: int = 3000
    state_partitions: int = 8


@dataclass(frozen=True, slots=True)
class Scenario:
    path: str
    name: str
    description: str
    seed: int
    tags: tuple[str, ...]
    targets: tuple[Target, ...]
    duration_ms: int
    broker_configs: Mapping[str, str]
    latency_ms: int
    topics: Mapping[str, TopicSpec]
    group_id: str
    group_configs: Mapping[str, str]
    classic_groups: Mapping[str, tuple[ClassicOffset, ...]]
    producers: tuple[ProducerSpec, ...]
    consumers: tuple[ConsumerSpec, ...]
    steps: tuple[Step, ...]
    expectations: tuple[Expectation, ...]
    fleet: FleetSpec | None = None

    @property
    def stem(self) -> str:
        name = self.path.rsplit("/", 1)[-1]
        return name.rsplit(".", 1)[0]

    def consumer(self, consumer_id: str) -> ConsumerSpec:
        for c in self.consumers:
            if c.id == consumer_id:
                return c
        raise KeyError(consumer_id)
