"""Simulated producers and share consumers, driven by a scenario's actor specs.

Role: the clients of a simulated run. A ``SimShareConsumer`` behaves like librdkafka's
ShareConsumer in explicit (or implicit) acknowledgement mode: it joins with ShareGroupHeartbeat
(epoch 0) and heartbeats at the interval the group gives; it opens a share session (epoch 0)
and fetches with MaxRecords = BatchSize = ``max.poll.records``; it processes the records it
receives one after another, taking the processing time its spec draws, and acknowledges each
(ACCEPT, RELEASE, REJECT, or not at all), acknowledging offsets without a record (markers,
compacted away) as GAP; the acknowledgements ride on its next ShareFetch (or a ShareAcknowledge
with ``commit: sync``). ``stop`` closes like ``ShareConsumer.close()`` (acknowledgements of
records processed so far with session epoch -1, then leaving the group); ``kill`` drops the
connection without a word; ``hang`` stops everything but leaves the connection open.

A ``SimProducer`` writes batches at a rate. Every random choice comes from the
``random.Random`` given to the actor; time only from the event loop.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable, Sequence
from typing import Final

from model import AckBatch, AcquireMode, ErrorCode, HeartbeatResult
from model.session import next_epoch
from sharegroup.scenario.spec import AckChoice, AckRule, ConsumerSpec, Processing, ProducerSpec
from sharegroup.scenario.trace import Trace
from sharegroup.sim.loop import EventLoop
from sharegroup.sim.memlog import MemLog
from sharegroup.sim.node import (
    Delivered,
    FetchRequest,
    FetchResponse,
    SimProxy,
    TopicPartition,
    new_member_id,
)

RECONNECT_BACKOFF_MS: Final = 100  # librdkafka reconnect.backoff.ms
RETRY_BACKOFF_MS: Final = 100  # librdkafka retry.backoff.ms
EMPTY_POLL_MS: Final = 100  # a poll that returned nothing with fetch.max.wait.ms=0

GAP, ACCEPT, RELEASE, REJECT, RENEW = 0, 1, 2, 3, 4
_ACK_CODE: Final = {
    "accept": ACCEPT,
    "release": RELEASE,
    "reject": REJECT,
    "gap": GAP,
    "renew": RENEW,
}
NO_ACK: Final = -1


def partition_for_key(key: str, partitions: int) -> int:
    """librdkafka's default partitioner for keyed records (consistent_random: CRC32)."""
    return zlib.crc32(key.encode()) % partitions


