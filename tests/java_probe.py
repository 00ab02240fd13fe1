"""Compile and run ``tests/java/ShareConsumerProbe.java``: Java's ``KafkaShareConsumer`` as a CLI.

The probe is compiled with ``javac`` against the Kafka 4.x libs that ``sharegroup/kafka_dist.py``
caches (they contain ``kafka-clients-<KAFKA4_VERSION>.jar`` and a log4j2 backend), into
``<cache>/java-probe/<hash>/`` where the hash covers the source, the log config and the Kafka
version: an unchanged probe is compiled once, a changed one again. No build tool.

``ProbeRun`` starts one probe process, reads its JSON lines on a thread, and lets a test wait for
the ``subscribed`` event (the member has fetched once, so its share partitions exist) before it
produces. Client logs go to stderr; ``SHAREGROUP_PROBE_LOG_LEVEL=DEBUG`` turns them up.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

from sharegroup.kafka_dist import KAFKA4_VERSION, cache_root, ensure_kafka

JAVA_DIR = Path(__file__).resolve().parent / "java"
SOURCE = JAVA_DIR / "ShareConsumerProbe.java"
LOG_CONFIG = JAVA_DIR / "log4j2-probe.properties"
MAIN_CLASS = "ShareConsumerProbe"
MARKER = ".complete"

Mode = Literal["implicit", "explicit"]
Action = Literal["accept", "release-first", "reject"]


class ProbeError(RuntimeError):
    """The probe could not be compiled, or did not do what a test waited for."""


@dataclass(frozen=True)
class ProbeBuild:
    classes: Path  # the folder with ShareConsumerProbe.class
    libs: Path  # the Kafka libs (kafka-clients, slf4j, log4j2)
    compile_s: float  # 0.0 when the cached classes were reused

    def classpath(self) -> str:
        return f"{self.classes}{os.pathsep}{self.libs}/*"


_BUILD: ProbeBuild | None = None
_BUILD_LOCK = threading.Lock()


def ensure_probe(version: str = KAFKA4_VERSION) -> ProbeBuild:
    """Compile the probe unless the cache already holds this source's classes; thread- and
    process-safe (a file lock, then an atomic rename of the output folder)."""
    global _BUILD
    with _BUILD_LOCK:
        if _BUILD is not None and version == KAFKA4_VERSION:
            return _BUILD
        libs = ensure_kafka(version)
        digest = hashlib.sha256()
        for part in (SOURCE.read_bytes(), LOG_CONFIG.read_bytes(), version.encode()):
            digest.update(hashlib.sha256(part).digest())
        root = cache_root() / "java-probe"
        classes = root / digest.hexdigest()[:16]
        started = time.monotonic()
        compiled = False
        if not (classes / MARKER).is_file():
            root.mkdir(parents=True, exist_ok=True)
            with (root / ".lock").open("w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                if not (classes / MARKER).is_file():
                    _compile(libs, classes)
                    compiled = True
        build = ProbeBuild(classes, libs, time.monotonic() - started if compiled else 0.0)
        if version == KAFKA4_VERSION:
            _BUILD = build
        return build


def _compile(libs: Path, classes: Path) -> None:
    javac = shutil.which("javac")
    if javac is None:
        raise ProbeError("javac not found on PATH: cannot compile the Java share-consumer probe")
    if classes.exists():  # a compile that died half-way
        shutil.rmtree(classes)
    with tempfile.TemporaryDirectory(prefix="probe-", dir=classes.parent) as tmp:
        out = Path(tmp) / "classes"
        out.mkdir()
        cmd = [
            javac,
            "-encoding",
            "UTF-8",
            "-Xlint:unchecked",
            "-cp",
            f"{libs}/*",
            "-d",
            str(out),
            str(SOURCE),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise ProbeError(f"javac failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        shutil.copy(LOG_CONFIG, out / LOG_CONFIG.name)
        (out / MARKER).write_text(f"{SOURCE.name}\n", encoding="utf-8")
        out.rename(classes)


def probe_command(
    build: ProbeBuild,
    bootstrap: str,
    group: str,
    topic: str,
    expected: int,
    mode: Mode,
    action: Action = "accept",
    timeout_s: float = 60.0,
    extra: dict[str, str] | None = None,
) -> list[str]:
    """The ``java`` command line of one probe run (see the probe's header for the arguments)."""
    java = shutil.which("java")
    if java is None:
        raise ProbeError("java not found on PATH")
    level = os.environ.get("SHAREGROUP_PROBE_LOG_LEVEL", "WARN")
    return [
        java,
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",  # a short-lived client: start fast
        f"-Dlog4j2.configurationFile={build.classes / LOG_CONFIG.name}",
        f"-Dprobe.log.level={level}",
        "-cp",
        build.classpath(),
        MAIN_CLASS,
        bootstrap,
        group,
        topic,
        str(expected),
        mode,
        action,
        f"{timeout_s:g}",
        *(f"{k}={v}" for k, v in (extra or {}).items()),
    ]


@dataclass
class ProbeResult:
    returncode: int
    records: list[dict[str, Any]]
    summary: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)
    stderr: str = ""
    other_stdout: list[str] = field(default_factory=list)  # non-JSON lines: must stay empty

    def describe(self) -> str:
        """What an assertion message should show: the summary and the tail of the logs."""
        tail = "\n".join(self.stderr.splitlines()[-40:])
        return (
            f"exit {self.returncode}, summary {self.summary}, "
            f"stray stdout {self.other_stdout[:5]}\n--- probe stderr (tail) ---\n{tail}"
        )


