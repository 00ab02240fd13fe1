"""The differential conformance test: a Hypothesis state machine against a live target.

Each example sets up a fresh topic (two partitions when both have the same leader) and a fresh
share group with ``share.auto.offset.reset=earliest``, a short lock duration, a drawn delivery
count limit and in-flight limit, then runs a random sequence of operations, sends each over the
wire to the target and checks the answer against the ``Oracle`` (the model's prediction):

* produce record batches (one Produce per batch, so the log layout is known exactly);
* ShareFetch by one of three members: any session epoch (current, 0, -1, wrong), either acquire
  mode, MaxRecords and BatchSize, added and forgotten partitions, piggy-backed
  acknowledgements of any type over any range (own records, another member's, expired, beyond
  the end, malformed), RENEW;
* ShareAcknowledge, likewise;
* dropping a member's connection (its sessions are evicted and its records released);
* sleeping past the record locks;
* changing ``share.delivery.count.limit`` / ``share.partition.max.record.locks``;
* ShareGroupHeartbeat join, heartbeat (current / wrong epoch), leave.

Timing. The target's clock cannot be read, so each lock has an *ambiguity window*: from the
time the acquiring request was sent plus the lock duration (minus a margin) to the time its
answer arrived plus the lock duration (plus a margin for timers and state writes). Before every
operation the machine waits until no lock's window overlaps the time the operation may take,
and then lets the model expire exactly the locks whose window has passed. If an operation takes
longer than allowed and its answer differs from the prediction, the example is discarded as
inconclusive (counted in the stats) rather than failed.

Kafka drops a group's share partitions from memory when the group has no share session left on
the broker and reloads them from the share coordinator; to keep the model's in-memory view
comparable, a *keeper* member holds a share session on its own connection for the whole example.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from hypothesis import assume
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from model import AcquiredRecords, AcquireMode, DlqCause, ErrorCode, ShareApiError, ShareGroup
from model.config import DLQ_COPY_KEY, DLQ_TOPIC_ENABLE_KEY, DLQ_TOPIC_KEY, SHARE_VERSION_DLQ
from sharegroup.conformance import client as kc
from sharegroup.conformance.checks import ConformanceFailure, Stats, failure_class
from sharegroup.conformance.oracle import (
    TP,
    AckRanges,
    FetchParams,
    Oracle,
    Outcome,
)
from sharegroup.dlq_format import (
    HEADER_DELIVERY_COUNT,
    HEADER_GROUP,
    HEADER_MESSAGE,
    HEADER_OFFSET,
    HEADER_PARTITION,
    HEADER_TOPIC,
    dlq_partition,
    parse_headers,
)

MEMBERS = ("conformance-member-0", "conformance-member-1", "conformance-member-2")
SHORT = {m: f"m{i}" for i, m in enumerate(MEMBERS)}
RELEASE = 2  # AcknowledgeType
RETRIABLE_COORDINATOR = {14, 15, 16}  # COORDINATOR_LOAD_IN_PROGRESS, _NOT_AVAILABLE, NOT_COORD.


class SetupError(Exception):
    """The target could not be prepared for an example (not a conformance failure)."""


@dataclass(slots=True)
class TargetSpec:
    """What to test and how patiently."""

    bootstrap: str
    name: str = "target"
    lock_ms: int = 3000
    partitions: int = 2
    margin_lo_ms: int = 100  # a lock may end this much before send time + duration
    margin_hi_ms: int = 500  # ... or this much after answer time + duration (timers, writes)
    guard_ms: int = 700  # how long an operation may take beyond MaxWaitMs
    after_drop_ms: int = 500  # time for the target to notice a closed connection
    after_config_ms: int = 300  # time for a group config change to reach the share partitions
    strict: bool = False  # known differences (known.py) fail too
    # The broker's group.share.delivery.count.limit and group.share.partition.max.record.locks,
    # when known: then the run also deletes group configs (falling back to these).
    broker_defaults: tuple[int, int] | None = None
    # Dead-letter queue (KIP-1191): None = as the target's finalized share.version says (2 or
    # more dead-letters); True / False = the target does / does not dead-letter.
    dlq: bool | None = None
    dlq_wait_ms: int = 20000  # how long a DLQ record may take to appear
    after_dlq_ms: int = 300  # time for the target to archive records after their DLQ write


def expand(ranges: Sequence[tuple[int, int, int]]) -> dict[int, int]:
    """offset -> delivery count."""
    return {o: c for f, la, c in ranges for o in range(f, la + 1)}


def runs(counts: Mapping[int, int]) -> list[tuple[int, int, int]]:
    """Contiguous runs of equal delivery count: (first, last, count)."""
    out: list[tuple[int, int, int]] = []
    for o in sorted(counts):
        c = counts[o]
        if out and out[-1][1] + 1 == o and out[-1][2] == c:
            out[-1] = (out[-1][0], o, c)
        else:
            out.append((o, o, c))
    return out


def err_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"ERROR_{code}"


def fmt_acquired(recs: Sequence[AcquiredRecords] | Sequence[tuple[int, int, int]]) -> str:
    return "[" + ", ".join(f"{a}-{b} dc{c}" for a, b, c in recs) + "]"


def fmt_acks(acks: Mapping[TP, AckRanges]) -> str:
    parts = []
    for (_, p), ranges in acks.items():
        rs = " ".join(f"{f}-{la}:{''.join(str(t) for t in types)}" for f, la, types in ranges)
        parts.append(f"p{p}({rs})")
    return " ".join(parts)


# Failure attribution: the most specific tag of the area that differed.
PRIORITY = [
    "init.auto-offset-reset",
    "log-start.move",
    "session.epoch0-acks",
    "session.ack-epoch0",
    "session.not-found",
    "session.epoch-mismatch",
    "session.close",
    "session.connection-drop",
    "ack.malformed",
    "ack.out-of-range",
    "ack.ownership",
    "lock.expiry",
    "ack.not-acquired",
    "ack.renew",
    "config.dynamic",
    "acquire.in-flight-limit",
    "acquire.throttling",
    "acquire.delivery-count",
    "ack.release",
    "ack.reject",
    "ack.gap",
    "ack.accept",
    "ack.per-offset",
    "ack.piggybacked",
    "acquire.record-limit",
    "acquire.max-records",
    "acquire.sharing",
    "acquire.batch-optimized",
    "session.multi-partition",
    "session.incremental",
    "session.open",
    "records.delivered",
    "lock.timeout-field",
    "member.errors",
    "member.join",
    "dlq.share-version",
    "dlq.gap",
    "dlq.record",
    "dlq.reject",
    "dlq.delivery-limit",
    "protocol.answer",
]
AREA_TAGS = {
    "top": {
        "session.epoch0-acks",
        "session.ack-epoch0",
        "session.not-found",
        "session.epoch-mismatch",
        "session.close",
        "session.connection-drop",
        "session.open",
        "ack.renew",
    },
    "ack": {
        "log-start.move",
        "ack.malformed",
        "ack.out-of-range",
        "ack.ownership",
        "lock.expiry",
        "ack.not-acquired",
        "ack.renew",
        "config.dynamic",
        "ack.release",
        "ack.reject",
        "ack.gap",
        "ack.accept",
        "ack.per-offset",
        "ack.piggybacked",
        "session.close",
    },
    "acquire": {
        "init.auto-offset-reset",
        "log-start.move",
        "session.close",
        "session.connection-drop",
        "lock.expiry",
        "config.dynamic",
        "acquire.in-flight-limit",
        "acquire.throttling",
        "acquire.delivery-count",
        "ack.release",
        "ack.renew",
        "acquire.record-limit",
        "acquire.max-records",
        "acquire.sharing",
        "acquire.batch-optimized",
        "session.multi-partition",
    },
    "listing": {"session.incremental", "session.open", "session.multi-partition", "session.close"},
    "records": {"records.delivered"},
    "lock-timeout": {"lock.timeout-field"},
    "member": {"member.errors", "member.join"},
}


def attribute(tags: set[str], area: str) -> str:
    allowed = AREA_TAGS.get(area, set())
    for name in PRIORITY:
        if name in tags and name in allowed:
            return name
    fallback = {
        "top": "session.open",
        "ack": "ack.accept",
        "acquire": "acquire.batch-optimized",
        "listing": "session.incremental",
        "records": "records.delivered",
        "lock-timeout": "lock.timeout-field",
        "member": "member.join",
    }
    return fallback.get(area, "protocol.answer")


def _fetch_rule(fn: Callable[..., None]) -> Callable[..., None]:
    """The ShareFetch rule's arguments (the machine registers the same rule several times)."""
    decorated = rule(
        data=st.data(),
        member=st.sampled_from(MEMBERS),
        epoch_kind=st.sampled_from(["current"] * 8 + ["zero", "final", "wrong"]),
        mode=st.sampled_from([AcquireMode.BATCH_OPTIMIZED] * 2 + [AcquireMode.RECORD_LIMIT]),
        max_records=st.sampled_from([1, 2, 3, 5, 10, 500]),
        batch_size=st.sampled_from([1, 2, 5, 500]),
        ack_kind=st.sampled_from(["none"] * 4 + ["own"] * 4 + ["other", "any", "malformed"]),
        change=st.sampled_from(["none"] * 4 + ["add", "forget"]),
    )(fn)
    return precondition(lambda self: self.ready)(decorated)


