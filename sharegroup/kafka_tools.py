"""Run Kafka's own command-line tools (the classes behind ``bin/kafka-*.sh``) with Java 17.

The jars come from Maven Central (``org.apache.kafka:kafka-tools`` and its runtime classpath,
see :func:`sharegroup.kafka_dist.ensure_kafka_tools`); there is no Kafka tarball, so instead of
``kafka-share-groups.sh --bootstrap-server ...`` one runs::

    run_tool(SHARE_GROUPS, ["--bootstrap-server", ..., "--list"])

Logs go to stderr at WARN, as with the tarball's ``tools-log4j2.yaml``; the tool's own output is
on stdout. Used by the integration tests that hold the proxy to Kafka 4.4 with Kafka's tools.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from sharegroup.kafka_dist import KAFKA4_VERSION, ensure_kafka_tools

#: ``kafka-share-groups.sh``
SHARE_GROUPS = "org.apache.kafka.tools.consumer.group.ShareGroupCommand"
#: ``kafka-console-share-consumer.sh``
CONSOLE_SHARE_CONSUMER = "org.apache.kafka.tools.consumer.ConsoleShareConsumer"
#: ``kafka-verifiable-share-consumer.sh``
VERIFIABLE_SHARE_CONSUMER = "org.apache.kafka.tools.VerifiableShareConsumer"
#: ``kafka-share-consumer-perf-test.sh``
SHARE_CONSUMER_PERF = "org.apache.kafka.tools.ShareConsumerPerformance"
#: ``kafka-configs.sh`` (moved from ``kafka.admin`` in core to the tools module in 4.x)
CONFIGS = "org.apache.kafka.tools.ConfigCommand"

JVM_OPTS = ["-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-XX:-UsePerfData"]

_LOG4J2 = """\
status = error
appender.err.type = Console
appender.err.name = STDERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.err.ref = STDERR
"""


def tool_command(main_class: str, args: Sequence[str], version: str = KAFKA4_VERSION) -> list[str]:
    """The argv that runs ``main_class`` of Kafka's tools ``version`` (jars fetched if needed)."""
    libs = ensure_kafka_tools(version)
    log_config = libs.parent / "log4j2-tools.properties"
    if not log_config.is_file() or log_config.read_text(encoding="utf-8") != _LOG4J2:
        tmp = log_config.with_suffix(".tmp")
        tmp.write_text(_LOG4J2, encoding="utf-8")
        tmp.replace(log_config)
    java = shutil.which("java")
    if java is None:
        raise RuntimeError("java not found on PATH: Kafka's tools need Java 17")
    return [
        java,
        *JVM_OPTS,
        f"-Dlog4j2.configurationFile={log_config}",
        "-cp",
        f"{libs}/*",
        main_class,
        *args,
    ]


def run_tool(
    main_class: str,
    args: Sequence[str],
    *,
    timeout_s: float = 120.0,
    input_text: str | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run one tool to completion; stdout and stderr are captured as text, exit code unchecked."""
    return subprocess.run(
        tool_command(main_class, args),
        capture_output=True,
        text=True,
        input=input_text,
        timeout=timeout_s,
        check=False,
        cwd=cwd,
    )
