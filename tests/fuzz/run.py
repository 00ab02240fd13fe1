"""One fuzz target under atheris: ``python -m tests.fuzz.run TARGET [libFuzzer arguments]``.

The modules that read client bytes (``proxy``, ``model``, ``sharegroup``, kafka-python's
protocol classes) are imported with atheris's coverage instrumentation, so libFuzzer sees which
branches an input reaches. ``python -m tests.fuzz`` runs this for every target with a time
budget and sums up; call it directly for libFuzzer's own options (``-help=1``)."""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["proxy", "model", "sharegroup", "kafka"]):
    from tests.fuzz.targets import TARGETS


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        print(f"usage: python -m tests.fuzz.run {{{','.join(TARGETS)}}} [libFuzzer args]")
        sys.exit(2)
    target = TARGETS[sys.argv[1]]

    def one_input(data: bytes) -> None:
        target(data)

    atheris.Setup([sys.argv[0], *sys.argv[2:]], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
