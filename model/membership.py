"""Share-group membership: ShareGroupHeartbeat join / heartbeat / leave (KIP-932; Kafka's
``GroupMetadataManager.shareGroupHeartbeat``).

Member ids are chosen by the client. A member joins with epoch 0 and a non-empty subscription,
heartbeats with its current (or previous, if a response was lost) member epoch, and leaves with
epoch -1. A member that does not heartbeat within the session timeout is fenced exactly as if it
had left. Any change of members, subscriptions or subscribed topics' partition counts bumps the
group epoch and recomputes the target assignment; share groups have no revocation phase, so a
member moves straight to its target and takes the assignment epoch as its member epoch.

Time is an argument; ``next_deadline_ms`` tells when ``expire_members`` has work to do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from model.assignor import assign
from model.errors import ErrorCode, ShareApiError
from model.session import MAX_MEMBER_ID_LENGTH

LEAVE_EPOCH = -1


@dataclass(slots=True)
class Member:
    member_id: str
    member_epoch: int
    previous_epoch: int
    subscribed_topic_names: tuple[str, ...]
    deadline_ms: int
    client_id: str = ""
    client_host: str = ""
    rack_id: str | None = None
    assignment: dict[str, tuple[int, ...]] = field(default_factory=dict)  # topic -> partitions
    sent_assignment: dict[str, tuple[int, ...]] | None = None


@dataclass(frozen=True, slots=True)
class HeartbeatResult:
    member_id: str
    member_epoch: int
    heartbeat_interval_ms: int
    assignment: dict[str, tuple[int, ...]] | None  # topic name -> partitions; None = unchanged


class ShareGroup:
    """One share group's membership and target assignment."""

    def __init__(
        self,
        group_id: str,
        *,
        max_size: int = 200,
        session_timeout_ms: int = 45000,
        heartbeat_interval_ms: int = 5000,
    ) -> None:
        self.group_id = group_id
        self.max_size = max_size
        self.session_timeout_ms = session_timeout_ms
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.group_epoch = 0
        self.assignment_epoch = 0
        self.members: dict[str, Member] = {}
        self._partition_counts: dict[str, int] = {}

    @property
    def state(self) -> str:
        """ShareGroupDescribe's GroupState: Empty or Stable (there is no rebalancing phase)."""
        return "Stable" if self.members else "Empty"

    def subscribed_topics(self) -> set[str]:
        return {t for m in self.members.values() for t in m.subscribed_topic_names}

    def heartbeat(
        self,
        member_id: str,
        member_epoch: int,
        *,
        now_ms: int,
        partition_counts: Mapping[str, int],
        subscribed_topic_names: Sequence[str] | None = None,
        rack_id: str | None = None,
        client_id: str = "",
        client_host: str = "",
    ) -> HeartbeatResult:
        """Handle one ShareGroupHeartbeat. ``partition_counts`` is the current metadata of the
        topics (name -> partition count); topics not in it are not assigned."""
        if not member_id or len(member_id) > MAX_MEMBER_ID_LENGTH:
            raise ShareApiError(
                ErrorCode.INVALID_REQUEST,
                f"member id must be 1 to {MAX_MEMBER_ID_LENGTH} characters",
            )
        if member_epoch < LEAVE_EPOCH:
            raise ShareApiError(
                ErrorCode.INVALID_REQUEST, f"member epoch {member_epoch} is invalid"
            )
        if rack_id is not None and rack_id == "":
            raise ShareApiError(ErrorCode.INVALID_REQUEST, "rack id must not be empty")
        if member_epoch == LEAVE_EPOCH:
            if member_id not in self.members:
                raise ShareApiError(
                    ErrorCode.UNKNOWN_MEMBER_ID,
                    f"member {member_id} is not in group {self.group_id}",
                )
            self.remove(member_id, partition_counts)
            return HeartbeatResult(member_id, LEAVE_EPOCH, self.heartbeat_interval_ms, None)
        member = self.members.get(member_id)
        full = subscribed_topic_names is not None
        if member_epoch == 0:
            if not subscribed_topic_names:
                raise ShareApiError(
                    ErrorCode.INVALID_REQUEST,
                    "a joining member must subscribe to at least one topic",
                )
            if member is None:
                if len(self.members) >= self.max_size:
                    raise ShareApiError(
                        ErrorCode.GROUP_MAX_SIZE_REACHED,
                        f"group {self.group_id} has {self.max_size} members (group.share.max.size)",
                    )
                member = Member(member_id, 0, 0, (), now_ms + self.session_timeout_ms)
                self.members[member_id] = member
            member.sent_assignment = None
        else:
            if member is None:
                raise ShareApiError(
                    ErrorCode.UNKNOWN_MEMBER_ID,
                    f"member {member_id} is not in group {self.group_id}",
                )
            if member_epoch not in (member.member_epoch, member.previous_epoch):
                raise ShareApiError(
                    ErrorCode.FENCED_MEMBER_EPOCH,
                    f"member epoch {member_epoch} is not the current epoch {member.member_epoch}",
                )
        member.deadline_ms = now_ms + self.session_timeout_ms
        member.client_id = client_id or member.client_id
        member.client_host = client_host or member.client_host
        if rack_id is not None:
            member.rack_id = rack_id
        changed = False
        if subscribed_topic_names is not None:
            topics = tuple(sorted(set(subscribed_topic_names)))
            if topics != member.subscribed_topic_names:
                member.subscribed_topic_names = topics
                changed = True
        counts = {t: n for t, n in partition_counts.items() if t in self.subscribed_topics()}
        if counts != self._partition_counts:
            changed = True
        if changed or member_epoch == 0:
            self._rebalance(partition_counts)
        if member.member_epoch != self.assignment_epoch:
            member.previous_epoch = member.member_epoch
            member.member_epoch = self.assignment_epoch
        send = full or member_epoch == 0 or member.sent_assignment != member.assignment
        if send:
            member.sent_assignment = dict(member.assignment)
        return HeartbeatResult(
            member_id,
            member.member_epoch,
            self.heartbeat_interval_ms,
            dict(member.assignment) if send else None,
        )

    def remove(self, member_id: str, partition_counts: Mapping[str, int]) -> None:
        """A leave or a fencing: the member is gone and the others are re-assigned."""
        if self.members.pop(member_id, None) is not None:
            self._rebalance(partition_counts)

    def next_deadline_ms(self) -> int | None:
        return min((m.deadline_ms for m in self.members.values()), default=None)

    def expire_members(self, now_ms: int, partition_counts: Mapping[str, int]) -> list[str]:
        """Fence members whose session timed out; returns their ids."""
        gone = [m.member_id for m in self.members.values() if m.deadline_ms <= now_ms]
        for member_id in gone:
            self.members.pop(member_id)
        if gone:
            self._rebalance(partition_counts)
        return gone

    def _rebalance(self, partition_counts: Mapping[str, int]) -> None:
        subscribed = self.subscribed_topics()
        self._partition_counts = {t: n for t, n in partition_counts.items() if t in subscribed}
        self.group_epoch += 1
        target = assign(
            {m.member_id: m.subscribed_topic_names for m in self.members.values()},
            self._partition_counts,
        )
        for member_id, topics in target.items():
            self.members[member_id].assignment = topics
        self.assignment_epoch = self.group_epoch
