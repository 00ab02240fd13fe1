"""Run a scenario live: real librdkafka share consumers through the proxy against a real broker.

Role: the ``--target live`` runner (layer 3: threads, sockets, Trio, the real clock). For one
run it starts the proxy in-process (its own Trio loop in a thread, as ``sharegroup proxy``
builds it) in front of the upstream cluster - a local Tansu broker started for the whole
session unless ``--bootstrap-server`` names one - creates the scenario's topics under names
unique to the run, sets the group's configs through the proxy (IncrementalAlterConfigs on a
GROUP resource, as ``kafka-configs`` would), and plays the timeline in real time: producers
are ``confluent_kafka.Producer``s, consumers ``confluent_kafka.ShareConsumer``s in explicit
acknowledgement mode, each in its own thread, deciding per record exactly as the simulated
consumers do (``sharegroup.sim.actors.decide``) and sleeping for its processing time.

What the trace learns, and from where: deliveries from what each consumer's ``poll`` returns
(offset, delivery count); state changes from the proxy's own change feed
(``ShareService.on_change``: acknowledgements, lock expiries, releases on close, with the
resulting record states); what was acknowledged how from the consumers; and that an
acknowledgement was confirmed from librdkafka's acknowledgement-commit callback - "no
redelivery after an acknowledged ACCEPT" counts only ACCEPTs the client was told succeeded. The expectations are
judged on that trace at the scenario's end, before the consumers are closed.

A fleet (``given.fleet``) runs as that many proxy processes (``python -m
sharegroup.cli.scenario_live``, each building its proxy as ``sharegroup proxy --instance-id N``
does, and reporting its change feed as JSON lines), in front of a cluster with topic ids (a
Kafka 3.9 broker is started unless ``--bootstrap-server`` names one); each consumer bootstraps
from its own instance, and ``kill-instance`` sends SIGKILL to one of them.

Live runs are not deterministic (real threads, real time); keep live scenarios short and their
expectations about outcomes, not exact timings. Proxy defaults for live runs (each overridable
in ``given.broker``): a 1 s heartbeat interval and a 1 s minimum lock duration, so membership
changes and lock expiries happen within a short run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import logging
import os
import queue
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from types import TracebackType
from typing import Any, Self

from confluent_kafka import (
    AcknowledgeType,
    Consumer,
    KafkaException,
    Producer,
    ShareConsumer,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import AlterConfigOpType, ConfigEntry, ConfigResource
from confluent_kafka.admin._resource import ResourceType
from confluent_kafka.cimpl import NewTopic

from model import DlqCause, RecordState, StateBatch, StateDelta
from model.config import DLQ_TOPIC_ENABLE_KEY, DLQ_TOPIC_KEY
from proxy.dlq import MARKED_TOPICS_KEY
from proxy.fleet import FleetIdentity, default_group_id, describe_fleet
from proxy.kafka_handles import keep
from proxy.thread import ProxyThread
from sharegroup.brokers import start_kafka, start_tansu
from sharegroup.dlq_format import parse_headers
from sharegroup.engine import Change
from sharegroup.kafka_dist import KAFKA3_VERSION
from sharegroup.persist.partitioning import state_partition_for_share
from sharegroup.proxy_process import die_with_parent
from sharegroup.scenario import trace as tr
from sharegroup.scenario.expect import RunResult, evaluate
from sharegroup.scenario.load import SIM_ONLY_ACTIONS, SIM_ONLY_VERBS, load
from sharegroup.scenario.spec import (
    Advance,
    AlterConfig,
    ConsumerAction,
    ConsumerSpec,
    KillInstance,
    Produce,
    ProducerSpec,
    RestartProxy,
    Scenario,
    Step,
)
from sharegroup.scenario.trace import Trace
from sharegroup.sim.actors import NO_ACK, decide, draw_processing_ms, partition_for_key

LIVE_PROXY_DEFAULTS = {
    "group.share.heartbeat.interval.ms": "1000",
    "group.share.min.heartbeat.interval.ms": "1000",
    "group.share.min.record.lock.duration.ms": "1000",
}
SAMPLES = 200
_DLQ_CAUSES = {
    DlqCause.CLIENT_REJECT: "rejected",
    DlqCause.DELIVERY_COUNT_EXCEEDED: "delivery-limit",
}
# librdkafka's own log lines (reconnects when the proxy restarts, ...) stay out of the output;
# what matters reaches the trace through callbacks and errors.
CLIENT_LOG = logging.getLogger("sharegroup.scenario.live.librdkafka")
CLIENT_LOG.addHandler(logging.NullHandler())
CLIENT_LOG.propagate = False
POLL_S = 0.1
_ACK_TYPES = {
    1: AcknowledgeType.ACCEPT,
    2: AcknowledgeType.RELEASE,
    3: AcknowledgeType.REJECT,
}
_ACK_KIND = {1: tr.ACCEPT, 2: tr.RELEASE, 3: tr.REJECT, 0: tr.GAP}


def _admin(bootstrap: str) -> AdminClient:
    config: Any = {"bootstrap.servers": bootstrap, "logger": CLIENT_LOG}
    return keep(AdminClient(config))


def _read_topic(bootstrap: str, topic: str, partitions: int) -> list[tuple[int, Any]]:
    """(partition, message) of every record of ``topic`` up to its end now (30 s at most)."""
    config: Any = {
        "bootstrap.servers": bootstrap,
        "group.id": f"sharegroup-scenario-reader-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "logger": CLIENT_LOG,
    }
    consumer = keep(Consumer(config))
    out: list[tuple[int, Any]] = []
    try:
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)[1]
            for p in range(partitions)
        }
        consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions) if ends[p]])
        deadline = time.monotonic() + 30
        while len(out) < sum(ends.values()) and time.monotonic() < deadline:
            for m in consumer.consume(500, 0.5):
                partition = m.partition()
                if m.error() is None and partition is not None:
                    out.append((partition, m))
    finally:
        consumer.close()
    return out


@dataclass(slots=True)
class _Obs:
    """One observation for the trace, in the order it arrived."""

    kind: str  # acquire | acked | confirmed | ack-error | change | produce | lifecycle
    time_ms: int
    actor: str = ""
    topic: str = ""
    partition: int = -1
    first: int = -1
    last: int = -1
    info: object = None


@dataclass(frozen=True, slots=True)
class _ConsumerEnv:
    """What a live consumer needs to know of its run (in a thread or a child process)."""

    bootstrap: str
    group_id: str
    live_topic: dict[str, str]  # scenario topic -> the run's topic
    seed: int
    t0: float  # time.monotonic() at the start of the run (one clock for all processes)

    @property
    def scenario_topic(self) -> dict[str, str]:
        return {v: k for k, v in self.live_topic.items()}

    def now_ms(self) -> int:
        return int((time.monotonic() - self.t0) * 1000)


def consume(
    spec: ConsumerSpec,
    env: _ConsumerEnv,
    emit: Callable[[_Obs], None],
    stopping: threading.Event,
    crash: Callable[[], None] | None = None,
) -> None:
    """One ShareConsumer's life: poll, decide per record as the simulated consumer would,
    process, acknowledge, until ``stopping`` is set (then close, which acknowledges what was
    processed and releases the rest). ``crash`` is called after ``crash.after-records``."""
    rng = random.Random(f"{env.seed}/{spec.id}")
    processed = 0
    config: dict[str, object] = {
        "bootstrap.servers": env.bootstrap,
        "group.id": env.group_id,
        "share.acknowledgement.mode": "implicit" if spec.implicit else "explicit",
        "max.poll.records": spec.max_poll_records,
        "client.id": spec.id,
        "logger": CLIENT_LOG,
    }
    env_topics = env.scenario_topic
    consumer = ShareConsumer(config)

    def on_commit(offsets: dict[Any, set[int]], error: KafkaException | None) -> None:
        # The broker's answer to acknowledgements: only now is an ACCEPT confirmed.
        kind = "confirmed" if error is None else "ack-error"
        for tp, offs in offsets.items():
            topic = env_topics.get(tp.topic, tp.topic)
            for o in sorted(offs):
                emit(_Obs(kind, env.now_ms(), spec.id, topic, tp.partition, o, o, str(error)))

    consumer.set_acknowledgement_commit_callback(on_commit)
    consumer.subscribe([env.live_topic[t] for t in spec.topics])
    try:
        while not stopping.is_set():
            messages = consumer.poll(POLL_S)
            polled_at = env.now_ms()
            good = []
            for m in messages:
                if m.error() is not None:
                    emit(_Obs("lifecycle", polled_at, spec.id, info=f"error {m.error()}"))
                    continue
                good.append(m)
                topic = env_topics.get(m.topic() or "", m.topic() or "")
                emit(
                    _Obs(
                        "acquire",
                        polled_at,
                        spec.id,
                        topic,
                        m.partition() or 0,
                        m.offset() or 0,
                        m.offset() or 0,
                        m.delivery_count() or 1,
                    )
                )
            for m in good:
                topic = env_topics.get(m.topic() or "", m.topic() or "")
                partition = m.partition() or 0
                offset = m.offset() or 0
                count = m.delivery_count() or 1
                now = env.now_ms()
                key = m.key()
                outcome, proc = decide(
                    spec,
                    topic,
                    partition,
                    offset,
                    lambda key=key: key.decode() if key is not None else None,  # type: ignore[misc]
                    count,
                    now,
                    rng,
                )
                delay_s = draw_processing_ms(proc, rng) / 1000
                if delay_s > 0:
                    stopping.wait(delay_s)
                if stopping.is_set():
                    break  # closing: the rest of the poll is released by the close
                processed += 1
                if (
                    crash is not None
                    and spec.crash_after_records is not None
                    and processed >= spec.crash_after_records
                ):
                    crash()  # the process dies here: nothing more is acknowledged
                if outcome != NO_ACK and not spec.implicit:
                    consumer.acknowledge(m, _ACK_TYPES[outcome])
                    emit(
                        _Obs(
                            "acked",
                            env.now_ms(),
                            spec.id,
                            topic,
                            partition,
                            offset,
                            offset,
                            outcome,
                        )
                    )
                elif spec.implicit:
                    emit(_Obs("acked", env.now_ms(), spec.id, topic, partition, offset, offset, 1))
            if spec.commit_sync and messages and not stopping.is_set():
                consumer.commit_sync(10)
    finally:
        consumer.close()


class _LiveConsumer:
    """A live consumer in a thread of the runner, or - when the scenario kills it - in a child
    process of its own, so that a kill drops its connections as a crash does."""

    def __init__(self, run: _LiveRun, spec: ConsumerSpec, *, child: bool = False) -> None:
        self.run = run
        self.spec = spec
        self.child = child
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        if self.thread is not None and self.thread.is_alive():
            return
        self.stopping.clear()
        target = self._run_child if self.child else self._loop
        self.thread = threading.Thread(target=target, name=f"consumer-{self.spec.id}", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        proc = self.process
        if proc is not None and proc.poll() is None and proc.stdin is not None:
            with contextlib.suppress(OSError, ValueError):
                proc.stdin.write("stop\n")
                proc.stdin.flush()

    def kill(self) -> None:
        proc = self.process
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)

    def join(self, timeout_s: float) -> None:
        if self.thread is not None:
            self.thread.join(timeout_s)

    def _loop(self) -> None:
        try:
            consume(self.spec, self.run.env_of(self.spec.id), self.run.emit, self.stopping)
        except Exception as e:  # noqa: BLE001 - a consumer that breaks fails the run
            self.run.errors.append(f"consumer {self.spec.id}: {type(e).__name__}: {e}")

    def _run_child(self) -> None:
        run = self.run
        env = run.env_of(self.spec.id)
        args = {
            "scenario": run.scenario.path,
            "consumer": self.spec.id,
            "bootstrap": env.bootstrap,
            "group": env.group_id,
            "topics": env.live_topic,
            "seed": env.seed,
            "t0": env.t0,
        }
        with subprocess.Popen(
            [sys.executable, "-m", "sharegroup.cli.scenario_live", json.dumps(args)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        ) as proc:
            self.process = proc
            assert proc.stdout is not None
            for line in proc.stdout:
                run.emit(_Obs(**json.loads(line)))
            proc.wait()
        if proc.returncode not in (0, -signal.SIGKILL):
            run.errors.append(
                f"consumer {self.spec.id}: child process exited with {proc.returncode}"
            )


def _change_json(change: Change, topic: str | None) -> dict[str, object]:
    group_id, topic_id, partition = change.key
    return {
        "group": group_id,
        "topic_id": str(topic_id),
        "topic": topic,
        "partition": partition,
        "cause": change.cause,
        "start": change.delta.start_offset,
        "batches": [
            [b.first_offset, b.last_offset, int(b.state), b.delivery_count]
            for b in change.delta.batches
        ],
    }


def _change_from_json(d: dict[str, Any]) -> Change:
    batches = tuple(StateBatch(f, z, RecordState(st), c) for f, z, st, c in d["batches"])
    key = (str(d["group"]), uuid.UUID(d["topic_id"]), int(d["partition"]))
    return Change(key, StateDelta(int(d["start"]), batches), str(d["cause"]))


def _instance_main(args: dict[str, Any]) -> None:
    """One instance of a fleet in a process of its own (so that ``kill-instance`` is a real
    SIGKILL): the proxy built from its configs as ``sharegroup proxy --instance-id N`` builds
    it, its address and then every state change reported as JSON lines on stdout; "stop" on
    stdin (or stdin closing) stops it cleanly."""
    lock = threading.Lock()

    def out(obj: object) -> None:
        with lock:
            sys.stdout.write(json.dumps(obj) + "\n")
            sys.stdout.flush()

    proxy = ProxyThread(args["upstream"], args["configs"]).start()
    shares = proxy.shares
    assert shares is not None
    names = shares.proxy.cluster.topic_names

    def on_change(change: Change) -> None:  # in the proxy's Trio thread
        out({"change": _change_json(change, names.get(change.key[1]))})

    shares.on_change.append(on_change)
    out({"ready": proxy.bootstrap})
    for line in sys.stdin:
        if line.strip() == "stop":
            break
    proxy.stop()


class _LiveInstance:
    """A fleet instance as a child process (``_instance_main``); its change feed goes to the
    run's observations."""

    def __init__(self, run: _LiveRun, instance_id: int, configs: dict[str, str]) -> None:
        self.run = run
        self.instance_id = instance_id
        self.bootstrap = ""
        self.ready = threading.Event()
        # Its log, shown if it fails to start; open as long as the instance (closed by stop).
        self.log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115
        args = {"instance": {"upstream": run.upstream, "configs": configs}}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sharegroup.cli.scenario_live", json.dumps(args)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            # Killed with the thread that starts it (the runner's): no orphan proxies.
            preexec_fn=die_with_parent,
        )
        self.reader = threading.Thread(
            target=self._read, name=f"instance-{instance_id}", daemon=True
        )
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            message = json.loads(line)
            if "ready" in message:
                self.bootstrap = str(message["ready"])
                self.ready.set()
            elif "change" in message:
                d = message["change"]
                change = _change_from_json(d)
                self.run.learn_topic(change.key[1], d["topic"])
                self.run.emit(_Obs("change", self.run.now_ms(), info=change))
        self.ready.set()  # it ended (before or after it was ready)

    def wait_ready(self, timeout_s: float) -> None:
        if not self.ready.wait(timeout_s) or not self.bootstrap:
            self.log.seek(0)
            tail = self.log.read()[-2000:]
            raise RuntimeError(f"fleet instance {self.instance_id} did not start: {tail}")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        proc = self.process
        if proc.poll() is None and proc.stdin is not None:
            with contextlib.suppress(OSError, ValueError):
                proc.stdin.write("stop\n")
                proc.stdin.flush()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        self.reader.join(5)
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        self.log.close()


