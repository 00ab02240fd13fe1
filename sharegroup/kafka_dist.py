"""Fetch the jars of an Apache Kafka broker from Maven Central into a local cache.

Role: give the integration tests and ``sharegroup proxy`` (``sharegroup/brokers.py``) a runnable broker without the Kafka tarball
(this workplace reaches Maven Central, not the Apache download mirrors). A throwaway ``pom.xml``
depends on ``org.apache.kafka:kafka_2.13:<version>`` (the ``core`` module: ``kafka.Kafka`` and
``kafka.tools.StorageTool``) plus a logging backend, and ``mvn dependency:copy-dependencies`` copies
the whole runtime classpath into ``<cache>/kafka/<version>/libs``. Run the broker with
``java -cp '<libs>/*' kafka.Kafka server.properties``.

Cache root: ``$SHAREGROUP_CACHE`` if set, else ``<repo>/.cache``. A ``.complete`` marker written
last makes a second call a no-op. Stdlib only, so it runs before the venv exists.

Kafka's command-line tools (``kafka-share-groups.sh``, ``kafka-configs.sh``, the share consumer
tools) live in ``org.apache.kafka:kafka-tools``; :func:`ensure_kafka_tools` fetches that module's
runtime classpath the same way into ``<cache>/kafka-tools/<version>/libs``
(``sharegroup/kafka_tools.py`` runs them).

Usage: ``python -m sharegroup.kafka_dist [VERSION ...]`` prints one libs path per version
(default: :data:`KAFKA3_VERSION`, :data:`KAFKA4_VERSION`, and the tools of :data:`KAFKA4_VERSION`).
"""

from __future__ import annotations

import fcntl
import functools
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

#: Last 3.x line: no share groups at all (the proxy's main target).
KAFKA3_VERSION = "3.9.1"
#: Newest 4.x whose ``kafka_2.13`` and dependencies Maven Central served here (share groups GA
#: since 4.2; 4.4 formats with ``share.version=2``, KIP-1191's level, by default: see
#: docs/brokers.md).
KAFKA4_VERSION = "4.4.0"

REPO_ROOT = Path(__file__).resolve().parent.parent
MARKER = ".complete"


def cache_root() -> Path:
    """Where every cached artefact lives: ``$SHAREGROUP_CACHE`` or ``<repo>/.cache``."""
    env = os.environ.get("SHAREGROUP_CACHE")
    if env:
        return Path(env)
    if (REPO_ROOT / "pyproject.toml").is_file():  # a checkout (editable install)
        return REPO_ROOT / ".cache"
    return Path.home() / ".cache" / "sharegroup"


def libs_dir(version: str, root: Path | None = None) -> Path:
    """The classpath folder of one Kafka version (it may not be fetched yet)."""
    return (root if root is not None else cache_root()) / "kafka" / version / "libs"


def is_major_4(version: str) -> bool:
    """Kafka 4.x dropped ZooKeeper and log4j 1: the logging backend differs."""
    return int(version.split(".", 1)[0]) >= 4


def tools_libs_dir(version: str, root: Path | None = None) -> Path:
    """The classpath folder of Kafka's command-line tools of one version."""
    return (root if root is not None else cache_root()) / "kafka-tools" / version / "libs"


def _broker_deps(version: str) -> list[tuple[str, str, str]]:
    # Both lines log through slf4j 1.7 (kafka-clients' runtime dependency); 3.x binds it to reload4j
    # (log4j 1 API), 4.x to log4j2 (KIP-653), as the release tarballs do. core's pom names no
    # backend, so we add the one the tarball ships.
    if is_major_4(version):
        logging = [
            ("org.apache.logging.log4j", "log4j-slf4j-impl", "2.24.3"),
            ("org.apache.logging.log4j", "log4j-core", "2.24.3"),
            ("org.apache.logging.log4j", "log4j-api", "2.24.3"),
        ]
    else:
        logging = [
            ("org.slf4j", "slf4j-reload4j", "1.7.36"),
            ("ch.qos.reload4j", "reload4j", "1.2.25"),
        ]
    return [("org.apache.kafka", "kafka_2.13", version), *logging]


