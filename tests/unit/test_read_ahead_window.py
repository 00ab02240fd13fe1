"""The read-ahead window of a share partition (proxy.read_ahead.PartitionWatch), without I/O."""

from __future__ import annotations

from model import LogBatch
from proxy.read_ahead import READ_AHEAD_MAX_BYTES, PartitionWatch, ReadAheadHeld


def batch(first: int, last: int, size: int = 10) -> tuple[LogBatch, memoryview]:
    return LogBatch(first, last), memoryview(bytes(size))


def test_cached_serves_from_the_batch_holding_the_offset() -> None:
    w = PartitionWatch()
    owner = object()
    w.keep(owner, 0, 0, [batch(0, 9), batch(10, 19), batch(25, 29)])  # 20-24: a log gap
    assert w.ra_start == 0 and w.ra_end == 30
    got = w.cached(owner, 0, 12, 20)
    assert got is not None and [b.first_offset for b, _ in got] == [10, 25]
    gap = w.cached(owner, 0, 22, 10)  # inside the gap: the next batch
    assert gap is not None and [b.first_offset for b, _ in gap] == [25]
    assert w.cached(owner, 0, 30, 10) is None  # past the window
    assert w.cached(object(), 0, 12, 20) is None  # another share partition object
    assert w.cached(owner, 1, 12, 20) is None  # another isolation level


def test_a_window_shorter_than_max_bytes_is_a_miss() -> None:
    """The log may have grown past the window: a Fetch would return more than it holds."""
    w = PartitionWatch()
    owner = object()
    w.keep(owner, 0, 0, [batch(0, 9), batch(10, 19)])
    assert w.cached(owner, 0, 0, 20) is not None
    assert w.cached(owner, 0, 0, 21) is None
    assert w.cached(owner, 0, 12, 11) is None


def test_cached_keeps_to_max_bytes_but_gives_at_least_one_batch() -> None:
    w = PartitionWatch()
    owner = object()
    w.keep(owner, 0, 0, [batch(0, 9, 100), batch(10, 19, 100), batch(20, 29, 100)])
    one = w.cached(owner, 0, 0, 50)
    assert one is not None and len(one) == 1
    two = w.cached(owner, 0, 0, 250)
    assert two is not None and len(two) == 2


def test_extend_appends_only_past_the_end_and_trim_drops_below_spso() -> None:
    w = PartitionWatch()
    owner = object()
    w.keep(owner, 0, 0, [batch(0, 9)])
    w.extend([batch(5, 9), batch(10, 14)])  # a repeat of 5-9 is ignored
    assert [b.first_offset for b, _ in w.ra_batches] == [0, 10] and w.ra_end == 15
    assert w.ra_bytes == 20
    w.trim(10)
    assert [b.first_offset for b, _ in w.ra_batches] == [10] and w.ra_start == 10
    assert w.cached(owner, 0, 3, 10) is None
    assert w.cached(owner, 0, 12, 10) is not None
    w.trim(15)
    assert w.ra_owner is None and w.cached(owner, 0, 14, 10) is None


def test_trim_holds_the_size_cap_and_forget_drops_everything() -> None:
    w = PartitionWatch()
    owner = object()
    big = READ_AHEAD_MAX_BYTES // 4
    w.keep(owner, 0, 0, [batch(i * 10, i * 10 + 9, big) for i in range(6)])
    w.trim(0)
    assert w.ra_bytes <= READ_AHEAD_MAX_BYTES and w.ra_start == 20
    w.forget_read_ahead()
    assert w.ra_bytes == 0 and w.cached(owner, 0, 40, 10) is None


def test_the_bytes_held_by_all_windows_are_counted() -> None:
    before = ReadAheadHeld.bytes
    a, b = PartitionWatch(), PartitionWatch()
    a.keep(object(), 0, 0, [batch(0, 9, 100), batch(10, 19, 100)])
    b.keep(object(), 0, 0, [batch(0, 9, 50)])
    assert ReadAheadHeld.bytes == before + 250
    a.trim(10)
    assert ReadAheadHeld.bytes == before + 150
    a.keep(object(), 0, 0, [batch(0, 4, 30)])  # replaces a's window
    assert ReadAheadHeld.bytes == before + 80
    a.forget_read_ahead()
    b.forget_read_ahead()
    assert ReadAheadHeld.bytes == before