def _topic_id(admin: AdminClient, topic: str) -> uuid.UUID:
    (description,) = admin.describe_topics(TopicCollection([topic])).values()
    tid = description.result(15).topic_id
    mask = (1 << 64) - 1
    msb, lsb = tid.get_most_significant_bits(), tid.get_least_significant_bits()
    return uuid.UUID(int=((msb & mask) << 64) | (lsb & mask))


def _child_main(raw: str) -> None:
    """``python -m sharegroup.cli.scenario_live ARGS``: one live consumer in its own process,
    reporting observations as JSON lines on stdout; "stop" on stdin closes it. With an
    ``instance`` key: one fleet instance (``_instance_main``)."""

    args = json.loads(raw)
    if "instance" in args:
        _instance_main(args["instance"])
        return
    scenario = load(args["scenario"])
    spec = scenario.consumer(args["consumer"])
    env = _ConsumerEnv(args["bootstrap"], args["group"], args["topics"], args["seed"], args["t0"])
    stopping = threading.Event()
    lock = threading.Lock()

    def emit(o: _Obs) -> None:
        with lock:
            sys.stdout.write(json.dumps(asdict(o)) + "\n")
            sys.stdout.flush()

    def watch_stdin() -> None:
        for line in sys.stdin:
            if line.strip() == "stop":
                break
        stopping.set()

    threading.Thread(target=watch_stdin, daemon=True).start()

    def crash() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    consume(spec, env, emit, stopping, crash)


