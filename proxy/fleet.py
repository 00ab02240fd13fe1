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

Discovery: each member's ``client.id`` carries the instance's identity and the addresses of
its listeners (``FleetIdentity``), and every instance learns the fleet — instances, addresses
and the state partitions each one is assigned — by describing this consumer group through the
cluster's group coordinator (``FleetView``), after every rebalance and every few seconds. The
cluster's own view of the group is the only one: nothing is exchanged between instances.

``StateFollower`` reads every state partition, read-only, so that each instance knows the
configs of every share group (the groups coordinated elsewhere included) and the durable start
offset of every share partition.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from proxy.kafka_handles import keep
from proxy.state_partitions import PartitionedStateStore
from proxy.state_store import header_writer
from sharegroup.persist.records import PartitionKey, RecordError, decode
from sharegroup.persist.recovery import Replay

log = logging.getLogger("sharegroup.fleet")

POLL_S = 0.1
# A claim that fails (the cluster away for a moment) is tried this often, waiting 1, 2, ...
# times the back-off in between, before the partitions are left unserved until the next
# rebalance (the error is logged).
CLAIM_ATTEMPTS = 3
CLAIM_BACKOFF_S = 1.0
CLIENT_ID_PREFIX = "sharegroup-fleet"
VIEW_REFRESH_S = 1.0
# Fleet node ids: instance id * NODE_ID_STRIDE + upstream broker id.
NODE_ID_STRIDE = 100_000
MAX_INSTANCE_ID = (2**31 - 1) // NODE_ID_STRIDE - 1


def node_id(instance_id: int, broker_id: int) -> int:
    """The node id clients see for instance ``instance_id``'s listener of upstream broker
    ``broker_id``."""
    return instance_id * NODE_ID_STRIDE + broker_id


@dataclass(frozen=True)
class FleetIdentity:
    """Who an instance is and where its listeners are: instance id, advertised host, and the
    port of its listener for each upstream broker id."""

    instance_id: int
    host: str
    ports: Mapping[int, int]

    def client_id(self) -> str:
        ports = ",".join(f"{b}={p}" for b, p in sorted(self.ports.items()))
        return f"{CLIENT_ID_PREFIX}/{self.instance_id}/{self.host}/{ports}"

    @classmethod
    def parse(cls, client_id: str) -> FleetIdentity | None:
        """The identity in a member's client id; None for anything else."""
        parts = client_id.split("/")
        if len(parts) != 4 or parts[0] != CLIENT_ID_PREFIX:
            return None
        try:
            ports = {
                int(b): int(p)
                for b, p in (item.split("=", 1) for item in parts[3].split(",") if item)
            }
            return cls(int(parts[1]), parts[2], ports)
        except ValueError:
            return None


@dataclass
class FleetInstance:
    identity: FleetIdentity
    state_partitions: set[int] = field(default_factory=set)


class FleetView:
    """The fleet as the cluster's group coordinator describes the fleet's consumer group:
    instances (by id), their listeners and the state partitions each is assigned. This
    instance is always in it, with what it owns itself."""

    def __init__(self, me: Callable[[], FleetIdentity], owned: Callable[[], set[int]]) -> None:
        self._me = me
        self._owned = owned
        self.others: dict[int, FleetInstance] = {}
        self.refreshed = 0  # how many describes have succeeded

    @property
    def instance_id(self) -> int:
        return self._me().instance_id

    def instances(self) -> dict[int, FleetInstance]:
        me = self._me()
        out = {i: f for i, f in self.others.items() if i != me.instance_id}
        out[me.instance_id] = FleetInstance(me, set(self._owned()))
        return out

    def owner(self, state_partition: int) -> int:
        """The instance that owns ``state_partition``: this one when it does, or when nobody
        is known to (mid-rebalance; a share request then gets NOT_LEADER_OR_FOLLOWER here and
        the client asks again)."""
        if state_partition in self._owned():
            return self.instance_id
        for i, f in sorted(self.others.items()):
            if state_partition in f.state_partitions and i != self.instance_id:
                return i
        return self.instance_id

    def apply(self, members: Iterable[tuple[str, Iterable[int]]]) -> None:
        """A describe's members: (client id, assigned state partitions)."""
        others: dict[int, FleetInstance] = {}
        for client_id, partitions in members:
            identity = FleetIdentity.parse(client_id)
            if identity is None:
                continue
            entry = others.setdefault(identity.instance_id, FleetInstance(identity))
            entry.state_partitions |= set(partitions)
        self.others = others
        self.refreshed += 1


def describe_fleet(admin: AdminClient, group_id: str, topic: str) -> list[tuple[str, list[int]]]:
    """(client id, assigned partitions of ``topic``) of every member of the fleet's group."""
    futures = admin.describe_consumer_groups([group_id], request_timeout=10)
    description = futures[group_id].result(15)
    out: list[tuple[str, list[int]]] = []
    for m in description.members:
        tps = m.assignment.topic_partitions if m.assignment is not None else []
        out.append((m.client_id, [tp.partition for tp in tps or [] if tp.topic == topic]))
    return out


