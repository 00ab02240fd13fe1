"""The in-process proxy of the tests: a proxy whose loop dies fails the test that ran it."""

from __future__ import annotations

import threading
import time

import pytest
import trio

from sharegroup.brokers import Broker
from tests.harness import ProxyThread

pytestmark = pytest.mark.integration


def test_a_proxy_that_dies_while_serving_fails_the_test(tansu: Broker) -> None:
    async def crash() -> None:
        raise RuntimeError("the proxy's loop failed")

    with (
        pytest.raises(AssertionError, match="the proxy stopped on an error"),
        ProxyThread(tansu.bootstrap) as p,
    ):
        # A system task that raises ends trio.run with the error, as a bug would.
        p.call(trio.lowlevel.spawn_system_task, crash)
        deadline = time.monotonic() + 10
        while p.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not p.is_alive(), "the proxy's loop kept running"
    assert p.error is not None


def test_a_proxy_stopped_cleanly_passes(tansu: Broker) -> None:
    with ProxyThread(tansu.bootstrap) as p:
        assert p.bootstrap
    assert p.error is None and not p.is_alive()


def test_a_stuck_loop_does_not_hang_the_threads_that_call_or_stop_it(tansu: Broker) -> None:
    # A loop stuck in blocking code must not take its callers with it: a test waiting on it
    # without a bound hangs beyond pytest-timeout's one alarm.
    release = threading.Event()
    with ProxyThread(tansu.bootstrap) as p:
        try:
            with pytest.raises(TimeoutError, match="did not run") as caught:
                p.call(release.wait, 30, timeout_s=0.5)  # the loop is now stuck in it
            assert "in wait" in str(caught.value), "the error does not say where the loop is"
            p.stop(timeout_s=0.5)
            assert p.is_alive(), "stop() waited for the stuck loop"
            assert not release.is_set()
        finally:
            release.set()
        p.stop()
        assert not p.is_alive()