# The headers of a DLQ record, in Kafka's order (ShareGroupDLQStateManager.headers).
DLQ_HEADERS = (
    HEADER_TOPIC,
    HEADER_PARTITION,
    HEADER_OFFSET,
    HEADER_GROUP,
    HEADER_DELIVERY_COUNT,
    HEADER_MESSAGE,
)
CAUSE_CHECK = {
    DlqCause.CLIENT_REJECT: "dlq.reject",
    DlqCause.DELIVERY_COUNT_EXCEEDED: "dlq.delivery-limit",
}
INVALID_CONFIG = 40


class ConformanceMachine(RuleBasedStateMachine):
    """Subclassed per target by ``machine_for``; see the module docstring."""

    spec: ClassVar[TargetSpec]
    stats: ClassVar[Stats]
    no_delete_records: ClassVar[bool] = False  # the target cannot DeleteRecords

    def __init__(self) -> None:
        super().__init__()
        self.ready = False
        self.steps: list[str] = []
        self.t0 = time.monotonic()
        self.last_now = 0
        self.windows: dict[int, tuple[int, int]] = {}
        self.pending: set[str] = set()
        self.conns: dict[str, kc.Connection] = {}
        self.conn_ids: dict[str, int] = {}
        self.next_conn_id = 1
        self.admin: kc.Connection | None = None
        self.coord: kc.Connection | None = None
        self.data_addr = ("", 0)
        self.topic = ""
        self.group = ""
        self.tps: list[TP] = []
        self.oracle: Oracle | None = None
        self.members_model: ShareGroup | None = None
        self.member_epochs: dict[str, int] = {}  # the target's epoch of each joined member
        self.kafka_batches: dict[TP, list[tuple[int, int]]] = {}  # see track_kafka_batches
        self.before: list[list[int]] = []  # record batches produced before the group started
        self.fresh: set[TP] = set()  # partitions nothing was acquired from yet
        # Dead-letter queue: "off", or the group has a DLQ topic ("headers" only, or "copy").
        self.dlq_mode = "off"
        self.dlq_active = False  # the target dead-letters (share.version >= 2)
        self.dlq_topic = ""
        self.dlq_partitions = 0
        self.dlq_conns: dict[int, kc.Connection] = {}  # DLQ partition -> its leader
        self.dlq_pos: dict[int, int] = {}  # DLQ partition -> next offset to read
        # (source partition, offset) -> (delivery count, cause) the model dead-lettered
        self.dlq_expected: dict[tuple[int, int], tuple[int, DlqCause]] = {}
        self.dlq_seen: set[tuple[int, int]] = set()
        self.dlq_unmatched: dict[tuple[int, int], tuple[int, kc.LogRecord]] = {}
        self.gapped: set[tuple[int, int]] = set()  # offsets a GAP acknowledgement named
        self.gap_checked = 0
        type(self).stats.examples += 1

    # ------------------------------------------------------------------ plumbing

    def clock(self) -> int:
        return int((time.monotonic() - self.t0) * 1000)

    def log(self, line: str) -> None:
        self.steps.append(line)

    def fail(self, check: str, message: str) -> None:
        type(self).stats.failed[check] += 1
        text = f"[{check}] {message}"
        self.log("!! " + text)
        raise failure_class(check)(text, self.steps)

    def passed(self, tags: set[str]) -> None:
        stats = type(self).stats
        stats.steps += 1
        for t in tags:
            stats.passed[t] += 1

    @property
    def o(self) -> Oracle:
        assert self.oracle is not None
        return self.oracle

    def conn(self, member: str) -> kc.Connection:
        c = self.conns.get(member)
        if c is None or c.closed:
            c = kc.Connection(*self.data_addr)
            self.conns[member] = c
            self.conn_ids[member] = self.next_conn_id
            self.next_conn_id += 1
        return c

    def conn_id(self, member: str) -> int:
        self.conn(member)
        return self.conn_ids[member]

    def settle(self, duration_ms: int) -> int:
        """Wait until no lock may end during the next ``duration_ms``; expire the ended ones."""
        spec = type(self).spec
        while True:
            now = self.clock()
            live = self.o.lock_deadlines()
            blocking = [
                hi
                for d, (lo, hi) in self.windows.items()
                if d in live and lo < now + duration_ms + spec.guard_ms and hi >= now
            ]
            if not blocking:
                break
            time.sleep((max(blocking) - now + 1) / 1000)
        now = max(now, self.last_now + 1)
        self.last_now = now
        before = self.o.lock_deadlines()
        self.o.expire(now)
        if before - self.o.lock_deadlines():
            self.pending.add("lock.expiry")
            self.log(f"   (locks ended by t={now} ms)")
        self.windows = {d: w for d, w in self.windows.items() if d in self.o.lock_deadlines()}
        self.check_dlq()
        return now

    def ambiguous(self, start: int, end: int, duration_ms: int) -> bool:
        """Did a lock's window overlap an operation that took longer than allowed?"""
        if end - start <= duration_ms + type(self).spec.guard_ms:
            return False
        return any(lo < end and hi >= start for lo, hi in self.windows.values())

    def after_close(self) -> None:
        """Kafka releases a closed session's records after it has answered the closing request
        (SharePartitionManager.releaseSession runs when the answer is built, and the records
        stay unacquirable until the state write completes): give it that time."""
        time.sleep(type(self).spec.after_drop_ms / 1000)

    def note_known(self, known: list[str]) -> None:
        for k in known:
            type(self).stats.known[k] += 1
            self.log(f"   (known difference: {k})")

    def note_locks(self, now: int, t_recv: int) -> None:
        spec = type(self).spec
        deadline = now + self.o.lock_ms
        if deadline in self.o.lock_deadlines():
            self.windows[deadline] = (
                deadline - spec.margin_lo_ms,
                t_recv + self.o.lock_ms + spec.margin_hi_ms,
            )

    # ------------------------------------------------------------------ setup

    @initialize(
        limit=st.sampled_from([2, 3, 5]),
        max_locks=st.sampled_from([100, 2000]),
        reset=st.sampled_from(["earliest", "earliest", "latest", None, "by_duration:PT1H"]),
        before=st.lists(st.lists(st.integers(1, 8), max_size=2), min_size=2, max_size=2),
        batches=st.lists(st.integers(1, 12), min_size=0, max_size=4),
    )
    def setup(
        self,
        limit: int,
        max_locks: int,
        reset: str | None,
        before: list[list[int]],
        batches: list[int],
    ) -> None:
        spec = type(self).spec
        host, port = kc.parse_host_port(spec.bootstrap)
        # The dead-letter queue (off, headers only, or with key and value copied) and its
        # partition count follow from the example's other draws instead of being drawn: the
        # same example always gets the same DLQ (also when Hypothesis replays or shrinks it),
        # and the derandomized examples of CI are the ones they were before the DLQ checks.
        seed = limit + max_locks + sum(map(sum, before)) + sum(batches) + len(batches)
        self.dlq_mode = ("off", "headers", "copy")[seed % 3]
        self.dlq_partitions = 1 + (seed // 3) % 2
        try:
            self._setup(host, port, limit, max_locks, reset, before)
        except (kc.ClientError, OSError) as e:
            raise SetupError(f"setting up an example on {spec.bootstrap}: {e}") from e
        self.ready = True
        if self.dlq_mode != "off":
            self.log(
                f"setup: DLQ topic {self.dlq_topic} ({self.dlq_partitions} partition(s)), "
                f"{DLQ_COPY_KEY}={str(self.dlq_mode == 'copy').lower()}; the target "
                + (
                    "dead-letters"
                    if self.dlq_active
                    else "does not dead-letter (share.version < 2)"
                )
            )
        self.log(
            f"setup: topic with partitions {[p for _, p in self.tps]}, "
            f"share.delivery.count.limit={limit}, share.partition.max.record.locks={max_locks}, "
            f"share.record.lock.duration.ms={spec.lock_ms}, share.auto.offset.reset="
            f"{reset or '(unset)'}, batches produced before the group started: {self.before}; "
            f"share partitions start at "
            f"{ {tp[1]: sp.start_offset for tp, sp in self.o.parts.items()} }"
        )
        if batches:
            self.produce(0, batches)

    def _setup(
        self,
        host: str,
        port: int,
        limit: int,
        max_locks: int,
        reset: str | None,
        before: list[list[int]],
    ) -> None:
        spec = type(self).spec
        boot = kc.Connection(host, port)
        self.topic = f"conformance-{uuid.uuid4().hex[:10]}"
        self.group = f"conformance-{uuid.uuid4().hex[:10]}"
        kc.create_topic(boot, self.topic, spec.partitions)
        brokers, meta = kc.wait_for_topic(boot, self.topic, spec.partitions)
        leader = meta.leaders[0]
        self.tps = [(meta.topic_id, p) for p, ld in sorted(meta.leaders.items()) if ld == leader]
        b = brokers[leader]
        self.data_addr = (b.host, b.port)
        self.admin = boot if (b.host, b.port) == (host, port) else kc.Connection(b.host, b.port)
        dlq_configs = self._setup_dlq(boot) if self.dlq_mode != "off" else {}
        code = kc.alter_group_configs(
            boot,
            self.group,
            {
                **({"share.auto.offset.reset": reset} if reset else {}),
                "share.record.lock.duration.ms": str(spec.lock_ms),
                "share.delivery.count.limit": str(limit),
                "share.partition.max.record.locks": str(max_locks),
                **dlq_configs,
            },
        )
        if code:
            raise SetupError(
                f"IncrementalAlterConfigs of group {self.group} failed with {err_name(code)}; "
                f"is share.record.lock.duration.ms={spec.lock_ms} within the broker's "
                "group.share.min/max.record.lock.duration.ms?"
            )
        deadline = time.monotonic() + 60
        node: int | None = None
        while node is None:
            try:
                node = kc.find_coordinator(boot, self.group)
            except kc.ClientError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        cb = brokers.get(node)
        self.coord = (
            boot
            if cb is None or (cb.host, cb.port) == (host, port)
            else kc.Connection(cb.host, cb.port)
        )
        # Records produced before the group first uses the partitions: where the share
        # partitions start depends on share.auto.offset.reset (latest when unset; every record
        # is younger than the by_duration of one hour).
        if reset is not None and reset.startswith("by_duration"):
            # Kafka 4.4 fails a share partition for good when by_duration meets an empty
            # partition (UNKNOWN_SERVER_ERROR on every fetch, also after records arrive; see
            # docs/conformance.md): every partition gets a record first.
            before = [sizes or [1] for sizes in before]
        self.before = before
        pre: dict[TP, list[tuple[int, int]]] = {}
        for tp, sizes in zip(self.tps, before, strict=False):
            for n in sizes:
                base = kc.produce(self.admin, self.topic, tp[1], n)
                pre.setdefault(tp, []).append((base, base + n - 1))
        ends = {tp: spans[-1][1] + 1 for tp, spans in pre.items()}
        earliest = reset is not None and reset != "latest"
        self.oracle = Oracle(
            self.group,
            self.tps,
            lock_ms=spec.lock_ms,
            delivery_count_limit=limit,
            max_in_flight=max_locks,
            start_offsets={} if earliest else ends,
            dlq=self.dlq_mode != "off",
        )
        for tp, spans in pre.items():
            for first, last in spans:
                self.o.append(tp, first, last)
        self.fresh = set(self.tps)
        self.members_model = ShareGroup(self.group)
        keeper = f"keeper-{uuid.uuid4().hex[:12]}"
        epoch = 0
        want = {p for _, p in self.tps}
        while True:
            resp = kc.heartbeat(
                self.coord,
                group=self.group,
                member=keeper,
                epoch=epoch,
                topics=[self.topic] if epoch == 0 else None,
            )
            if resp.error_code in RETRIABLE_COORDINATOR:
                epoch = 0
            elif resp.error_code:
                raise SetupError(
                    f"keeper heartbeat: {err_name(resp.error_code)} {resp.error_message}"
                )
            else:
                epoch = resp.member_epoch
                got = {
                    p
                    for t in (resp.assignment.topic_partitions if resp.assignment else [])
                    if t.topic_id == meta.topic_id
                    for p in t.partitions
                }
                if want <= got:
                    break
            if time.monotonic() > deadline:
                raise SetupError("the keeper member was not assigned the topic's partitions")
            time.sleep(0.1)
        # Warm up: open the keeper's session on every partition (retrying only top-level errors,
        # so that no acquisition goes unseen: a new epoch-0 session would release the records
        # of the one it replaces).
        kconn = self.conn(keeper)
        while True:
            resp = kc.share_fetch(
                kconn, group=self.group, member=keeper, epoch=0, add=self.tps, max_wait_ms=0
            )
            if resp.error_code == 0:
                break
            if time.monotonic() > deadline:
                raise SetupError(f"the keeper's first ShareFetch failed: {resp}")
            time.sleep(0.1)
        self.o.sessions.fetch_context(
            self.group, keeper, 0, connection_id=self.conn_id(keeper), add=self.tps
        )
        # A target may answer before it has initialized a share partition (Kafka 4.4 does):
        # where the model says there are records to acquire, the keeper fetches until it has
        # had them all once (and released them), so every share partition is initialized.
        # With nothing to acquire (latest, or empty partitions) the kit cannot see when Kafka
        # 4.4 has finished initializing (asynchronously; DescribeShareGroupOffsets answers -1
        # until something is persisted): give it a moment, so that a partition initialized
        # after the next Produce does not start past those records.
        time.sleep(0.5)
        epoch = 1
        todo = {
            tp for tp, sp in self.o.parts.items() if self.o.high_watermark(tp) > sp.start_offset
        }
        while True:
            todo -= self._release_keeper_records(keeper, kconn, resp, epoch)
            if not todo:
                break
            if time.monotonic() > deadline:
                raise SetupError("the keeper member could not acquire the records produced first")
            epoch = self.o.session_epoch(keeper) or epoch
            resp = kc.share_fetch(
                kconn, group=self.group, member=keeper, epoch=epoch, max_wait_ms=1000
            )
            if resp.error_code:
                raise SetupError(f"keeper fetch: {err_name(resp.error_code)}")
            self.o.sessions.fetch_context(
                self.group, keeper, epoch, connection_id=self.conn_id(keeper)
            )
            epoch = self.o.session_epoch(keeper) or epoch

    def _setup_dlq(self, boot: kc.Connection) -> dict[str, str]:
        """Create the example's DLQ topic, marked as one, and return the group configs that
        name it. A target that refuses the topic config (Kafka before 4.4 behind the proxy)
        gets the topic unmarked: it must mark ``dlq.conformance-*`` topics itself (the proxy:
        ``sharegroup.errors.deadletterqueue.topics``)."""
        spec = type(self).spec
        active = spec.dlq
        if active is None:
            level = kc.finalized_features(boot).get("share.version", 0)
            active = level >= SHARE_VERSION_DLQ
        self.dlq_active = active
        self.dlq_topic = f"dlq.{self.topic}"
        n = self.dlq_partitions
        code, message = kc.try_create_topic(boot, self.dlq_topic, n, {DLQ_TOPIC_ENABLE_KEY: "true"})
        if code == INVALID_CONFIG:
            self.log(f"   (the target refused {DLQ_TOPIC_ENABLE_KEY}: {message})")
            kc.create_topic(boot, self.dlq_topic, n)
        elif code:
            raise SetupError(f"creating the DLQ topic {self.dlq_topic}: {err_name(code)} {message}")
        brokers, meta = kc.wait_for_topic(boot, self.dlq_topic, n)
        by_leader: dict[int, kc.Connection] = {}
        for partition, leader in meta.leaders.items():
            if leader not in by_leader:
                b = brokers[leader]
                by_leader[leader] = kc.Connection(b.host, b.port)
            self.dlq_conns[partition] = by_leader[leader]
            self.dlq_pos[partition] = 0
        return {DLQ_TOPIC_KEY: self.dlq_topic, DLQ_COPY_KEY: str(self.dlq_mode == "copy").lower()}

    # ------------------------------------------------------------------ dead-letter queue

    @invariant()
    def dlq_written(self) -> None:
        """After every operation: the DLQ topic holds exactly the records the model
        dead-lettered so far, each as Kafka writes it."""
        if self.ready:
            self.check_dlq()

    def check_dlq(self) -> None:
        if self.dlq_mode == "off" or self.oracle is None:
            return
        spec = type(self).spec
        stats = type(self).stats
        new = 0
        for tp, work in self.o.dead_letters():
            for offset in range(work.first_offset, work.last_offset + 1):
                self.dlq_expected[(tp[1], offset)] = (work.delivery_count, work.cause)
                new += 1
            self.log(
                f"   (model: p{tp[1]} {work.first_offset}-{work.last_offset} "
                f"dc{work.delivery_count} to the DLQ: {work.cause.name})"
            )
        want = len(self.dlq_expected) if self.dlq_active else 0
        deadline = time.monotonic() + spec.dlq_wait_ms / 1000
        seen_before = len(self.dlq_seen)
        while True:
            self._read_dlq()
            if len(self.dlq_seen) >= want or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        missing = sorted(k for k in self.dlq_expected if k not in self.dlq_seen)
        if self.dlq_active and missing:
            p, offset = missing[0]
            count, cause = self.dlq_expected[(p, offset)]
            self.fail(
                CAUSE_CHECK[cause],
                f"no DLQ record for p{p} offset {offset} (dc{count}, {cause.name}) after "
                f"{spec.dlq_wait_ms} ms; {len(missing)} of {len(self.dlq_expected)} missing",
            )
        now = self.clock()
        for key, (dlq_p, rec) in sorted(self.dlq_unmatched.items()):
            if not self._maybe_early(key, now):
                self._unexpected(key, dlq_p, rec)
        if len(self.dlq_seen) > seen_before:
            # The target archives the records after writing them.
            time.sleep(spec.after_dlq_ms / 1000)
        if not self.dlq_active and new:
            stats.passed["dlq.share-version"] += 1
        if self.dlq_active and len(self.gapped) > self.gap_checked:
            stats.passed["dlq.gap"] += 1
        self.gap_checked = len(self.gapped)

    def _read_dlq(self) -> None:
        stats = type(self).stats
        for dlq_p, conn in self.dlq_conns.items():
            records, _hw = kc.read_records(conn, self.dlq_topic, dlq_p, self.dlq_pos[dlq_p])
            for rec in records:
                self.dlq_pos[dlq_p] = rec.offset + 1
                origin = parse_headers(rec.headers)
                if origin is None or origin.topic != self.topic or origin.group != self.group:
                    self.fail(
                        "dlq.record",
                        f"DLQ record {self.dlq_topic}-{dlq_p}@{rec.offset} does not name "
                        f"this example's topic and group: headers {list(rec.headers)}",
                    )
                    return
                key = (origin.partition, origin.offset)
                if key in self.dlq_seen:
                    _count, cause = self.dlq_expected[key]
                    self.fail(
                        CAUSE_CHECK[cause],
                        f"p{key[0]} offset {key[1]} was dead-lettered twice",
                    )
                if key not in self.dlq_expected or not self.dlq_active:
                    self.dlq_unmatched[key] = (dlq_p, rec)
                    continue
                self._match(key, dlq_p, rec)
                stats.passed["dlq.record"] += 1
                stats.passed[CAUSE_CHECK[self.dlq_expected[key][1]]] += 1
        for key, (dlq_p, rec) in list(self.dlq_unmatched.items()):
            if key in self.dlq_expected and self.dlq_active:
                del self.dlq_unmatched[key]
                self._match(key, dlq_p, rec)
                stats.passed["dlq.record"] += 1
                stats.passed[CAUSE_CHECK[self.dlq_expected[key][1]]] += 1

    def _match(self, key: tuple[int, int], dlq_p: int, rec: kc.LogRecord) -> None:
        """One DLQ record against what Kafka writes for the source record ``key``."""
        p, offset = key
        count, cause = self.dlq_expected[key]
        self.dlq_seen.add(key)
        where = f"DLQ record of p{p} offset {offset} ({self.dlq_topic}-{dlq_p}@{rec.offset})"
        names = tuple(name for name, _ in rec.headers)
        want_headers = [
            (HEADER_TOPIC, self.topic.encode()),
            (HEADER_PARTITION, str(p).encode()),
            (HEADER_OFFSET, str(offset).encode()),
            (HEADER_GROUP, self.group.encode()),
            (HEADER_DELIVERY_COUNT, str(count).encode()),
            (HEADER_MESSAGE, cause.message.encode()),
        ]
        if list(rec.headers) != want_headers:
            check = "dlq.record" if names != DLQ_HEADERS else CAUSE_CHECK[cause]
            self.fail(check, f"{where}: headers {list(rec.headers)}, expected {want_headers}")
        if dlq_p != dlq_partition(p, self.dlq_partitions):
            self.fail(
                "dlq.record",
                f"{where}: in DLQ partition {dlq_p}, expected {dlq_partition(p, self.dlq_partitions)}",
            )
        want: tuple[bytes | None, bytes | None] = (None, None)
        if self.dlq_mode == "copy":
            tp = next(tp for tp in self.tps if tp[1] == p)
            index = next(
                offset - b.first_offset
                for b in self.o.log[tp]
                if b.first_offset <= offset <= b.last_offset
            )
            want = (kc.record_key(index), kc.record_value(index))
        if (rec.key, rec.value) != want:
            self.fail(
                "dlq.record",
                f"{where}: key/value {(rec.key, rec.value)}, expected {want} "
                f"({DLQ_COPY_KEY}={str(self.dlq_mode == 'copy').lower()})",
            )

    def _maybe_early(self, key: tuple[int, int], now: int) -> bool:
        """A record the target may have dead-lettered before the model: its lock (at the
        delivery limit) is in its ambiguity window."""
        tp = next((tp for tp in self.tps if tp[1] == key[0]), None)
        sp = self.o.parts.get(tp) if tp is not None else None
        if sp is None:
            return False
        state = sp.state_of(key[1])
        if state is None or state[0].name != "ACQUIRED" or state[1] < sp.delivery_count_limit:
            return False
        window = self.windows.get(state[3])
        return window is not None and window[0] <= now

    def note_gaps(self, acks: Mapping[TP, AckRanges]) -> None:
        for tp, ranges in acks.items():
            for first, last, types in ranges:
                if len(types) not in (1, last - first + 1):
                    continue  # malformed: refused
                for offset in range(first, last + 1):
                    if (types[0] if len(types) == 1 else types[offset - first]) == 0:
                        self.gapped.add((tp[1], offset))

    def _unexpected(self, key: tuple[int, int], dlq_p: int, rec: kc.LogRecord) -> None:
        p, offset = key
        where = f"p{p} offset {offset} was dead-lettered ({self.dlq_topic}-{dlq_p}@{rec.offset})"
        if not self.dlq_active:
            self.fail("dlq.share-version", f"{where}, but the target reports share.version < 2")
        if key in self.gapped:
            self.fail("dlq.gap", f"{where}, but it was acknowledged with GAP")
        self.fail("dlq.gap", f"{where}, but the model archived it without a DLQ cause")

    def _release_keeper_records(
        self, keeper: str, kconn: kc.Connection, resp: Any, epoch: int
    ) -> set[TP]:
        """A warm-up fetch may have acquired records produced before the group started: the
        model acquires exactly those for the keeper, and the keeper RELEASEs them (ShareAcknowledge
        with ``epoch``), so that they are available again (with delivery count 1) as in the
        model. Returns the partitions it had acquired records of."""
        got: dict[TP, list[tuple[int, int, int]]] = {}
        for t in resp.responses:
            for p in t.partitions:
                for a in getattr(p, "acquired_records", None) or []:
                    got.setdefault((t.topic_id, p.partition_index), []).append(
                        (a.first_offset, a.last_offset, a.delivery_count)
                    )
        if not got:
            return set()
        now = self.clock()
        before = self.o.clone()
        for tp, ranges in got.items():
            if not self.o.replay_acquire(keeper, tp, ranges, now_ms=now, batch_size=500):
                raise SetupError(
                    f"the warm-up fetch acquired {fmt_acquired(ranges)} of p{tp[1]}, which the "
                    "model would not"
                )
        self.track_kafka_batches(resp, before, FetchParams())
        acks: dict[TP, AckRanges] = {
            tp: [(f, la, (RELEASE,)) for f, la, _ in ranges] for tp, ranges in got.items()
        }
        ack = kc.share_acknowledge(kconn, group=self.group, member=keeper, epoch=epoch, acks=acks)
        codes = [ack.error_code] + [p.error_code for t in ack.responses for p in t.partitions]
        if any(codes):
            raise SetupError(f"the keeper could not release its warm-up records: {ack}")
        (_outcome, oracle), *_ = self.o.share_acknowledge(
            keeper, epoch, acks=acks, renew=False, now_ms=now
        )
        self.oracle = oracle
        self.log(
            "   (the keeper's warm-up fetch acquired "
            + ", ".join(f"p{tp[1]} {fmt_acquired(r)}" for tp, r in got.items())
            + "; released)"
        )
        return set(got)

    def teardown(self) -> None:
        for c in self.conns.values():
            c.close()
        for other in (self.admin, self.coord, *self.dlq_conns.values()):
            if other is not None:
                other.close()

    # ------------------------------------------------------------------ produce

    @precondition(lambda self: self.ready)
    @rule(index=st.integers(0, 1), sizes=st.lists(st.integers(1, 40), min_size=1, max_size=3))
    def produce(self, index: int, sizes: list[int]) -> None:
        tp = self.tps[index % len(self.tps)]
        assert self.admin is not None
        for n in sizes:
            expected = self.o.high_watermark(tp)
            try:
                base = kc.produce(self.admin, self.topic, tp[1], n)
            except kc.ClientError as e:
                raise SetupError(f"produce: {e}") from e
            if base != expected:
                raise SetupError(f"produce to p{tp[1]}: base offset {base}, expected {expected}")
            self.o.append(tp, base, base + n - 1)
        self.log(
            f"produce p{tp[1]} batches of {sizes} (log now ends at {self.o.high_watermark(tp)})"
        )

    @precondition(
        lambda self: (
            self.ready
            and not type(self).no_delete_records
            and self.dlq_mode == "off"  # the DLQ checks assume the log keeps every record
            and any(self.o.high_watermark(tp) > self.o.log_start[tp] for tp in self.tps)
        )
    )
    @rule(data=st.data())
    def delete_records(self, data: st.DataObject) -> None:
        """Move a partition's log start (DeleteRecords) to a later batch or the log end."""
        tps = [tp for tp in self.tps if self.o.high_watermark(tp) > self.o.log_start[tp]]
        tp = self._pick(data, tps, "partition")
        # Only at batch boundaries: Kafka 4.4 delivers the records of a batch that the new log
        # start cuts, below the log start (docs/conformance.md); the model does not.
        bounds = [b.first_offset for b in self.o.log[tp] if b.first_offset > self.o.log_start[tp]]
        offset = self._pick(data, [*bounds, self.o.high_watermark(tp)], "offset")
        assert self.admin is not None
        try:
            low, code = kc.delete_records(self.admin, self.topic, tp[1], offset)
        except kc.ClientError as e:
            if not self.admin.closed:
                raise SetupError(f"DeleteRecords: {e}") from e
            # Tansu advertises DeleteRecords but closes the connection on it: no log-start
            # checks on such a target (docs/conformance.md); the example goes on.
            type(self).no_delete_records = True
            self.log(f"DeleteRecords p{tp[1]} before {offset} -> connection closed ({e})")
            self.admin.reopen()
            return
        self.log(f"DeleteRecords p{tp[1]} before {offset} -> {err_name(code) if code else low}")
        if code or low != offset:
            raise SetupError(f"DeleteRecords p{tp[1]} to {offset}: {err_name(code)}, low {low}")
        self.o.log_start[tp] = offset
        self.pending.add("log-start.move")

    # ------------------------------------------------------------------ drawing operations

    # Draws whose bounds depend on the target's answers (held records, the log end) would make
    # Hypothesis see "inconsistent data generation" when a live target's timing differs between
    # two runs of one example: draw from fixed bounds and map into the wanted range instead.
    @staticmethod
    def _int(data: st.DataObject, lo: int, hi: int, label: str) -> int:
        return lo + data.draw(st.integers(0, 1 << 16), label=label) % (hi - lo + 1)

    @staticmethod
    def _pick(data: st.DataObject, seq: Sequence[Any], label: str) -> Any:
        return seq[data.draw(st.integers(0, 1 << 16), label=label) % len(seq)]

    def _epoch(self, member: str, kind: str, *, ack: bool) -> int:
        current = self.o.session_epoch(member)
        if kind == "current":
            return current if current is not None else (1 if ack else 0)
        if kind == "zero":
            return 0
        if kind == "final":
            return -1
        return current + 1 if current else 5

    def _draw_acks(self, data: st.DataObject, member: str, kind: str) -> dict[TP, AckRanges]:
        o = self.o
        types_single = st.sampled_from([1, 1, 2, 2, 3, 0])
        if kind in ("own", "other", "renew"):
            who = member
            if kind == "other":
                others = [m for m in MEMBERS if m != member and o.held_by(m)]
                if not others:
                    kind = "any"
                else:
                    who = self._pick(data, others, "owner")
            held = o.held_by(who) if kind != "any" else {}
            if held:
                tp = self._pick(data, sorted(held), "partition")
                first, last, _deadline = self._pick(data, held[tp], "range")
                lo = self._int(data, first, last, "from")
                hi = self._int(data, lo, min(last, lo + 30), "to")
                if kind == "renew":
                    types: list[int] = [4]
                elif data.draw(st.booleans(), label="per-offset"):
                    types = [self._pick(data, [0, 1, 2, 3], "type") for _ in range(lo, hi + 1)]
                else:
                    types = [data.draw(types_single, label="type")]
                return {tp: [(lo, hi, types)]}
            kind = "any"
        tp = self._pick(data, self.tps, "partition")
        hw = o.high_watermark(tp)
        if kind == "malformed":
            flaw = data.draw(
                st.sampled_from(
                    ["reversed", "count", "type", "overlap", "unordered", "empty", "renew"]
                ),
                label="flaw",
            )
            f = self._int(data, 0, max(hw, 1), "from")
            if flaw == "reversed":
                return {tp: [(f + 1, f, [1])]}
            if flaw == "count":
                return {tp: [(f, f + 2, [1, 1])]}
            if flaw == "type":
                return {tp: [(f, f, [self._pick(data, [5, -1, 9], "t")])]}
            if flaw == "overlap":
                return {tp: [(f, f + 1, [1]), (f + 1, f + 2, [1])]}
            if flaw == "unordered":
                return {tp: [(f + 3, f + 4, [1]), (f, f + 1, [1])]}
            if flaw == "renew":  # RENEW without IsRenewAck
                return {tp: [(f, f, [4])]}
            return {tp: [(f, f, [])]}
        f = self._int(data, 0, hw + 2, "from")
        la = self._int(data, f, f + 4, "to")
        return {tp: [(f, la, [data.draw(types_single, label="type")])]}

    def _ack_tags(self, member: str, acks: Mapping[TP, AckRanges], now: int) -> set[str]:
        tags: set[str] = set()
        for tp, ranges in acks.items():
            sp = self.o.parts.get(tp)
            prev = -1
            for f, la, types in ranges:
                width = la - f + 1
                if f > la or not types or len(types) not in (1, width) or f <= prev:
                    tags.add("ack.malformed")
                if any(t not in (0, 1, 2, 3, 4) for t in types):
                    tags.add("ack.malformed")
                prev = la
                if len(types) > 1:
                    tags.add("ack.per-offset")
                for t in types:
                    tags.add(
                        {
                            0: "ack.gap",
                            1: "ack.accept",
                            2: "ack.release",
                            3: "ack.reject",
                            4: "ack.renew",
                        }.get(t, "ack.malformed")
                    )
                if sp is None or f > la:
                    continue
                if la > sp.end_offset or not sp.range_count():
                    tags.add("ack.out-of-range")
                for off in range(max(f, sp.start_offset), min(la, sp.end_offset) + 1):
                    st_ = sp.state_of(off)
                    if st_ is None:
                        continue
                    state, _count, owner, deadline = st_
                    if state.name != "ACQUIRED":
                        tags.add("ack.not-acquired")
                    elif owner != member:
                        tags.add("ack.ownership")
                    elif deadline <= now:
                        tags.add("lock.expiry")
        return tags

    # ------------------------------------------------------------------ ShareFetch

    def _share_fetch(
        self,
        data: st.DataObject,
        member: str,
        epoch_kind: str,
        mode: AcquireMode,
        max_records: int,
        batch_size: int,
        ack_kind: str,
        change: str,
    ) -> None:
        epoch = self._epoch(member, epoch_kind, ack=False)
        acks = self._draw_acks(data, member, ack_kind) if ack_kind != "none" else {}
        session = self.o.session_partitions(member)
        add: list[TP] = []
        forget: list[TP] = []
        if epoch == 0:
            add = (
                list(self.tps)
                if len(self.tps) == 1 or data.draw(st.booleans(), "all")
                else [self._pick(data, self.tps, "open-with")]
            )
        elif change == "add":
            missing = [tp for tp in self.tps if tp not in session]
            add = [self._pick(data, missing or self.tps, "add")]
        elif change == "forget" and session:
            forget = [self._pick(data, session, "forget")]
        params = FetchParams(max_records=max_records, batch_size=batch_size, mode=mode)
        self._do_fetch(member, epoch, add, forget, acks, params)

    # Three identical rules: Hypothesis picks rules uniformly, and fetching is the heart of it.
    share_fetch = _fetch_rule(_share_fetch)
    share_fetch_again = _fetch_rule(_share_fetch)
    share_fetch_more = _fetch_rule(_share_fetch)

    @precondition(lambda self: self.ready and any(self.o.held_by(m) for m in MEMBERS))
    @rule(data=st.data(), member=st.sampled_from(MEMBERS), via_fetch=st.booleans())
    def renew(self, data: st.DataObject, member: str, via_fetch: bool) -> None:
        acks = self._draw_acks(data, member, "renew")
        epoch = self._epoch(member, "current", ack=not via_fetch)
        if via_fetch:
            params = FetchParams(max_records=0, batch_size=0, max_bytes=0, min_bytes=0, renew=True)
            self._do_fetch(member, epoch, [], [], acks, params)
        else:
            self._do_ack(member, epoch, acks, renew=True)

    def _do_fetch(
        self,
        member: str,
        epoch: int,
        add: list[TP],
        forget: list[TP],
        acks: dict[TP, AckRanges],
        params: FetchParams,
    ) -> None:
        duration = params.max_wait_ms
        now = self.settle(duration)
        tags = self._ack_tags(member, acks, now) | self.pending
        if acks:
            tags.add("ack.piggybacked")
        cid = self.conn_id(member)
        candidates = self.o.share_fetch(
            member, cid, epoch, add=add, forget=forget, acks=acks, params=params, now_ms=now
        )
        first = candidates[0][0]
        tags |= self._fetch_tags(member, epoch, first, params, add, forget)
        desc = (
            f"{SHORT.get(member, member)}: ShareFetch epoch={epoch}"
            + (f" add={[p for _, p in add]}" if add else "")
            + (f" forget={[p for _, p in forget]}" if forget else "")
            + (f" acks={fmt_acks(acks)}" if acks else "")
            + (" renew" if params.renew else "")
            + (
                f" mode={params.mode.name.lower()} max_records={params.max_records} "
                f"batch_size={params.batch_size}"
                if params.max_records
                else ""
            )
        )
        t_send = self.clock()
        try:
            resp = kc.share_fetch(
                self.conn(member),
                group=self.group,
                member=member,
                epoch=epoch,
                add=add,
                forget=forget,
                acks=acks,
                max_wait_ms=params.max_wait_ms,
                min_bytes=params.min_bytes,
                max_bytes=params.max_bytes,
                max_records=params.max_records,
                batch_size=params.batch_size,
                acquire_mode=int(params.mode),
                renew=params.renew,
            )
        except kc.ClientError as e:
            self.log(desc)
            self.fail("protocol.answer", f"ShareFetch got no answer: {e}")
            return
        t_recv = self.clock()
        observed = self._observed_fetch(resp)
        self.log(f"{desc} -> {observed}")
        best: list[tuple[str, str]] | None = None
        for outcome, oracle in candidates:
            diffs, known = self._compare(
                resp,
                outcome,
                fetch=True,
                cand=oracle,
                member=member,
                now=now,
                acks={**dict.fromkeys(add, ()), **acks} if acks else {},
                params=params,
            )
            if not diffs:
                self.note_known(known)
                self.note_gaps(acks)
                before = self.o
                self.oracle = oracle
                self.track_kafka_batches(resp, before, params)
                self.fresh -= {tp for tp, po in outcome.partitions.items() if po.acquired}
                self.note_locks(now, t_recv)
                self.pending.clear()
                if epoch == -1 and not outcome.error:
                    self.pending.add("session.close")
                    self.after_close()
                if any(
                    a.delivery_count > 1 for po in outcome.partitions.values() for a in po.acquired
                ):
                    tags.add("acquire.delivery-count")
                self.passed(tags)
                return
            if best is None:
                best = diffs
        assert best is not None
        self._kafka_internal_error(resp.error_code, acks)
        if self.ambiguous(t_send, t_recv, duration):
            type(self).stats.inconclusive += 1
            assume(False)
        expected = self._fmt_outcome(first)
        area, what = best[0]
        self.fail(
            attribute(tags, area),
            f"{what}\n   target answered: {observed}\n   model predicted: {expected}"
            + (f" (or one of {len(candidates)} orders)" if len(candidates) > 1 else ""),
        )

    def _fetch_tags(
        self,
        member: str,
        epoch: int,
        outcome: Outcome,
        params: FetchParams,
        add: Sequence[TP],
        forget: Sequence[TP],
    ) -> set[str]:
        tags: set[str] = set()
        code = outcome.error
        if code == ErrorCode.INVALID_REQUEST and epoch == 0:
            tags.add("session.epoch0-acks")
        elif code == ErrorCode.SHARE_SESSION_NOT_FOUND:
            tags.add("session.not-found")
        elif code == ErrorCode.INVALID_SHARE_SESSION_EPOCH:
            tags.add("session.epoch-mismatch")
        if code:
            return tags
        if epoch == 0:
            tags.add("session.open")
        elif epoch == -1:
            tags.add("session.close")
        elif add or forget:
            tags.add("session.incremental")
        if params.renew:
            tags.add("ack.renew")
        if epoch != -1 and params.max_records > 0:
            tags.add(
                "acquire.record-limit"
                if params.mode is AcquireMode.RECORD_LIMIT
                else "acquire.batch-optimized"
            )
            parts = self.o.session_partitions(member) or tuple(add)
            if self.fresh & (set(parts) | set(add)):
                tags.add("init.auto-offset-reset")
            if len(set(parts) | set(add)) > 1:
                tags.add("session.multi-partition")
            if params.max_records < 500:
                tags.add("acquire.max-records")
            for tp in set(parts) | set(add):
                sp = self.o.parts.get(tp)
                if sp is None:
                    continue
                if sp.in_flight_count >= sp.max_in_flight:
                    tags.add("acquire.in-flight-limit")
                throttle = max(2, -(-sp.delivery_count_limit // 2))
                if any(
                    state.name == "AVAILABLE" and count >= throttle
                    for _f, _l, state, count, _o, _d in sp.ranges()
                ):
                    tags.add("acquire.throttling")
            if any(self.o.held_by(m) for m in MEMBERS if m != member):
                tags.add("acquire.sharing")
            if any(o.acquired for o in outcome.partitions.values()):
                tags.add("records.delivered")
        tags.add("lock.timeout-field")
        return tags

    def _observed_fetch(self, resp: Any) -> str:
        if resp.error_code:
            return f"{err_name(resp.error_code)}"
        parts = []
        for t in resp.responses:
            for p in t.partitions:
                bits = [f"p{p.partition_index}"]
                if p.error_code:
                    bits.append(err_name(p.error_code))
                if getattr(p, "acknowledge_error_code", 0):
                    bits.append("ack " + err_name(p.acknowledge_error_code))
                acquired = getattr(p, "acquired_records", None)
                if acquired:
                    bits.append(
                        fmt_acquired(
                            [(a.first_offset, a.last_offset, a.delivery_count) for a in acquired]
                        )
                    )
                parts.append(" ".join(bits))
        return "{" + ", ".join(parts) + "}"

    def _fmt_outcome(self, outcome: Outcome) -> str:
        if outcome.error:
            return err_name(outcome.error)
        parts = []
        for (_, p), po in sorted(outcome.partitions.items(), key=lambda kv: kv[0][1]):
            bits = [f"p{p}"]
            if po.error:
                bits.append(err_name(po.error))
            if po.ack_error:
                bits.append("ack " + err_name(po.ack_error))
            if po.acquired:
                bits.append(fmt_acquired(po.acquired))
            parts.append(" ".join(bits))
        return "{" + ", ".join(parts) + "}"

    def _compare(
        self,
        resp: Any,
        outcome: Outcome,
        *,
        fetch: bool,
        cand: Oracle,
        member: str,
        now: int,
        acks: Mapping[TP, AckRanges],
        params: FetchParams | None = None,
    ) -> tuple[list[tuple[str, str]], list[str]]:
        """Differences between an answer and one predicted outcome, and the known differences
        (``known.py``) that were recognised on the way (``cand`` is brought in step with them)."""
        diffs: list[tuple[str, str]] = []
        known: list[str] = []
        strict = type(self).spec.strict
        lock_ms = self.o.lock_ms
        if resp.error_code != outcome.error:
            diffs.append(
                (
                    "top",
                    f"top-level error {err_name(resp.error_code)}, expected {err_name(outcome.error)}",
                )
            )
            return diffs, known
        timeout = getattr(resp, "acquisition_lock_timeout_ms", None)
        if outcome.error:
            if resp.responses:
                diffs.append(("top", "partitions listed along with a top-level error"))
            if timeout not in (None, 0):
                diffs.append(("lock-timeout", f"AcquisitionLockTimeoutMs {timeout} with an error"))
            return diffs, known
        if timeout is not None and timeout != lock_ms:
            diffs.append(
                ("lock-timeout", f"AcquisitionLockTimeoutMs {timeout}, expected {lock_ms}")
            )
        got: dict[TP, Any] = {}
        for t in resp.responses:
            for p in t.partitions:
                got[(t.topic_id, p.partition_index)] = p
        if set(got) != set(outcome.partitions):
            diffs.append(
                (
                    "listing",
                    f"listed partitions {sorted(p for _, p in got)}, expected "
                    f"{sorted(p for _, p in outcome.partitions)}",
                )
            )
        for tp, po in outcome.partitions.items():
            p = got.get(tp)
            if p is None:
                continue
            ack_code = p.acknowledge_error_code if fetch else p.error_code
            want_ack = po.ack_error if fetch else po.error
            if ack_code != want_ack:
                k = None if strict else self._known_ack(tp, acks.get(tp, ()), want_ack, ack_code)
                if k is not None:
                    known.append(k)
                else:
                    label = "acknowledge error" if fetch else "error"
                    diffs.append(
                        (
                            "ack",
                            f"p{tp[1]} {label} {err_name(ack_code)}, expected {err_name(want_ack)}",
                        )
                    )
            if not fetch:
                continue
            if p.error_code != po.error:
                diffs.append(
                    (
                        "acquire",
                        f"p{tp[1]} error {err_name(p.error_code)}, expected {err_name(po.error)}",
                    )
                )
            acquired = tuple(
                (int(a.first_offset), int(a.last_offset), int(a.delivery_count))
                for a in p.acquired_records
            )
            predicted = tuple(
                (a.first_offset, a.last_offset, a.delivery_count) for a in po.acquired
            )
            if acquired != predicted:
                k = (
                    None
                    if strict or params is None
                    else self._known_acquired(cand, tp, member, now, params, acquired, predicted)
                )
                if k is not None:
                    known.append(k)
                else:
                    diffs.append(
                        (
                            "acquire",
                            f"p{tp[1]} acquired {fmt_acquired(acquired)}, expected {fmt_acquired(predicted)}",
                        )
                    )
            missing = self._undelivered(tp, p)
            if missing:
                diffs.append(
                    ("records", f"p{tp[1]} acquired offsets {missing} missing from Records")
                )
        order = {"top": 0, "ack": 1, "acquire": 2, "listing": 3, "records": 4, "lock-timeout": 5}
        diffs.sort(key=lambda d: order.get(d[0], 9))
        return diffs, known

    def _kafka_internal_error(self, code: int, acks: Mapping[TP, AckRanges]) -> None:
        """Kafka 4.4 answers some acknowledgements of a partition whose log start DeleteRecords
        moved with a top-level UNKNOWN_SERVER_ERROR (an exception inside the broker). What it
        applied is unknown, so the model cannot follow: the example ends, counted as a known
        difference (docs/conformance.md)."""
        if code == ErrorCode.UNKNOWN_SERVER_ERROR and any(self.o.log_start[tp] > 0 for tp in acks):
            self.note_known(["kafka-error-after-log-start-move"])
            assume(False)

    def _known_ack(self, tp: TP, ranges: AckRanges, predicted: int, observed: int) -> str | None:
        """A documented difference in an acknowledgement's error code (nothing is applied
        either way)."""
        sp = self.o.parts.get(tp)
        if sp is None or not ranges:
            return None
        if (
            predicted == ErrorCode.INVALID_RECORD_STATE
            and observed == ErrorCode.INVALID_REQUEST
            and sp.range_count() == 0
            and 0 < self.o.log_start[tp] == sp.start_offset
        ):
            return "ack-after-log-start-move"
        return None

    def _known_acquired(
        self,
        cand: Oracle,
        tp: TP,
        member: str,
        now: int,
        params: FetchParams,
        acquired: tuple[tuple[int, int, int], ...],
        predicted: tuple[tuple[int, int, int], ...],
    ) -> str | None:
        """A documented difference in AcquiredRecords; ``cand`` is brought in step with Kafka."""
        got = expand(acquired)
        want = expand(predicted)
        if got == want:
            return "acquired-split"
        if params.mode is AcquireMode.BATCH_OPTIMIZED and want.items() <= got.items():
            # Kafka re-acquires whole cached (in-flight) batches; see kafka_batches.
            spans = self.kafka_batches.get(tp, [])
            touched = [(f, la) for f, la in spans if any(f <= o <= la for o in want)]
            extras = {o: c for o, c in got.items() if o not in want}
            if all(any(f <= o <= la for f, la in touched) for o in extras) and cand.replay_acquire(
                member, tp, runs(extras), now_ms=now, batch_size=params.batch_size
            ):
                return "reacquire-cached-batch"
        if want.items() <= got.items():
            # Kafka throttles by the size of its cached batch, not of what is left of it.
            sp = self.o.parts[tp]
            throttle = max(2, -(-sp.delivery_count_limit // 2))
            spans = self.kafka_batches.get(tp, [])
            touched = [(f, la) for f, la in spans if any(f <= o <= la for o in want)]
            extras = {o: c for o, c in got.items() if o not in want}
            if (
                all(c > throttle for c in got.values())
                and all(any(f <= o <= la for f, la in touched) for o in extras)
                and cand.replay_acquire(
                    member,
                    tp,
                    runs(extras),
                    now_ms=now,
                    batch_size=params.batch_size,
                    unthrottled=True,
                )
            ):
                return "throttle-cached-batch"
        return None

    def track_kafka_batches(self, resp: Any, before: Oracle, params: FetchParams) -> None:
        """Keep Kafka's in-flight batch boundaries (SharePartition.cachedState keys), which the
        model does not have: new records become one cached batch per AcquiredRecords entry
        (batch_optimized), or one batch up to the end of the log batch holding the last
        acquired record (record_limit). Batches leave once wholly below SPSO."""
        for t in resp.responses:
            for p in t.partitions:
                tp = (t.topic_id, p.partition_index)
                sp = before.parts.get(tp)
                if sp is None:
                    continue
                window_end = sp.end_offset + 1 if sp.range_count() else sp.start_offset
                spans = self.kafka_batches.setdefault(tp, [])
                for a in p.acquired_records:
                    first, last = int(a.first_offset), int(a.last_offset)
                    if first < window_end:
                        continue
                    if params.mode is AcquireMode.RECORD_LIMIT:
                        for b in before.log[tp]:
                            if b.first_offset <= last <= b.last_offset:
                                last = b.last_offset
                    spans.append((first, last))
        for tp, spans in self.kafka_batches.items():
            sp = self.o.parts[tp]
            if not sp.range_count():
                spans.clear()
            else:
                spans[:] = [(f, la) for f, la in spans if la >= sp.start_offset]

    def _undelivered(self, tp: TP, p: Any) -> list[int]:
        offsets: set[int] = set()
        for b in kc.decode_batches(p.records):
            offsets.update(b.record_offsets)
        data = {o for b in self.o.log[tp] for o in range(b.first_offset, b.last_offset + 1)}
        missing = [
            off
            for a in p.acquired_records
            for off in range(a.first_offset, a.last_offset + 1)
            if off in data and off not in offsets
        ]
        return missing[:10]

    # ------------------------------------------------------------------ ShareAcknowledge

    @precondition(lambda self: self.ready)
    @rule(
        data=st.data(),
        member=st.sampled_from(MEMBERS),
        epoch_kind=st.sampled_from(["current"] * 6 + ["zero", "final", "wrong"]),
        ack_kind=st.sampled_from(["own"] * 5 + ["other", "any", "malformed"]),
    )
    def share_acknowledge(
        self, data: st.DataObject, member: str, epoch_kind: str, ack_kind: str
    ) -> None:
        with_session = [m for m in MEMBERS if self.o.session_epoch(m) is not None]
        if with_session and member not in with_session and data.draw(st.booleans(), "redirect"):
            member = self._pick(data, with_session, "member with a session")
        epoch = self._epoch(member, epoch_kind, ack=True)
        acks = self._draw_acks(data, member, ack_kind)
        self._do_ack(member, epoch, acks, renew=False)

    def _do_ack(self, member: str, epoch: int, acks: dict[TP, AckRanges], *, renew: bool) -> None:
        now = self.settle(0)
        tags = self._ack_tags(member, acks, now) | self.pending
        candidates = self.o.share_acknowledge(member, epoch, acks=acks, renew=renew, now_ms=now)
        outcome = candidates[0][0]
        if outcome.error == ErrorCode.INVALID_SHARE_SESSION_EPOCH and epoch == 0:
            tags.add("session.ack-epoch0")
        elif outcome.error == ErrorCode.INVALID_SHARE_SESSION_EPOCH:
            tags.add("session.epoch-mismatch")
        elif outcome.error == ErrorCode.SHARE_SESSION_NOT_FOUND:
            tags.add("session.not-found")
        elif epoch == -1:
            tags.add("session.close")
        if not outcome.error:
            tags.add("lock.timeout-field")
        desc = (
            f"{SHORT.get(member, member)}: ShareAcknowledge epoch={epoch} acks={fmt_acks(acks)}"
            + (" renew" if renew else "")
        )
        t_send = self.clock()
        try:
            resp = kc.share_acknowledge(
                self.conn(member),
                group=self.group,
                member=member,
                epoch=epoch,
                acks=acks,
                renew=renew,
            )
        except kc.ClientError as e:
            self.log(desc)
            self.fail("protocol.answer", f"ShareAcknowledge got no answer: {e}")
            return
        t_recv = self.clock()
        observed = (
            err_name(resp.error_code)
            if resp.error_code
            else "{"
            + ", ".join(
                f"p{p.partition_index} {err_name(p.error_code)}"
                for t in resp.responses
                for p in t.partitions
            )
            + "}"
        )
        self.log(f"{desc} -> {observed}")
        diffs, known = self._compare(
            resp, outcome, fetch=False, cand=candidates[0][1], member=member, now=now, acks=acks
        )
        if not diffs:
            self.note_known(known)
            self.note_gaps(acks)
            self.oracle = candidates[0][1]
            self.note_locks(now, t_recv)
            if epoch == -1 and not outcome.error:
                self.pending.add("session.close")
                self.after_close()
            self.passed(tags)
            return
        self._kafka_internal_error(resp.error_code, acks)
        if self.ambiguous(t_send, t_recv, 0):
            type(self).stats.inconclusive += 1
            assume(False)
        area, what = diffs[0]
        self.fail(
            attribute(tags, area),
            f"{what}\n   target answered: {observed}\n   model predicted: "
            f"{self._fmt_outcome(outcome)}",
        )

    # ------------------------------------------------------------------ connections, time, configs

    @precondition(lambda self: self.ready and bool(self.conns))
    @rule(data=st.data(), abort=st.booleans())
    def drop_connection(self, data: st.DataObject, abort: bool) -> None:
        members = sorted(m for m in self.conns if m in MEMBERS and not self.conns[m].closed)
        if not members:
            return
        member = self._pick(data, members, "member")
        self.settle(type(self).spec.after_drop_ms)
        self.conns[member].close(abort=abort)
        self.o.connection_closed(self.conn_ids[member])
        del self.conns[member]
        time.sleep(type(self).spec.after_drop_ms / 1000)
        self.pending.add("session.connection-drop")
        self.log(f"{SHORT[member]}: connection closed{' (reset)' if abort else ''}")

    @precondition(lambda self: self.ready and bool(self.o.lock_deadlines()))
    @rule()
    def sleep_past_locks(self) -> None:
        end = max(hi for d, (_lo, hi) in self.windows.items() if d in self.o.lock_deadlines())
        wait = end - self.clock() + 1
        if wait > 0:
            time.sleep(wait / 1000)
        self.settle(0)
        self.log(f"sleep until every lock has ended (t={self.clock()} ms)")

    @precondition(lambda self: self.ready)
    @rule(
        data=st.data(),
        limit=st.one_of(st.none(), st.sampled_from([2, 3, 4, 6, 0])),
        max_locks=st.one_of(st.none(), st.sampled_from([100, 2000, 0])),
    )
    def alter_group_config_or_heartbeat(
        self, data: st.DataObject, limit: int | None, max_locks: int | None
    ) -> None:
        """One rule for the rarer operations: a config change or a heartbeat."""
        if self._int(data, 0, 3, "heartbeat instead") > 0:
            self.heartbeat(
                self._pick(data, MEMBERS, "member"),
                data.draw(
                    st.sampled_from(["join", "join", "current", "current", "fenced", "leave"]),
                    label="kind",
                ),
            )
            return
        self.alter_group_config(limit, max_locks)

    def alter_group_config(self, limit: int | None, max_locks: int | None) -> None:
        """Set (or, with 0, delete: back to the broker default) the two dynamic configs."""
        spec = type(self).spec
        defaults = spec.broker_defaults
        if defaults is None:  # the broker's defaults are unknown: never delete
            limit = limit or None
            max_locks = max_locks or None
        configs: dict[str, str | None] = {}
        if limit is not None:
            configs["share.delivery.count.limit"] = str(limit) if limit else None
        if max_locks is not None:
            configs["share.partition.max.record.locks"] = str(max_locks) if max_locks else None
        if not configs:
            return
        if defaults is not None:
            limit = limit or (defaults[0] if limit == 0 else None)
            max_locks = max_locks or (defaults[1] if max_locks == 0 else None)
        assert self.admin is not None
        self.settle(type(self).spec.after_config_ms)
        boot = self.admin
        code = kc.alter_group_configs(boot, self.group, configs)
        self.log(f"IncrementalAlterConfigs {configs} -> {err_name(code)}")
        if code:
            self.fail("config.dynamic", f"altering group configs {configs}: {err_name(code)}")
        self.o.reconfigure(delivery_count_limit=limit, max_in_flight=max_locks)
        time.sleep(type(self).spec.after_config_ms / 1000)
        self.pending.add("config.dynamic")

    # ------------------------------------------------------------------ membership

    def heartbeat(self, member: str, kind: str) -> None:
        assert self.members_model is not None and self.coord is not None
        model = self.members_model
        now = self.clock()
        joined = member in model.members
        model_epoch = model.members[member].member_epoch if joined else 0
        target_epoch = self.member_epochs.get(member, 0)
        if kind == "join":
            m_epoch, t_epoch, topics = 0, 0, [self.topic]
        elif kind == "leave":
            m_epoch = t_epoch = -1
            topics = None
        elif kind == "fenced":
            m_epoch, t_epoch, topics = model_epoch + 7, target_epoch + 7, None
        else:
            m_epoch, t_epoch, topics = (model_epoch or 3), (target_epoch or 3), None
        try:
            result = model.heartbeat(
                member,
                m_epoch,
                now_ms=now,
                partition_counts={self.topic: len(self.tps)},
                subscribed_topic_names=topics,
            )
            expected = 0
        except ShareApiError as e:
            result = None
            expected = int(e.code)
        resp = kc.heartbeat(
            self.coord, group=self.group, member=member, epoch=t_epoch, topics=topics
        )
        self.log(
            f"{SHORT[member]}: ShareGroupHeartbeat epoch={t_epoch}"
            + (f" topics={topics}" if topics else "")
            + f" -> {err_name(resp.error_code) if resp.error_code else 'epoch ' + str(resp.member_epoch)}"
        )
        check = "member.join" if expected == 0 else "member.errors"
        if resp.error_code != expected:
            self.fail(
                check,
                f"ShareGroupHeartbeat {kind}: {err_name(resp.error_code)}, expected {err_name(expected)}",
            )
        if result is not None:
            if t_epoch == -1:
                if resp.member_epoch != -1:
                    self.fail(check, f"leave answered epoch {resp.member_epoch}, expected -1")
                self.member_epochs.pop(member, None)
            else:
                if resp.member_epoch <= 0 or resp.member_id != member:
                    self.fail(
                        check,
                        f"heartbeat answered member {resp.member_id} epoch {resp.member_epoch}",
                    )
                self.member_epochs[member] = resp.member_epoch
                if resp.assignment is not None:
                    ours = {tp[1] for tp in self.tps} | set(range(type(self).spec.partitions))
                    for t in resp.assignment.topic_partitions:
                        if t.topic_id != self.tps[0][0] or not set(t.partitions) <= ours:
                            self.fail(check, f"assignment of unknown partitions {t}")
        self.passed({check})


def machine_for(spec: TargetSpec, stats: Stats | None = None) -> type[ConformanceMachine]:
    """A ConformanceMachine subclass bound to one target (and one Stats to count into)."""
    attrs: dict[str, object] = {"spec": spec, "stats": stats or Stats()}
    cls = type(f"Conformance_{spec.name.replace('-', '_')}", (ConformanceMachine,), attrs)
    return cls


__all__ = ["ConformanceFailure", "ConformanceMachine", "SetupError", "TargetSpec", "machine_for"]