class Owner(Protocol):
    """What a membership claims and releases state partitions through."""

    async def claim(self, partitions: list[int]) -> Any: ...

    async def release(self, partitions: list[int], *, wait_s: float) -> None: ...


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
        owner: Owner | None = None,
        client_id: str | None = None,
    ) -> None:
        self.store = store
        self.owner: Owner = owner if owner is not None else _StoreOwner(store)
        self.client_id = client_id
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
        self._finished = threading.Event()  # the membership thread has left the group
        self._started = False
        self._token: trio.lowlevel.TrioToken | None = None

    # ------------------------------------------------------------------ Trio side
    async def run(self) -> None:
        """Be a member until ``aclose``: run the consumer in a thread of its own."""
        self._token = trio.lowlevel.current_trio_token()
        self._started = True
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
            if self._started:
                # The thread may have been abandoned by a cancelled ``run``: wait for it to
                # release and leave (its callbacks run in this Trio run meanwhile).
                await trio.to_thread.run_sync(self._finished.wait, 60.0)

    async def _assigned(self, partitions: list[int]) -> None:
        for attempt in range(1, CLAIM_ATTEMPTS + 1):
            try:
                await self.owner.claim(partitions)
                break
            except Exception as e:
                # Half-claimed partitions are let go at once, so that no store writes a
                # partition this member does not count as its own; then they are claimed
                # again (the cluster may have been away for a moment).
                with trio.CancelScope(shield=True):
                    await self.owner.release(partitions, wait_s=0.0)
                if attempt == CLAIM_ATTEMPTS:
                    raise
                log.warning(
                    "fleet %s: claiming state partitions %s failed (%s); again in %.0f s",
                    self.group_id,
                    sorted(partitions),
                    e,
                    attempt * CLAIM_BACKOFF_S,
                )
                await trio.sleep(attempt * CLAIM_BACKOFF_S)
        self._changed(self.owned | set(partitions))
        log.info("fleet %s: claimed state partitions %s", self.group_id, sorted(partitions))

    async def _revoked(self, partitions: list[int], wait_s: float) -> None:
        # Leaving revokes again what was released just before (consumer.close()).
        partitions = [p for p in partitions if p in self.owned]
        if not partitions:
            return
        self._changed(self.owned - set(partitions))  # stop serving them first
        await self.owner.release(partitions, wait_s=wait_s)
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
        if self.client_id:
            config["client.id"] = self.client_id
        elif self.instance_id:
            config["client.id"] = self.instance_id
        consumer = keep(Consumer(self.store.config.client(config)))

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
            try:
                if self.owned:
                    to_trio(self._revoked, sorted(self.owned), self.release_wait_s)
                consumer.close()
            finally:
                self._finished.set()


class _StoreOwner:
    def __init__(self, store: PartitionedStateStore) -> None:
        self.store = store

    async def claim(self, partitions: list[int]) -> Any:
        return await self.store.claim(partitions)

    async def release(self, partitions: list[int], *, wait_s: float) -> None:
        await self.store.release(partitions, wait_s=wait_s)


class StateFollower:
    """Every state partition, read from its start and followed, never written: a ``Replay``
    per partition with the single-writer rule, so that records of a fenced writer count for
    no one here either. Gives every instance the configs of every share group and the durable
    start offsets of every share partition, whichever instance owns them."""

    def __init__(self, store: PartitionedStateStore) -> None:
        self.store = store
        self.replays: dict[int, Replay] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.caught_up = threading.Event()

    def group_configs(self) -> dict[str, dict[str, str]]:
        with self._lock:
            out: dict[str, dict[str, str]] = {}
            for r in self.replays.values():
                out.update({g: dict(c) for g, c in r.group_configs.items()})
            return out

    def start_offsets(self) -> dict[PartitionKey, int]:
        with self._lock:
            return {
                k: d.start_offset for r in self.replays.values() for k, d in r.partitions.items()
            }

    async def run(self, on_configs: Callable[[dict[str, dict[str, str]]], None]) -> None:
        """Follow the topic until cancelled; ``on_configs`` gets every group's configs (in
        the Trio thread) whenever some of them changed."""
        token = trio.lowlevel.current_trio_token()

        def changed(configs: dict[str, dict[str, str]]) -> None:
            try:
                trio.from_thread.run_sync(on_configs, configs, trio_token=token)
            except trio.RunFinishedError:
                self._stop.set()
            except Exception:  # the follower keeps following
                log.exception("state follower: applying group configs failed")

        try:
            await trio.to_thread.run_sync(self._follow, changed, abandon_on_cancel=True)
        finally:
            self._stop.set()

    def _follow(self, changed: Callable[[dict[str, dict[str, str]]], None]) -> None:
        config = self.store.config
        consumer = Consumer(
            config.client(
                {
                    "group.id": f"sharegroup-state-follower-{config.topic}",
                    "enable.auto.commit": False,
                    "enable.partition.eof": True,
                    "fetch.wait.max.ms": 200,
                    "auto.offset.reset": "earliest",
                }
            )
        )
        keep(consumer)
        partitions = self.store.partitions
        consumer.assign([TopicPartition(config.topic, p, -2) for p in range(partitions)])
        at_eof: set[int] = set()
        last: dict[str, dict[str, str]] = {}
        try:
            while not self._stop.is_set():
                message = consumer.poll(0.2)
                batch = [] if message is None else [message, *consumer.consume(10000, 0)]
                with self._lock:
                    for m in batch:
                        err = m.error()
                        if err is not None:
                            part = m.partition()
                            if err.code() == KafkaError._PARTITION_EOF and part is not None:
                                at_eof.add(part)
                            continue
                        key = m.key()
                        if key is None:
                            continue
                        replay = self.replays.setdefault(m.partition() or 0, Replay())
                        writer = header_writer(m.headers() or ())
                        try:
                            replay.apply_logged(decode(key, m.value()), writer and writer[0])
                        except RecordError as e:
                            log.warning("state follower: skipping a record: %s", e)
                        except Exception:  # a bug must not stop the instance
                            log.exception(
                                "state follower: skipping a record of partition %s at %s",
                                m.partition(),
                                m.offset(),
                            )
                if len(at_eof) >= partitions:
                    self.caught_up.set()
                if batch:
                    configs = self.group_configs()
                    if configs != last:
                        last = configs
                        changed(configs)
        except KafkaException as e:
            log.error("state follower stopped: %s", e)
        finally:
            consumer.close()
