"""The timer of the share service: one task that expires acquisition locks and member
sessions (``ShareEngine.tick``), sleeping until the engine's next deadline (at most a second)
or until it is kicked because a new deadline may be earlier (records acquired, a member
joined, group configs changed)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import trio

from sharegroup.engine import Change, ShareEngine

log = logging.getLogger("sharegroup.shares")


def now_ms() -> int:
    return int(trio.current_time() * 1000)


class LockTimer:
    def __init__(
        self,
        engine: ShareEngine,
        partition_counts: Callable[[], dict[str, int]],
        publish: Callable[[Sequence[Change]], None],
    ) -> None:
        self.engine = engine
        self.partition_counts = partition_counts
        self.publish = publish  # where the expired locks' changes go
        self._wakeup = trio.Event()

    def kick(self) -> None:
        self._wakeup.set()

    async def run(self) -> None:
        while True:
            deadline = self.engine.next_deadline_ms()
            now = now_ms()
            wait_s = 1.0 if deadline is None else max(0.0, (deadline - now) / 1000)
            with trio.move_on_after(min(wait_s, 1.0)):
                await self._wakeup.wait()
            self._wakeup = trio.Event()
            try:
                changes, fenced = self.engine.tick(now_ms(), self.partition_counts())
                for member in fenced:
                    log.info("share group member %s fenced: session timeout", member)
                self.publish(changes)
            except Exception:  # the timer runs in the proxy's own nursery
                # A bug here must not stop the proxy (and every client with it): logged, and
                # the next tick tries again.
                log.exception("the share service's timer failed")
                await trio.sleep(1.0)
