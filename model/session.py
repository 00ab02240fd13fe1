"""Share sessions: the per-(group, member) fetch sessions of ShareFetch / ShareAcknowledge
(KIP-932; Kafka's ``ShareSessionCache.java`` and ``ShareRequestMetadata.java``).

A session holds the set of topic-partitions a member fetches from this broker and the epoch the
next request must carry. Epoch 0 opens (or replaces) a session, -1 closes it, anything else must
equal the stored epoch, which then moves on (wrapping from 2**31-1 to 1). A session also
remembers the connection that created it: when that connection closes, the session goes and the
member's acquired records must be released (the caller does that with the returned keys).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field

from model.errors import ErrorCode, ShareApiError

INITIAL_EPOCH = 0
FINAL_EPOCH = -1
MAX_EPOCH = 2**31 - 1
MAX_MEMBER_ID_LENGTH = 36

TopicPartition = tuple[Hashable, int]  # (topic id, partition)


def next_epoch(epoch: int) -> int:
    """Kafka's ShareRequestMetadata.nextEpoch: +1, wrapping to 1; negative stays final."""
    if epoch < 0:
        return FINAL_EPOCH
    return 1 if epoch == MAX_EPOCH else epoch + 1


@dataclass(slots=True)
class ShareSession:
    group_id: str
    member_id: str
    epoch: int
    connection_id: int
    partitions: dict[TopicPartition, None] = field(default_factory=dict)  # ordered set


@dataclass(frozen=True, slots=True)
class SessionContext:
    """What a request may do, once its session checks passed."""

    session: ShareSession
    final: bool  # epoch -1: apply acks, fetch nothing, then close
    full: bool  # epoch 0: a new session (every partition is reported)
    added: tuple[TopicPartition, ...]  # partitions newly added by this request


@dataclass(frozen=True, slots=True)
class ClosedSession:
    group_id: str
    member_id: str
    partitions: tuple[TopicPartition, ...]


class ShareSessionCache:
    """All share sessions of one broker (proxy node), keyed by (group id, member id)."""

    def __init__(self, max_sessions: int = 2000) -> None:
        self.max_sessions = max_sessions
        self._sessions: dict[tuple[str, str], ShareSession] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, group_id: str, member_id: str) -> ShareSession | None:
        return self._sessions.get((group_id, member_id))

    def sessions(self) -> Iterable[ShareSession]:
        return self._sessions.values()

    def fetch_context(
        self,
        group_id: str,
        member_id: str,
        epoch: int,
        *,
        connection_id: int,
        add: Iterable[TopicPartition] = (),
        forget: Iterable[TopicPartition] = (),
        has_acknowledgements: bool = False,
    ) -> SessionContext:
        """The session step of a ShareFetch (``SharePartitionManager.newContext``). Raises ShareApiError with nothing changed."""
        _check_member_id(member_id)
        key = (group_id, member_id)
        if epoch == INITIAL_EPOCH:
            if has_acknowledgements:
                raise ShareApiError(
                    ErrorCode.INVALID_REQUEST,
                    "a ShareFetch with epoch 0 cannot carry acknowledgements",
                )
            if key not in self._sessions and len(self._sessions) >= self.max_sessions:
                raise ShareApiError(
                    ErrorCode.SHARE_SESSION_LIMIT_REACHED,
                    f"{self.max_sessions} share sessions exist (group.share.max.share.sessions)",
                )
            added = tuple(dict.fromkeys(add))
            fresh = ShareSession(group_id, member_id, 1, connection_id, dict.fromkeys(added))
            self._sessions[key] = fresh
            return SessionContext(fresh, final=False, full=True, added=added)
        session = self._sessions.get(key)
        if session is None:
            raise ShareApiError(
                ErrorCode.SHARE_SESSION_NOT_FOUND, f"no share session for member {member_id}"
            )
        if epoch == FINAL_EPOCH:
            return SessionContext(session, final=True, full=False, added=())
        if epoch < FINAL_EPOCH:
            raise ShareApiError(ErrorCode.INVALID_SHARE_SESSION_EPOCH, f"epoch {epoch} is invalid")
        if epoch != session.epoch:
            raise ShareApiError(
                ErrorCode.INVALID_SHARE_SESSION_EPOCH,
                f"expected share session epoch {session.epoch}, got {epoch}",
            )
        added_list: list[TopicPartition] = []
        for tp in add:
            if tp not in session.partitions:
                session.partitions[tp] = None
                added_list.append(tp)
        for tp in forget:
            session.partitions.pop(tp, None)
        session.epoch = next_epoch(session.epoch)
        return SessionContext(session, final=False, full=False, added=tuple(added_list))

    def acknowledge_context(self, group_id: str, member_id: str, epoch: int) -> SessionContext:
        """The session step of a ShareAcknowledge (``acknowledgeSessionUpdate``)."""
        _check_member_id(member_id)
        if epoch == INITIAL_EPOCH:
            raise ShareApiError(
                ErrorCode.INVALID_SHARE_SESSION_EPOCH, "a ShareAcknowledge cannot use epoch 0"
            )
        session = self._sessions.get((group_id, member_id))
        if session is None:
            raise ShareApiError(
                ErrorCode.SHARE_SESSION_NOT_FOUND, f"no share session for member {member_id}"
            )
        if epoch == FINAL_EPOCH:
            return SessionContext(session, final=True, full=False, added=())
        if epoch != session.epoch:
            raise ShareApiError(
                ErrorCode.INVALID_SHARE_SESSION_EPOCH,
                f"expected share session epoch {session.epoch}, got {epoch}",
            )
        session.epoch = next_epoch(session.epoch)
        return SessionContext(session, final=False, full=False, added=())

    def close(self, group_id: str, member_id: str) -> ClosedSession | None:
        """Remove a session (epoch -1 finished); the caller releases the member's records."""
        session = self._sessions.pop((group_id, member_id), None)
        if session is None:
            return None
        return ClosedSession(group_id, member_id, tuple(session.partitions))

    def connection_closed(self, connection_id: int) -> list[ClosedSession]:
        """Evict every session the connection created (as ``ShareSessionCache`` does)."""
        gone = [k for k, s in self._sessions.items() if s.connection_id == connection_id]
        out: list[ClosedSession] = []
        for key in gone:
            closed = self.close(*key)
            if closed is not None:
                out.append(closed)
        return out


def _check_member_id(member_id: str | None) -> None:
    if not member_id or len(member_id) > MAX_MEMBER_ID_LENGTH:
        got = "null" if member_id is None else f"{len(member_id)} characters"
        raise ShareApiError(
            ErrorCode.INVALID_REQUEST,
            f"member id must be 1 to {MAX_MEMBER_ID_LENGTH} characters, got {got}",
        )
