"""The state store on a real broker: confirmation by reading back, and stopping cleanly."""

from __future__ import annotations

import logging
import time
import uuid

import pytest
import trio
from confluent_kafka import Consumer, TopicPartition

from proxy.state_store import StateStore, StateWriteError, StoreConfig, _writer_of
from sharegroup.brokers import Broker, start_kafka
from sharegroup.kafka_dist import KAFKA3_VERSION
from sharegroup.persist.records import GroupConfigs, decode
from sharegroup.persist.recovery import Replay

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


def test_a_gap_in_our_own_writes_fails_the_waiting_write_then_the_store_recovers(
    kafka39: Broker,
) -> None:
    """A write of ours missing from the log (here: a sequence number skipped, as if a produce
    had been lost while later ones landed) means the log no longer holds what this instance
    confirms: the waiting write fails (fenced, so its partitions are rebuilt), and the store
    recovers by itself: a new claim, the state as written rewritten after it, and writes
    confirmed again. A replay of the topic then says what the instance holds."""
    topic = f"state-gap-{uuid.uuid4().hex[:8]}"
    outcome: list[object] = []

    async def main() -> None:
        store = StateStore(StoreConfig(bootstrap=kafka39.bootstrap, topic=topic))
        async with trio.open_nursery() as nursery:
            await store.start(nursery)
            first_claim = store.claim_offset
            await store.write([GroupConfigs("g", {"share.auto.offset.reset": "earliest"})])
            assert not store.fenced
            store._seq += 1  # the next record carries seq + 2: seq + 1 never reaches the log
            try:
                with trio.fail_after(20):
                    await store.write([GroupConfigs("h", {"share.auto.offset.reset": "latest"})])
                outcome.append("confirmed")
            except StateWriteError as e:
                outcome.append((e.fenced, str(e)))
            with trio.fail_after(60):
                while getattr(store, "fenced"):  # noqa: B009 - set by the store's own task
                    await trio.sleep(0.05)
            assert store.recoveries == 1 and store.claim_offset > first_claim
            with trio.fail_after(20):
                await store.write([GroupConfigs("g", {"share.auto.offset.reset": "latest"})])
            outcome.append(dict(store.replay.group_configs))
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert len(outcome) == 2 and isinstance(outcome[0], tuple), outcome
    fenced, message = outcome[0]
    assert fenced and "missing from the log" in message, outcome
    # The unconfirmed write is kept (its client was told it failed: either outcome is allowed),
    # and the log agrees with the instance.
    expected = {
        "g": {"share.auto.offset.reset": "latest"},
        "h": {"share.auto.offset.reset": "latest"},
    }
    assert outcome[1] == expected, outcome
    assert replay_topic(kafka39.bootstrap, topic).group_configs == expected


def replay_topic(bootstrap: str, topic: str) -> Replay:
    """What a new instance would read: the topic replayed with the single-writer rule."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"check-{uuid.uuid4().hex[:6]}",
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
        }
    )
    replay = Replay()
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for m in consumer.consume(1000, 0.5):
                err = m.error()
                if err is not None:
                    assert err.code() == -191, err
                    return replay
                key = m.key()
                if key is not None:
                    writer = _writer_of(m)
                    replay.apply_logged(decode(key, m.value()), writer and writer[0])
    finally:
        consumer.close()
    raise AssertionError(f"could not read {topic} to its end")


def test_a_write_refused_before_it_leaves_leaves_no_gap(
    kafka39: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write the producer refuses at once (its queue full) fails unfenced and takes no
    sequence number: the next write is confirmed, not taken for a gap."""
    topic = f"state-refused-{uuid.uuid4().hex[:8]}"

    async def main() -> None:
        store = StateStore(StoreConfig(bootstrap=kafka39.bootstrap, topic=topic))
        async with trio.open_nursery() as nursery:
            await store.start(nursery)
            await store.write([GroupConfigs("g", {"a": "1"})])
            send = store._send

            def refuse(*_args: object, **_kwargs: object) -> None:
                raise BufferError("Local: Queue full")

            monkeypatch.setattr(store, "_send", refuse)
            with pytest.raises(StateWriteError) as refused:
                await store.write([GroupConfigs("g", {"a": "2"})])
            assert not refused.value.fenced
            monkeypatch.setattr(store, "_send", send)
            with trio.fail_after(20):
                await store.write([GroupConfigs("g", {"a": "3"})])
            assert not store.fenced
            assert store.replay.group_configs == {"g": {"a": "3"}}
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_writes_wait_out_an_upstream_restart(caplog: pytest.LogCaptureFixture) -> None:
    """The upstream broker goes away and comes back (same log dir, same port): a write made
    while it is away is confirmed once it is back, the instance is not fenced, and the tail
    reader says so once rather than on every retry."""
    topic = f"state-restart-{uuid.uuid4().hex[:8]}"
    outcome: dict[str, object] = {}
    caplog.set_level(logging.DEBUG, logger="sharegroup.state")

    with start_kafka(KAFKA3_VERSION, share_groups=False) as broker:

        async def main() -> None:
            store = StateStore(StoreConfig(bootstrap=broker.bootstrap, topic=topic))
            async with trio.open_nursery() as nursery:
                await store.start(nursery)
                await store.write([GroupConfigs("g", {"a": "1"})])
                await trio.to_thread.run_sync(lambda: broker.stop(keep_files=True))

                async def restart() -> None:
                    await trio.sleep(3)
                    await trio.to_thread.run_sync(broker.start)

                nursery.start_soon(restart)
                started = time.monotonic()
                with trio.fail_after(90):
                    await store.write([GroupConfigs("g", {"a": "2"})])
                outcome["waited"] = time.monotonic() - started
                with trio.fail_after(30):
                    await store.write([GroupConfigs("g", {"a": "3"})])
                outcome["fenced"] = store.fenced
                nursery.cancel_scope.cancel()

        trio.run(main)

    assert outcome["fenced"] is False, outcome
    assert isinstance(outcome["waited"], float) and outcome["waited"] >= 3, outcome
    problems = [r for r in caplog.records if r.message.startswith("state topic reader:")]
    warnings = [r for r in problems if r.levelno == logging.WARNING]
    # One per outage (a second is allowed: the restarted broker may still refuse a fetch
    # once after the first one it answers).
    assert 1 <= len(warnings) <= 2, [r.message for r in warnings]
    assert len(problems) > len(warnings), "the retries went to debug"
    assert any("reading again" in r.message for r in problems if r.levelno == logging.INFO)
