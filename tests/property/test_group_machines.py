"""Random histories against share sessions and share-group membership.

Each machine keeps a tiny oracle of what Kafka would answer (Kafka's ``ShareRequestMetadata`` epoch rules and ``GroupMetadataManager.shareGroupHeartbeat``) and
checks the model's answer, error code and state against it after every step.
"""

from __future__ import annotations

import math

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from model import ErrorCode, ShareApiError, ShareGroup, ShareSessionCache, next_epoch

MEMBERS = ("a", "b", "c", "d", "e")
TOPICS = ("t1", "t2")
PARTS = (("t1", 0), ("t1", 1), ("t2", 0))


class SessionMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.cache = ShareSessionCache(max_sessions=3)
        self.expected: dict[str, tuple[int, int, set[tuple[str, int]]]] = {}  # epoch, conn, parts

    def _code(self, member: str, epoch: int, *, fetch: bool, acks: bool) -> ErrorCode:
        if epoch == 0:
            if not fetch:
                return ErrorCode.INVALID_SHARE_SESSION_EPOCH
            if acks:
                return ErrorCode.INVALID_REQUEST
            if member not in self.expected and len(self.expected) >= 3:
                return ErrorCode.SHARE_SESSION_LIMIT_REACHED
            return ErrorCode.NONE
        if member not in self.expected:
            return ErrorCode.SHARE_SESSION_NOT_FOUND
        if epoch == -1:
            return ErrorCode.NONE
        if epoch != self.expected[member][0]:
            return ErrorCode.INVALID_SHARE_SESSION_EPOCH
        return ErrorCode.NONE

    @rule(
        member=st.sampled_from(MEMBERS),
        epoch_kind=st.sampled_from(["current", "zero", "final", "stale", "random"]),
        conn=st.integers(1, 3),
        add=st.sets(st.sampled_from(PARTS)),
        forget=st.sets(st.sampled_from(PARTS)),
        acks=st.booleans(),
        random_epoch=st.integers(-3, 2**31 - 1),
    )
    def share_fetch(
        self,
        member: str,
        epoch_kind: str,
        conn: int,
        add: set[tuple[str, int]],
        forget: set[tuple[str, int]],
        acks: bool,
        random_epoch: int,
    ) -> None:
        epoch = self._epoch(member, epoch_kind, random_epoch)
        code = self._code(member, epoch, fetch=True, acks=acks)
        if epoch < -1 and member in self.expected:
            code = ErrorCode.INVALID_SHARE_SESSION_EPOCH
        try:
            ctx = self.cache.fetch_context(
                "g",
                member,
                epoch,
                connection_id=conn,
                add=add,
                forget=forget,
                has_acknowledgements=acks,
            )
        except ShareApiError as e:
            assert e.code == code, (e, code)
            return
        assert code == ErrorCode.NONE, code
        if epoch == 0:
            self.expected[member] = (1, conn, set(add))
            assert ctx.full and set(ctx.added) == add
        elif epoch == -1:
            assert ctx.final
            self.cache.close("g", member)
            del self.expected[member]
        else:
            e_epoch, e_conn, parts = self.expected[member]
            assert set(ctx.added) == add - parts
            parts = (parts | add) - forget
            self.expected[member] = (next_epoch(e_epoch), e_conn, parts)

    @rule(
        member=st.sampled_from(MEMBERS),
        epoch_kind=st.sampled_from(["current", "zero", "final", "stale"]),
    )
    def share_acknowledge(self, member: str, epoch_kind: str) -> None:
        epoch = self._epoch(member, epoch_kind, 5)
        code = self._code(member, epoch, fetch=False, acks=True)
        try:
            ctx = self.cache.acknowledge_context("g", member, epoch)
        except ShareApiError as e:
            assert e.code == code, (e, code)
            return
        assert code == ErrorCode.NONE
        if ctx.final:
            self.cache.close("g", member)
            del self.expected[member]
        else:
            e_epoch, conn, parts = self.expected[member]
            self.expected[member] = (next_epoch(e_epoch), conn, parts)

    @rule(conn=st.integers(1, 3))
    def connection_closed(self, conn: int) -> None:
        closed = {c.member_id for c in self.cache.connection_closed(conn)}
        gone = {m for m, (_, c, _) in self.expected.items() if c == conn}
        assert closed == gone
        for m in gone:
            del self.expected[m]

    @rule(member=st.sampled_from(MEMBERS))
    def near_wrap(self, member: str) -> None:
        # Jump a live session to the top of the epoch range so wrap-around gets exercised.
        session = self.cache.get("g", member)
        if session is not None:
            session.epoch = 2**31 - 1
            _, conn, parts = self.expected[member]
            self.expected[member] = (2**31 - 1, conn, parts)

    def _epoch(self, member: str, kind: str, random_epoch: int) -> int:
        current = self.expected.get(member, (1, 0, set()))[0]
        return {
            "current": current,
            "zero": 0,
            "final": -1,
            "stale": max(1, current - 1) if current > 1 else current + 1,
            "random": random_epoch,
        }[kind]

    @invariant()
    def agree(self) -> None:
        assert len(self.cache) == len(self.expected)
        for member, (epoch, conn, parts) in self.expected.items():
            s = self.cache.get("g", member)
            assert s is not None
            assert s.epoch == epoch and s.connection_id == conn and set(s.partitions) == parts
            assert 1 <= s.epoch <= 2**31 - 1


class MembershipMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 0
        self.group = ShareGroup("g", max_size=4, session_timeout_ms=100, heartbeat_interval_ms=10)
        self.counts = {"t1": 2, "t2": 1}
        self.known: dict[str, int] = {}  # member -> epoch the client believes
        self.last_group_epoch = 0

    @rule(member=st.sampled_from(MEMBERS), topics=st.sets(st.sampled_from(TOPICS)))
    def join(self, member: str, topics: set[str]) -> None:
        full = member not in self.group.members and len(self.group.members) >= 4
        try:
            r = self.group.heartbeat(
                member,
                0,
                now_ms=self.now,
                partition_counts=self.counts,
                subscribed_topic_names=sorted(topics),
            )
        except ShareApiError as e:
            expected = ErrorCode.INVALID_REQUEST if not topics else ErrorCode.GROUP_MAX_SIZE_REACHED
            assert e.code == expected
            return
        assert topics and not full
        assert r.assignment is not None  # a join always gets the full assignment
        self.known[member] = r.member_epoch

    @rule(member=st.sampled_from(MEMBERS), stale=st.booleans())
    def heartbeat(self, member: str, stale: bool) -> None:
        m = self.group.members.get(member)
        epoch = self.known.get(member, 1)
        if stale:
            epoch += 7
        try:
            r = self.group.heartbeat(member, epoch, now_ms=self.now, partition_counts=self.counts)
        except ShareApiError as e:
            if m is None:
                assert e.code == ErrorCode.UNKNOWN_MEMBER_ID
            else:
                assert e.code == ErrorCode.FENCED_MEMBER_EPOCH
                assert epoch not in (m.member_epoch, m.previous_epoch)
            return
        assert m is not None and not stale
        assert r.member_epoch >= epoch
        self.known[member] = r.member_epoch

    @rule(member=st.sampled_from(MEMBERS))
    def leave(self, member: str) -> None:
        present = member in self.group.members
        try:
            r = self.group.heartbeat(member, -1, now_ms=self.now, partition_counts=self.counts)
        except ShareApiError as e:
            assert not present and e.code == ErrorCode.UNKNOWN_MEMBER_ID
            return
        assert present and r.member_epoch == -1
        assert member not in self.group.members
        self.known.pop(member, None)

    @rule(dt=st.sampled_from([10, 60, 120]))
    def advance_time(self, dt: int) -> None:
        self.now += dt
        due = self.group.next_deadline_ms()
        gone = self.group.expire_members(self.now, self.counts)
        assert bool(gone) == (due is not None and due <= self.now)
        for member in gone:
            self.known.pop(member, None)

    @rule(topic=st.sampled_from(TOPICS), n=st.integers(1, 4))
    def add_partitions(self, topic: str, n: int) -> None:
        self.counts[topic] = max(self.counts[topic], n)

    @invariant()
    def balanced(self) -> None:
        g = self.group
        assert g.group_epoch >= self.last_group_epoch
        self.last_group_epoch = g.group_epoch
        assert len(g.members) <= 4
        for topic in TOPICS:
            subscribers = [m for m in g.members.values() if topic in m.subscribed_topic_names]
            if not subscribers or topic not in g._partition_counts:
                continue
            n = g._partition_counts[topic]
            holders: dict[int, int] = {}
            for m in subscribers:
                for p in m.assignment.get(topic, ()):
                    holders[p] = holders.get(p, 0) + 1
            # Every partition is assigned; a partition is shared by at most ceil(M/P).
            assert set(holders) == set(range(n))
            assert max(holders.values()) <= math.ceil(len(subscribers) / n)
        for m in g.members.values():
            for topic in m.assignment:
                assert topic in m.subscribed_topic_names
        homogeneous = len({m.subscribed_topic_names for m in g.members.values()}) == 1
        if homogeneous and g.members:
            sizes = [sum(len(p) for p in m.assignment.values()) for m in g.members.values()]
            assert max(sizes) - min(sizes) <= 1


CI = settings(max_examples=500, stateful_step_count=30, deadline=None)
SessionMachine.TestCase.settings = CI
MembershipMachine.TestCase.settings = CI
TestShareSessions = SessionMachine.TestCase
TestMembership = MembershipMachine.TestCase
