"""A fleet of ``sharegroup proxy`` processes in front of Kafka 3.9, with real share consumers.

* ``test_three_instances_serve_one_share_group``: three instances divide the state partitions
  through their consumer group; three ``confluent_kafka.ShareConsumer``s of one share group
  bootstrap from different instances and are routed by Metadata and FindCoordinator to the
  instance that owns each share partition and the group; every record is acknowledged, and
  confirmed, exactly once.
* ``test_sigkill_of_an_instance_under_load``: one of three instances is killed with SIGKILL
  while the consumers work; the others take its state partitions, and no acknowledgement a
  consumer saw confirmed is lost or followed by a redelivery, and delivery counts never go down.
  The time until every share partition is served again is printed.
* ``test_group_configs_changed_through_an_instance_not_coordinating_the_group``: group configs
  set through the instance that does not coordinate the group (by wire, by confluent_kafka's
  AdminClient and by kafka-configs.sh) are passed on to the one that does; both describe them,
  and a share consumer follows them.
* ``test_group_configs_while_the_coordinating_instance_is_dead``: changes through the other
  instance get COORDINATOR_NOT_AVAILABLE until it takes the group over, then succeed.
"""

from __future__ import annotations

import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import pytest
from confluent_kafka import (
    AcknowledgeType,
    Consumer,
    IllegalStateException,
    KafkaException,
    ShareConsumer,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import AlterConfigOpType, ConfigEntry, ConfigResource
from confluent_kafka.admin._resource import ResourceType
from confluent_kafka.cimpl import NewTopic

from proxy import messages, wire
from proxy.admin import GROUP_RESOURCE
from proxy.fleet import NODE_ID_STRIDE, FleetIdentity, default_group_id, describe_fleet
from sharegroup.brokers import Broker
from sharegroup.cli import fleet as fleet_cli
from sharegroup.cli.offsets import OffsetsError, WireClient, describe_offsets
from sharegroup.kafka_tools import CONFIGS, SHARE_GROUPS, run_tool
from sharegroup.persist.partitioning import state_partition_for_group, state_partition_for_share
from sharegroup.proxy_process import BenchError, ProxyProcess
from tests.integration.test_share_consumers import produce

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

STATE_PARTITIONS = 8
#: ``kafka-consumer-groups.sh``
CONSUMER_GROUPS = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"
SESSION_MS = 6000  # the cluster's group.min.session.timeout.ms


def _configs(state_topic: str) -> list[str]:
    return [
        f"sharegroup.state.topic={state_topic}",
        f"sharegroup.state.topic.partitions={STATE_PARTITIONS}",
        f"sharegroup.fleet.session.timeout.ms={SESSION_MS}",
        "sharegroup.fleet.heartbeat.interval.ms=500",
        "group.share.record.lock.duration.ms=15000",
    ]


def instance(
    broker: Broker, state_topic: str, instance_id: int, port: int | None = None
) -> ProxyProcess:
    return ProxyProcess(
        broker.bootstrap,
        _configs(state_topic),
        args=["--instance-id", str(instance_id)],
        log_level="INFO",
        port=port,
    )


@contextmanager
def fleet(broker: Broker, count: int) -> Iterator[tuple[list[ProxyProcess], str]]:
    """``count`` proxy processes, instance ids 0..count-1, over a fresh state topic; yields
    them (a list the test may change: whatever it holds at the end is stopped) and the state
    topic, once every state partition is owned by one of them."""
    state_topic = f"state-{uuid.uuid4().hex[:8]}"
    procs: list[ProxyProcess] = []
    with ExitStack() as stack:

        def stop_all() -> None:
            for p in procs:
                p.stop()

        stack.callback(stop_all)
        for i in range(count):
            procs.append(instance(broker, state_topic, i).start())
        wait_for_split(broker, state_topic, set(range(count)), procs=procs)
        yield procs, state_topic


def fleet_split(broker: Broker, state_topic: str) -> dict[int, set[int]]:
    """instance id -> assigned state partitions, as the cluster describes the fleet's group."""
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    out: dict[int, set[int]] = {}
    for client_id, parts in describe_fleet(admin, default_group_id(state_topic), state_topic):
        identity = FleetIdentity.parse(client_id)
        assert identity is not None, client_id
        out.setdefault(identity.instance_id, set()).update(parts)
    return out


def wait_for_split(
    broker: Broker,
    state_topic: str,
    instances: set[int],
    timeout_s: float = 60,
    procs: list[ProxyProcess] | None = None,
) -> dict[int, set[int]]:
    """Wait until exactly ``instances`` own every state partition between them; on failure
    the message carries the tail of each of ``procs``' logs (why an instance left)."""
    deadline = time.monotonic() + timeout_s
    split: dict[int, set[int]] = {}
    while time.monotonic() < deadline:
        try:
            split = fleet_split(broker, state_topic)
        except KafkaException:
            split = {}
        owned = [p for parts in split.values() for p in parts]
        if (
            set(split) == instances
            and all(split.values())
            and sorted(owned) == list(range(STATE_PARTITIONS))
        ):
            return split
        time.sleep(0.2)
    logs = "".join(f"\ninstance {i} ({_status(p)}):{p.tail()}" for i, p in enumerate(procs or []))
    raise AssertionError(
        f"the fleet {sorted(instances)} did not divide the partitions: {split}{logs}"
    )


def _status(proc: ProxyProcess) -> str:
    """'running', or how the process ended (a negative code: the signal that killed it)."""
    try:
        proc.check_alive()
    except BenchError as e:
        return str(e).splitlines()[0]
    return f"running, pid {proc.pid}"


def leaders(bootstrap: str, topic: str) -> dict[int, int]:
    """partition -> the node id Metadata through ``bootstrap`` names as its leader."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    md = admin.list_topics(topic, timeout=15)
    return {p: info.leader for p, info in md.topics[topic].partitions.items()}


def converged_leaders(
    procs: list[ProxyProcess], topic: str, timeout_s: float = 20
) -> dict[int, int]:
    """The leaders every instance's Metadata names, once they all name the same ones (each
    instance refreshes its view of the fleet after a rebalance and every few seconds)."""
    deadline = time.monotonic() + timeout_s
    seen: list[dict[int, int]] = []
    while time.monotonic() < deadline:
        seen = [leaders(p.bootstrap, topic) for p in procs]
        if all(s == seen[0] for s in seen):
            return seen[0]
        time.sleep(0.3)
    raise AssertionError(f"the instances' Metadata answers differ: {seen}")


@dataclass
class Worker:
    """One share consumer in a thread: acknowledges (ACCEPT) every delivery explicitly and
    records deliveries and the acknowledgements it saw confirmed."""

    bootstrap: str
    group: str
    topic: str
    deliveries: list[tuple[int, int, int, float]] = field(default_factory=list)
    confirmed: list[tuple[int, int, int, float]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> Worker:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def join(self) -> None:
        self.stop.set()
        assert self.thread is not None
        self.thread.join(60)

    def _run(self) -> None:
        c = ShareConsumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": self.group,
                "share.acknowledgement.mode": "explicit",
                "max.poll.records": 200,
                "reconnect.backoff.ms": 50,
                "reconnect.backoff.max.ms": 500,
                "socket.connection.setup.timeout.ms": 3000,
                "topic.metadata.refresh.interval.ms": 2000,
            }
        )
        c.subscribe([self.topic])
        try:
            while not self.stop.is_set():
                try:
                    messages = c.poll(0.5)
                except (KafkaException, IllegalStateException) as e:
                    self.errors.append(f"poll {e!r}")
                    time.sleep(0.1)
                    continue
                now = time.monotonic()
                pending: dict[int, list[tuple[int, int]]] = {}
                for m in messages:
                    if m.error() is not None:
                        self.errors.append(f"message {m.error()!r}")
                        continue
                    p, o, n = m.partition(), m.offset(), m.delivery_count()
                    assert p is not None and o is not None and n is not None
                    self.deliveries.append((p, o, n, now))
                    try:
                        c.acknowledge(m, AcknowledgeType.ACCEPT)
                    except (KafkaException, IllegalStateException) as e:
                        self.errors.append(f"acknowledge {e!r}")
                        continue
                    pending.setdefault(p, []).append((o, n))
                if not pending:
                    continue
                try:
                    results = c.commit_sync(30)
                except (KafkaException, IllegalStateException) as e:
                    self.errors.append(f"commit {e!r}")
                    continue
                done = time.monotonic()
                for tp, error in results.items():
                    if error is not None:
                        self.errors.append(f"commit {tp.partition} {error!r}")
                        continue
                    for o, n in pending.get(tp.partition, []):
                        self.confirmed.append((tp.partition, o, n, done))
        finally:
            try:
                c.close()
            except (KafkaException, IllegalStateException) as e:
                self.errors.append(f"close {e!r}")


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
        f.result(30)


def wait_until_initialized(
    bootstrap: str, group: str, topic: str, partitions: int, timeout_s: float = 60
) -> None:
    """Until every share partition of the group exists (DescribeShareGroupOffsets, answered
    by the group's coordinator from the whole state topic, lists a start offset for each)."""
    deadline = time.monotonic() + timeout_s
    seen: object = None
    while time.monotonic() < deadline:
        try:
            rows = describe_offsets(bootstrap, group)
            seen = rows
            known = {p for t, p, start, _lag in rows if t == topic and start >= 0}
            if known == set(range(partitions)):
                return
        except OffsetsError as e:
            seen = e
        time.sleep(0.3)
    raise AssertionError(f"share partitions of {group} not all initialized: {seen}")


def wait_for_confirmed(workers: list[Worker], count: int, when: str) -> None:
    """Wait (up to 60 s) until the workers together have ``count`` confirmed acknowledgements."""
    deadline = time.monotonic() + 60
    while sum(len(w.confirmed) for w in workers) < count:
        assert time.monotonic() < deadline, f"no progress {when}"
        time.sleep(0.05)


def settle(workers: list[Worker], total: int, timeout_s: float, procs: list[ProxyProcess]) -> bool:
    """Wait until the workers have confirmed ``total`` records (True), or until the share
    state says every record is acknowledged or archived although some acknowledgement never
    reached its worker (False). The second is what a stopped or killed instance can leave: an
    acknowledgement whose write landed while its answer was lost with the connection; the
    client was told it failed, and the record stays acknowledged, never delivered again (as
    scenarios/proxy-restart-mid-stream.yaml says). Anything else fails: a record that is
    neither confirmed nor durably done is lost, or stuck."""
    deadline = time.monotonic() + timeout_s
    group, topic = workers[0].group, workers[0].topic
    ask_state_at = time.monotonic() + 10  # the state is asked every few seconds, after 10 s
    while time.monotonic() < deadline:
        confirmed = {(p, o) for w in workers for p, o, _, _ in w.confirmed}
        if len(confirmed) >= total:
            return True
        if time.monotonic() >= ask_state_at:
            ask_state_at = time.monotonic() + 3
            if all_done(procs, group, topic):
                time.sleep(2)  # confirmations of answers still on their way come in first
                return len({(p, o) for w in workers for p, o, _, _ in w.confirmed}) >= total
        time.sleep(0.2)
    confirmed = {(p, o) for w in workers for p, o, _, _ in w.confirmed}
    delivered = {(p, o) for w in workers for p, o, _, _ in w.deliveries}
    # Where the missing ones are: per partition, the highest offset confirmed and the
    # offsets delivered (to some worker) but never confirmed.
    by_partition = {
        part: (
            max((o for p, o in confirmed if p == part), default=-1),
            sorted(o for p, o in delivered - confirmed if p == part)[:10],
        )
        for part in sorted({p for p, _ in delivered | confirmed})
    }
    tails = "".join(p.tail() for p in procs)
    errors = [e for w in workers for e in w.errors][-20:]
    raise AssertionError(
        f"{len(confirmed)} of {total} records confirmed within {timeout_s}s "
        f"(partition: highest confirmed, delivered unconfirmed {by_partition}); "
        f"errors {errors}{tails}"
    )


def all_done(procs: list[ProxyProcess], group: str, topic: str) -> bool:
    """Whether the group's share state (DescribeShareGroupOffsets v1, at the coordinator)
    has every record of every partition of ``topic`` acknowledged or archived: each start
    offset known and every lag 0."""
    for proc in procs:
        try:
            rows = [r for r in describe_offsets(proc.bootstrap, group) if r[0] == topic]
        except (OffsetsError, OSError):
            continue
        return bool(rows) and all(start >= 0 and lag == 0 for _t, _p, start, lag in rows)
    return False


def test_three_instances_serve_one_share_group(kafka39: Broker) -> None:
    topic, group = f"fleet-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    partitions, records = 6, 3000
    create_topic(kafka39.bootstrap, topic, partitions)
    with fleet(kafka39, 3) as (procs, state_topic):
        # Metadata through any instance names leaders on several instances, the same ones.
        by_instance = converged_leaders(procs, topic)
        owners = {node // NODE_ID_STRIDE for node in by_instance.values()}
        assert len(owners) >= 2, by_instance

        workers = [Worker(p.bootstrap, group, topic).start() for p in procs]
        try:
            wait_until_initialized(procs[0].bootstrap, group, topic, partitions)
            produce(procs[1].bootstrap, topic, records, per_batch=100)
            settle(workers, records, 90, procs)
        finally:
            for w in workers:
                w.join()
        refusals = [not_owner_answers(p.bootstrap, group, topic, partitions) for p in procs]
        # sharegroup fleet describe: every instance at its address, and each share partition
        # of the group under the instance whose state partitions hold it.
        rows = fleet_cli.describe(kafka39.bootstrap, state_topic, None)
        assert sorted((r[0], r[1]) for r in rows) == [
            (str(i), p.bootstrap) for i, p in enumerate(procs)
        ], rows
        shown = sorted(sp for r in rows for sp in r[3].split() if sp != "-")
        assert shown == sorted(f"{group}/{topic}-{p}" for p in range(partitions)), rows
        tid = topic_id(kafka39.bootstrap, topic)
        for instance_id, _address, states, held in rows:
            for sp in held.split():
                p = int(sp.rsplit("-", 1)[1])
                assert str(state_partition(tid, p)) in states.split(","), (instance_id, rows)
    confirmed = Counter((p, o) for w in workers for p, o, _, _ in w.confirmed)
    assert len(confirmed) == records
    assert max(confirmed.values()) == 1, confirmed.most_common(3)
    # Each consumer got records: the group's work was shared through the fleet.
    assert all(w.confirmed for w in workers), [len(w.confirmed) for w in workers]
    # Asked directly, one instance coordinates the group (the others: NOT_COORDINATOR), and
    # each share partition is served by one instance (the others: NOT_LEADER_OR_FOLLOWER).
    assert sorted(code for code, *_ in refusals) == [0, 16, 16], refusals
    for p in range(partitions):
        assert sorted(led[p] for _, led, *_ in refusals) == [0, 6, 6], (p, refusals)
        # The two that refuse name the one that serves (KIP-951's CurrentLeader and
        # NodeEndpoints), so the client goes there without a metadata refresh.
        (owner,) = [i for i, (_, led, *_) in enumerate(refusals) if led[p] == 0]
        for i, (_, _led, hints, endpoints) in enumerate(refusals):
            if i != owner:
                assert hints[p] // NODE_ID_STRIDE == owner, (p, i, refusals)
                assert endpoints[hints[p]] == procs[owner].bootstrap, (p, i, refusals)


def not_owner_answers(
    bootstrap: str, group: str, topic: str, partitions: int
) -> tuple[int, dict[int, int], dict[int, int], dict[int, str]]:
    """What one instance answers itself: the error of a ShareGroupDescribe of ``group``; per
    partition the error of a ShareFetch (a new share session) of the group's share partitions
    and the CurrentLeader it names; and the answer's NodeEndpoints (node id -> host:port)."""
    tid = topic_id(bootstrap, topic)
    with WireClient(bootstrap) as client:
        described = client.request(
            messages.ShareGroupDescribeRequest(
                group_ids=[group], include_authorized_operations=False
            ),
            1,
        )
        req = messages.ShareFetchRequest
        fetched = client.request(
            req(
                group_id=group,
                member_id=uuid.uuid4().hex[:22],
                share_session_epoch=0,
                max_wait_ms=0,
                min_bytes=0,
                max_bytes=1,
                max_records=1,
                batch_size=1,
                topics=[
                    req.FetchTopic(
                        topic_id=tid,
                        partitions=[
                            req.FetchTopic.FetchPartition(
                                partition_index=p, acknowledgement_batches=[]
                            )
                            for p in range(partitions)
                        ],
                    )
                ],
                forgotten_topics_data=[],
            ),
            1,
        )
    (g,) = described.groups
    codes = {p.partition_index: p.error_code for t in fetched.responses for p in t.partitions}
    hints = {
        p.partition_index: p.current_leader.leader_id
        for t in fetched.responses
        for p in t.partitions
    }
    endpoints = {e.node_id: f"{e.host}:{e.port}" for e in fetched.node_endpoints}
    return g.error_code, codes, hints, endpoints


def check_history(workers: list[Worker]) -> tuple[int, int]:
    """(records delivered again after a confirmed acknowledgement, deliveries whose count
    went down), over every consumer's log."""
    confirmed_at: dict[tuple[int, int], float] = {}
    for w in workers:
        for p, o, _n, t in w.confirmed:
            confirmed_at[(p, o)] = min(t, confirmed_at.get((p, o), t))
    deliveries = sorted(
        ((t, p, o, n) for w in workers for p, o, n, t in w.deliveries), key=lambda d: d[0]
    )
    redelivered = {(p, o) for t, p, o, _ in deliveries if confirmed_at.get((p, o), t) < t}
    last: dict[tuple[int, int], int] = {}
    decreased = 0
    for _t, p, o, n in deliveries:
        if n < last.get((p, o), 0):
            decreased += 1
        last[(p, o)] = n
    return len(redelivered), decreased


def test_sigkill_of_an_instance_under_load(kafka39: Broker) -> None:
    topic, group = f"fleet-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    partitions, records = 6, 6000
    create_topic(kafka39.bootstrap, topic, partitions)
    with fleet(kafka39, 3) as (procs, state_topic):
        split = wait_for_split(kafka39, state_topic, {0, 1, 2})
        tid = topic_id(kafka39.bootstrap, topic)
        # The instance that owns the share state of partition 0 (and maybe more) dies.
        (victim_id,) = (i for i, parts in split.items() if state_partition(tid, 0) in parts)
        victim = procs[victim_id]
        survivors = {0, 1, 2} - {victim_id}
        workers = [Worker(p.bootstrap, group, topic).start() for p in procs]
        everyone = ",".join(p.bootstrap for p in procs)
        producing = threading.Thread(
            target=produce_slowly, args=(everyone, topic, records), daemon=True
        )
        try:
            wait_until_initialized(procs[1].bootstrap, group, topic, partitions)
            producing.start()
            wait_for_confirmed(workers, records // 4, "before the kill")
            before = {(p, o) for w in workers for p, o, _, _ in w.confirmed}
            killed_at = time.monotonic()
            victim.kill()
            after_split = wait_for_split(kafka39, state_topic, survivors)
            producing.join(120)
            in_log = log_records(kafka39.bootstrap, topic, partitions)
            settle(workers, len(in_log), 120, [procs[i] for i in survivors])
        finally:
            for w in workers:
                w.join()
    # The topic partitions whose share state the killed instance owned.
    moved = {p for p in range(partitions) if state_partition(tid, p) in split[victim_id]}
    assert 0 in moved, (split, tid)
    served_again = {
        p: min(t for w in workers for q, _o, _n, t in w.confirmed if q == p and t > killed_at)
        for p in moved
    }
    failover_s = max(served_again.values()) - killed_at
    print(
        f"\nfailover: share partitions {sorted(moved)} of the killed instance served again "
        f"{failover_s:.2f} s after SIGKILL (session timeout {SESSION_MS} ms); "
        f"split before {split}, after {after_split}"
    )
    confirmed = Counter((p, o) for w in workers for p, o, _, _ in w.confirmed)
    # Every record in the log (a producer retrying through a killed instance may have
    # written some twice, as any non-idempotent producer may) confirmed, once; or, for an
    # acknowledgement whose answer was lost with an instance, durably done (see settle).
    assert set(confirmed) <= in_log
    print(f"done without a confirmation reaching a worker: {len(in_log - set(confirmed))}")
    assert len(in_log) >= records
    assert max(confirmed.values()) == 1, confirmed.most_common(3)
    assert before <= set(confirmed)
    redelivered, decreased = check_history(workers)
    assert (redelivered, decreased) == (0, 0)


def log_records(bootstrap: str, topic: str, partitions: int) -> set[tuple[int, int]]:
    """Every (partition, offset) of the topic's log, read from the broker's watermarks."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "fleet-watermarks"})
    try:
        out: set[tuple[int, int]] = set()
        for p in range(partitions):
            low, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=15)
            out |= {(p, o) for o in range(low, high)}
        return out
    finally:
        c.close()


def produce_slowly(bootstrap: str, topic: str, count: int) -> None:
    """``count`` records over about 15 s, so that the kill lands while records flow."""
    for start in range(0, count, 200):
        produce(bootstrap, topic, 200, per_batch=100, start=start)
        time.sleep(0.5)


def topic_id(bootstrap: str, topic: str) -> uuid.UUID:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    (description,) = admin.describe_topics(TopicCollection([topic])).values()
    tid = description.result(15).topic_id
    mask = (1 << 64) - 1
    msb, lsb = tid.get_most_significant_bits(), tid.get_least_significant_bits()
    return uuid.UUID(int=((msb & mask) << 64) | (lsb & mask))


def state_partition(tid: uuid.UUID, partition: int) -> int:
    return state_partition_for_share(tid, partition, STATE_PARTITIONS)


def test_rolling_restart_and_a_new_instance_under_load(kafka39: Broker) -> None:
    """Two instances serve; a third joins (and is given state partitions); then every
    instance in turn is stopped (SIGTERM: it lets its partitions go and leaves the group)
    and started again, all under load. No confirmed acknowledgement is lost or followed by
    a redelivery, and no delivery count goes down."""
    topic, group = f"fleet-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    partitions, records = 6, 6000
    create_topic(kafka39.bootstrap, topic, partitions)
    with fleet(kafka39, 2) as (procs, state_topic):
        workers = [Worker(p.bootstrap, group, topic).start() for p in procs]
        everyone = ",".join(p.bootstrap for p in procs)
        producing = threading.Thread(
            target=produce_slowly, args=(everyone, topic, records), daemon=True
        )
        steps: list[str] = []
        try:
            wait_until_initialized(procs[0].bootstrap, group, topic, partitions)
            producing.start()
            procs.append(instance(kafka39, state_topic, 2).start())
            split = wait_for_split(kafka39, state_topic, {0, 1, 2})
            steps.append(f"joined: {split}")
            for i in range(3):
                procs[i].stop()
                steps.append(
                    f"{i} stopped: {wait_for_split(kafka39, state_topic, {0, 1, 2} - {i})}"
                )
                # Back on its own port, as an operator restarts an instance.
                port = int(procs[i].bootstrap.rsplit(":", 1)[1])
                procs[i] = instance(kafka39, state_topic, i, port).start()
                steps.append(f"{i} back: {wait_for_split(kafka39, state_topic, {0, 1, 2})}")
            producing.join(120)
            in_log = log_records(kafka39.bootstrap, topic, partitions)
            settle(workers, len(in_log), 120, procs)
        finally:
            for w in workers:
                w.join()
    print("\n" + "\n".join(steps))
    confirmed = Counter((p, o) for w in workers for p, o, _, _ in w.confirmed)
    # Every record in the log (a producer retrying through a killed instance may have
    # written some twice, as any non-idempotent producer may) confirmed, once; or, for an
    # acknowledgement whose answer was lost with an instance, durably done (see settle).
    assert set(confirmed) <= in_log
    print(f"done without a confirmation reaching a worker: {len(in_log - set(confirmed))}")
    assert len(in_log) >= records
    assert max(confirmed.values()) == 1, confirmed.most_common(3)
    assert check_history(workers) == (0, 0)


def test_a_paused_instance_is_fenced_and_rejoins(kafka39: Broker) -> None:
    """An instance frozen (SIGSTOP) past its session timeout loses its state partitions to
    the other, which claims them; when it wakes up (SIGCONT) with writes and fetches in
    flight, the claims in the log fence whatever it still tries to write, it learns that its
    partitions were lost, and it rejoins the fleet. Two instances never both have a write to
    one state partition confirmed: nothing confirmed is lost or redelivered."""
    topic, group = f"fleet-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    partitions, records = 6, 6000
    create_topic(kafka39.bootstrap, topic, partitions)
    with fleet(kafka39, 2) as (procs, state_topic):
        workers = [Worker(p.bootstrap, group, topic).start() for p in procs]
        everyone = ",".join(p.bootstrap for p in procs)
        producing = threading.Thread(
            target=produce_slowly, args=(everyone, topic, records), daemon=True
        )
        try:
            wait_until_initialized(procs[1].bootstrap, group, topic, partitions)
            producing.start()
            wait_for_confirmed(workers, records // 5, "before the pause")
            procs[0].signal(signal.SIGSTOP)
            try:
                alone = wait_for_split(kafka39, state_topic, {1}, procs=procs)
            finally:
                procs[0].signal(signal.SIGCONT)
            rejoined = wait_for_split(kafka39, state_topic, {0, 1}, procs=procs)
            producing.join(120)
            in_log = log_records(kafka39.bootstrap, topic, partitions)
            settle(workers, len(in_log), 120, procs)
        finally:
            for w in workers:
                w.join()
    print(f"\nalone: {alone}; rejoined: {rejoined}")
    confirmed = Counter((p, o) for w in workers for p, o, _, _ in w.confirmed)
    # Every record in the log (a producer retrying through a killed instance may have
    # written some twice, as any non-idempotent producer may) confirmed, once; or, for an
    # acknowledgement whose answer was lost with an instance, durably done (see settle).
    assert set(confirmed) <= in_log
    print(f"done without a confirmation reaching a worker: {len(in_log - set(confirmed))}")
    assert len(in_log) >= records
    assert max(confirmed.values()) == 1, confirmed.most_common(3)
    assert check_history(workers) == (0, 0)


def _group_of(instance_partitions: set[int]) -> str:
    """A share group whose coordination lives in one of ``instance_partitions``."""
    while True:
        group = f"g-{uuid.uuid4().hex[:8]}"
        if state_partition_for_group(group, STATE_PARTITIONS) in instance_partitions:
            return group


def _alter_through_wire(bootstrap: str, group: str, name: str, value: str) -> tuple[int, str]:
    """One IncrementalAlterConfigs of the GROUP resource sent to ``bootstrap`` itself (an
    admin client may pick any node of the fleet): its error code and message."""
    cls = wire.request_class(wire.INCREMENTAL_ALTER_CONFIGS)
    res = cls.AlterConfigsResource(
        resource_type=GROUP_RESOURCE,
        resource_name=group,
        configs=[
            cls.AlterConfigsResource.AlterableConfig(name=name, config_operation=0, value=value)
        ],
    )
    client = WireClient(bootstrap)
    try:
        resp = client.request(cls(version=1, resources=[res], validate_only=False), 1)
    finally:
        client.close()
    [answer] = resp.responses
    return int(answer.error_code), str(answer.error_message)


def _group_configs(bootstrap: str, group: str) -> dict[str, str]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.describe_configs([ConfigResource(ResourceType.GROUP, group)])
    [described] = [f.result(15) for f in futures.values()]
    return {name: entry.value for name, entry in described.items()}


def test_group_configs_changed_through_an_instance_not_coordinating_the_group(
    kafka39: Broker,
) -> None:
    """An IncrementalAlterConfigs of a GROUP resource reaching the instance that does not
    coordinate the group is passed on to the one that does; DescribeConfigs through either
    instance then shows the change, and a share consumer follows it."""
    with fleet(kafka39, 2) as (procs, state_topic):
        split = wait_for_split(kafka39, state_topic, {0, 1})
        group = _group_of(split[0])  # coordinated by instance 0
        coordinator, other = procs[0], procs[1]
        topic = f"t-{uuid.uuid4().hex[:8]}"
        create_topic(kafka39.bootstrap, topic, 2)
        converged_leaders(procs, topic)  # both instances know the fleet's split

        # Sent to instance 1 itself: passed on to instance 0.
        code, message = _alter_through_wire(
            other.bootstrap, group, "share.record.lock.duration.ms", "30000"
        )
        assert code == 0, f"error {code}: {message}{other.tail()}"

        # Kafka's admin client bootstrapped only at instance 1.
        admin = AdminClient({"bootstrap.servers": other.bootstrap})
        entry = ConfigEntry(
            "share.auto.offset.reset", "earliest", incremental_operation=AlterConfigOpType.SET
        )
        resource = ConfigResource(ResourceType.GROUP, group, incremental_configs=[entry])
        for f in admin.incremental_alter_configs([resource]).values():
            f.result(30)

        # Kafka's kafka-configs.sh (4.4) bootstrapped only at instance 1: its admin client
        # sends to the least loaded node of the Metadata answer, either instance.
        tool = run_tool(
            CONFIGS,
            [
                "--bootstrap-server",
                other.bootstrap,
                "--entity-type",
                "groups",
                "--entity-name",
                group,
                "--alter",
                "--add-config",
                "share.record.lock.duration.ms=35000",
            ],
        )
        assert tool.returncode == 0, f"kafka-configs exited {tool.returncode}: {tool.stderr}"

        want = {"share.record.lock.duration.ms": "35000", "share.auto.offset.reset": "earliest"}
        # The coordinator wrote them; instance 1 knows them from following the state topic.
        for proc in (coordinator, other):
            deadline = time.monotonic() + 20
            seen: dict[str, str] = {}
            while time.monotonic() < deadline:
                seen = _group_configs(proc.bootstrap, group)
                if all(seen.get(k) == v for k, v in want.items()):
                    break
                time.sleep(0.2)
            assert all(seen.get(k) == v for k, v in want.items()), (proc.bootstrap, seen)

        # Records produced before the group's first member: delivered only because the
        # group reads from the earliest offset (the default, latest, would skip them).
        produce(kafka39.bootstrap, topic, 20)
        consumer = ShareConsumer({"bootstrap.servers": other.bootstrap, "group.id": group})
        consumer.subscribe([topic])
        got: set[tuple[int, int]] = set()
        try:
            deadline = time.monotonic() + 60
            while len(got) < 20 and time.monotonic() < deadline:
                for m in consumer.poll(0.5):
                    if m.error() is None:
                        got.add((m.partition() or 0, m.offset() or 0))
        finally:
            consumer.close()
        assert len(got) == 20, f"{len(got)} of 20 records delivered{coordinator.tail()}"


def test_group_configs_while_the_coordinating_instance_is_dead(kafka39: Broker) -> None:
    """The instance coordinating a group is killed; changes of its configs through the other
    instance get the retriable COORDINATOR_NOT_AVAILABLE (never UNKNOWN_SERVER_ERROR) until the
    other takes the group over, and then succeed there."""
    with fleet(kafka39, 2) as (procs, state_topic):
        split = wait_for_split(kafka39, state_topic, {0, 1})
        group = _group_of(split[0])
        topic = f"t-{uuid.uuid4().hex[:8]}"
        create_topic(kafka39.bootstrap, topic, 1)
        converged_leaders(procs, topic)
        other = procs[1]
        code, message = _alter_through_wire(
            other.bootstrap, group, "share.record.lock.duration.ms", "20000"
        )
        assert code == 0, f"error {code}: {message}"  # passed on while instance 0 lives
        procs[0].kill()
        answers: list[tuple[int, str]] = []
        deadline = time.monotonic() + SESSION_MS / 1000 + 30
        while time.monotonic() < deadline:
            answers.append(
                _alter_through_wire(
                    other.bootstrap, group, "share.record.lock.duration.ms", "25000"
                )
            )
            if answers[-1][0] == 0:
                break
        codes = [c for c, _ in answers]
        assert codes[-1] == 0, f"never taken over: {answers}{other.tail()}"
        assert set(codes[:-1]) <= {15}, answers  # COORDINATOR_NOT_AVAILABLE only
        assert codes[:-1], "the first change after the kill succeeded: nothing was waited for"
        assert _group_configs(other.bootstrap, group)["share.record.lock.duration.ms"] == "25000"


def _list_groups(bootstrap: str) -> list[str]:
    """The group ids one node answers a ListGroups (v5, no filter) with."""
    cls = wire.request_class(wire.LIST_GROUPS)
    client = WireClient(bootstrap)
    try:
        resp = client.request(cls(version=5, states_filter=[], types_filter=[]), 5)
    finally:
        client.close()
    assert resp.error_code == 0, resp
    return [g.group_id for g in resp.groups]


def _listed(output: str) -> Counter[str]:
    return Counter(line.strip() for line in output.splitlines() if line.strip())


def test_each_group_is_listed_once_through_a_fleet(kafka39: Broker) -> None:
    """An admin client asks every node of the cluster for its groups (ListGroups) and shows
    what they answer together. Through a fleet, two share groups (one coordinated by each
    instance) and one classic group are each listed exactly once, by confluent_kafka's
    AdminClient and by Kafka 4.4's kafka-share-groups.sh and kafka-consumer-groups.sh, through
    either instance."""
    topic = f"t-{uuid.uuid4().hex[:8]}"
    with fleet(kafka39, 2) as (procs, state_topic):
        split = wait_for_split(kafka39, state_topic, {0, 1}, procs=procs)
        share_groups = [_group_of(split[0]), _group_of(split[1])]
        create_topic(kafka39.bootstrap, topic, 2)
        converged_leaders(procs, topic)
        workers = [Worker(procs[i].bootstrap, g, topic).start() for i, g in enumerate(share_groups)]
        classic = f"classic-{uuid.uuid4().hex[:8]}"
        try:
            for g in share_groups:
                wait_until_initialized(procs[0].bootstrap, g, topic, 2)
            consumer = Consumer({"bootstrap.servers": procs[1].bootstrap, "group.id": classic})
            try:
                consumer.commit(offsets=[TopicPartition(topic, 0, 0)], asynchronous=False)
            finally:
                consumer.close()
            mine = {*share_groups, classic}
            # Kafka's rule: a node lists the groups it coordinates, so that the answers of all
            # nodes together list each group once (the tools below would hide duplicates).
            by_node = Counter(
                g for proc in procs for g in _list_groups(proc.bootstrap) if g in mine
            )
            assert by_node == Counter(mine), by_node
            for proc in procs:
                admin = AdminClient({"bootstrap.servers": proc.bootstrap})
                result = admin.list_consumer_groups(request_timeout=15).result(30)
                assert not result.errors, result.errors
                seen = Counter(g.group_id for g in result.valid if g.group_id in mine)
                # (librdkafka asks for consumer and classic groups only: no share groups.)
                assert seen == Counter([classic]), f"through {proc.bootstrap}: {seen}"

                shares = run_tool(SHARE_GROUPS, ["--bootstrap-server", proc.bootstrap, "--list"])
                assert shares.returncode == 0, shares.stderr
                seen = Counter({g: n for g, n in _listed(shares.stdout).items() if g in mine})
                assert seen == Counter(share_groups), f"kafka-share-groups.sh: {shares.stdout}"

                classics = run_tool(
                    CONSUMER_GROUPS, ["--bootstrap-server", proc.bootstrap, "--list"]
                )
                assert classics.returncode == 0, classics.stderr
                seen = Counter({g: n for g, n in _listed(classics.stdout).items() if g in mine})
                assert seen == Counter([classic]), f"kafka-consumer-groups.sh: {classics.stdout}"
        finally:
            for w in workers:
                w.join()


def _starts(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """partition -> start offset, as DescribeShareGroupOffsets (sent to the coordinator) says."""
    return {p: start for t, p, start, _lag in describe_offsets(bootstrap, group) if t == topic}


def _share_groups_tool(bootstrap: str, *args: str) -> str:
    done = run_tool(SHARE_GROUPS, ["--bootstrap-server", bootstrap, *args])
    assert done.returncode == 0, f"kafka-share-groups {args}: {done.stdout}{done.stderr}"
    return done.stdout + done.stderr


def test_offsets_reset_and_deleted_through_a_fleet(kafka39: Broker) -> None:
    """Kafka 4.4's kafka-share-groups.sh --reset-offsets and --delete-offsets, bootstrapped at
    the instance that does not coordinate the group, on a topic whose share partitions are
    owned by both instances: the coordinator writes the part it owns and passes each other
    part on to its owner, and every share partition moves (DescribeShareGroupOffsets)."""
    topic, partitions, per_partition = f"t-{uuid.uuid4().hex[:8]}", 6, 5
    create_topic(kafka39.bootstrap, topic, partitions)
    tid = topic_id(kafka39.bootstrap, topic)
    with fleet(kafka39, 2) as (procs, state_topic):
        split = wait_for_split(kafka39, state_topic, {0, 1}, procs=procs)
        owners = {p: 0 if state_partition(tid, p) in split[0] else 1 for p in range(partitions)}
        assert set(owners.values()) == {0, 1}, f"one instance owns every share partition: {split}"
        group = _group_of(split[0])  # coordinated by instance 0
        converged_leaders(procs, topic)
        worker = Worker(procs[0].bootstrap, group, topic).start()
        try:
            wait_until_initialized(procs[1].bootstrap, group, topic, partitions)
            for p in range(partitions):
                produce(kafka39.bootstrap, topic, per_partition, partition=p)
            wait_for_confirmed([worker], partitions * per_partition, "consuming")
        finally:
            worker.join()  # closed: the group is empty, as altering offsets needs
        deadline = time.monotonic() + 30
        while _starts(procs[1].bootstrap, group, topic) != dict.fromkeys(
            range(partitions), per_partition
        ):
            assert time.monotonic() < deadline, _starts(procs[1].bootstrap, group, topic)
            time.sleep(0.2)

        other = procs[1].bootstrap  # not the coordinator

        def reset(*spec: str) -> str:
            return _share_groups_tool(
                other, "--reset-offsets", "--group", group, "--topic", topic, *spec, "--execute"
            )

        assert all_done(procs, group, topic)  # every record acknowledged, durably
        out = reset("--to-earliest")
        assert "Error" not in out, out
        assert _starts(other, group, topic) == dict.fromkeys(range(partitions), 0), out
        assert not all_done(procs, group, topic)  # all of them to be delivered again
        out = reset("--to-offset", "2")
        assert _starts(other, group, topic) == dict.fromkeys(range(partitions), 2), out

        out = _share_groups_tool(other, "--delete-offsets", "--group", group, "--topic", topic)
        assert "Successful" in out, out
        assert _starts(other, group, topic) == {}
