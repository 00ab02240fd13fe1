"""The redelivery back-off holds for records released by member loss too.

A member's records come back when its share session closes (epoch -1) or its connection
drops; with ``sharegroup.share.record.redelivery.backoff.ms`` they must wait as released and
expired records do: ``min(backoff * 2**(n-1), max)`` after the n-th delivery, counted from
the release. Driven through ``ShareEngine``, the layer both the proxy and the simulator call.
"""

from __future__ import annotations

import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from model import LogBatch, redelivery_delay_ms
from sharegroup.engine import ShareEngine

NODE = 0
CONN = 7


def engine_with_held_record(
    backoff: int, backoff_max: int, deliveries: int, t0: int
) -> tuple[ShareEngine, tuple[str, uuid.UUID, int]]:
    """A group whose member ``m`` holds offset 0, delivered ``deliveries`` times, in a share
    session opened on connection CONN."""
    engine = ShareEngine()
    engine.set_group_configs("g", {"share.delivery.count.limit": "10"})
    key = ("g", uuid.uuid4(), 0)
    sp = engine.new_partition(key, 0)
    for i in range(deliveries - 1):  # earlier deliveries, each lock expired
        now = t0 - 10_000_000 + i * 1_000_000
        assert sp.acquire("m", 0, [LogBatch(0, 0)], now_ms=now, max_records=1).count == 1
        sp.expire_locks(now + 999_999)
    engine.set_group_configs(
        "g",
        {
            "sharegroup.share.record.redelivery.backoff.ms": str(backoff),
            "sharegroup.share.record.redelivery.backoff.max.ms": str(backoff_max),
        },
    )
    assert sp.acquire("m", 0, [LogBatch(0, 0)], now_ms=t0 - 1, max_records=1).count == 1
    engine.session_cache(NODE).fetch_context(
        "g", "m", 0, connection_id=CONN, add=[(key[1], key[2])]
    )
    return engine, key


@settings(max_examples=200, deadline=None)
@given(
    backoff=st.sampled_from([0, 1, 50, 1000]),
    backoff_max=st.sampled_from([1, 100, 60000]),
    deliveries=st.integers(1, 6),
    how=st.sampled_from(["session-close", "connection-drop"]),
    t0=st.integers(10_000_000, 20_000_000),
)
def test_member_loss_releases_after_the_back_off(
    backoff: int, backoff_max: int, deliveries: int, how: str, t0: int
) -> None:
    backoff_max = max(backoff_max, backoff)
    engine, key = engine_with_held_record(backoff, backoff_max, deliveries, t0)
    if how == "session-close":
        changes = engine.close_session(NODE, "g", "m", now_ms=t0)
    else:
        changes = engine.connection_closed(NODE, CONN, now_ms=t0)
    assert [c.key for c in changes] == [key]
    sp = engine.partitions[key]
    delay = redelivery_delay_ms(deliveries, backoff, backoff_max)
    if delay:
        assert sp.next_deadline_ms() == t0 + delay
        early = sp.acquire("n", 0, [LogBatch(0, 0)], now_ms=t0 + delay - 1, max_records=1)
        assert early.count == 0
        engine.tick(t0 + delay, {})
    got = sp.acquire("n", 0, [LogBatch(0, 0)], now_ms=t0 + delay, max_records=1)
    assert [(r.first_offset, r.delivery_count) for r in got.records] == [(0, deliveries + 1)]
