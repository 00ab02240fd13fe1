"""Read-ahead: the proxy reads a share partition's log ahead of its consumers, never hands out
a record twice or one below the log start because of it."""

from __future__ import annotations

import time
import uuid
from collections import Counter

import pytest
from confluent_kafka import Message, Producer, ShareConsumer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from sharegroup.brokers import Broker
from tests.conftest import PROXY_CONFIGS
from tests.harness import ProxyThread
from tests.integration.test_share_consumers import key_of, records, set_group_configs

pytestmark = pytest.mark.integration

VALUE = b"v" * 1024


def _topic_with_records(bootstrap: str, n: int, **producer_configs: object) -> str:
    topic = f"ra-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(topic, 1, 1)]).values():
        f.result(30)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, **producer_configs})
    for i in range(n):
        producer.produce(topic, VALUE, key=str(i).encode(), partition=0)
        if i % 500 == 0:
            producer.poll(0)
    assert producer.flush(30) == 0
    return topic


def _consumer(bootstrap: str, group: str, topic: str, **extra: object) -> ShareConsumer:
    c = ShareConsumer({"bootstrap.servers": bootstrap, "group.id": group, **extra})
    c.subscribe([topic])
    return c


def test_consumers_get_every_record_once_with_read_ahead_in_use(kafka39: Broker) -> None:
    n = 6000  # about 6 MiB: several reads of the log
    with ProxyThread(kafka39.bootstrap, PROXY_CONFIGS) as p:
        topic = _topic_with_records(kafka39.bootstrap, n)
        group = f"g-{uuid.uuid4().hex[:8]}"
        set_group_configs(p.bootstrap, group, {"share.auto.offset.reset": "earliest"})
        consumers = [_consumer(p.bootstrap, group, topic) for _ in range(2)]
        seen: Counter[int] = Counter()
        deadline = time.monotonic() + 60
        try:
            while len(seen) < n and time.monotonic() < deadline:
                for c in consumers:
                    for m in records(c.poll(0.05)):
                        seen[key_of(m)[1]] += 1
        finally:
            for c in consumers:
                c.commit_sync(30)
                c.close()
        assert p.shares is not None
        counts = dict(p.shares.fetch_counts)
    assert sorted(seen) == list(range(n)), f"{n - len(seen)} records never delivered"
    assert max(seen.values()) == 1, "a record was delivered twice"
    assert counts["read_ahead_fetches"] > 0 and counts["from_read_ahead"] > 0, counts


def test_no_record_below_the_log_start_after_delete_records(kafka39: Broker) -> None:
    n, cut = 4000, 3000
    with ProxyThread(kafka39.bootstrap, PROXY_CONFIGS) as p:
        # Log batches of 10 records and fetches of 5: what is handed out before the deletion
        # stays within the first 20 offsets, while the read-ahead holds far more.
        topic = _topic_with_records(kafka39.bootstrap, n, **{"batch.num.messages": 10})
        group = f"g-{uuid.uuid4().hex[:8]}"
        set_group_configs(p.bootstrap, group, {"share.auto.offset.reset": "earliest"})
        c = _consumer(p.bootstrap, group, topic, **{"max.poll.records": 5})
        try:
            first: list[Message] = []
            deadline = time.monotonic() + 30
            while not first and time.monotonic() < deadline:
                first += records(c.poll(0.5))
            assert first, "nothing delivered"
            # Wait until a read-ahead fetch has come back and the window holds records well past
            # what was handed out (the first 20 offsets), so the deletion below meets a window
            # with records below the cut.
            shares = p.shares
            assert shares is not None

            def read_ahead() -> tuple[int, int, bool]:
                """(read-ahead fetches made, end of the window, a read-ahead in flight)"""
                watches = shares.watches.values()
                return (
                    shares.fetch_counts["read_ahead_fetches"],
                    max((w.ra_end for w in watches), default=0),
                    any(w.ra_pending is not None for w in watches),
                )

            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                fetches, end, pending = p.call(read_ahead)
                if fetches > 0 and end >= 1000 and not pending:
                    break
                time.sleep(0.05)
            fetches, end, pending = p.call(read_ahead)
            assert fetches > 0 and not pending, "no read-ahead fetch came back"
            assert end >= 1000, f"the read-ahead window ends at {end}"
            admin = AdminClient({"bootstrap.servers": p.bootstrap})
            for f in admin.delete_records([TopicPartition(topic, 0, cut)]).values():
                f.result(30)
            after: list[int] = []
            deadline = time.monotonic() + 30
            while len(set(after)) < n - cut and time.monotonic() < deadline:
                after += [key_of(m)[1] for m in records(c.poll(0.5))]
        finally:
            c.close()
    # The client may still hold records it got before the deletion (at most two log batches);
    # nothing else below the new log start may be delivered, though the read-ahead held it.
    below = sorted(o for o in after if o >= 20 and o < cut)
    assert not below, below[:20]
    assert set(range(cut, n)) <= set(after)
