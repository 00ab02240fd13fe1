"""The campaign's share consumer: the torture test's consumer (``ack_for``: ACCEPT, REJECT,
RELEASE once, RELEASE every time; ``commit_sync`` per poll), except that it holds each poll's
records for a random time before acknowledging them, as a consumer that processes its records
does (a poll of a single record excepted, see below), and logs the moment it acknowledges: ``S partition offset delivery_count time``. While it
holds them, their locks are its own, which is what the campaign's lock check looks at.

    python -m tests.faults.consumer BOOTSTRAP GROUP TOPIC LOG STOP HOLD_MS SEED
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

from confluent_kafka import AcknowledgeType, IllegalStateException, KafkaException, ShareConsumer

from tests.integration.test_crash_torture import MAX_POLL_RECORDS, ack_for, commit


def consume(
    bootstrap: str, group: str, topic: str, log_path: Path, stop_path: Path, hold_ms: int, seed: int
) -> None:
    rng = random.Random(seed)
    c = ShareConsumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "share.acknowledgement.mode": "explicit",
            "max.poll.records": MAX_POLL_RECORDS,
            "reconnect.backoff.ms": 50,
            "reconnect.backoff.max.ms": 500,
            "socket.connection.setup.timeout.ms": 3000,
        }
    )
    c.subscribe([topic])
    with log_path.open("w", encoding="utf-8") as log:
        while not stop_path.exists():
            try:
                messages = c.poll(0.5)
            except (KafkaException, IllegalStateException) as e:
                log.write(f"E poll {e!r}\n")
                time.sleep(0.1)
                continue
            polled = time.monotonic_ns()
            good = []
            for m in messages:
                if m.error() is not None:
                    log.write(f"E message {m.error()!r}\n")
                    continue
                p, o, n = m.partition(), m.offset(), m.delivery_count()
                assert p is not None and o is not None and n is not None
                log.write(f"D {p} {o} {n} {polled}\n")
                good.append((m, p, o, n))
            if not good:
                continue
            log.flush()
            if len(good) > 1:
                # A poll of one record is acknowledged at once: records one delivery short of
                # the limit come one per ShareFetch (Kafka's poison-record isolation), and
                # after many faults there can be thousands of them to drain.
                time.sleep(rng.uniform(0, hold_ms / 1000))
            pending: dict[int, list[tuple[int, int, int]]] = {}
            sent = time.monotonic_ns()
            for m, p, o, n in good:
                ack = ack_for(o, n)
                log.write(f"S {p} {o} {n} {sent}\n")
                try:
                    c.acknowledge(m, AcknowledgeType(ack))
                except (KafkaException, IllegalStateException) as e:
                    log.write(f"E acknowledge {p} {o} {e!r}\n")
                    continue
                pending.setdefault(p, []).append((o, ack, n))
            commit(c, pending, log)
            log.flush()
        try:
            c.close()
        except (KafkaException, IllegalStateException) as e:
            log.write(f"E close {e!r}\n")
        log.write("END\n")


def main() -> int:
    bootstrap, group, topic, log, stop, hold_ms, seed = sys.argv[1:8]
    consume(bootstrap, group, topic, Path(log), Path(stop), int(hold_ms), int(seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
