"""Where the proxy's librdkafka handles are destroyed: in a thread of their own, never in a
thread that serves.

A confluent_kafka ``Producer``, ``Consumer`` or ``AdminClient`` is destroyed where its last
reference goes, and destroying one joins librdkafka's internal threads. That usually takes
milliseconds, but we have seen it wait for ever: an admin client whose broker thread never
saw its last reference go (``rd_kafka_destroy_app`` in ``thrd_join``, with the broker thread
still serving its queue). A handle kept alive by a reference cycle (an exception's traceback
holding the frame that made it, say) is destroyed by whichever thread the garbage collector
happens to run in - the proxy's Trio loop, which then stops serving every client, or a test's
main thread, which no alarm can interrupt while it is inside C.

So every handle the proxy makes goes through ``keep``: a keeper holds a reference from the
start, and once it holds the only one left, it lets go of the handle in a short-lived daemon
thread named ``sharegroup-kafka-handle-close``. One that never finishes holds that thread
only, and is logged.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Final, TypeVar

log = logging.getLogger("sharegroup.proxy")

H = TypeVar("H")

SWEEP_S: Final = 1.0
# A handle whose destruction takes longer than this is logged (once): librdkafka is stuck.
SLOW_CLOSE_S: Final = 30.0

# References to a kept handle that are the keeper's own while ``sweep`` looks at it: the
# ``_kept`` list, the loop variable and ``sys.getrefcount``'s argument.
_KEEPER_REFS: Final = 3

_lock = threading.Lock()
_kept: list[object] = []
_closing: dict[int, tuple[str, float]] = {}  # thread ident -> (handle's type, start)
_slow_logged: set[int] = set()
_sweeper: threading.Thread | None = None


def keep(handle: H) -> H:
    """``handle``, kept until nothing else refers to it, then destroyed in a thread of its own."""
    global _sweeper
    with _lock:
        _kept.append(handle)
        if _sweeper is None or not _sweeper.is_alive():
            _sweeper = threading.Thread(
                target=_sweep_forever, name="sharegroup-kafka-handle-keeper", daemon=True
            )
            _sweeper.start()
    return handle


def sweep() -> int:
    """Let go of every kept handle that nothing else refers to; returns how many."""
    free: list[object] = []
    with _lock:
        still: list[object] = []
        h: object = None
        for h in _kept:
            (free if sys.getrefcount(h) <= _KEEPER_REFS else still).append(h)
        h = None  # not a reference of ours past this point
        _kept[:] = still
        still.clear()
        _log_slow_closes()
    count = len(free)
    while free:
        box = [free.pop()]
        threading.Thread(
            target=_close, args=(box,), name="sharegroup-kafka-handle-close", daemon=True
        ).start()
        del box
    return count


def _close(box: list[object]) -> None:
    me = threading.get_ident()
    with _lock:
        _closing[me] = (type(box[0]).__name__, time.monotonic())
    box.clear()  # the last reference: librdkafka's destroy runs here
    with _lock:
        _closing.pop(me, None)
        if me in _slow_logged:
            _slow_logged.discard(me)
            log.warning("a Kafka client of the proxy finished closing late")


def _log_slow_closes() -> None:
    now = time.monotonic()
    for ident, (kind, start) in _closing.items():
        if ident not in _slow_logged and now - start > SLOW_CLOSE_S:
            _slow_logged.add(ident)
            log.warning(
                "a Kafka client of the proxy (%s) has not finished closing after %.0f s; "
                "librdkafka is stuck destroying it, and its thread is left to it",
                kind,
                now - start,
            )


def _sweep_forever() -> None:
    while True:
        time.sleep(SWEEP_S)
        try:
            sweep()
        except Exception:  # the keeper must outlive any surprise
            log.exception("sweeping the proxy's Kafka clients failed")