class SimShareConsumer:
    """One simulated share consumer. See the module docstring."""

    def __init__(
        self,
        spec: ConsumerSpec,
        loop: EventLoop,
        proxy: SimProxy,
        log: MemLog,
        trace: Trace,
        rng: random.Random,
    ) -> None:
        self.spec = spec
        self.consumer_id = spec.id
        self.instance = spec.instance or 0  # in a fleet: the instance it connects to first
        self.loop = loop
        self.proxy = proxy
        self.log = log
        self.trace = trace
        self.rng = rng
        self.latency = proxy.latency_ms
        self.state = "new"  # new | running | stopped | dead | hung
        self.gen = 0
        self.conn: int | None = None
        self.member_id = ""
        self.member_epoch = 0
        self.subscription: tuple[str, ...] = spec.topics
        self.send_subscription = True
        self.assignment: list[TopicPartition] = []
        self.session_epoch = 0
        self.session_parts: set[TopicPartition] = set()
        self.pending_acks: dict[TopicPartition, list[tuple[int, int, int]]] = {}
        # (done at, tp, first, last, type, started at): acknowledgements decided as processing
        # goes; a run of records processed one after another shares one entry.
        self.batch: list[tuple[int, TopicPartition, int, int, int, int]] = []
        self.holding: list[tuple[TopicPartition, int, int]] = []
        self.fetching = False
        self.processing = False
        self.processed = 0
        trace.consumer(spec.id)
        self._simple = not spec.rules and len(spec.acks) == 1 and spec.processing.kind == "fixed"

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self.state == "running":
            return
        self.gen += 1
        self.state = "running"
        self.member_id = new_member_id(self.rng)
        self.member_epoch = 0
        self.session_epoch = 0
        self.session_parts = set()
        self.pending_acks = {}
        self.batch = []
        self.holding = []
        self.assignment = []
        self.fetching = False
        self.processing = False
        self.send_subscription = True
        self.trace.lifecycle(self.loop.now_ms, "start", self.consumer_id)
        self._connect()

    def stop(self) -> None:
        """ShareConsumer.close(): acknowledge what was processed, close the share session
        (epoch -1, which releases the rest), leave the group, close the connection."""
        if self.state != "running":
            return
        now = self.loop.now_ms
        self.gen += 1
        self.state = "stopped"
        self.trace.lifecycle(now, "stop", self.consumer_id)
        conn = self.conn
        if conn is None:
            return
        ready = self._ready_acks(now)
        if self.session_epoch != 0:
            acks = {tp: _ack_batches(segs) for tp, segs in ready.items()}
            self.loop.after(
                self.latency, self.proxy.share_acknowledge, conn, self.member_id, -1, acks
            )
        if self.member_epoch > 0:
            self.loop.after(self.latency, self.proxy.heartbeat, conn, self.member_id, -1, None)
        self.loop.after(self.latency + 1, self.proxy.connection_closed, conn)
        self.conn = None

    def kill(self) -> None:
        """The process dies: its connection drops, nothing more is said."""
        if self.state not in ("running", "hung"):
            return
        self.gen += 1
        self.state = "dead"
        self.trace.lifecycle(self.loop.now_ms, "kill", self.consumer_id)
        if self.conn is not None:
            self.proxy.connection_closed(self.conn)
            self.conn = None

    def hang(self) -> None:
        """The process stops (a long GC pause, a deadlock): no requests, no heartbeats, but
        the connection stays open, so only lock expiry and the session timeout free it."""
        if self.state != "running":
            return
        self.gen += 1
        self.state = "hung"
        self.trace.lifecycle(self.loop.now_ms, "hang", self.consumer_id)

    def subscribe(self, topics: Sequence[str]) -> None:
        self.subscription = tuple(topics)
        self.send_subscription = True
        self.trace.lifecycle(self.loop.now_ms, "subscribe", self.consumer_id, ",".join(topics))
        if self.state == "running" and self.conn is not None:
            self._heartbeat(self.gen)

    def on_disconnect(self, conn: int) -> None:
        """The proxy went away: requests in flight are lost; reconnect after a back-off."""
        if conn != self.conn:
            return
        self.conn = None
        self.fetching = False
        self.session_epoch = 0
        self.session_parts = set()
        self.trace.lifecycle(self.loop.now_ms, "disconnected", self.consumer_id)
        if self.state == "running":
            self.loop.after(RECONNECT_BACKOFF_MS, self._reconnect, self.gen)

    def _reconnect(self, gen: int) -> None:
        if gen == self.gen and self.state == "running" and self.conn is None:
            self._connect()

    def _connect(self) -> None:
        conn = self.proxy.connect(self)
        if conn is None:
            self.loop.after(RECONNECT_BACKOFF_MS, self._reconnect, self.gen)
            return
        self.conn = conn
        self._heartbeat(self.gen)
        if not self.processing:
            self._fetch()

    # ------------------------------------------------------------------ heartbeats
    def _heartbeat(self, gen: int) -> None:
        if gen != self.gen or self.state != "running" or self.conn is None:
            return
        subscribed = (
            self.subscription if (self.send_subscription or self.member_epoch == 0) else None
        )
        self.loop.after(
            self.latency, self._heartbeat_at_proxy, gen, self.conn, self.member_epoch, subscribed
        )

    def _heartbeat_at_proxy(
        self, gen: int, conn: int, epoch: int, subscribed: tuple[str, ...] | None
    ) -> None:
        result = self.proxy.heartbeat(conn, self.member_id, epoch, subscribed)
        if result is not None:
            self.loop.after(self.latency, self._on_heartbeat, gen, conn, result)

    def _on_heartbeat(self, gen: int, conn: int, result: HeartbeatResult | ErrorCode) -> None:
        if gen != self.gen or conn != self.conn or self.state != "running":
            return
        now = self.loop.now_ms
        if isinstance(result, ErrorCode):
            if result in (ErrorCode.UNKNOWN_MEMBER_ID, ErrorCode.FENCED_MEMBER_EPOCH):
                # Fenced (session timeout, proxy restart): rejoin as a new member epoch.
                self.trace.lifecycle(now, "rejoin", self.consumer_id, result.name)
                self.member_epoch = 0
                self._heartbeat(gen)
            else:
                self.trace.lifecycle(
                    now, "error", self.consumer_id, f"ShareGroupHeartbeat {result.name}"
                )
                self.loop.after(RETRY_BACKOFF_MS, self._heartbeat, gen)
            return
        self.member_epoch = result.member_epoch
        self.send_subscription = False
        if result.assignment is not None:
            assignment: list[TopicPartition] = []
            for topic, parts in sorted(result.assignment.items()):
                tid = self.proxy.topic_ids[topic]
                assignment += [(tid, p) for p in parts]
            if assignment != self.assignment:
                self.assignment = assignment
                names = ",".join(
                    f"{t}-{p}" for t, ps in sorted(result.assignment.items()) for p in ps
                )
                self.trace.lifecycle(now, "assignment", self.consumer_id, names)
        self.loop.after(result.heartbeat_interval_ms, self._heartbeat, gen)
        if not self.fetching and not self.processing:
            self._fetch()

    # ------------------------------------------------------------------ fetching
    def _fetch(self) -> None:
        if self.state != "running" or self.conn is None or self.fetching:
            return
        now = self.loop.now_ms
        acks = self.pending_acks
        self.pending_acks = {}
        if self.session_epoch == 0 and acks:
            # A new share session cannot carry acknowledgements: the client fails them (the
            # records come back when their locks end or were already released).
            for tp, segs in acks.items():
                topic = self.proxy.topic_names[tp[0]]
                for first, last, _ in segs:
                    self.trace.ack_error(
                        now, self.consumer_id, topic, tp[1], first, last, "SHARE_SESSION_NOT_FOUND"
                    )
            acks = {}
        if not self.assignment and not acks and not self.session_parts:
            return  # nothing assigned yet: the heartbeat answer starts fetching
        topics: dict[TopicPartition, list[AckBatch]] = {tp: [] for tp in self.assignment}
        for tp, segs in acks.items():
            topics[tp] = _ack_batches(segs)
        assigned = set(self.assignment)
        forget = [tp for tp in self.session_parts if tp not in assigned]
        if self.session_epoch == 0:
            forget = []
        spec = self.spec
        req = FetchRequest(
            member_id=self.member_id,
            epoch=self.session_epoch,
            topics=topics,
            forget=forget,
            max_records=spec.max_poll_records,
            batch_size=spec.max_poll_records,
            mode=AcquireMode.RECORD_LIMIT if spec.record_limit else AcquireMode.BATCH_OPTIMIZED,
            max_wait_ms=spec.max_wait_ms,
        )
        self.fetching = True
        gen, conn = self.gen, self.conn
        self.loop.after(self.latency, self._fetch_at_proxy, gen, conn, req)

    def _fetch_at_proxy(self, gen: int, conn: int, req: FetchRequest) -> None:
        def reply(resp: FetchResponse) -> None:
            self.loop.after(self.latency, self._on_fetch, gen, conn, req, resp)

        self.proxy.share_fetch(conn, req, reply)

    def _on_fetch(self, gen: int, conn: int, req: FetchRequest, resp: FetchResponse) -> None:
        if gen != self.gen or conn != self.conn:
            return
        self.fetching = False
        now = self.loop.now_ms
        if resp.error is not ErrorCode.NONE:
            self.trace.lifecycle(now, "error", self.consumer_id, f"ShareFetch {resp.error.name}")
            if resp.error in (
                ErrorCode.SHARE_SESSION_NOT_FOUND,
                ErrorCode.INVALID_SHARE_SESSION_EPOCH,
            ):
                self.session_epoch = 0
                self.session_parts = set()
            self.loop.after(RETRY_BACKOFF_MS, self._fetch)
            return
        self.session_epoch = 1 if req.epoch == 0 else next_epoch(req.epoch)
        if req.epoch == 0:
            self.session_parts = set(req.topics)
        else:
            self.session_parts |= set(req.topics)
        self.session_parts -= set(req.forget)
        if not resp.delivered:
            if req.max_wait_ms <= 0:
                self.loop.after(EMPTY_POLL_MS, self._fetch)
            else:
                self._fetch()
            return
        self._process(resp.delivered)

    # ------------------------------------------------------------------ processing
    def _process(self, delivered: list[Delivered]) -> None:
        """Work through the records in order; decide each acknowledgement when its
        processing ends. The batch is done when the last record is."""
        now = self.loop.now_ms
        spec = self.spec
        crash_at = spec.crash_after_records
        segs: list[tuple[int, TopicPartition, int, int, int, int]] = []
        t = float(now)
        holding: list[tuple[TopicPartition, int, int]] = []
        crashed_at: int | None = None
        for d in delivered:
            holding += [(d.tp, a, b) for a, b in d.runs]
            for ar in d.acquired:
                cursor = ar.first_offset
                runs = [(a, b) for a, b in d.runs if a <= ar.last_offset and b >= ar.first_offset]
                for a, b in runs:
                    if a > cursor:
                        segs.append((int(t), d.tp, cursor, a - 1, GAP, int(t)))
                    if crashed_at is not None:
                        cursor = b + 1
                        continue
                    if self._simple and (
                        crash_at is None or self.processed + (b - a + 1) <= crash_at
                    ):
                        outcome = _ACK_CODE.get(spec.acks[0][0], NO_ACK)
                        began = int(t)
                        t += spec.processing.a_ms * (b - a + 1)
                        self.processed += b - a + 1
                        if outcome != NO_ACK:
                            segs.append((int(t), d.tp, a, b, outcome, began))
                    else:
                        for offset in range(a, b + 1):
                            outcome, proc = self._decide(d, offset, ar.delivery_count, int(t))
                            t += _draw(proc, self.rng)
                            self.processed += 1
                            if outcome != NO_ACK:
                                done = int(t)
                                segs.append((done, d.tp, offset, offset, outcome, done))
                            if crash_at is not None and self.processed >= crash_at:
                                crashed_at = int(t)
                                break
                    cursor = b + 1
                if cursor <= ar.last_offset and crashed_at is None:
                    segs.append((int(t), d.tp, cursor, ar.last_offset, GAP, int(t)))
        self.holding = holding
        self.batch = segs
        self.processing = True
        if crashed_at is not None:
            self.loop.at(crashed_at, self._crash, self.gen)
            return
        self.loop.at(int(t), self._batch_done, self.gen)

    def _decide(
        self, d: Delivered, offset: int, delivery_count: int, now: int
    ) -> tuple[int, Processing]:
        plog = self.log.partition(d.topic, d.partition)
        return decide(
            self.spec,
            d.topic,
            d.partition,
            offset,
            lambda: plog.key_of(offset),
            delivery_count,
            now,
            self.rng,
        )

    def _crash(self, gen: int) -> None:
        if gen != self.gen:
            return
        if self.spec.crash_how == "hang":
            self.hang()
        else:
            self.kill()

    def _batch_done(self, gen: int) -> None:
        if gen != self.gen:
            return
        self.processing = False
        for _, tp, first, last, t, _ in self.batch:
            self.pending_acks.setdefault(tp, []).append((first, last, t))
        self.batch = []
        self.holding = []
        if (
            self.spec.commit_sync
            and self.pending_acks
            and self.conn is not None
            and self.session_epoch
        ):
            self._commit_sync()
        else:
            self._fetch()

    def _ready_acks(self, now: int) -> dict[TopicPartition, list[tuple[int, int, int]]]:
        ready = {tp: list(segs) for tp, segs in self.pending_acks.items()}
        for done_at, tp, first, last, t, began in self.batch:
            if done_at <= now:
                ready.setdefault(tp, []).append((first, last, t))
            elif began < now and last > first:
                # Part of a run: the records whose processing has ended by now.
                done = int((now - began) * (last - first + 1) // (done_at - began))
                if done > 0:
                    ready.setdefault(tp, []).append((first, first + done - 1, t))
        return ready

    def _commit_sync(self) -> None:
        acks = {tp: _ack_batches(segs) for tp, segs in self.pending_acks.items()}
        self.pending_acks = {}
        epoch = self.session_epoch
        self.session_epoch = next_epoch(epoch)
        gen, conn = self.gen, self.conn
        assert conn is not None

        def at_proxy() -> None:
            renew = any(RENEW in b.ack_types for batches in acks.values() for b in batches)
            resp = self.proxy.share_acknowledge(conn, self.member_id, epoch, acks, renew=renew)
            if resp is not None:
                self.loop.after(self.latency, self._on_commit, gen, conn, resp)

        self.loop.after(self.latency, at_proxy)

    def _on_commit(self, gen: int, conn: int, resp: FetchResponse) -> None:
        if gen != self.gen or conn != self.conn:
            return
        if resp.error is not ErrorCode.NONE:
            self.session_epoch = 0
            self.session_parts = set()
        self._fetch()

    # ------------------------------------------------------------------ probes (send steps)
    def resync_session(self) -> None:
        """After a hand-made request in this member's name, take the session as the proxy
        now has it (its epoch moved on, or it was closed)."""
        state = self.proxy.probe_epoch(self.member_id, self.conn)
        if state is None:
            self.session_epoch = 0
            self.session_parts = set()
        else:
            self.session_epoch, parts = state
            self.session_parts = set(parts)


class SimProducer:
    """Writes ``batch`` records at a time at ``rate_per_s`` between ``from`` and ``until``
    (or until ``count`` records)."""

    def __init__(
        self, spec: ProducerSpec, loop: EventLoop, proxy: SimProxy, producer_id: int
    ) -> None:
        self.spec = spec
        self.loop = loop
        self.proxy = proxy
        self.producer_id = producer_id
        self.sent = 0
        self.partitions = len(proxy.log.topics[spec.topic])
        self._next_partition = 0
        self._due = float(spec.from_ms)

    def start(self) -> None:
        self.loop.at(self.spec.from_ms, self._send)

    def _send(self) -> None:
        spec = self.spec
        now = self.loop.now_ms
        if spec.until_ms is not None and now >= spec.until_ms:
            return
        n = spec.batch if spec.count is None else min(spec.batch, spec.count - self.sent)
        if n <= 0:
            return
        write_batch(
            self.proxy,
            spec.id,
            spec.topic,
            n,
            start_index=self.sent,
            partition=spec.partition,
            keys=spec.keys,
            key=None,
            record_bytes=spec.record_bytes,
            producer_id=self.producer_id,
            transaction=spec.transaction,
            round_robin=self._round_robin,
        )
        self.sent += n
        self._due += n * 1000.0 / spec.rate_per_s
        self.loop.at(max(int(self._due), now), self._send)

    def _round_robin(self) -> int:
        p = self._next_partition % self.partitions
        self._next_partition += 1
        return p


def write_batch(
    proxy: SimProxy,
    producer: str,
    topic: str,
    count: int,
    *,
    start_index: int,
    partition: int | None,
    keys: int | None,
    key: str | None,
    record_bytes: int,
    producer_id: int,
    transaction: str | None,
    round_robin: Callable[[], int],
) -> None:
    """Write ``count`` records as one batch per partition they go to (keyed records by the
    key's hash, others to ``partition`` or the next partition in turn)."""
    partitions = len(proxy.log.topics[topic])
    if key is None and keys is None:
        p = partition if partition is not None else round_robin()
        proxy.produce(
            producer,
            topic,
            p,
            count,
            record_bytes=record_bytes,
            producer_id=producer_id,
            transaction=transaction,
        )
        return
    by_partition: dict[int, list[str]] = {}
    for i in range(start_index, start_index + count):
        k = key if key is not None else f"k{i % keys}" if keys else ""
        p = partition if partition is not None else partition_for_key(k, partitions)
        by_partition.setdefault(p, []).append(k)
    for p in sorted(by_partition):
        ks = tuple(by_partition[p])
        proxy.produce(
            producer,
            topic,
            p,
            len(ks),
            keys=ks,
            record_bytes=record_bytes,
            producer_id=producer_id,
            transaction=transaction,
        )


def _ack_batches(segs: list[tuple[int, int, int]]) -> list[AckBatch]:
    """Acknowledgement segments of one partition -> ordered AcknowledgementBatches, adjacent
    ones of one type joined."""
    out: list[AckBatch] = []
    for first, last, t in sorted(segs):
        if out and out[-1].last_offset + 1 == first and out[-1].ack_types == (t,):
            out[-1] = AckBatch(out[-1].first_offset, last, (t,))
        else:
            out.append(AckBatch(first, last, (t,)))
    return out


def decide(
    spec: ConsumerSpec,
    topic: str,
    partition: int,
    offset: int,
    key: Callable[[], str | None],
    delivery_count: int,
    now_ms: int,
    rng: random.Random,
) -> tuple[int, Processing]:
    """What a consumer does with one record: the acknowledgement type (or ``NO_ACK``) and how
    long processing takes, by the first rule that matches or else the consumer's own
    behaviour. Shared by the simulated consumers and the live runner's real ones."""
    rule = _match(spec.rules, topic, partition, offset, key, delivery_count, now_ms)
    acks: AckChoice = rule.acks if rule is not None else spec.acks
    proc = rule.processing if rule is not None and rule.processing is not None else spec.processing
    if len(acks) == 1:
        name = acks[0][0]
    else:
        x = rng.random()
        name = acks[-1][0]
        for choice, p in acks:
            if x < p:
                name = choice
                break
            x -= p
    return _ACK_CODE.get(name, NO_ACK), proc


def draw_processing_ms(p: Processing, rng: random.Random) -> float:
    """One processing time from its distribution, in milliseconds."""
    return _draw(p, rng)


def _match(
    rules: Sequence[AckRule],
    topic: str,
    partition: int,
    offset: int,
    key: Callable[[], str | None],
    delivery_count: int,
    now: int,
) -> AckRule | None:
    for rule in rules:
        if rule.topic is not None and rule.topic != topic:
            continue
        if rule.partition is not None and rule.partition != partition:
            continue
        if rule.offsets is not None and not any(a <= offset <= b for a, b in rule.offsets):
            continue
        if rule.delivery_count is not None and not rule.delivery_count.holds(delivery_count):
            continue
        if rule.from_ms is not None and now < rule.from_ms:
            continue
        if rule.until_ms is not None and now >= rule.until_ms:
            continue
        if rule.key is not None and key() != rule.key:
            continue
        return rule
    return None


def _draw(p: Processing, rng: random.Random) -> float:
    if p.kind == "fixed":
        return p.a_ms
    if p.kind == "uniform":
        return rng.uniform(p.a_ms, p.b_ms)
    if p.kind == "exponential":
        return rng.expovariate(1.0 / p.a_ms) if p.a_ms > 0 else 0.0
    return max(0.0, rng.gauss(p.a_ms, p.b_ms))