class ProbeRun:
    """One running probe: ``with ProbeRun(...) as p: p.wait_subscribed(); ...; p.result()``."""

    def __init__(
        self,
        bootstrap: str,
        group: str,
        topic: str,
        expected: int,
        mode: Mode,
        action: Action = "accept",
        timeout_s: float = 60.0,
        extra: dict[str, str] | None = None,
    ) -> None:
        self.build = ensure_probe()
        self.command = probe_command(
            self.build, bootstrap, group, topic, expected, mode, action, timeout_s, extra
        )
        self.timeout_s = timeout_s
        self.lines: queue.Queue[dict[str, Any] | str | None] = queue.Queue()
        self.records: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.other_stdout: list[str] = []
        self.summary: dict[str, Any] | None = None
        # Closed in __exit__; a file rather than a pipe so a chatty client never blocks on it.
        self._stderr = tempfile.TemporaryFile(  # noqa: SIM115
            mode="w+", encoding="utf-8", errors="replace"
        )
        self.proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self.started = 0.0

    def __enter__(self) -> Self:
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            self.command,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, name="probe-stdout", daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            text = line.strip()
            if not text:
                continue
            try:
                parsed = json.loads(text)
            except ValueError:
                self.lines.put(text)
                continue
            self.lines.put(parsed if isinstance(parsed, dict) else text)
        self.lines.put(None)

    def _take(self, timeout_s: float) -> dict[str, Any] | str | None:
        item = self.lines.get(timeout=timeout_s)
        if isinstance(item, str):
            self.other_stdout.append(item)
        elif isinstance(item, dict):
            if "event" not in item:
                self.records.append(item)
            elif item["event"] == "summary":
                self.summary = item
            else:
                self.events.append(item)
        return item

    def wait_subscribed(self, timeout_s: float = 60.0) -> float:
        """Block until the probe prints ``subscribed``; return the seconds since it started."""
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            try:
                item = self._take(max(left, 0.01))
            except queue.Empty:
                raise ProbeError(
                    f"probe not subscribed after {timeout_s:g} s\n{self._stderr_tail()}"
                ) from None
            if item is None or (isinstance(item, dict) and item.get("event") == "summary"):
                self.lines.put(None)  # keep the end visible to result()
                raise ProbeError(
                    f"probe ended before it subscribed: {self.summary}\n{self._stderr_tail()}"
                )
            if isinstance(item, dict) and item.get("event") == "subscribed":
                return time.monotonic() - self.started

    def result(self) -> ProbeResult:
        """Wait for the probe to exit (its own timeout plus a margin) and collect everything."""
        assert self.proc is not None
        deadline = self.started + self.timeout_s + 30
        while True:
            try:
                item = self._take(max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                self._kill()
                raise ProbeError(
                    f"probe still running after its timeout\n{self._stderr_tail()}"
                ) from None
            if item is None:
                break
        returncode = self.proc.wait(max(deadline - time.monotonic(), 1))
        return ProbeResult(
            returncode=returncode,
            records=self.records,
            summary=self.summary or {},
            events=self.events,
            stderr=self._stderr_text(),
            other_stdout=self.other_stdout,
        )

    def _stderr_text(self) -> str:
        self._stderr.flush()
        self._stderr.seek(0)
        return self._stderr.read()

    def _stderr_tail(self, lines: int = 40) -> str:
        return "--- probe stderr (tail) ---\n" + "\n".join(
            self._stderr_text().splitlines()[-lines:]
        )

    def _kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._kill()
        if self.proc is not None and self.proc.stdout is not None:
            if self._reader is not None:
                self._reader.join(5)
            self.proc.stdout.close()
        self._stderr.close()
