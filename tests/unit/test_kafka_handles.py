"""The proxy's librdkafka handles are destroyed in threads of their own: a destroy that never
returns (as librdkafka's has been seen to) must not stop the thread that dropped the handle,
nor the one the garbage collector happens to run in."""

from __future__ import annotations

import gc
import threading

from proxy import kafka_handles


class Handle:
    """Stands for a librdkafka handle whose destroy blocks until ``release`` is set."""

    def __init__(self, release: threading.Event, seen: dict[str, str]) -> None:
        self.release = release
        self.seen = seen
        self.destroyed = threading.Event()

    def __del__(self) -> None:
        self.seen["destroyed in"] = threading.current_thread().name
        self.destroyed.set()
        self.release.wait(30)


class Cycle:
    """Garbage only the collector frees (as a traceback that holds the frame that made a
    handle is)."""

    def __init__(self, handle: Handle) -> None:
        self.me = self
        self.handle = handle


def test_a_handle_in_use_is_not_let_go() -> None:
    release = threading.Event()
    release.set()
    h = kafka_handles.keep(Handle(release, {}))
    assert kafka_handles.sweep() == 0
    assert not h.destroyed.is_set()


def test_a_stuck_destroy_blocks_neither_the_collector_nor_the_sweeper() -> None:
    release = threading.Event()
    seen: dict[str, str] = {}
    garbage = Cycle(kafka_handles.keep(Handle(release, seen)))
    destroyed = garbage.handle.destroyed
    del garbage
    try:
        gc.collect()  # frees the cycle; the handle outlives it, held by the keeper alone
        assert not destroyed.is_set(), f"destroyed by the collector in {seen}"
        kafka_handles.sweep()  # returns at once (or the keeper's own sweep got there first)
        assert destroyed.wait(10), "the handle was never destroyed"
        assert seen == {"destroyed in": "sharegroup-kafka-handle-close"}
    finally:
        release.set()
