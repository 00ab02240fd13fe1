"""Which instance of a fleet owns which state partitions: decided by Kafka's group protocol.

Every instance joins one consumer group (``sharegroup.fleet.group.id``, by default
``sharegroup-fleet-<state topic>``) subscribed to the state topic, with the
``cooperative-sticky`` assignor: the cluster's group coordinator decides who owns what, and
a rebalance moves only the partitions that change hands, so the others keep serving. The
consumer never reads the topic (its partitions are paused as soon as they are assigned); it
is only the instance's membership.

librdkafka calls the rebalance callbacks from ``poll()`` in the membership thread; each one
hands the change to the Trio side and waits for it there:

* assigned — ``PartitionedStateStore.claim``: a WriterClaim in each partition, replay through
  it, then the partitions are written (served);
* revoked — ``PartitionedStateStore.release``: no new write for them, pending writes get a
  bounded time to be confirmed, the rest fail, the readers stop; only then does the callback
  return, so the coordinator gives the partitions to another member after this one let go;
* lost (this member was expelled, e.g. its session expired) — released at once: another
  instance may already have claimed them, and its claim fences this one anyway.

No lease or clock of our own: a member whose session expires loses its partitions by the
coordinator's decision, and the single-writer claim in the log keeps a slow former owner from
having any write confirmed after the new owner's claim (``docs/persistence.md``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import trio
from confluent_kafka import Consumer, KafkaException, TopicPartition

from proxy.state_partitions import PartitionedStateStore

log = logging.getLogger("sharegroup.fleet")

POLL_S = 0.1


def default_group_id(topic: str) -> str:
    return f"sharegroup-fleet-{topic}"


class FleetMembership:
    """One instance's membership in the fleet's consumer group over the state topic."""

    def __init__(
        self,
        store: PartitionedStateStore,
        *,
        group_id: str | None = None,
        instance_id: str | None = None,
        session_timeout_ms: int = 45000,
        heartbeat_interval_ms: int = 3000,
        release_wait_s: float = 10.0,
        on_change: Callable[[set[int]], Any] | None = None,
    ) -> None:
        self.store = store
        self.group_id = group_id or default_group_id(store.config.topic)
        self.instance_id = instance_id
        self.session_timeout_ms = session_timeout_ms
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.release_wait_s = release_wait_s
        self.on_change = on_change
        self.owned: set[int] = set()
        self.changed = trio.Event()  # set (and replaced) whenever ``owned`` changes
        self._stop = threading.Event()
        self._done = trio.Event()
        self._token: trio.lowlevel.TrioToken | None = None

    # ------------------------------------------------------------------ Trio side
    async def run(self) -> None:
        """Be a member until ``aclose``: run the consumer in a thread of its own."""
        self._token = trio.lowlevel.current_trio_token()
        try:
            # Abandoned if cancelled (the proxy stopping): the thread then leaves the group on
            # its own, its callbacks running as long as Trio does.
            await trio.to_thread.run_sync(self._member, abandon_on_cancel=True)
        finally:
            self._stop.set()
            self._done.set()

    async def aclose(self) -> None:
        """Leave the group: the partitions are released first (pending writes get their
        time), then the coordinator gives them to the other members."""
        self._stop.set()
        with trio.CancelScope(shield=True):
            await self._done.wait()

    async def _assigned(self, partitions: list[int]) -> None:
        await self.store.claim(partitions)
        self._changed(self.owned | set(partitions))
        log.info("fleet %s: claimed state partitions %s", self.group_id, sorted(partitions))

    async def _revoked(self, partitions: list[int], wait_s: float) -> None:
        self._changed(self.owned - set(partitions))  # stop serving them first
        await self.store.release(partitions, wait_s=wait_s)
        log.info("fleet %s: released state partitions %s", self.group_id, sorted(partitions))

    def _changed(self, owned: set[int]) -> None:
        self.owned = owned
        self.changed.set()
        self.changed = trio.Event()
        if self.on_change is not None:
            self.on_change(set(owned))

    # ------------------------------------------------------------------ the membership thread
    def _member(self) -> None:
        config = {
            "group.id": self.group_id,
            "partition.assignment.strategy": "cooperative-sticky",
            "enable.auto.commit": False,
            "auto.offset.reset": "latest",
            "session.timeout.ms": self.session_timeout_ms,
            "heartbeat.interval.ms": self.heartbeat_interval_ms,
        }
        if self.instance_id:
            config["client.id"] = self.instance_id
        consumer = Consumer(self.store.config.client(config))

        def to_trio(fn: Callable[..., Any], *args: Any) -> None:
            try:
                trio.from_thread.run(fn, *args, trio_token=self._token)
            except trio.RunFinishedError:
                pass  # the proxy has stopped: nothing to claim or release any more
            except Exception as e:  # noqa: BLE001 - keep the membership thread alive
                log.error("fleet %s: %s failed: %r", self.group_id, fn.__name__, e)

        def on_assign(c: Consumer, parts: list[TopicPartition]) -> None:
            c.incremental_assign(parts)
            if parts:
                c.pause(parts)  # membership only: the state is read by the stores
                to_trio(self._assigned, [p.partition for p in parts])

        def on_revoke(c: Consumer, parts: list[TopicPartition]) -> None:
            if parts:
                to_trio(self._revoked, [p.partition for p in parts], self.release_wait_s)
            c.incremental_unassign(parts)

        def on_lost(c: Consumer, parts: list[TopicPartition]) -> None:
            log.warning("fleet %s: state partitions lost (session expired?)", self.group_id)
            if parts:
                to_trio(self._revoked, [p.partition for p in parts], 0.0)
            c.incremental_unassign(parts)

        try:
            consumer.subscribe(
                [self.store.config.topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost
            )
            while not self._stop.is_set():
                message = consumer.poll(POLL_S)
                if message is not None and message.error() is not None:
                    log.warning("fleet %s: %s", self.group_id, message.error())
        except KafkaException as e:
            log.error("fleet %s: membership failed: %s", self.group_id, e)
        finally:
            # Let go of what is owned before leaving, then leave (close() revokes what is
            # still assigned, which is then already released).
            if self.owned:
                to_trio(self._revoked, sorted(self.owned), self.release_wait_s)
            consumer.close()
