"""How a ShareFetch and a ShareAcknowledge are served, as pure steps over the engine.

A ShareFetch, driven:

1. ``ShareCore.share_fetch(request, ...)`` checks the request, does the share-session step and
   applies the piggy-backed acknowledgements. It returns ``Refused`` or a ``ShareFetch``
   whose ``ack_changes`` the driver persists (and reports with ``persisted``) and whose
   ``action`` says what comes next.
2. FETCH: ``prepare`` names the share partitions to initialize (``InitNeed``); the driver
   creates them, then ``plan`` fixes the order (round robin by session epoch, as Kafka's
   SharePartitionManager does) and the bytes per partition (MaxBytes split evenly, at most
   1 MiB each, as Kafka's UNIFORM strategy).
3. Rounds: ``new_round`` hands out ``Turn``s. A turn the driver finds busy (another request
   holds the partition's fetch lock) is passed over, and taken again only when no other
   partition gave records. For each turn ``read`` gives a ``PartitionRead``: it expires due
   locks, stops at the in-flight limit, asks for a ``LogRead`` and turns its result into an
   ``Outcome`` (acquisition, out-of-range and log-start movement, errors). One record budget
   (MaxRecords) spans the partitions of a round.
4. A round without records, before MaxWaitMs: the driver waits until a share partition changes
   or the log grows (``Round.waiting_for_log`` names the partitions to watch upstream) and runs
   another round, in which a known high watermark is trusted.
5. ``answer()`` lists the partitions as Kafka does: every partition of a new session; otherwise
   those with records, errors or acknowledgement results, and the newly added ones.

Every state change comes back as an ``sharegroup.engine.Change``: the driver persists it (or
not: acquisitions are never persisted) and wakes the fetches waiting on its share partition.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic
from uuid import UUID

from model import (
    AckBatch,
    AcquireMode,
    ErrorCode,
    GroupConfig,
    LogBatch,
    SessionContext,
    ShareApiError,
    SharePartition,
    ack_shape_error,
)
from sharegroup.core.messages import (
    AckAnswer,
    AckOutcome,
    Acquired,
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
    P,
    PartitionAnswer,
    PartitionFailed,
    ReadFailed,
    ReadResult,
    Refused,
    ShareAcknowledgeRequest,
    ShareFetchRequest,
    TopicPartition,
)
from sharegroup.engine import Change, PartitionKey, ShareEngine

# The most a partition's log read asks for (Kafka's max.partition.fetch.bytes default).
PARTITION_FETCH_BYTES = 1 << 20
# MaxRecords when a request gives none (Kafka's share.max.fetch.records default).
DEFAULT_MAX_RECORDS = 500
RENEW = 4
PERSIST_FAILED = "the acknowledgement could not be persisted"
FENCED = "this proxy instance was fenced by a newer one"
NOT_LED = "another proxy instance leads this partition's share state"


class ShareCore:
    """The decisions of the share APIs over one engine (one proxy instance)."""

    def __init__(self, engine: ShareEngine) -> None:
        self.engine = engine
        # Does this instance lead the share partition (fleet ownership)? None: every one. A
        # share partition it does not lead gets NOT_LEADER_OR_FOLLOWER, as when fenced.
        self.leads: Callable[[PartitionKey], bool] | None = None

    def not_led(self, key: PartitionKey) -> bool:
        return self.leads is not None and not self.leads(key)

    # ------------------------------------------------------------------ acknowledgements
    def apply_acks(
        self,
        group_id: str,
        member_id: str,
        tp: TopicPartition,
        batches: Sequence[AckBatch],
        *,
        now_ms: int,
        renew: bool,
        topic_names: Mapping[UUID, str],
        fenced: bool = False,
    ) -> AckOutcome:
        """One partition's acknowledgements, all or nothing. No lock expiry first: an expired
        lock already refuses the acknowledgement, and the expiry is the timer's to apply."""
        acks = tuple(batches)
        if not renew and any(RENEW in b.ack_types for b in acks):
            # Kafka: acknowledge type 4 (RENEW) only in a request with IsRenewAck set.
            return AckOutcome(
                tp,
                acks,
                ErrorCode.INVALID_REQUEST,
                "RENEW acknowledgement without IsRenewAck",
                None,
            )
        if fenced:
            return AckOutcome(
                tp, acks, ErrorCode.NOT_LEADER_OR_FOLLOWER, "this proxy instance was fenced", None
            )
        if self.not_led((group_id, *tp)):
            return AckOutcome(tp, acks, ErrorCode.NOT_LEADER_OR_FOLLOWER, NOT_LED, None)
        if tp[0] not in topic_names:
            return AckOutcome(
                tp, acks, ErrorCode.UNKNOWN_TOPIC_ID, f"unknown topic id {tp[0]}", None
            )
        try:
            change = self.engine.acknowledge((group_id, *tp), member_id, acks, now_ms)
        except ShareApiError as e:
            return AckOutcome(tp, acks, e.code, e.message, None, refused_by_model=True)
        return AckOutcome(tp, acks, ErrorCode.NONE, None, change)

    def share_acknowledge(
        self,
        req: ShareAcknowledgeRequest,
        *,
        node_id: int,
        now_ms: int,
        topic_names: Mapping[UUID, str],
        fenced: bool = False,
    ) -> Refused | ShareAcknowledge:
        if req.group_id is None:
            return Refused(ErrorCode.INVALID_REQUEST, "group id must not be null")
        if req.renew is None:
            return Refused(ErrorCode.INVALID_REQUEST, "bad IsRenewAck")
        lock_ms = self.engine.group_config(req.group_id).record_lock_duration_ms
        cache = self.engine.session_cache(node_id)
        try:
            ctx = cache.acknowledge_context(req.group_id, req.member_id, req.epoch)
        except ShareApiError as e:
            return Refused(e.code, e.message)
        outcomes = [
            self.apply_acks(
                req.group_id,
                req.member_id,
                tp,
                batches,
                now_ms=now_ms,
                renew=req.renew,
                topic_names=topic_names,
                fenced=fenced,
            )
            for tp, batches in req.partitions
        ]
        return ShareAcknowledge(
            self, req.group_id, req.member_id, node_id, ctx, outcomes, lock_ms, now_ms
        )

    # ------------------------------------------------------------------ fetch
    def share_fetch(
        self,
        req: ShareFetchRequest,
        *,
        node_id: int,
        connection_id: int,
        now_ms: int,
        topic_names: Mapping[UUID, str],
        fenced: bool = False,
    ) -> Refused | ShareFetch[P]:
        if req.group_id is None:
            return Refused(ErrorCode.INVALID_REQUEST, "group id must not be null")
        if req.mode is None:
            return Refused(ErrorCode.INVALID_REQUEST, "unknown ShareAcquireMode")
        if req.renew and (req.max_bytes or req.min_bytes or req.max_records or req.max_wait_ms):
            return Refused(
                ErrorCode.INVALID_REQUEST, "a renew-only ShareFetch must have zero fetch parameters"
            )
        add = [tp for tp, _ in req.partitions]
        acks = [(tp, batches) for tp, batches in req.partitions if batches]
        cache = self.engine.session_cache(node_id)
        try:
            ctx = cache.fetch_context(
                req.group_id,
                req.member_id,
                req.epoch,
                connection_id=connection_id,
                add=add,
                forget=req.forget,
                has_acknowledgements=bool(acks),
            )
        except ShareApiError as e:
            delay = req.max_wait_ms if e.code == ErrorCode.SHARE_SESSION_LIMIT_REACHED else 0
            return Refused(e.code, e.message, max(delay, 0))
        outcomes = [
            self.apply_acks(
                req.group_id,
                req.member_id,
                tp,
                batches,
                now_ms=now_ms,
                renew=req.renew,
                topic_names=topic_names,
                fenced=fenced,
            )
            for tp, batches in acks
        ]
        return ShareFetch(self, req, req.group_id, node_id, ctx, outcomes, now_ms)

    # ------------------------------------------------------------------ membership
    def topics_to_know(self, group_id: str, subscribed: Sequence[str] | None) -> list[str]:
        """The topics a heartbeat needs metadata of: the member's subscription and the
        group's (the assignment covers them all)."""
        topics = list(subscribed or ())
        entry = self.engine.group(group_id)
        if entry is not None:
            topics += list(entry.group.subscribed_topics())
        return sorted(set(topics))

    def heartbeat(
        self,
        req: HeartbeatRequest,
        *,
        now_ms: int,
        partition_counts: dict[str, int],
        topic_ids: Mapping[str, UUID],
        fenced: bool = False,
        may_exist: Callable[[str], bool] | None = None,
    ) -> HeartbeatAnswer:
        """ShareGroupHeartbeat: join, heartbeat or leave; a new assignment names the share
        partitions to create (``InitNeed``).

        Kafka's coordinator keeps a group's members in a topic, so a member still finds its
        group after a restart or a coordinator move; here membership lives in memory only. A
        heartbeat (epoch > 0) for a group not in memory that ``may_exist`` (the state topic
        knows it, or another fleet instance coordinated it) gets UNKNOWN_MEMBER_ID, on which
        clients rejoin with epoch 0, rather than Kafka's GROUP_ID_NOT_FOUND for a group
        that never existed, which is fatal to a share consumer."""
        if fenced:
            return HeartbeatAnswer(None, Refused(ErrorCode.NOT_COORDINATOR, FENCED))
        if (
            req.member_epoch > 0
            and may_exist is not None
            and self.engine.group(req.group_id) is None
            and may_exist(req.group_id)  # asked only for a group not in memory
        ):
            return HeartbeatAnswer(
                None,
                Refused(
                    ErrorCode.UNKNOWN_MEMBER_ID,
                    f"member {req.member_id} is not known to this coordinator of group "
                    f"{req.group_id} (it restarted or took the group over): rejoin",
                ),
            )
        try:
            result = self.engine.heartbeat(
                req.group_id,
                req.member_id,
                req.member_epoch,
                now_ms=now_ms,
                partition_counts=partition_counts,
                subscribed_topic_names=req.subscribed_topic_names,
                rack_id=req.rack_id,
                client_id=req.client_id,
                client_host=req.client_host,
            )
        except ShareApiError as e:
            return HeartbeatAnswer(None, Refused(e.code, e.message))
        needs: list[InitNeed] = []
        if result.assignment is not None:
            needs = self.partitions_to_initialize(req.group_id, result.assignment, topic_ids)
        return HeartbeatAnswer(result, None, tuple(needs))

    def describe(
        self, group_ids: Sequence[str], topic_ids: Mapping[str, UUID]
    ) -> list[DescribedGroup]:
        """ShareGroupDescribe: each group's state and members with their assignments (topics
        the driver does not know are left out of them)."""
        out: list[DescribedGroup] = []
        for group_id in group_ids:
            entry = self.engine.group(group_id)
            if entry is None or not entry.exists:
                out.append(
                    DescribedGroup(
                        group_id,
                        ErrorCode.GROUP_ID_NOT_FOUND,
                        f"Group {group_id} not found.",
                    )
                )
                continue
            g = entry.group
            members = tuple(
                DescribedMember(
                    m.member_id,
                    m.rack_id,
                    m.member_epoch,
                    m.client_id,
                    m.client_host,
                    tuple(m.subscribed_topic_names),
                    tuple(
                        (topic_ids[name], name, tuple(parts))
                        for name, parts in sorted(m.assignment.items())
                        if name in topic_ids
                    ),
                )
                for m in g.members.values()
            )
            out.append(
                DescribedGroup(
                    group_id,
                    state=g.state,
                    group_epoch=g.group_epoch,
                    assignment_epoch=g.assignment_epoch,
                    assignor="simple",
                    members=members,
                )
            )
        return out

    # ------------------------------------------------------------------ initialization
    def start_reset(self, group_id: str, topic_id: UUID) -> str:
        """Where a new share partition starts: at the earliest offset when the group already
        consumes other partitions of the topic (so nothing produced to a partition added to
        the topic before it was initialized is lost, as Kafka's share coordinator does), else
        where share.auto.offset.reset says."""
        entry = self.engine.group(group_id, create=True)
        assert entry is not None
        if any(t == topic_id for t, _ in entry.partitions):
            return "earliest"
        return self.engine.group_config(group_id).auto_offset_reset

    def partitions_to_initialize(
        self,
        group_id: str,
        assignment: Mapping[str, Sequence[int]],
        topic_ids: Mapping[str, UUID],
    ) -> list[InitNeed]:
        """The share partitions of an assignment that do not exist yet (topics the driver
        does not know are left out)."""
        needs: list[InitNeed] = []
        for name, parts in assignment.items():
            topic_id = topic_ids.get(name)
            if topic_id is None:
                continue
            reset = self.start_reset(group_id, topic_id)
            for p in parts:
                key = (group_id, topic_id, p)
                if self.engine.share_partition(key) is None:
                    needs.append(InitNeed(key, name, reset))
        return needs

    def close_session(
        self, node_id: int, group_id: str, member_id: str, *, now_ms: int
    ) -> list[Change]:
        """Close a member's share session (epoch -1): its acquired records are released,
        after the redelivery back-off when the group has one."""
        return self.engine.close_session(node_id, group_id, member_id, now_ms=now_ms)


