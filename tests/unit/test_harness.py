"""The test harness: an assertion in a worker thread, or a worker that hangs, fails the test."""

from __future__ import annotations

import threading

import pytest

from tests.harness import Workers


def test_an_assertion_in_a_worker_fails_the_test_with_its_message() -> None:
    def work(i: int) -> None:
        assert i != 2, f"worker {i} saw something wrong"

    workers = Workers()
    for i in range(4):
        workers.start(work, i)
    with pytest.raises(AssertionError, match="worker 2 saw something wrong") as raised:
        workers.join(10)
    assert any("raised in thread worker-2" in note for note in raised.value.__notes__)


def test_a_worker_still_running_at_the_deadline_fails_the_test() -> None:
    release = threading.Event()
    workers = Workers()
    workers.start(release.wait, 30, name="stuck")
    try:
        with pytest.raises(AssertionError, match=r"still running after 0\.2 s: \['stuck'\]"):
            workers.join(0.2)
    finally:
        release.set()


def test_workers_that_finish_pass() -> None:
    done: list[int] = []
    workers = Workers()
    for i in range(3):
        workers.start(done.append, i)
    workers.join(10)
    assert sorted(done) == [0, 1, 2]
