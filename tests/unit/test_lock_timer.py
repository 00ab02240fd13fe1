"""The share service's timer runs in the proxy's own nursery: an error in one tick is logged
and the timer goes on, instead of stopping the proxy and every client with it."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
import trio

from proxy.lock_timer import LockTimer


class FailingOnce:
    """An engine whose first tick fails."""

    def __init__(self) -> None:
        self.ticks = 0

    def next_deadline_ms(self) -> int | None:
        return None  # the timer wakes every second

    def tick(self, now_ms: int, counts: Mapping[str, int]) -> tuple[list[Any], list[str]]:
        self.ticks += 1
        if self.ticks == 1:
            raise RuntimeError("a bug in one tick")
        return [], []


async def test_a_failing_tick_is_logged_and_the_timer_goes_on(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    engine = FailingOnce()
    published: list[Sequence[Any]] = []
    timer = LockTimer(engine, dict, published.append)  # type: ignore[arg-type]
    with caplog.at_level(logging.ERROR), trio.move_on_after(10):
        await timer.run()
    assert engine.ticks >= 3
    assert len(published) == engine.ticks - 1  # every tick but the failed one published
    assert "the share service's timer failed" in caplog.text