def _isolation(config: GroupConfig) -> int:
    return 1 if config.isolation_level == "read_committed" else 0


def _session_tp(tp: tuple[object, int]) -> TopicPartition:
    topic_id = tp[0]
    return (topic_id if isinstance(topic_id, UUID) else UUID(str(topic_id)), tp[1])


class ShareAcknowledge:
    """A ShareAcknowledge past its session step: ``changes`` to persist, then ``answer``."""

    def __init__(
        self,
        core: ShareCore,
        group_id: str,
        member_id: str,
        node_id: int,
        ctx: SessionContext,
        outcomes: list[AckOutcome],
        lock_timeout_ms: int,
        now_ms: int,
    ) -> None:
        self.core = core
        self.now_ms = now_ms
        self.group_id = group_id
        self.member_id = member_id
        self.node_id = node_id
        self.final = ctx.final
        self.outcomes = outcomes
        self.lock_timeout_ms = lock_timeout_ms

    @property
    def changes(self) -> list[Change]:
        return [o.change for o in self.outcomes if o.change is not None]

    def close(self) -> list[Change]:
        """Epoch -1: once the acknowledgements are durable, the session closes."""
        if not self.final:
            return []
        return self.core.close_session(
            self.node_id, self.group_id, self.member_id, now_ms=self.now_ms
        )

    def answer(self, failed: Mapping[PartitionKey, ErrorCode] | None = None) -> AckAnswer:
        """The answer, once the changes were persisted; ``failed`` are the share partitions
        whose write failed (their acknowledgements are answered with that error)."""
        failed = failed or {}
        out = AckAnswer(lock_timeout_ms=self.lock_timeout_ms)
        for o in self.outcomes:
            code, message = o.code, o.message
            lost = failed.get((self.group_id, *o.tp))
            if lost is not None:
                code, message = lost, PERSIST_FAILED
            out.partitions.append(
                PartitionAnswer(o.tp[0], o.tp[1], ack_code=code, ack_message=message)
            )
        return out


