"""The state store on a real broker: confirmation by reading back, and stopping cleanly."""

from __future__ import annotations

import time
import uuid

import pytest
import trio

from proxy.state_store import StateStore, StateWriteError, StoreConfig
from sharegroup.brokers import Broker
from sharegroup.persist.records import GroupConfigs

pytestmark = pytest.mark.integration


def test_writes_are_confirmed_and_a_stop_fails_the_unconfirmed_at_once(tansu: Broker) -> None:
    topic = f"state-{uuid.uuid4().hex[:8]}"
    outcome: list[object] = []

    async def main() -> None:
        # A short delivery timeout: without the stop handling the wait below ends after 33 s.
        store = StateStore(StoreConfig(bootstrap=tansu.bootstrap, topic=topic, commit_retry_s=3))
        async with trio.open_nursery() as nursery:
            await store.start(nursery)
            await store.write([GroupConfigs("g", {"share.auto.offset.reset": "earliest"})])
            assert store.replay.group_configs == {"g": {"share.auto.offset.reset": "earliest"}}
            # From here nothing is confirmed (as if the log could not be read back): the
            # write waits, until the proxy stops.
            store._on_read = lambda confirmed, fenced_by: None  # type: ignore[method-assign]

            async def write() -> None:
                started = time.monotonic()
                try:
                    await store.write([GroupConfigs("g", None)])
                    outcome.append("confirmed")
                except StateWriteError as e:
                    outcome.append((e.fenced, time.monotonic() - started))

            nursery.start_soon(write)
            await trio.sleep(0.5)
            assert not outcome
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert len(outcome) == 1 and isinstance(outcome[0], tuple), outcome
    fenced, waited = outcome[0]
    assert fenced and waited < 5, outcome
