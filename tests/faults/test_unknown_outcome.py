"""A state write whose outcome is unknown, for real: Toxiproxy swallows the cluster's answers
(a half-open connection) until the write times out, then lets them through again. The store
recovers by itself (docs/persistence.md, "A write of unknown outcome"): the waiting write fails,
a new claim and the state as written go to the log, and writes are confirmed again. A replay
of the topic, as a restarted instance would read it, says what the live instance holds."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
import trio

from proxy.state_store import StateStore, StateWriteError, StoreConfig
from sharegroup.persist.records import GroupConfigs
from tests.faults.campaign import TOXI, cluster
from tests.integration.test_state_store import replay_topic

pytestmark = pytest.mark.integration


def test_a_write_of_unknown_outcome_recovers_without_a_restart(tmp_path: Path) -> None:
    topic = f"state-unknown-{uuid.uuid4().hex[:8]}"
    seen: dict[str, object] = {}
    with cluster(tmp_path) as (broker, toxi, faulty):

        async def main() -> None:
            store = StateStore(StoreConfig(bootstrap=faulty, topic=topic, commit_retry_s=3))
            async with trio.open_nursery() as nursery:
                await store.start(nursery)
                await store.write(
                    [GroupConfigs("confirmed", {"share.auto.offset.reset": "latest"})]
                )
                toxi.toxic(TOXI, "swallow", "timeout", {"timeout": 0}, "downstream")
                started = time.monotonic()
                try:
                    with trio.fail_after(60):
                        await store.write([GroupConfigs("unknown", {"a": "1"})])
                    seen["write"] = "confirmed"
                except StateWriteError as e:
                    seen["write"] = ("failed", e.fenced, time.monotonic() - started)
                toxi.reset()
                with trio.fail_after(90):
                    while getattr(store, "fenced"):  # noqa: B009 - set by the store's task
                        await trio.sleep(0.1)
                seen["recovered_after_s"] = time.monotonic() - started
                seen["recoveries"] = store.recoveries
                with trio.fail_after(30):
                    await store.write([GroupConfigs("after", {"b": "2"})])
                seen["held"] = dict(store.replay.group_configs)
                nursery.cancel_scope.cancel()

        trio.run(main)
        logged = replay_topic(broker.bootstrap, topic).group_configs

    print(seen)
    write = seen["write"]
    assert isinstance(write, tuple) and write[:2] == ("failed", True), seen
    assert seen["recoveries"] == 1, seen
    held = seen["held"]
    assert isinstance(held, dict) and held["confirmed"] == {"share.auto.offset.reset": "latest"}
    assert held["after"] == {"b": "2"}, held
    # Whatever became of the unknown write, the log and the instance agree.
    assert logged == held, (logged, held)
