"""Run a scenario in the simulator: the real engine on an in-memory log, in virtual time.

Role: sets up the pieces of ``sharegroup/sim`` from a ``Scenario`` — topics in the log, the
proxy node with the group's configs, one seeded ``random.Random`` per actor (derived from the
scenario seed and the actor's id, so adding a consumer does not change another's choices) —
puts every step on the event loop, runs to the scenario's end and judges the expectations.

Deterministic: the same scenario and seed give the same trace, event for event
(``Trace.digest``). No wall clock is read here; the caller times the run if it wants to.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from model import AckBatch, AcquireMode, ErrorCode
from sharegroup.scenario.expect import RunResult, evaluate
from sharegroup.scenario.spec import (
    Advance,
    AlterConfig,
    Compact,
    ConsumerAction,
    CopyOffsets,
    DeleteRecords,
    KillInstance,
    Produce,
    ResetOffsets,
    RestartProxy,
    Scenario,
    Send,
    Step,
    Subscribe,
)
from sharegroup.scenario.trace import Trace
from sharegroup.sim.actors import SimProducer, SimShareConsumer, write_batch
from sharegroup.sim.loop import EventLoop
from sharegroup.sim.memlog import MemLog
from sharegroup.sim.node import FetchRequest, FetchResponse, SimProxy, TopicPartition

SAMPLES = 400  # points of the in-flight / throughput series


def actor_rng(seed: int, actor: str) -> random.Random:
    """The random source of one actor: independent of every other actor's."""
    return random.Random(f"{seed}/{actor}")