@dataclass(frozen=True, slots=True)
class Turn:
    """One partition's turn in a round. ``may_pass``: the driver may pass over it when another
    request holds its fetch lock."""

    tp: TopicPartition
    key: PartitionKey
    topic: str
    budget: int
    may_pass: bool


@dataclass(slots=True)
class Round(Generic[P]):
    """One pass over the session's partitions with one record budget."""

    todo: list[tuple[TopicPartition, str]]
    budget: int
    group_id: str
    outcomes: dict[TopicPartition, Outcome[P]] = field(default_factory=dict)
    waiting_for_log: list[TopicPartition] = field(default_factory=list)
    acquired_any: bool = False
    _busy: list[tuple[TopicPartition, str]] = field(default_factory=list)
    _blocking: bool = False

    def next_turn(self) -> Turn | None:
        """The next partition to serve, or None when the round is over: the budget is spent,
        or every partition had its turn (busy ones again, waiting for their lock, only when
        no other partition gave records)."""
        if self.budget <= 0:
            return None
        if not self.todo:
            if not self._busy or self.acquired_any:
                return None
            self.todo, self._busy, self._blocking = self._busy, [], True
        tp, topic = self.todo.pop(0)
        return Turn(tp, (self.group_id, *tp), topic, self.budget, not self._blocking)

    def passed(self, turn: Turn) -> None:
        """The partition is busy: it comes again at the end, if no other gives records."""
        self._busy.append((turn.tp, turn.topic))

    def took(self, turn: Turn, outcome: Outcome[P]) -> None:
        if isinstance(outcome, NoRecords):
            if outcome.wait_for_log:
                self.waiting_for_log.append(turn.tp)
            return
        self.outcomes[turn.tp] = outcome
        if isinstance(outcome, Acquired) and outcome.count:
            self.acquired_any = True
            self.budget -= outcome.count


