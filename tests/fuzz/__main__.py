"""``python -m tests.fuzz``: every fuzz target (or ``--target``) under atheris for a budget.

Each target runs in a process of its own (``tests/fuzz/run.py``); libFuzzer keeps the inputs
that found new coverage in ``--workdir``/<target>/corpus (the seeds in tests/fuzz/seeds are read,
never written) and writes a crashing input to ``--workdir``/<target>/crash-*. One line per
target sums up: inputs run, inputs/s, coverage (libFuzzer's ``cov``/``ft``), corpus size, peak
RSS, and the crash if any. Exit status 1 if any target crashed."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from tests.fuzz.targets import SEEDS, TARGETS

ROOT = Path(__file__).resolve().parents[2]


def run_target(
    name: str, seconds: int, runs: int | None, workdir: Path, seed: int, max_len: int
) -> tuple[bool, str]:
    corpus = workdir / name / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    log_path = workdir / name / "fuzz.log"
    argv = [sys.executable, "-m", "tests.fuzz.run", name, str(corpus), str(SEEDS)]
    argv += [
        f"-max_total_time={seconds}",
        f"-seed={seed}",
        f"-max_len={max_len}",
        "-timeout=10",
        "-rss_limit_mb=2048",
        "-print_final_stats=1",
        f"-artifact_prefix={workdir / name}/",
    ]
    if runs is not None:
        argv.append(f"-runs={runs}")
    started = time.monotonic()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with log_path.open("w", encoding="utf-8") as log:
        rc = subprocess.run(
            argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env, check=False
        ).returncode
    elapsed = time.monotonic() - started
    text = log_path.read_text(encoding="utf-8", errors="replace")
    execs = re.search(r"stat::number_of_executed_units: (\d+)", text)
    rss = re.search(r"stat::peak_rss_mb:\s+(\d+)", text)
    cov = re.findall(r"cov: (\d+) ft: (\d+) corp: (\d+)", text)
    inputs = int(execs.group(1)) if execs else 0
    summary = (
        f"{name}: {inputs} inputs in {elapsed:.0f}s ({inputs / max(elapsed, 1e-9):.0f}/s), "
        f"cov {cov[-1][0] if cov else '?'} ft {cov[-1][1] if cov else '?'}, "
        f"corpus {cov[-1][2] if cov else '?'}, peak RSS {rss.group(1) if rss else '?'} MB"
    )
    crashes = sorted((workdir / name).glob("crash-*")) + sorted((workdir / name).glob("timeout-*"))
    crashes += sorted((workdir / name).glob("oom-*"))
    ok = rc == 0 and not crashes
    if not ok:
        tail = "\n".join(text.splitlines()[-40:])
        summary += f", CRASH (exit {rc}) {[str(c) for c in crashes]}; log {log_path}\n{tail}"
    else:
        summary += ", no crash"
    return ok, summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__)
    parser.add_argument("--target", action="append", choices=sorted(TARGETS))
    parser.add_argument("--seconds", type=int, default=60, help="budget per target")
    parser.add_argument("--runs", type=int, default=None, help="stop a target after N inputs")
    parser.add_argument("--seed", type=int, default=932, help="libFuzzer's random seed")
    parser.add_argument("--max-len", type=int, default=16384, help="largest input, bytes")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/sharegroup-fuzz"))
    args = parser.parse_args(argv)
    ok = True
    for name in args.target or list(TARGETS):
        good, line = run_target(
            name, args.seconds, args.runs, args.workdir, args.seed, args.max_len
        )
        print(line, flush=True)
        ok = ok and good
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
