"""Microbenchmarks of the proxy's per-request hot functions, old way against new, in one process.

Each pair runs in alternating rounds (``--rounds``, each timing ``--number`` calls with timeit),
and the report gives the median microseconds per call of each and their paired ratio (old /
new, per round) with its spread:

* encode_update_1 / encode_update_125: a ShareUpdate record of 1 and of 125 state batches,
  kafka-python's generic classes (``encode_generic``) against the struct encoder (``encode``);
* write_prep_125: what the proxy did for a 125-batch acknowledgement (one state batch per small
  producer batch) before it handed the record to the producer: encode and merge it into the
  written state, against joining adjacent batches first (``records.joined``);
* scan_small / scan_big: locating the record batches of an 800 KB Fetch answer of 4 KiB and of
  1 MiB producer batches, unpacking the whole v2 header of each against ``wire.scan_batches``;
* answer_small / answer_big: a ShareFetch answer of one partition carrying those batches (256
  slices of 3 KiB, one of 770 KiB) encoded: its slices joined and kafka-python's encoder
  against ``fetch_answer.encode_parts`` (the slices uncopied);
* answer_sent_small / answer_sent_big: the same answer encoded and written to a loopback TCP
  socket (a thread drains the other end): one buffer with write(2) against the parts with
  writev(2), as ``streams.send_parts`` writes them.

The last line printed is JSON: <name>_old_us, <name>_new_us, <name>_ratio (old / new).

Run: .venv/bin/python bench/hotpath.py [--rounds 7] [--number 200]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import threading
import timeit
import uuid
from collections.abc import Callable
from pathlib import Path

# bench/model.py would shadow the ``model`` package: drop this folder.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from kafka.record.default_records import DefaultRecordBase  # noqa: E402
from kafka.record.memory_records import MemoryRecordsBuilder  # noqa: E402

from model import RecordState, StateBatch  # noqa: E402
from proxy import messages, wire  # noqa: E402
from proxy.fetch_answer import RecordParts, encode_parts  # noqa: E402
from sharegroup.persist.records import (  # noqa: E402
    Snapshot,
    Update,
    encode,
    encode_generic,
    joined,
)
from sharegroup.persist.recovery import Replay  # noqa: E402

_HEADER = DefaultRecordBase.HEADER_STRUCT


def scan_full_header(records: bytes) -> list[tuple[int, int, int, int, bool]]:
    """Locating batches by unpacking every field of each v2 header (the earlier way)."""
    out: list[tuple[int, int, int, int, bool]] = []
    view, pos, size = memoryview(records), 0, len(records)
    while pos + _HEADER.size <= size:
        (base, length, _epoch, magic, _crc, attributes, last_delta, *_rest) = _HEADER.unpack_from(
            view, pos
        )
        end = pos + 12 + length
        if end > size or length < _HEADER.size - 12 or magic != 2:
            break
        out.append((pos, end, base, base + last_delta, bool(attributes & 0x20)))
        pos = end
    return out


def fetch_answer(batches: int, per_batch: int) -> bytes:
    out, offset = bytearray(), 0
    for _ in range(batches):
        builder = MemoryRecordsBuilder(magic=2, compression_type=0, batch_size=1 << 24, offset=0)
        for _ in range(per_batch):
            builder.append(timestamp=0, key=None, value=os.urandom(1024), headers=[])
        builder.close()
        data = bytearray(builder.buffer())
        data[0:8] = offset.to_bytes(8, "big")
        out += data
        offset += per_batch
    return bytes(out)


def share_fetch_answer(payloads: list[memoryview], joined: bool) -> object:
    """A ShareFetch answer (v2) of one partition carrying ``payloads``, built as the proxy
    builds it: the slices joined (before) or as ``RecordParts`` (now)."""
    resp = messages.ShareFetchResponse
    part = resp.ShareFetchableTopicResponse.PartitionData
    records: object = b"".join(payloads) if joined else RecordParts(payloads)
    return resp(
        version=2,
        throttle_time_ms=0,
        error_code=0,
        error_message=None,
        acquisition_lock_timeout_ms=30000,
        responses=[
            resp.ShareFetchableTopicResponse(
                topic_id=uuid.UUID(int=7),
                partitions=[
                    part(
                        partition_index=0,
                        error_code=0,
                        error_message=None,
                        acknowledge_error_code=0,
                        acknowledge_error_message=None,
                        current_leader=part.LeaderIdAndEpoch(leader_id=-1, leader_epoch=-1),
                        records=records,
                        acquired_records=[
                            part.AcquiredRecords(first_offset=0, last_offset=767, delivery_count=1)
                        ],
                    )
                ],
            )
        ],
        node_endpoints=[],
    )


def slices(answer: bytes) -> list[memoryview]:
    view = memoryview(answer)
    return [view[start:end] for start, end, *_ in wire.scan_batches(answer)]


class Sink:
    """A loopback TCP connection whose far end a thread reads and throws away."""

    def __init__(self) -> None:
        with socket.create_server(("127.0.0.1", 0)) as listener:
            self.sock = socket.create_connection(listener.getsockname())
            far, _ = listener.accept()
        self.fd = self.sock.fileno()
        threading.Thread(target=self._drain, args=(far,), daemon=True).start()

    @staticmethod
    def _drain(far: socket.socket) -> None:
        buf = bytearray(1 << 20)
        while far.recv_into(buf):
            pass

    def write(self, data: bytes | bytearray) -> None:
        view, sent = memoryview(data), 0
        while sent < len(view):
            sent += os.write(self.fd, view[sent:])

    def writev(self, parts: list[bytes | bytearray | memoryview]) -> None:
        while parts:
            sent = os.writev(self.fd, parts[:1024])
            while parts and sent >= len(parts[0]):
                sent -= len(parts[0])
                parts.pop(0)
            if sent:
                parts[0] = memoryview(parts[0])[sent:]


def pairs() -> dict[str, tuple[Callable[[], object], Callable[[], object]]]:
    key = ("bench-group", uuid.uuid4(), 1)
    ack = RecordState.ACKNOWLEDGED
    one = Update(key, 0, 0, 0, (StateBatch(0, 966, ack, 1),))
    many = Update(key, 0, 0, 0, tuple(StateBatch(i * 4, i * 4 + 3, ack, 1) for i in range(125)))
    small, big = fetch_answer(256, 3), fetch_answer(1, 768)

    def replay() -> Replay:
        r = Replay()
        r.apply(Snapshot(key, 0, 0, 0, 0, 0, 0, ()))
        return r

    written_old, written_new = replay(), replay()

    def prep_old() -> object:
        encode_generic(many)
        written_old.apply(many)
        return None

    def prep_new() -> object:
        record = joined(many)
        encode(record)
        written_new.apply(record)
        return None

    small_slices, big_slices = slices(small), slices(big)
    sink = Sink()

    def answer_old(payloads: list[memoryview]) -> bytearray:
        return wire.encode_response(share_fetch_answer(payloads, joined=True), 1)

    def answer_new(payloads: list[memoryview]) -> list[bytes | bytearray | memoryview]:
        return encode_parts(share_fetch_answer(payloads, joined=False), 1)

    return {
        "encode_update_1": (lambda: encode_generic(one), lambda: encode(one)),
        "encode_update_125": (lambda: encode_generic(many), lambda: encode(many)),
        "write_prep_125": (prep_old, prep_new),
        "scan_small": (lambda: scan_full_header(small), lambda: wire.scan_batches(small)),
        "scan_big": (lambda: scan_full_header(big), lambda: wire.scan_batches(big)),
        "answer_small": (lambda: answer_old(small_slices), lambda: answer_new(small_slices)),
        "answer_big": (lambda: answer_old(big_slices), lambda: answer_new(big_slices)),
        "answer_sent_small": (
            lambda: sink.write(answer_old(small_slices)),
            lambda: sink.writev(answer_new(small_slices)),
        ),
        "answer_sent_big": (
            lambda: sink.write(answer_old(big_slices)),
            lambda: sink.writev(answer_new(big_slices)),
        ),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--number", type=int, default=200, help="calls timed per round")
    args = parser.parse_args()
    result: dict[str, float] = {}
    print(f"{'':<20}{'old us':>10}{'new us':>10}   old/new per round: median [min-max]")
    for name, (old, new) in pairs().items():
        old_us: list[float] = []
        new_us: list[float] = []
        ratios: list[float] = []
        for i in range(args.rounds):
            order = [(old, old_us), (new, new_us)]
            for fn, sink in order if i % 2 == 0 else reversed(order):
                sink.append(timeit.timeit(fn, number=args.number) / args.number * 1e6)
            ratios.append(old_us[-1] / new_us[-1])
        o, n, r = statistics.median(old_us), statistics.median(new_us), statistics.median(ratios)
        print(f"{name:<20}{o:>10.2f}{n:>10.2f}   {r:.1f} [{min(ratios):.1f}-{max(ratios):.1f}]")
        result.update({f"{name}_old_us": round(o, 2), f"{name}_new_us": round(n, 2)})
        result[f"{name}_ratio"] = round(r, 2)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