class ShareFetch(Generic[P]):
    """A ShareFetch past its session step and acknowledgements."""

    def __init__(
        self,
        core: ShareCore,
        req: ShareFetchRequest,
        group_id: str,
        node_id: int,
        ctx: SessionContext,
        acks: list[AckOutcome],
        now_ms: int,
    ) -> None:
        self.core = core
        self.req = req
        self.group_id = group_id
        self.member_id = req.member_id
        self.node_id = node_id
        self.ctx = ctx
        self.acks = acks
        self.config = core.engine.group_config(group_id)
        self.isolation = _isolation(self.config)
        self.now_ms = now_ms
        self.deadline_ms = now_ms + max(req.max_wait_ms, 0)
        self.max_records = req.max_records if req.max_records > 0 else DEFAULT_MAX_RECORDS
        self.batch_size = req.batch_size if req.batch_size > 0 else self.max_records
        self.persist_failed: dict[PartitionKey, ErrorCode] = {}
        self.errors: dict[TopicPartition, PartitionFailed] = {}
        self.parts: list[tuple[TopicPartition, str]] = []
        self.partition_bytes = PARTITION_FETCH_BYTES
        self.results: dict[TopicPartition, Outcome[P]] = {}
        self.rounds = 0
        if ctx.final:
            self.action = FetchAction.CLOSE
        elif req.renew or req.max_records == 0 or req.max_bytes == 0:
            self.action = FetchAction.ACKS_ONLY
        else:
            self.action = FetchAction.FETCH

    # ------------------------------------------------------------------ acknowledgements
    @property
    def ack_changes(self) -> list[Change]:
        """What the acknowledgements changed: persisted before the answer goes."""
        return [o.change for o in self.acks if o.change is not None]

    def persisted(self, failed: Mapping[PartitionKey, ErrorCode]) -> None:
        """The acknowledgements' write is done; ``failed``: share partitions it failed for."""
        self.persist_failed.update(failed)

    def close(self) -> list[Change]:
        """Epoch -1: the session closes once the acknowledgements are durable."""
        return self.core.close_session(
            self.node_id, self.group_id, self.member_id, now_ms=self.now_ms
        )

    # ------------------------------------------------------------------ partitions
    @property
    def session_partitions(self) -> list[TopicPartition]:
        return [_session_tp(tp) for tp in self.ctx.session.partitions]

    def unknown_topic_ids(self, topic_names: Mapping[UUID, str]) -> list[UUID]:
        """Topic ids of the session the driver does not know (worth a metadata refresh)."""
        return list(dict.fromkeys(t for t, _ in self.session_partitions if t not in topic_names))

    def prepare(self, topic_names: Mapping[UUID, str], *, fenced: bool = False) -> list[InitNeed]:
        """Sort the session's partitions: unknown topic ids are answered UNKNOWN_TOPIC_ID (all
        of them NOT_LEADER_OR_FOLLOWER when this instance is fenced); share partitions that do
        not exist yet are to be initialized (``ShareCore.start_reset`` says where)."""
        engine = self.core.engine
        self.parts = []
        needs: list[InitNeed] = []
        for tp in self.session_partitions:
            if fenced:
                self.errors[tp] = PartitionFailed(ErrorCode.NOT_LEADER_OR_FOLLOWER, FENCED)
                continue
            if self.core.not_led((self.group_id, *tp)):
                self.errors[tp] = PartitionFailed(ErrorCode.NOT_LEADER_OR_FOLLOWER, NOT_LED)
                continue
            name = topic_names.get(tp[0])
            if name is None:
                self.errors[tp] = PartitionFailed(ErrorCode.UNKNOWN_TOPIC_ID, "unknown topic id")
                continue
            key = (self.group_id, *tp)
            if engine.share_partition(key) is None:
                needs.append(InitNeed(key, name, self.core.start_reset(self.group_id, tp[0])))
            self.parts.append((tp, name))
        return needs

    def plan(self) -> None:
        """After initialization: partitions still without a share partition are answered
        UNKNOWN_TOPIC_OR_PARTITION; the rest are put in this request's order (round robin by
        session epoch, so that members sharing partitions do not all queue on the first) and
        share MaxBytes evenly, at most PARTITION_FETCH_BYTES each (a first batch larger than
        that still comes whole)."""
        engine = self.core.engine
        ready: list[tuple[TopicPartition, str]] = []
        for tp, name in self.parts:
            if engine.share_partition((self.group_id, *tp)) is None:
                self.errors[tp] = PartitionFailed(
                    ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "share partition could not be initialized"
                )
            else:
                ready.append((tp, name))
        if ready:
            self.partition_bytes = max(
                1, min(PARTITION_FETCH_BYTES, self.req.max_bytes // len(ready))
            )
            shift = max(self.req.epoch, 0) % len(ready)
            ready = ready[shift:] + ready[:shift]
        self.parts = ready

    def new_round(self) -> Round[P]:
        """The next round over the partitions kept. One that left the engine while the fetch
        waited (its state partition moved to another instance of a fleet) is answered
        NOT_LEADER_OR_FOLLOWER instead, so the client asks the new leader."""
        self.rounds += 1
        engine = self.core.engine
        gone = {tp for tp, _ in self.parts if engine.share_partition((self.group_id, *tp)) is None}
        if gone:
            for tp in gone:
                self.errors[tp] = PartitionFailed(ErrorCode.NOT_LEADER_OR_FOLLOWER, NOT_LED)
            self.parts = [(tp, name) for tp, name in self.parts if tp not in gone]
        return Round(list(self.parts), self.max_records, self.group_id)

    def vanished(self, turn: Turn) -> PartitionFailed | None:
        """Before ``read``: the turn's share partition is no longer served here, having left
        memory or leadership while the fetch waited (its state partition went to another
        instance of a fleet). It is answered NOT_LEADER_OR_FOLLOWER, so that the client asks
        for the metadata again; the request's other partitions are served as usual."""
        if self.core.engine.share_partition(turn.key) is None or self.core.not_led(turn.key):
            return PartitionFailed(ErrorCode.NOT_LEADER_OR_FOLLOWER, NOT_LED)
        return None

    def read(self, turn: Turn, now_ms: int) -> PartitionRead[P]:
        """Start serving one turn (one ``vanished`` did not stop); the driver holds the
        partition's fetch lock from here until the outcome."""
        sp = self.core.engine.share_partition(turn.key)
        assert sp is not None, "read() for a turn vanished() stops"
        return PartitionRead(
            self.core.engine,
            sp,
            turn.key,
            turn.topic,
            self.member_id,
            now_ms=now_ms,
            budget=turn.budget,
            batch_size=self.batch_size,
            mode=AcquireMode.BATCH_OPTIMIZED if self.req.mode is None else self.req.mode,
            isolation=self.isolation,
            max_bytes=self.partition_bytes,
            trust_high_watermark=self.rounds > 1,
        )

    def round_done(self, rnd: Round[P], now_ms: int) -> bool:
        """Keep what the round gave; True when the fetch answers now (records, or MaxWaitMs
        is over), False when it waits and runs another round."""
        self.results.update(rnd.outcomes)
        return rnd.acquired_any or now_ms >= self.deadline_ms

    # ------------------------------------------------------------------ the answer
    def answer(self) -> FetchAnswer[P]:
        """Which partitions the answer lists: all of a new session's; otherwise those with
        records, errors or acknowledgement results, and the newly added ones (each once: a
        repeat would deliver records twice)."""
        answers: dict[TopicPartition, PartitionAnswer[P]] = {}

        def entry(tp: TopicPartition) -> PartitionAnswer[P]:
            found = answers.get(tp)
            if found is None:
                found = answers[tp] = PartitionAnswer(tp[0], tp[1])
            return found

        for o in self.acks:
            a = entry(o.tp)
            a.ack_code, a.ack_message = o.code, o.message
        if any(ack_shape_error(o.batches, renew=self.req.renew) is None for o in self.acks):
            # Kafka takes the acknowledgements of every partition in Topics once one carries
            # well-formed ones: a partition without batches gets an acknowledgement result
            # too (NONE), and so is listed.
            for tp, _ in self.req.partitions:
                a = entry(tp)
                if a.ack_code is None:
                    a.ack_code = ErrorCode.NONE
        for (_, topic_id, partition), code in self.persist_failed.items():
            a = entry((topic_id, partition))
            a.ack_code, a.ack_message = code, PERSIST_FAILED
        fetched: dict[TopicPartition, Outcome[P]] = {**self.errors, **self.results}
        for tp in [*self.errors, *self.results]:
            outcome = fetched[tp]
            a = entry(tp)
            if isinstance(outcome, PartitionFailed):
                a.code, a.message = outcome.code, outcome.message
            elif isinstance(outcome, Acquired):
                a.acquired, a.payloads = outcome.records, outcome.payloads
        order: list[TopicPartition] = self.session_partitions if self.ctx.full else []
        for tp in [*answers, *(_session_tp(t) for t in self.ctx.added)]:
            if tp not in order:
                order.append(tp)
        return FetchAnswer(
            [answers.get(tp) or PartitionAnswer(tp[0], tp[1]) for tp in order],
            self.config.record_lock_duration_ms,
        )


class PartitionRead(Generic[P]):
    """One acquisition attempt at one share partition (under its fetch lock in the driver).

    On creation it expires the partition's due locks (``changes``, to persist and announce at
    once, before any later change of the partition) and checks the in-flight limit
    (``outcome`` is then set). Otherwise the driver reads the log at ``log_read()``: from
    memory it already holds (``on_read``), or, unless ``nothing_new`` says the log has nothing
    past the fetch offset, from the log."""

    def __init__(
        self,
        engine: ShareEngine,
        sp: SharePartition,
        key: PartitionKey,
        topic: str,
        member_id: str,
        *,
        now_ms: int,
        budget: int,
        batch_size: int,
        mode: AcquireMode,
        isolation: int,
        max_bytes: int,
        trust_high_watermark: bool,
    ) -> None:
        self.engine = engine
        self.sp = sp
        self.key = key
        self.topic = topic
        self.member_id = member_id
        self.now_ms = now_ms
        self.budget = budget
        self.batch_size = batch_size
        self.mode = mode
        self.isolation = isolation
        self.max_bytes = max_bytes
        self.trust_high_watermark = trust_high_watermark
        self.changes: list[Change] = []
        self.outcome: Outcome[P] | None = None
        expired = sp.expire_locks(now_ms)
        if not expired.empty:
            self.changes.append(Change(key, expired, "expiry"))
        self.offset = sp.next_fetch_offset()
        if not sp.has_available() and sp.in_flight_count >= sp.max_in_flight:
            self.outcome = NoRecords()  # at the in-flight limit: wait for acknowledgements

    @property
    def current(self) -> bool:
        """Whether the share partition is still the one this read is for (not rebuilt or
        reset while the driver waited)."""
        return self.engine.share_partition(self.key) is self.sp

    def log_read(self) -> LogRead:
        """Where to read: the share partition's next fetch offset now. The batches given to
        ``on_read`` must be read from there (ask again after waiting for anything)."""
        self.offset = self.sp.next_fetch_offset()
        return LogRead(self.key, self.topic, self.offset, self.max_bytes, self.isolation)

    def nothing_new(self, high_watermark: int) -> bool:
        """In a repeated round: the log had nothing at the fetch offset a moment ago and no
        record of the partition became available, so no read is needed."""
        return (
            self.trust_high_watermark
            and high_watermark >= 0
            and self.offset >= high_watermark
            and not self.sp.has_available()
        )

    def on_read(self, result: ReadResult[P]) -> Outcome[P] | LogStartNeeded:
        """What the log read at ``log_read()`` gave. Changes made land in ``changes``."""
        if not self.current:
            return NoRecords()  # rebuilt or reset while the read was out: look again later
        if isinstance(result, NoAnswer):
            return NoRecords(wait_for_log=True)
        if isinstance(result, ReadFailed):
            return PartitionFailed(result.code, result.message)
        if isinstance(result, OutOfRange):
            if result.log_start <= self.sp.start_offset:  # Kafka answers -1 here: ask for it
                return LogStartNeeded(self.key, self.topic)
            return self.on_log_start(result.log_start)
        if not result.batches:
            return NoRecords(wait_for_log=True)
        return self._acquire(result.batches)

    def on_log_start(self, log_start: int | None) -> Outcome[P]:
        """The log starts at ``log_start`` (None: could not be learnt). Past the share
        partition's start offset, the share partition moves up to it (records below are gone
        from the log, never to be delivered); otherwise the log has nothing new."""
        if log_start is not None and log_start > self.sp.start_offset:
            delta = self.sp.move_log_start(log_start)
            self.changes.append(Change(self.key, delta, "log-start"))
            return NoRecords(log_start_moved=True)
        return NoRecords(wait_for_log=True)

    def _acquire(self, batches: Sequence[tuple[LogBatch, P]]) -> Outcome[P]:
        acq = self.sp.acquire(
            self.member_id,
            self.offset,
            [b for b, _ in batches],
            now_ms=self.now_ms,
            max_records=self.budget,
            batch_size=self.batch_size,
            mode=self.mode,
        )
        if not acq.delta.empty:
            self.changes.append(Change(self.key, acq.delta, "acquire"))
        if not acq.records:
            return NoRecords()
        chosen = tuple(
            data
            for batch, data in batches
            if not batch.aborted
            and any(
                r.first_offset <= batch.last_offset and batch.first_offset <= r.last_offset
                for r in acq.records
            )
        )
        return Acquired(acq.records, acq.count, chosen, acq.lock_deadline_ms)
