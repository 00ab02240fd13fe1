"""Java-style .properties files, as Kafka's tools read them (``--config-file``,
``--command-config``)."""

from __future__ import annotations

from pathlib import Path


def read_properties(path: Path) -> dict[str, str]:
    """A Java-style .properties file: key=value lines, # and ! comments."""
    out: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#!":
            continue
        key, sep, value = line.partition("=")
        if not sep:
            key, sep, value = line.partition(":")
        if not sep or not key.strip():
            raise SystemExit(f"{path}:{number}: expected key=value, got {raw!r}")
        out[key.strip()] = value.strip()
    return out