class _LiveRun:
    def __init__(self, scenario: Scenario, seed: int, upstream: str) -> None:
        self.scenario = scenario
        self.seed = seed
        self.upstream = upstream
        suffix = uuid.uuid4().hex[:8]
        self.group_id = f"{scenario.group_id}-{suffix}"
        self.live_topic = {name: f"{name}-{suffix}" for name in scenario.topics}
        self.scenario_topic = {v: k for k, v in self.live_topic.items()}
        self.queue: queue.SimpleQueue[_Obs] = queue.SimpleQueue()
        self.trace = Trace()
        for name, topic in sorted(scenario.topics.items()):
            for p in range(topic.partitions):
                self.trace.add_partition(name, p)
        configs = {**LIVE_PROXY_DEFAULTS, **dict(scenario.broker_configs)}
        # The group's dead-letter queue topics (scenario names) that the scenario declares:
        # created marked as DLQ topics, also for a proxy in front of Kafka before 4.4.
        self.dlq_topics = sorted(
            v
            for k, v in scenario.group_configs.items()
            if k == DLQ_TOPIC_KEY and v in scenario.topics
        )
        if self.dlq_topics:
            configs[MARKED_TOPICS_KEY] = ",".join(self.live_topic[t] for t in self.dlq_topics)
        self.proxy_configs = configs
        self.proxy: ProxyThread | None = None
        self.proxy_bootstrap = ""
        self.fleet = scenario.fleet
        self.state_topic = f"sharegroup-state-{suffix}"
        self.instances: list[_LiveInstance] = []
        # Consumers bootstrap from the instances in turn, unless they name their own.
        self.consumer_instance = {
            c.id: c.instance if c.instance is not None else i % scenario.fleet.instances
            for i, c in enumerate(scenario.consumers)
            if scenario.fleet is not None
        }
        killed = {
            cid
            for step in scenario.steps
            if isinstance(step.action, ConsumerAction) and step.action.verb == "kill"
            for cid in step.action.consumers
        }
        self.consumers = {
            c.id: _LiveConsumer(self, c, child=c.id in killed or c.crash_after_records is not None)
            for c in scenario.consumers
        }
        self.t0 = time.monotonic()
        self.env = _ConsumerEnv("", self.group_id, self.live_topic, seed, self.t0)
        self.sent: dict[tuple[str, int, int], int] = {}  # last acknowledgement type sent
        self.topic_by_id: dict[uuid.UUID, str] = {}
        self.errors: list[str] = []
        self._kafka_producer: Producer | None = None
        self._producer_lock = threading.Lock()

    def now_ms(self) -> int:
        return int((time.monotonic() - self.t0) * 1000)

    def emit(self, obs: _Obs) -> None:
        self.queue.put(obs)

    def env_of(self, consumer_id: str) -> _ConsumerEnv:
        """A consumer's view of the run: in a fleet it bootstraps from its own instance only
        (Metadata tells it the others)."""
        instance = self.consumer_instance.get(consumer_id)
        if instance is None or not self.instances:
            return self.env
        return dataclasses.replace(self.env, bootstrap=self.instances[instance].bootstrap)

    def learn_topic(self, topic_id: uuid.UUID, live_name: str | None) -> None:
        """A topic id a fleet instance reported with its name."""
        if live_name in self.scenario_topic and topic_id not in self.topic_by_id:
            self.topic_by_id[topic_id] = self.scenario_topic[live_name]

    # ------------------------------------------------------------------ the proxy
    def _start_proxy(self, port: int = 0) -> None:
        proxy = ProxyThread(self.upstream, self.proxy_configs, port).start()
        self.proxy = proxy
        self.proxy_bootstrap = proxy.bootstrap
        assert proxy.shares is not None
        proxy.shares.on_change.append(self._on_change)

    def _start_fleet(self) -> None:
        """The fleet's instances as processes, once each has claimed its share of the state
        partitions (the cluster describes the fleet's consumer group so)."""
        fleet = self.fleet
        assert fleet is not None
        for i in range(fleet.instances):
            configs = {
                **self.proxy_configs,
                "sharegroup.fleet.enabled": "true",
                "sharegroup.fleet.instance.id": str(i),
                "sharegroup.state.topic": self.state_topic,
                "sharegroup.state.topic.partitions": str(fleet.state_partitions),
                "sharegroup.fleet.session.timeout.ms": str(fleet.session_timeout_ms),
                "sharegroup.fleet.heartbeat.interval.ms": str(fleet.heartbeat_interval_ms),
            }
            self.instances.append(_LiveInstance(self, i, configs))
        for instance in self.instances:
            instance.wait_ready(60)
        self.proxy_bootstrap = self.instances[0].bootstrap
        deadline = time.monotonic() + 60
        split: dict[int, set[int]] = {}
        while time.monotonic() < deadline:
            split = self._fleet_split()
            owned = sorted(p for parts in split.values() for p in parts)
            if len(split) == fleet.instances and owned == list(range(fleet.state_partitions)):
                return
            time.sleep(0.2)
        raise RuntimeError(f"the fleet did not divide the state partitions: {split}")

    def _wait_for_routing(self) -> None:
        """Until Metadata through every instance names the same leaders for the scenario's
        topics: each instance learns the fleet by describing its group, after a rebalance and
        every second, and a client told another leader by an instance that has not yet done so
        is only sent on when it asks again."""
        deadline = time.monotonic() + 30
        seen: list[dict[str, dict[int, int]]] = []
        agreed = 0
        while time.monotonic() < deadline:
            try:
                seen = [self._leaders(i.bootstrap) for i in self.instances]
            except KafkaException:
                seen = []
            # An instance routes a partition whose owner it does not know yet to itself, so
            # one agreeing answer may be a coincidence: five in a row, about a second.
            agreed = agreed + 1 if seen and all(s == seen[0] for s in seen) else 0
            if agreed >= 5:
                return
            time.sleep(0.2)
        raise RuntimeError(f"the fleet's instances name different leaders: {seen}")

    def _leaders(self, bootstrap: str) -> dict[str, dict[int, int]]:
        admin = _admin(bootstrap)
        out: dict[str, dict[int, int]] = {}
        for name, live in self.live_topic.items():
            md = admin.list_topics(live, timeout=10)
            out[name] = {p: info.leader for p, info in md.topics[live].partitions.items()}
        return out

    def _fleet_split(self) -> dict[int, set[int]]:
        """instance id -> the state partitions it is assigned, as the cluster describes the
        fleet's consumer group."""
        out: dict[int, set[int]] = {}
        try:
            members = describe_fleet(
                _admin(self.upstream), default_group_id(self.state_topic), self.state_topic
            )
        except KafkaException:
            return out
        for client_id, parts in members:
            identity = FleetIdentity.parse(client_id)
            if identity is not None:
                out.setdefault(identity.instance_id, set()).update(parts)
        return out

    def _kill_instance(self, a: KillInstance, now: int) -> None:
        """SIGKILL to an instance; the records it had handed out are lost with it (the trace
        marks them available: a survivor will deliver them again)."""
        fleet = self.fleet
        assert fleet is not None
        split = self._fleet_split()
        admin = _admin(self.upstream)
        tids = {name: _topic_id(admin, live) for name, live in self.live_topic.items()}
        instance = a.instance
        if a.leader_of is not None:
            topic, partition = a.leader_of
            wanted = state_partition_for_share(tids[topic], partition, fleet.state_partitions)
            instance = next((i for i, parts in split.items() if wanted in parts), None)
        if instance is None or self.instances[instance].process.poll() is not None:
            self.trace.lifecycle(now, "kill-instance", "fleet", "no live instance leads it")
            return
        gone = split.get(instance, set())
        self.trace.lifecycle(
            now, "kill-instance", "fleet", f"instance {instance}: state partitions {sorted(gone)}"
        )
        self.instances[instance].kill()
        self._drain()
        for topic, partition in self.trace.topic_partitions:
            if state_partition_for_share(tids[topic], partition, fleet.state_partitions) in gone:
                self.trace.unlock(
                    now, "instance-killed", topic, partition, 0, 1 << 40, tr.AVAILABLE
                )

    def _on_change(self, change: Change) -> None:  # called in the proxy's Trio thread
        self.queue.put(_Obs("change", self.now_ms(), info=change))

    # ------------------------------------------------------------------ the run
    def run(self, progress: Callable[[float], None] | None) -> RunResult:
        s = self.scenario
        result = RunResult(s, "live", self.seed, self.trace)
        try:
            if self.fleet is not None:
                self._start_fleet()
            else:
                self._start_proxy()
            self._setup()
            if self.fleet is not None:
                self._wait_for_routing()
            self.t0 = time.monotonic()
            self.env = _ConsumerEnv(
                self.proxy_bootstrap, self.group_id, self.live_topic, self.seed, self.t0
            )
            stop_producers = threading.Event()
            producers = [
                threading.Thread(target=self._producer_loop, args=(p, stop_producers), daemon=True)
                for p in s.producers
            ]
            for t in producers:
                t.start()
            try:
                self._play(progress)
            finally:
                stop_producers.set()
                for t in producers:
                    t.join(30)
            self._drain()
            self.trace.end_ms = s.duration_ms
            self._finish_stats()
            self._read_dlq_topics()
            result.virtual_ms = s.duration_ms
            result.verdicts = evaluate(s, self.trace, "live")
        except Exception as e:  # noqa: BLE001 - a broken run is reported, not raised
            result.error = f"{type(e).__name__}: {e}"
        finally:
            for c in self.consumers.values():
                c.stop()
            for c in self.consumers.values():
                c.join(20)
            if self._kafka_producer is not None:
                self._kafka_producer.flush(5)
                self._kafka_producer = None
            if self.proxy is not None:
                self.proxy.stop()
                # Let the stopped proxy's clients (its state-store producer) go now, while
                # the broker they talk to is still up.
                self.proxy = None
                gc.collect()
            for instance in self.instances:
                instance.stop()
            self._cleanup()
        if self.errors and result.error is None:
            result.error = "; ".join(self.errors[:3])
        return result

    def _setup(self) -> None:
        admin = _admin(self.proxy_bootstrap)
        topics = [
            NewTopic(
                self.live_topic[name],
                spec.partitions,
                1,
                config={
                    **({"cleanup.policy": "compact"} if spec.compacted else {}),
                    **({DLQ_TOPIC_ENABLE_KEY: "true"} if name in self.dlq_topics else {}),
                },
            )
            for name, spec in self.scenario.topics.items()
        ]
        for name, f in admin.create_topics(topics).items():
            try:
                f.result(30)
            except KafkaException:
                if self.scenario_topic[name] not in self.dlq_topics:
                    raise
                # Kafka before 4.4 refuses the DLQ topic config; the proxy marks it instead.
                spec = self.scenario.topics[self.scenario_topic[name]]
                plain = NewTopic(name, spec.partitions, 1)
                admin.create_topics([plain])[name].result(30)
        if self.scenario.group_configs:
            self._alter_group(dict(self.scenario.group_configs))

    def _alter_group(self, configs: dict[str, str | None]) -> None:
        admin = _admin(self.proxy_bootstrap)
        configs = {
            k: self.live_topic.get(v, v) if k == DLQ_TOPIC_KEY and v is not None else v
            for k, v in configs.items()
        }
        entries = [
            ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
            if v is not None
            else ConfigEntry(k, "", incremental_operation=AlterConfigOpType.DELETE)
            for k, v in configs.items()
        ]
        resource = ConfigResource(ResourceType.GROUP, self.group_id, incremental_configs=entries)
        # In a fleet the change is passed on to the coordinating instance, which answers
        # COORDINATOR_NOT_AVAILABLE (retriable) until it is known: the application retries.
        deadline = time.monotonic() + (30 if self.fleet is not None else 0)
        while True:
            try:
                for f in admin.incremental_alter_configs([resource]).values():
                    f.result(30)
                return
            except KafkaException as e:
                error = e.args[0] if e.args else None
                retriable = getattr(error, "retriable", lambda: False)()
                if not retriable or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def _cleanup(self) -> None:
        with contextlib.suppress(Exception):
            admin = _admin(self.upstream)
            topics = list(self.live_topic.values())
            if self.fleet is not None:
                topics.append(self.state_topic)
            for f in admin.delete_topics(topics).values():
                f.result(10)

    def _play(self, progress: Callable[[float], None] | None) -> None:
        s = self.scenario
        todo: list[tuple[int, int, Callable[[], None]]] = []
        for i, c in enumerate(s.consumers):
            if c.start_ms is not None:
                todo.append((c.start_ms, i, self._starter(c.id)))
        for j, step in enumerate(s.steps):
            todo.append((step.at_ms, 1000 + j, self._stepper(step)))
        todo.sort(key=lambda x: (x[0], x[1]))
        sample_every = max(s.duration_ms // SAMPLES, 20)
        next_sample = 0
        for at_ms, _, action in [*todo, (s.duration_ms, 10**9, lambda: None)]:
            while True:
                now = self.now_ms()
                if now >= next_sample:
                    self._drain()
                    self.trace.sample(next_sample)
                    next_sample += sample_every
                    if progress is not None:
                        progress(min(1.0, now / max(s.duration_ms, 1)))
                if now >= at_ms:
                    break
                self._drain()
                time.sleep(min(0.02, max(0.0, (min(at_ms, next_sample) - now) / 1000)))
            action()

    def _starter(self, cid: str) -> Callable[[], None]:
        def start() -> None:
            self.trace.lifecycle(self.now_ms(), "start", cid)
            self.consumers[cid].start()

        return start

    def _stepper(self, step: Step) -> Callable[[], None]:
        def run_step() -> None:
            self._drain()
            self._step(step)

        return run_step

    def _step(self, step: Step) -> None:
        a = step.action
        now = self.now_ms()
        if isinstance(a, SIM_ONLY_ACTIONS) or (
            isinstance(a, ConsumerAction) and a.verb in SIM_ONLY_VERBS
        ):
            raise RuntimeError(f"{step.where}: this step runs only in sim")
        if isinstance(a, Produce):
            self._produce(a)
        elif isinstance(a, ConsumerAction):
            for cid in a.consumers:
                self.trace.lifecycle(now, a.verb, cid)
                if a.verb == "start":
                    self.consumers[cid].start()
                elif a.verb == "kill":
                    self.consumers[cid].kill()  # SIGKILL to its process
                else:
                    self.consumers[cid].stop()
        elif isinstance(a, AlterConfig):
            self.trace.lifecycle(
                now, "alter-config", "admin", ", ".join(f"{k}={v}" for k, v in a.configs.items())
            )
            self._alter_group(dict(a.configs))
        elif isinstance(a, KillInstance):
            self._kill_instance(a, now)
        elif isinstance(a, RestartProxy):
            self.trace.lifecycle(now, "restart-proxy", "proxy", f"down {a.downtime_ms} ms")
            assert self.proxy is not None
            port = self.proxy.port
            self.proxy.stop()
            self._drain()
            for topic, partition in self.trace.topic_partitions:
                self.trace.unlock(now, "proxy-restart", topic, partition, 0, 1 << 40, tr.AVAILABLE)
            time.sleep(a.downtime_ms / 1000)
            self._start_proxy(port)
        elif isinstance(a, Advance):
            self.trace.lifecycle(now, "advance", "clock", f"{a.duration_ms} ms")

    def _producer_loop(self, spec: ProducerSpec, stop: threading.Event) -> None:
        """A ``given.producers`` entry: ``batch`` records at a time at its rate. A producer that
        falls behind (the proxy restarting) catches up: it writes as many records as the
        simulated one would."""
        total = spec.count
        if total is None:
            assert spec.until_ms is not None
            total = int((spec.until_ms - spec.from_ms) * spec.rate_per_s / 1000 + 0.5)
        sent = 0
        due = spec.from_ms / 1000
        while sent < total and not stop.is_set():
            wait = due - (time.monotonic() - self.t0)
            if wait > 0 and stop.wait(wait):
                return
            n = min(spec.batch, total - sent)
            self._produce(
                Produce(spec.topic, n, spec.partition, n, None, spec.keys, None, spec.record_bytes),
                start_index=sent,
            )
            sent += n
            due += n / spec.rate_per_s

    def _producer(self) -> Producer:
        with self._producer_lock:
            if self._kafka_producer is None:
                # A fleet's story is the share consumers': producers write to the cluster
                # itself, so that a produce retried through a dying instance is not written
                # twice (a non-idempotent producer may do that).
                self._kafka_producer = keep(
                    Producer(
                        {
                            "bootstrap.servers": self.upstream
                            if self.fleet is not None
                            else self.proxy_bootstrap,
                            "linger.ms": 5,
                            "logger": CLIENT_LOG,
                        }
                    )
                )
            return self._kafka_producer

    def _produce(self, a: Produce, start_index: int = 0) -> None:
        producer = self._producer()
        topic = self.live_topic[a.topic]
        partitions = self.scenario.topics[a.topic].partitions
        batch = a.batch or min(a.records, 100)
        failures: list[str] = []

        def delivered(err: Any, msg: Any) -> None:
            if err is not None:
                failures.append(str(err))
                return
            self.emit(
                _Obs(
                    "produce",
                    self.now_ms(),
                    "produce",
                    a.topic,
                    msg.partition(),
                    msg.offset(),
                    msg.offset(),
                )
            )

        for i in range(start_index, start_index + a.records):
            key = a.key if a.key is not None else f"k{i % a.keys}" if a.keys else None
            partition = a.partition
            if partition is None:
                partition = (
                    partition_for_key(key, partitions)
                    if key is not None
                    else (i // batch) % partitions
                )
            producer.produce(
                topic,
                value=f"{a.topic}:{i}".encode(),
                key=key.encode() if key is not None else None,
                partition=partition,
                on_delivery=delivered,
            )
            if (i + 1) % batch == 0:
                producer.flush(30)
        if producer.flush(30) != 0 or failures:
            raise RuntimeError(f"produce to {a.topic} failed: {failures[:3]}")

    # ------------------------------------------------------------------ observations -> trace
    def _drain(self) -> None:
        trace = self.trace
        while True:
            try:
                o = self.queue.get_nowait()
            except queue.Empty:
                return
            if o.kind == "produce":
                trace.produce(o.time_ms, o.actor, o.topic, o.partition, o.first, o.last)
            elif o.kind == "acquire":
                trace.acquire(
                    o.time_ms, o.actor, o.topic, o.partition, o.first, o.last, int(str(o.info))
                )
                trace.fetched(o.time_ms, o.actor, 1)
            elif o.kind == "acked":
                self.sent[(o.topic, o.partition, o.first)] = int(str(o.info))
            elif o.kind == "confirmed":
                trace.confirm(o.topic, o.partition, o.first, o.last)
            elif o.kind == "ack-error":
                trace.ack_error(
                    o.time_ms, o.actor, o.topic, o.partition, o.first, o.last, str(o.info)
                )
            elif o.kind == "lifecycle":
                trace.lifecycle(o.time_ms, "error", o.actor, o.info)
            elif o.kind == "change":
                assert isinstance(o.info, Change)
                self._apply_change(o.time_ms, o.info)

    def _topic_of(self, topic_id: uuid.UUID) -> str | None:
        name = self.topic_by_id.get(topic_id)
        if name is None and self.proxy is not None and self.proxy.shares is not None:
            live = self.proxy.shares.proxy.cluster.topic_names.get(topic_id)
            if live is not None and live in self.scenario_topic:
                name = self.topic_by_id[topic_id] = self.scenario_topic[live]
        return name

    def _apply_change(self, time_ms: int, change: Change) -> None:
        key = change.key
        if key[0] != self.group_id:
            return
        topic = self._topic_of(key[1])
        if topic is None:
            return
        p = key[2]
        trace = self.trace
        if change.cause == "dlq":
            return  # ARCHIVING -> ARCHIVED after the DLQ write: traced as ARCHIVED already
        for b in change.delta.batches:
            # ARCHIVING (the DLQ write is under way) ends ARCHIVED: the trace records that.
            state = RecordState.ARCHIVED if b.state is RecordState.ARCHIVING else b.state
            if change.cause in ("expiry", "session-close", "connection-close"):
                trace.unlock(
                    time_ms, change.cause, topic, p, b.first_offset, b.last_offset, state.name
                )
                continue
            if change.cause == "log-start":
                trace.archive(time_ms, topic, p, b.first_offset, b.last_offset, "log-start")
                continue
            if change.cause != "ack":
                if state is RecordState.ARCHIVED:
                    trace.archive(time_ms, topic, p, b.first_offset, b.last_offset, "compacted")
                continue
            # An acknowledgement: split the range by who held it and by what was sent.
            for offset in range(b.first_offset, b.last_offset + 1):
                view = trace.record_at(topic, p, offset)
                if view is None:
                    continue
                sent = self.sent.get((topic, p, offset), 1)
                if state is RecordState.ACKNOWLEDGED:
                    kind = tr.ACCEPT
                elif state is RecordState.AVAILABLE:
                    kind = tr.RELEASE
                else:
                    kind = _ACK_KIND.get(sent, tr.REJECT)
                trace.ack(
                    time_ms,
                    view.owner or "?",
                    topic,
                    p,
                    offset,
                    offset,
                    kind,
                    state.name,
                    confirmed=False,
                )

    def _read_dlq_topics(self) -> None:
        """The records of the group's DLQ topics, as their headers describe them, for the
        scenario's ``dlq`` expectations (the proxy wrote them during the run)."""
        for name in self.dlq_topics:
            live = self.live_topic[name]
            partitions = self.scenario.topics[name].partitions
            for partition, msg in _read_topic(self.proxy_bootstrap, live, partitions):
                raw = msg.headers() or []
                headers = [(k, v if isinstance(v, bytes) else None) for k, v in raw]
                origin = parse_headers(headers)
                if origin is None:
                    continue
                cause = origin.cause
                self.trace.dead_letter(
                    tr.DlqEntry(
                        dlq_topic=name,
                        dlq_partition=partition,
                        source_topic=self.scenario_topic.get(origin.topic, origin.topic),
                        source_partition=origin.partition,
                        source_offset=origin.offset,
                        group=origin.group,
                        delivery_count=origin.delivery_count,
                        cause=_DLQ_CAUSES[cause] if cause is not None else "",
                        key=msg.key(),
                        value=msg.value(),
                    )
                )

    def _finish_stats(self) -> None:
        proxy = self.proxy
        if proxy is None or proxy.shares is None:
            return
        service = proxy.shares

        def read() -> tuple[dict[tuple[str, int], dict[str, int]], dict[str, object]]:
            stats: dict[tuple[str, int], dict[str, int]] = {}
            for key, sp in service.engine.partitions.items():
                if key[0] != self.group_id:
                    continue
                topic = self._topic_of(key[1])
                if topic is not None:
                    stats[(topic, key[2])] = {
                        "start-offset": sp.start_offset,
                        "in-flight-max": sp.in_flight_count,
                    }
            if service.dlq is not None:
                # Live, the proxy counts failed DLQ writes (Kafka's
                # DeadLetterQueueFailedProduceRequests), not records.
                failed = service.dlq.metrics.failed_produce_requests[self.group_id]
                self.trace.counts["dlq-write-failures"] = failed
            entry = service.engine.group(self.group_id)
            group: dict[str, object] = {
                "members": len(entry.group.members) if entry else 0,
                "state": entry.group.state if entry else "Empty",
            }
            return stats, group

        stats, group = proxy.call(read)
        self.trace.partition_stats.update(stats)
        self.trace.group = group


class LiveRunner:
    """Runs scenarios live, one after another, against one upstream cluster.

    Without a bootstrap server a local Tansu broker is started on first use and stopped by
    ``close`` (or on leaving a ``with`` block)."""

    def __init__(self, bootstrap: str | None = None) -> None:
        self.bootstrap = bootstrap
        self._broker: Any = None
        self._kafka: Any = None  # for a fleet, which needs an upstream with topic ids

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._broker is not None:
            self._broker.stop()
            self._broker = None
        if self._kafka is not None:
            self._kafka.stop()
            self._kafka = None

    def _upstream(self, scenario: Scenario) -> str:
        if self.bootstrap:
            return self.bootstrap
        if scenario.fleet is not None:
            # Tansu has no topic ids, which a fleet's instances agree on through the cluster.
            if self._kafka is None:
                self._kafka = start_kafka(KAFKA3_VERSION, share_groups=False)
            return str(self._kafka.bootstrap)
        if self._broker is None:
            self._broker = start_tansu()
        return str(self._broker.bootstrap)

    def run(
        self,
        scenario: Scenario,
        seed: int | None = None,
        progress: Callable[[float], None] | None = None,
    ) -> RunResult:
        used_seed = scenario.seed if seed is None else seed
        if "live" not in scenario.targets:
            result = RunResult(scenario, "live", used_seed, Trace())
            result.skipped = "simulation only (targets: [sim])"
            return result
        return _LiveRun(scenario, used_seed, self._upstream(scenario)).run(progress)


if __name__ == "__main__":
    _child_main(sys.argv[1])