class SimRun:
    """One simulated run of a scenario; ``run()`` returns its result."""

    def __init__(self, scenario: Scenario, seed: int | None = None) -> None:
        self.scenario = scenario
        self.seed = scenario.seed if seed is None else seed
        self.loop = EventLoop()
        self.log = MemLog()
        self.trace = Trace()
        for name, topic in sorted(scenario.topics.items()):
            self.log.create_topic(name, topic.partitions)
            for p in range(topic.partitions):
                self.trace.add_partition(name, p)
        self.proxy = SimProxy(
            self.loop,
            self.log,
            self.trace,
            group_id=scenario.group_id,
            broker_configs=dict(scenario.broker_configs),
            group_configs=dict(scenario.group_configs),
            latency_ms=scenario.latency_ms,
            rng=actor_rng(self.seed, "proxy"),
            fleet=scenario.fleet,
        )
        self.consumers = {
            c.id: SimShareConsumer(
                c,
                self.loop,
                self.proxy,
                self.log,
                self.trace,
                actor_rng(c.seed if c.seed is not None else self.seed, c.id),
            )
            for c in scenario.consumers
        }
        if scenario.fleet is not None:
            # Without an instance of their own, consumers bootstrap from the instances in turn.
            for i, c in enumerate(scenario.consumers):
                if c.instance is None:
                    self.consumers[c.id].instance = i % scenario.fleet.instances
        self.producers = [
            SimProducer(p, self.loop, self.proxy, producer_id=1000 + i)
            for i, p in enumerate(scenario.producers)
        ]
        self._round_robin: dict[str, int] = {}
        self._next_producer_id = 1

    def run(self, progress: Callable[[float], None] | None = None) -> RunResult:
        scenario = self.scenario
        loop = self.loop
        for c in scenario.consumers:
            if c.start_ms is not None:
                loop.at(c.start_ms, self.consumers[c.id].start)
        for p in self.producers:
            p.start()
        for step in scenario.steps:
            loop.at(step.at_ms, self._step, step)
        end = scenario.duration_ms
        every = max(end // SAMPLES, 1)
        for t in range(0, end + 1, every):
            loop.at(t, self.trace.sample, t)
        report = None
        if progress is not None:
            report = lambda now: progress(now / end if end else 1.0)  # noqa: E731
        loop.run_until(end, report)
        self.trace.end_ms = end
        self.proxy.finish()
        result = RunResult(scenario, "sim", self.seed, self.trace, virtual_ms=end)
        result.verdicts = evaluate(scenario, self.trace, "sim")
        return result

    # ------------------------------------------------------------------ steps
    def _step(self, step: Step) -> None:
        a = step.action
        now = self.loop.now_ms
        if isinstance(a, Produce):
            self._produce(a)
        elif isinstance(a, ConsumerAction):
            for cid in a.consumers:
                getattr(self.consumers[cid], a.verb)()
        elif isinstance(a, Subscribe):
            for cid in a.consumers:
                self.consumers[cid].subscribe(a.topics)
        elif isinstance(a, RestartProxy):
            self.trace.lifecycle(now, "restart-proxy", "proxy", f"down {a.downtime_ms} ms")
            self.proxy.restart(a.downtime_ms)
        elif isinstance(a, KillInstance):
            instance = a.instance
            if a.leader_of is not None:
                instance = self.proxy.leader_of(*a.leader_of)
            if instance is None:
                self.trace.lifecycle(now, "kill-instance", "fleet", "no live instance leads it")
            else:
                self.proxy.kill_instance(instance)
        elif isinstance(a, AlterConfig):
            self.trace.lifecycle(now, "alter-config", "admin", _configs_text(a.configs))
            self.proxy.alter_configs(dict(a.configs))
        elif isinstance(a, ResetOffsets):
            targets = [
                (topic, p, a.to)
                for topic, spec in sorted(self.scenario.topics.items())
                if a.topic in (None, topic)
                for p in range(spec.partitions)
                if a.partition in (None, p)
            ]
            code = self.proxy.alter_offsets(targets)
            self._admin_result(step, "reset-offsets", f"to {a.to}", code)
        elif isinstance(a, CopyOffsets):
            offsets = self.scenario.classic_groups[a.from_group]
            code = self.proxy.alter_offsets([(o.topic, o.partition, o.offset) for o in offsets])
            self._admin_result(step, "copy-offsets", f"from classic group {a.from_group}", code)
        elif isinstance(a, Compact):
            removed = 0
            for plog in self.log.topics[a.topic]:
                removed += sum(b - f + 1 for f, b in plog.compact())
            self.trace.lifecycle(now, "compact", "log", f"{a.topic}: {removed} records removed")
        elif isinstance(a, DeleteRecords):
            for p, plog in enumerate(self.log.topics[a.topic]):
                if a.partition in (None, p):
                    start = plog.delete_records(a.before)
                    self.trace.lifecycle(
                        now, "delete-records", "log", f"{a.topic}-{p} starts at {start}"
                    )
        elif isinstance(a, Advance):
            self.trace.lifecycle(now, "advance", "clock", f"{a.duration_ms} ms")
        elif isinstance(a, Send):
            self._send(step, a)

    def _admin_result(self, step: Step, kind: str, detail: str, code: ErrorCode) -> None:
        text = detail if code is ErrorCode.NONE else f"{detail}: {code.name}"
        self.trace.lifecycle(self.loop.now_ms, kind, "admin", text)
        if step.name:
            self.trace.response(step.name, code.name, "NONE")

    def _produce(self, a: Produce) -> None:
        batch = a.batch or min(a.records, 100)
        producer_id = self._next_producer_id
        self._next_producer_id += 1
        sent = 0
        counter = self._round_robin
        partitions = self.scenario.topics[a.topic].partitions

        def round_robin() -> int:
            p = counter.get(a.topic, 0)
            counter[a.topic] = p + 1
            return p % partitions

        while sent < a.records:
            n = min(batch, a.records - sent)
            write_batch(
                self.proxy,
                "produce",
                a.topic,
                n,
                start_index=sent,
                partition=a.partition,
                keys=a.keys,
                key=a.key,
                record_bytes=a.record_bytes,
                producer_id=producer_id,
                transaction=a.transaction,
                round_robin=round_robin,
            )
            sent += n

    def _send(self, step: Step, a: Send) -> None:
        """A hand-made request in a consumer's name (conformance probes)."""
        proxy = self.proxy
        consumer = self.consumers[a.consumer]
        conn = consumer.conn
        name = step.name or f"send@{step.at_ms}"
        if conn is None or conn not in proxy.connections:
            self.trace.lifecycle(self.loop.now_ms, "send", a.consumer, f"{a.api}: not connected")
            return
        if a.epoch == "current":
            # The epoch the proxy's session expects now (a fetch of the consumer's own may be
            # in flight, so its own idea of the epoch can lag by one).
            session = proxy.probe_epoch(consumer.member_id, conn)
            epoch = session[0] if session is not None else 0
        else:
            epoch = a.epoch
        acks: dict[TopicPartition, list[AckBatch]] = {}
        if a.ack_held_by is not None:
            holder = self.consumers[a.ack_held_by]
            if holder.holding:
                tp, first, last = holder.holding[0]
                code = {"gap": 0, "accept": 1, "release": 2, "reject": 3, "renew": 4}[a.ack_type]
                acks[tp] = [AckBatch(first, last, (code,))]
        forget = [tp for t in a.forget for tp in proxy.topic_partitions(t)]
        if a.api == "ShareAcknowledge":
            # A client sets IsRenewAck on a request that carries RENEW acknowledgements.
            renew = a.ack_type == "renew" and bool(acks)
            resp = proxy.share_acknowledge(conn, consumer.member_id, epoch, acks, renew=renew)
            error = resp.error.name if resp is not None else "NETWORK_EXCEPTION"
            ack_errors = resp.ack_errors if resp is not None else {}
        else:
            got: list[FetchResponse] = []
            req = FetchRequest(
                consumer.member_id,
                epoch,
                dict(acks),
                forget,
                0,
                0,
                AcquireMode.BATCH_OPTIMIZED,
                0,
            )
            proxy.share_fetch(conn, req, got.append)
            error = got[0].error.name if got else "NETWORK_EXCEPTION"
            ack_errors = got[0].ack_errors if got else {}
        ack_error = next((c.name for c in ack_errors.values() if c is not ErrorCode.NONE), "NONE")
        self.trace.response(name, error, ack_error)
        self.trace.lifecycle(
            self.loop.now_ms,
            "send",
            a.consumer,
            f"{a.api} epoch {epoch}: {error}, acknowledge {ack_error}",
        )
        consumer.resync_session()


def run_sim(
    scenario: Scenario, seed: int | None = None, progress: Callable[[float], None] | None = None
) -> RunResult:
    """Run one scenario in the simulator and judge it."""
    return SimRun(scenario, seed).run(progress)


def _configs_text(configs: object) -> str:
    assert isinstance(configs, dict)
    return ", ".join(f"{k}={v}" for k, v in configs.items())