def _tools_deps(version: str) -> list[tuple[str, str, str]]:
    # kafka-tools brings log4j2 but no binding for its slf4j 1.7 API; the tarball adds one.
    return [
        ("org.apache.kafka", "kafka-tools", version),
        ("org.apache.logging.log4j", "log4j-slf4j-impl", "2.24.3"),
    ]


def _pom(name: str, deps: list[tuple[str, str, str]]) -> str:
    body = "\n".join(
        f"    <dependency><groupId>{g}</groupId><artifactId>{a}</artifactId>"
        f"<version>{v}</version></dependency>"
        for g, a, v in deps
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>sharegroup.local</groupId>
  <artifactId>{name}</artifactId>
  <version>0</version>
  <packaging>pom</packaging>
  <dependencies>
{body}
  </dependencies>
</project>
"""


def ensure_kafka(version: str, root: Path | None = None, *, quiet: bool = True) -> Path:
    """Return the libs folder of ``version``, fetching it with Maven first if it is incomplete.

    Raises ``RuntimeError`` (with Maven's output) if the fetch fails.
    """
    return _ensure(
        f"kafka-dist-{version}",
        _broker_deps(version),
        f"kafka_2.13-{version}.jar",
        libs_dir(version, root),
        quiet=quiet,
    )


def ensure_kafka_tools(
    version: str = KAFKA4_VERSION, root: Path | None = None, *, quiet: bool = True
) -> Path:
    """Return the libs folder of Kafka's command-line tools ``version``, fetching it first."""
    return _ensure(
        f"kafka-tools-{version}",
        _tools_deps(version),
        f"kafka-tools-{version}.jar",
        tools_libs_dir(version, root),
        quiet=quiet,
    )


def _ensure(
    name: str, deps: list[tuple[str, str, str]], jar: str, libs: Path, *, quiet: bool
) -> Path:
    if (libs / MARKER).is_file():
        return libs
    libs.parent.mkdir(parents=True, exist_ok=True)
    # One fetch at a time per folder (two pytest runs, CI beside a developer): the loser of the
    # race waits here and then finds the marker.
    with (libs.parent / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (libs / MARKER).is_file():
            _fetch(name, deps, jar, libs, quiet=quiet)
    return libs


def _fetch(
    name: str, deps: list[tuple[str, str, str]], jar: str, libs: Path, *, quiet: bool
) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise RuntimeError(f"mvn not found on PATH: cannot fetch {name}")
    if libs.exists():  # a previous fetch died half-way
        shutil.rmtree(libs)
    with tempfile.TemporaryDirectory(prefix="kafka-dist-", dir=libs.parent) as tmp:
        pom = Path(tmp) / "pom.xml"
        pom.write_text(_pom(name, deps), encoding="utf-8")
        staging = Path(tmp) / "libs"
        cmd = [
            mvn,
            "-B",
            *(["-q"] if quiet else []),
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={staging}",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(
                f"mvn failed ({proc.returncode}) fetching {name}:\n"
                f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
            )
        if not (staging / jar).is_file():
            raise RuntimeError(f"mvn succeeded but {jar} is missing from {staging}")
        (staging / MARKER).write_text(f"{name}\n", encoding="utf-8")
        staging.rename(libs)  # atomic on one filesystem: libs/ is complete or absent


def main(argv: list[str]) -> int:
    fetches: list[tuple[str, Callable[[], Path]]] = [
        (f"kafka {v}", functools.partial(ensure_kafka, v))
        for v in argv or [KAFKA3_VERSION, KAFKA4_VERSION]
    ]
    if not argv:
        fetches.append((f"kafka-tools {KAFKA4_VERSION}", ensure_kafka_tools))
    for what, fetch in fetches:
        started = time.monotonic()
        try:
            libs = fetch()
        except RuntimeError as exc:
            sys.stderr.write(f"{exc}\n")
            return 1
        sys.stderr.write(f"{what}: ready in {time.monotonic() - started:.1f}s\n")
        sys.stdout.write(f"{libs}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
