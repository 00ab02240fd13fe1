"""The fault campaign: production failures between the proxy and the cluster, nothing lost.

Real parts: Apache Kafka 3.9, ``sharegroup proxy`` as a child process, four
``confluent_kafka.ShareConsumer`` processes that acknowledge with every acknowledgement type
(ACCEPT; REJECT; RELEASE once, then ACCEPT; RELEASE every time, archived at the delivery limit:
``tests/integration/test_crash_torture.ack_for``), a producer writing all through the run, and
Toxiproxy between the proxy and the cluster.

Routing: the broker has a second listener, FAULTY, that advertises the Toxiproxy port. The proxy
bootstraps from that port, so the Metadata it reads (and rewrites for its clients) names the
Toxiproxy port as the broker's address, and every byte the proxy exchanges with the cluster —
relayed requests, its own Fetches, the state-topic writes and tail reads — crosses Toxiproxy.
The producer and the checker's own reads use the plain listener.

Faults, drawn from a seeded ``random.Random`` (the seed is printed first): latency spikes of
seconds; connection resets (``reset_peer``); connections left half-open (``timeout`` with no
close: bytes are swallowed, the socket stays up); bandwidth limits; the Toxiproxy proxy
disabled (every connection refused); SIGKILL of the broker, then restart; SIGKILL of the proxy,
then restart; group config changes (the lock duration). Each is held for a random time, with a
random gap before the next. Every fault's start and end go to ``faults.log``.

When the faults stop (everything healed, the producer stopped), the run must settle: every
produced record ACKNOWLEDGED or ARCHIVED. Then the checker (``check``): the torture test's
checks (SPSO at the log end as the proxy and the state topic both say; the durable SPSO never
back; every record delivered; no confirmed final acknowledgement undone or its record delivered
again; at most one final acknowledgement confirmed; delivery counts never down, within the limit;
a confirmed RELEASE is durable), and stricter:

* no record is delivered to a second member while the first still holds its lock: the lock of a
  delivery lasts until the holder's acknowledgement was answered, until its lock duration ran
  out, or until a fault that may drop connections began (the proxy releases what a closed
  connection's session held, as Kafka does), whichever is first;
* after the faults stop, every share partition with work left serves a record again within
  ``RECOVERY_BOUND_S``.

A failing run prints the seed, the faults and the history of each record that broke a rule.

    heavy .venv/bin/python -m tests.faults.campaign --seed 7 --minutes 20
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from sharegroup.brokers import Broker, _die_with_parent, free_port, make_workdir, start_kafka
from sharegroup.kafka_dist import KAFKA3_VERSION
from tests.faults.toxiproxy import Toxiproxy
from tests.integration import test_crash_torture as torture
from tests.integration.test_share_consumers import set_group_configs

PARTITIONS = torture.PARTITIONS
CONSUMERS = torture.CONSUMERS
DELIVERY_LIMIT = torture.DELIVERY_LIMIT
LOCK_CHOICES_MS = (3000, 4000, 6000)
RECOVERY_BOUND_S = 60.0
WRITE_TIMEOUT_MS = 8000
HOLD_MS = 1500  # a consumer holds each poll's records up to this long before acknowledging
LONG_HOLD_S = (9.0, 14.0)  # half-open or disabled for longer than WRITE_TIMEOUT_MS
SETTLE_TIMEOUT_S = 240.0
FAULT_KINDS = (
    "latency",
    "reset",
    "half_open",
    "bandwidth",
    "disabled",
    "broker_kill",
    "proxy_kill",
    "group_config",
)
# Faults after which the proxy may have dropped client connections (and with them the locks
# their sessions held): every kind but a group config change.
DROPPING = set(FAULT_KINDS) - {"group_config"}
TOXI = "kafka"


@dataclass
class Fault:
    kind: str
    params: str
    start: int  # CLOCK_MONOTONIC ns, the clock of the consumers' logs
    end: int = 0

    def line(self) -> str:
        return f"FAULT {self.kind} {self.params} {self.start} {self.end}"


@dataclass
class Producing:
    """A producer on the plain listener, writing round robin over the partitions until
    stopped."""

    bootstrap: str
    topic: str
    rate: float
    sent: int = 0
    failed: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="campaign-producer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        producer = Producer(
            {
                "bootstrap.servers": self.bootstrap,
                "enable.idempotence": True,
                "linger.ms": 20,
                "message.timeout.ms": 300000,
            }
        )

        def delivered(err: object, _msg: object) -> None:
            if err is not None:
                self.failed += 1

        i = 0
        started = time.monotonic()
        while not self._stop.is_set():
            due = int((time.monotonic() - started) * self.rate)
            while i < due:
                try:
                    producer.produce(
                        self.topic, value=b"%d" % i, partition=i % PARTITIONS, on_delivery=delivered
                    )
                except BufferError:
                    break
                i += 1
            producer.poll(0.05)
        self.sent = i
        producer.flush(300)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(330)


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": "campaign-probe"})
    try:
        ends = {}
        for p in range(PARTITIONS):
            low, high = probe.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
            assert low == 0, f"partition {p} starts at {low}"
            ends[p] = int(high)
        return ends
    finally:
        probe.close()


@dataclasses.dataclass
class Campaign(torture.Torture):
    """The torture test's run (consumers, progress, diagnostics), with the proxy's upstream
    behind Toxiproxy and faults instead of kills alone."""

    toxi: Toxiproxy | None = None
    faulty_bootstrap: str = ""
    faults: list[Fault] = field(default_factory=list)
    proxy_starts: list[int] = field(default_factory=list)
    lock_ms: int = 4000
    lock_ms_min: int = 4000

    def start(self) -> torture.ProxyProcess:
        self.proxy = torture.ProxyProcess(
            self.faulty_bootstrap,
            free_port(),
            self.workdir / "proxy.stderr",
            {
                "sharegroup.state.topic": self.state_topic,
                "group.share.min.record.lock.duration.ms": "1000",
                "group.share.heartbeat.interval.ms": "1000",
                "group.share.min.heartbeat.interval.ms": "1000",
                # Half-open and disabled faults can outlast this: writes of unknown outcome.
                "sharegroup.state.write.timeout.ms": str(WRITE_TIMEOUT_MS),
            },
        )
        torture.create_topic(self.upstream.bootstrap, self.topic, PARTITIONS)
        self.start_proxy()
        set_group_configs(
            self.proxy.bootstrap,
            self.group,
            {
                "share.auto.offset.reset": "earliest",
                "share.record.lock.duration.ms": str(self.lock_ms),
                "share.delivery.count.limit": str(DELIVERY_LIMIT),
            },
        )
        self.consumers = [self.start_consumer(i) for i in range(CONSUMERS)]
        return self.proxy

    def start_consumer(self, index: int) -> torture.ConsumerProcess:
        assert self.proxy is not None
        log_path = self.workdir / f"consumer-{index}.log"
        err_path = self.workdir / f"consumer-{index}.stderr"
        argv = [sys.executable, "-m", "tests.faults.consumer", self.proxy.bootstrap, self.group]
        argv += [self.topic, str(log_path), str(self.stop_path), str(HOLD_MS), str(index)]
        with err_path.open("wb") as err:
            proc = subprocess.Popen(
                argv,
                cwd=torture.ROOT,
                stdout=err,
                stderr=err,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
            )
        return torture.ConsumerProcess(index, proc, log_path, err_path)

    def start_proxy(self) -> None:
        assert self.proxy is not None
        self.proxy_starts.append(time.monotonic_ns())
        self.proxy.start()

    def log(self, text: str) -> None:
        with (self.workdir / "faults.log").open("a", encoding="utf-8") as f:
            f.write(text + "\n")
        print(text, flush=True)

    # ------------------------------------------------------------------ faults
    def inject(self, rng: random.Random, kind: str) -> None:
        """One fault, held for a random time, then healed."""
        assert self.toxi is not None and self.proxy is not None
        hold = rng.uniform(1.0, 6.0)
        if kind in ("half_open", "disabled") and rng.random() < 0.4:
            hold = rng.uniform(*LONG_HOLD_S)
        fault = Fault(kind, "", time.monotonic_ns())
        if kind == "latency":
            ms = rng.randint(1000, 4000)
            stream = rng.choice(["upstream", "downstream"])
            fault.params = f"latency={ms}ms,{stream},hold={hold:.1f}s"
            self.toxi.toxic(TOXI, "fault", "latency", {"latency": ms, "jitter": ms // 4}, stream)
        elif kind == "reset":
            ms = rng.randint(0, 1500)
            fault.params = f"reset_peer after {ms}ms,hold={hold:.1f}s"
            self.toxi.toxic(TOXI, "fault", "reset_peer", {"timeout": ms})
        elif kind == "half_open":
            stream = rng.choice(["upstream", "downstream"])
            fault.params = f"{stream},hold={hold:.1f}s"
            self.toxi.toxic(TOXI, "fault", "timeout", {"timeout": 0}, stream)
        elif kind == "bandwidth":
            kb = rng.choice([1, 4, 16, 64])
            fault.params = f"rate={kb}KB/s,hold={hold:.1f}s"
            self.toxi.toxic(TOXI, "fault", "bandwidth", {"rate": kb})
        elif kind == "disabled":
            fault.params = f"hold={hold:.1f}s"
            self.toxi.enable(TOXI, False)
        elif kind == "broker_kill":
            fault.params = "SIGKILL, restart"
            self.faults.append(fault)
            self.upstream.restart(graceful=False)
            fault.end = time.monotonic_ns()
            self.log(fault.line())
            return
        elif kind == "proxy_kill":
            pause = rng.uniform(0.0, 2.0)
            fault.params = f"SIGKILL, restart after {pause:.1f}s"
            self.faults.append(fault)
            self.proxy.kill()
            time.sleep(pause)
            self.start_proxy()
            fault.end = time.monotonic_ns()
            self.log(fault.line())
            return
        elif kind == "group_config":
            self.lock_ms = rng.choice(LOCK_CHOICES_MS)
            self.lock_ms_min = min(self.lock_ms_min, self.lock_ms)
            fault.params = f"share.record.lock.duration.ms={self.lock_ms}"
            self.faults.append(fault)
            try:
                set_group_configs(
                    self.proxy.bootstrap,
                    self.group,
                    {"share.record.lock.duration.ms": str(self.lock_ms)},
                )
            except KafkaException as e:
                fault.params += f",failed:{e.args[0]}"
            fault.end = time.monotonic_ns()
            self.log(fault.line())
            return
        self.faults.append(fault)
        time.sleep(hold)
        self.heal()
        fault.end = time.monotonic_ns()
        self.log(fault.line())

    def heal(self) -> None:
        assert self.toxi is not None
        self.toxi.reset()

    def run_faults(self, rng: random.Random, seconds: float) -> None:
        assert self.proxy is not None
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            time.sleep(rng.uniform(1.0, 4.0))
            self.check_consumers_alive()
            if not self.proxy.alive():
                raise AssertionError("the proxy died on its own\n" + self.diagnostics())
            self.inject(rng, rng.choice(FAULT_KINDS))


# ---------------------------------------------------------------------------- the checks


def acknowledged_at(run: Campaign) -> dict[tuple[tuple[int, int], int, int], int]:
    """When each consumer acknowledged each delivery it held: (record, count, consumer) -> ns
    (the ``S`` lines of tests/faults/consumer.py)."""
    out: dict[tuple[tuple[int, int], int, int], int] = {}
    for c in run.consumers:
        for line in c.log_path.read_text(encoding="utf-8").splitlines():
            if line.startswith("S "):
                p, o, n, t = (int(x) for x in line[2:].split())
                out.setdefault(((p, o), n, c.index), t)
    return out


def lock_overlaps(run: Campaign, logs: torture.ClientLogs) -> list[str]:
    """Deliveries of a record while an earlier delivery's holder still held its lock: from the
    delivery until the holder acknowledged it, its lock duration ran out, or a fault that may
    have dropped its connection (or a proxy restart) began, whichever came first."""
    breaks = sorted([f.start for f in run.faults if f.kind in DROPPING] + run.proxy_starts)
    acked = acknowledged_at(run)
    problems = []
    lock_ns = run.lock_ms_min * 1_000_000
    for key, ds in logs.deliveries.items():
        for i, d1 in enumerate(ds):
            end = d1.time + lock_ns
            end = min(end, acked.get((key, d1.count, d1.consumer), end))
            after = next((b for b in breaks if b > d1.time), None)
            if after is not None:
                end = min(end, after)
            for d2 in ds[i + 1 :]:
                if d2.time >= end:
                    break
                problems.append(
                    f"{key}: delivered to consumer {d2.consumer} (count {d2.count}) at {d2.time}"
                    f" while consumer {d1.consumer} held it (count {d1.count}, delivered at "
                    f"{d1.time}, held until {end}): "
                    f"{[(d.count, d.consumer, d.time) for d in ds]}"
                )
    return problems


def recovery_times(run: Campaign, logs: torture.ClientLogs, healed: int) -> dict[int, float]:
    """Seconds from the end of the faults to the first delivery of each share partition that
    had work left then (its start offset below its log end at the first sample after)."""
    first = next((s for t, s in run.progress.samples if t >= healed), None)
    pending = [p for p in range(PARTITIONS) if first is None or first.get(p, -1) < run.ends[p]]
    out = {}
    for p in pending:
        times = [d.time for (q, _o), ds in logs.deliveries.items() if q == p for d in ds]
        later = [t for t in times if t >= healed]
        out[p] = (min(later) - healed) / 1e9 if later else float("inf")
    return out


def check(run: Campaign, seed: int, healed: int, started: float) -> str:
    problems = torture.check_share_state(run)
    logs = torture.read_client_logs(run.consumers)
    if logs.ended != CONSUMERS:
        problems.append(f"only {logs.ended} of {CONSUMERS} consumers finished cleanly")
    problems += torture.check_client_logs(logs, run.ends, check_last_delivery=False)
    problems += lock_overlaps(run, logs)
    recovery = recovery_times(run, logs, healed)
    slow = {p: s for p, s in recovery.items() if s > RECOVERY_BOUND_S}
    if slow:
        problems.append(f"partitions served again only after (s) {slow} > {RECOVERY_BOUND_S}")
    if problems:
        history = "\n".join(f.line() for f in run.faults)
        raise AssertionError(
            f"fault campaign seed {seed}: {len(problems)} problems (logs in {run.workdir})\n"
            + "\n".join(problems[:30])
            + f"\n--- faults (CLOCK_MONOTONIC ns) ---\n{history}\n"
            + f"--- proxy starts {run.proxy_starts}\n"
            + run.diagnostics()
        )
    proxy_log = (run.workdir / "proxy.stderr").read_text(encoding="utf-8", errors="replace")
    kinds: dict[str, int] = {}
    for f in run.faults:
        kinds[f.kind] = kinds.get(f.kind, 0) + 1
    records = sum(run.ends.values())
    return (
        f"seed={seed} faults={len(run.faults)} {sorted(kinds.items())} records={records} "
        f"deliveries={logs.delivery_total} redeliveries={logs.delivery_total - records} "
        f"confirmed_acks={logs.ack_total} "
        f"unconfirmed_acks={sum(len(v) for v in logs.unconfirmed.values())} "
        f"client_errors_seen={logs.errors} "
        f"max_recovery_s={max(recovery.values(), default=0.0):.1f} "
        f"unknown_write_outcomes={proxy_log.count('state topic writer stopped, recovering')} "
        f"store_recoveries={proxy_log.count('state topic writer recovered')} "
        f"proxy_starts={len(run.proxy_starts)} "
        f"run_s={time.monotonic() - started:.0f} lost=0"
    )


# ---------------------------------------------------------------------------- the run


@contextlib.contextmanager
def cluster(workdir: Path) -> Iterator[tuple[Broker, Toxiproxy, str]]:
    """Kafka 3.9 with a FAULTY listener advertised at a Toxiproxy port."""
    toxi = Toxiproxy(workdir / "toxiproxy.log").start()
    try:
        toxi_port, faulty_port = free_port(), free_port()
        toxi.proxy(TOXI, toxi_port, faulty_port)
        with start_kafka(
            KAFKA3_VERSION, share_groups=False, extra_listeners={"FAULTY": (faulty_port, toxi_port)}
        ) as broker:
            yield broker, toxi, f"127.0.0.1:{toxi_port}"
    finally:
        toxi.stop()


def run_campaign(seed: int, minutes: float, rate: float, workdir: Path) -> str:
    started = time.monotonic()
    rng = random.Random(seed)
    print(f"fault campaign: seed {seed}, {minutes} min of faults, logs in {workdir}", flush=True)
    with cluster(workdir) as (broker, toxi, faulty):
        run = Campaign(broker, workdir, toxi=toxi, faulty_bootstrap=faulty)
        producing = Producing(broker.bootstrap, run.topic, rate)
        try:
            run.start()
            producing.start()
            run.run_faults(rng, minutes * 60)
            run.heal()
            healed = time.monotonic_ns()
            producing.stop()
            run.ends = end_offsets(broker.bootstrap, run.topic)
            run.log(f"HEALED {healed}; produced {sum(run.ends.values())} records")
            run.wait_progress(sum(run.ends.values()), SETTLE_TIMEOUT_S)
            run.stop_consumers()
            return check(run, seed, healed, started)
        except AssertionError as e:
            raise AssertionError(f"fault campaign seed {seed}: {e}") from None
        finally:
            producing.stop()
            run.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.faults.campaign",
        description="A fault campaign on Kafka 3.9 + proxy + ShareConsumers (run under heavy).",
    )
    parser.add_argument("--seed", type=int, default=None, help="default: a random one")
    parser.add_argument("--minutes", type=float, default=10.0, help="how long faults go on")
    parser.add_argument("--rate", type=float, default=200.0, help="records produced per second")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32)
    workdir = args.workdir or make_workdir(f"campaign-{seed}")
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        print(run_campaign(seed, args.minutes, args.rate, workdir))
    except AssertionError as e:
        print(str(e), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
