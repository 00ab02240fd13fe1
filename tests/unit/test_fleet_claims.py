"""``FleetMembership._assigned``: state partitions the cluster assigned are claimed; a claim
that fails is let go at once and tried again, and only a claim that succeeded makes the
partitions this member's own (served)."""

from __future__ import annotations

from typing import Any

import pytest

from proxy import fleet
from proxy.fleet import FleetMembership
from proxy.state_partitions import PartitionedStateStore
from proxy.state_store import StateWriteError, StoreConfig


class FlakyOwner:
    """Claims fail ``failures`` times, then succeed; every call is recorded."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: list[tuple[str, list[int]]] = []

    async def claim(self, partitions: list[int]) -> Any:
        self.calls.append(("claim", partitions))
        if self.failures:
            self.failures -= 1
            raise StateWriteError("the cluster is away")
        return None

    async def release(self, partitions: list[int], *, wait_s: float) -> None:
        self.calls.append(("release", partitions))


def _member(owner: FlakyOwner) -> FleetMembership:
    store = PartitionedStateStore(StoreConfig("127.0.0.1:9", topic="state"))
    return FleetMembership(store, group_id="fleet", owner=owner)


@pytest.fixture(autouse=True)
def _no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fleet, "CLAIM_BACKOFF_S", 0.0)


async def test_a_failed_claim_is_let_go_and_tried_again() -> None:
    owner = FlakyOwner(failures=1)
    member = _member(owner)
    await member._assigned([2, 5])
    assert owner.calls == [("claim", [2, 5]), ("release", [2, 5]), ("claim", [2, 5])]
    assert member.owned == {2, 5}


async def test_a_claim_that_keeps_failing_leaves_the_partitions_unserved() -> None:
    owner = FlakyOwner(failures=fleet.CLAIM_ATTEMPTS)
    member = _member(owner)
    with pytest.raises(StateWriteError):
        await member._assigned([1])
    assert [c for c, _ in owner.calls] == ["claim", "release"] * fleet.CLAIM_ATTEMPTS
    assert member.owned == set()
