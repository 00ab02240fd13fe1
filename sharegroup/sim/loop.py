"""The simulator's discrete-event loop: virtual time, one heap, a total order of events.

Role: the clock of a simulated run. Events are ``(time_ms, priority, seq, callback, args)``;
``seq`` is a counter, so two events at the same time and priority run in the order they were
scheduled, and the same scenario with the same seed always runs identically (this
is why the simulator does not run Trio with a mock clock, whose scheduler is randomised).
Priority ``TIMER`` runs before ``NORMAL`` at the same instant: the engine's lock and session
deadlines are handled before any request that arrives at that very millisecond, as a broker's
timer wheel would have fired by then.

No randomness here and no wall clock: actors get their own seeded ``random.Random``.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any, Final

TIMER: Final = 0
NORMAL: Final = 1


class EventLoop:
    """``at(t, fn, *args)`` schedules; ``run_until(end_ms)`` runs everything due by then."""

    __slots__ = ("_heap", "_seq", "events_run", "now_ms", "stopped")

    def __init__(self) -> None:
        self.now_ms = 0
        self._heap: list[tuple[int, int, int, Callable[..., object], tuple[Any, ...]]] = []
        self._seq = 0
        self.events_run = 0
        self.stopped = False

    def at(self, time_ms: int, callback: Callable[..., object], *args: Any) -> None:
        """Run ``callback(*args)`` at ``time_ms`` (never earlier than now)."""
        self._seq += 1
        heapq.heappush(self._heap, (max(time_ms, self.now_ms), NORMAL, self._seq, callback, args))

    def timer(self, time_ms: int, callback: Callable[..., object], *args: Any) -> None:
        """Like ``at``, but before ordinary events of the same millisecond."""
        self._seq += 1
        heapq.heappush(self._heap, (max(time_ms, self.now_ms), TIMER, self._seq, callback, args))

    def after(self, delay_ms: int, callback: Callable[..., object], *args: Any) -> None:
        self.at(self.now_ms + delay_ms, callback, *args)

    def next_time_ms(self) -> int | None:
        return self._heap[0][0] if self._heap else None

    def run_until(
        self,
        end_ms: int,
        progress: Callable[[int], None] | None = None,
        progress_every: int = 4096,
    ) -> None:
        """Run events in order until the next one is after ``end_ms``; the clock ends at
        ``end_ms``. ``progress(now_ms)`` is called every ``progress_every`` events."""
        heap = self._heap
        pop = heapq.heappop
        n = 0
        while heap and heap[0][0] <= end_ms and not self.stopped:
            time_ms, _, _, callback, args = pop(heap)
            self.now_ms = time_ms
            callback(*args)
            n += 1
            if progress is not None and n % progress_every == 0:
                progress(time_ms)
        self.events_run += n
        self.now_ms = max(self.now_ms, end_ms)
