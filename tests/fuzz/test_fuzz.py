"""The fuzz harness in CI: every seed through every target, the regressions found by fuzzing,
and a short coverage-guided run of each target (``python -m tests.fuzz``)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from proxy import wire
from proxy.framing import FrameError
from tests.fuzz.targets import SEEDS, TARGETS, serve

ROOT = Path(__file__).resolve().parents[2]
SHORT_BUDGET_S = 8  # per target; CI's short form (the long run is in docs/fuzzing.md)


def seed_files() -> list[Path]:
    return sorted(f for f in SEEDS.iterdir() if f.suffix == ".bin")


def test_seed_corpus_covers_every_decoded_api() -> None:
    kinds = {int(f.name.split("-")[0]) for f in seed_files() if f.name[0].isdigit()}
    assert {76, 77, 78, 79, 90, 91, 92} <= kinds  # the share APIs
    assert {0, 1, 3, 10, 18, 21, 32, 44} <= kinds  # relayed, rewritten, or answered here
    assert sum(f.stat().st_size for f in SEEDS.iterdir()) < 256 * 1024


@pytest.mark.parametrize("fuzz_target", sorted(TARGETS))
def test_every_seed_passes(fuzz_target: str) -> None:
    for f in seed_files():
        TARGETS[fuzz_target](f.read_bytes())


def share_fetch_with_null_topics() -> bytes:
    cls = wire.request_class(78)
    msg = cls(
        version=1,
        group_id="g",
        member_id="m",
        share_session_epoch=0,
        max_wait_ms=0,
        min_bytes=1,
        max_bytes=1024,
        max_records=10,
        batch_size=10,
        topics=[],
        forgotten_topics_data=[],
    )
    framed = bytearray(wire.encode_request(msg, 7, "fuzz"))
    # The empty compact array of Topics (length 0 + 1 = 0x01) becomes null (0x00).
    at = len(framed) - 3  # Topics, ForgottenTopicsData, the tagged fields: 0x01 0x01 0x00
    assert framed[at:] == b"\x01\x01\x00"
    framed[at] = 0
    return bytes(framed)


def test_null_in_a_non_nullable_field_is_a_malformed_request() -> None:
    framed = share_fetch_with_null_topics()
    head = wire.peek_head(framed, 4)
    with pytest.raises(FrameError, match="non-nullable field Topics was serialized as null"):
        wire.decode_request(framed[4:], head)


def test_null_topics_close_only_that_connection_with_nothing_answered() -> None:
    """Found by the ``connection`` target: a ShareFetch whose Topics is null reached the
    handler, which failed on it (an unexpected error on the connection). Now it is a
    malformed request, answered by closing the connection as Kafka does."""
    api_versions = wire.encode_request(wire.api_versions_request(3), 1, "fuzz")
    answers = serve(api_versions + share_fetch_with_null_topics())
    # The ApiVersions answer before it, then the close.
    assert len(answers) == 4 + int.from_bytes(answers[:4], "big")
    assert int.from_bytes(answers[4:8], "big") == 1


def test_short_fuzz_run_of_every_target(tmp_path: Path) -> None:
    # libFuzzer's seed: fixed unless SHAREGROUP_FUZZ_SEED says otherwise; printed on failure.
    seed = int(os.environ.get("SHAREGROUP_FUZZ_SEED", "932"))
    argv = [sys.executable, "-m", "tests.fuzz", "--seconds", str(SHORT_BUDGET_S)]
    argv += ["--workdir", str(tmp_path), "--seed", str(seed)]
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    print(proc.stdout)
    assert proc.returncode == 0, f"seed {seed}:\n" + proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == len(TARGETS), lines
    for line in lines:
        inputs = re.match(r"\w+: (\d+) inputs", line)
        assert inputs is not None and int(inputs.group(1)) > 100, line
        assert line.endswith("no crash"), line


def test_a_null_element_of_a_string_array_is_a_malformed_request() -> None:
    """Found by the ``connection`` target: a ShareGroupHeartbeat whose SubscribedTopicNames
    held a null string reached the handler, which failed sorting it. Kafka refuses null
    elements; so does the decoder now, and the connection closes."""
    cls = wire.request_class(76)
    msg = cls(
        version=1,
        group_id="g",
        member_id="m",
        member_epoch=0,
        rack_id=None,
        subscribed_topic_names=["a", "b"],
    )
    framed = bytearray(wire.encode_request(msg, 9, "fuzz"))
    at = framed.index(b"\x02b")  # the compact string "b": length 1 + 1, then its byte
    framed[at : at + 2] = b"\x00"  # a null compact string
    framed[:4] = (len(framed) - 4).to_bytes(4, "big")
    head = wire.peek_head(framed, 4)
    with pytest.raises(FrameError, match="an element of SubscribedTopicNames was serialized"):
        wire.decode_request(bytes(framed[4:]), head)
    assert serve(bytes(framed)) == b""
