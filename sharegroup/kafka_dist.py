"""Fetch the jars of an Apache Kafka broker from Maven Central into a local cache.

Role: give the integration tests and ``sharegroup proxy`` (``sharegroup/brokers.py``) a runnable broker without the Kafka tarball
(this workplace reaches Maven Central, not the Apache download mirrors). A throwaway ``pom.xml``
depends on ``org.apache.kafka:kafka_2.13:<version>`` (the ``core`` module: ``kafka.Kafka`` and
``kafka.tools.StorageTool``) plus a logging backend, and ``mvn dependency:copy-dependencies`` copies
the whole runtime classpath into ``<cache>/kafka/<version>/libs``. Run the broker with
``java -cp '<libs>/*' kafka.Kafka server.properties``.

Cache root: ``$SHAREGROUP_CACHE`` if set, else ``<repo>/.cache``. A ``.complete`` marker written
last makes a second call a no-op. Stdlib only, so it runs before the venv exists.

Usage: ``python tools/kafka_dist.py [VERSION ...]`` prints one libs path per version
(default: :data:`KAFKA3_VERSION` and :data:`KAFKA4_VERSION`).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import time
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


def _pom(version: str) -> str:
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
    deps = [("org.apache.kafka", "kafka_2.13", version), *logging]
    body = "\n".join(
        f"    <dependency><groupId>{g}</groupId><artifactId>{a}</artifactId>"
        f"<version>{v}</version></dependency>"
        for g, a, v in deps
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>sharegroup.local</groupId>
  <artifactId>kafka-dist-{version}</artifactId>
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
    libs = libs_dir(version, root)
    if (libs / MARKER).is_file():
        return libs
    libs.parent.mkdir(parents=True, exist_ok=True)
    # One fetch at a time per version (two pytest runs, CI beside a developer): the loser of the
    # race waits here and then finds the marker.
    with (libs.parent / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (libs / MARKER).is_file():
            _fetch(version, libs, quiet=quiet)
    return libs


def _fetch(version: str, libs: Path, *, quiet: bool) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise RuntimeError("mvn not found on PATH: cannot fetch the Kafka broker jars")
    if libs.exists():  # a previous fetch died half-way
        shutil.rmtree(libs)
    with tempfile.TemporaryDirectory(prefix="kafka-dist-", dir=libs.parent) as tmp:
        pom = Path(tmp) / "pom.xml"
        pom.write_text(_pom(version), encoding="utf-8")
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
                f"mvn failed ({proc.returncode}) fetching Kafka {version}:\n"
                f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
            )
        jar = f"kafka_2.13-{version}.jar"
        if not (staging / jar).is_file():
            raise RuntimeError(f"mvn succeeded but {jar} is missing from {staging}")
        (staging / MARKER).write_text(f"kafka {version}\n", encoding="utf-8")
        staging.rename(libs)  # atomic on one filesystem: libs/ is complete or absent


def main(argv: list[str]) -> int:
    versions = argv or [KAFKA3_VERSION, KAFKA4_VERSION]
    for version in versions:
        started = time.monotonic()
        try:
            libs = ensure_kafka(version)
        except RuntimeError as exc:
            sys.stderr.write(f"{exc}\n")
            return 1
        sys.stderr.write(f"kafka {version}: ready in {time.monotonic() - started:.1f}s\n")
        sys.stdout.write(f"{libs}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
