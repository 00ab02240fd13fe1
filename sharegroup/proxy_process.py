"""Running ``sharegroup proxy`` as a child process, for the benchmarks under bench/.

The benchmarks measure the proxy as a user runs it: its own process (and GIL), started with the
installed ``sharegroup`` command. ``running_proxy`` starts it, waits for the line that names the
bootstrap address, and stops it however the benchmark ends; the child is also killed if the
benchmark itself dies (PR_SET_PDEATHSIG). ``stop_on_signal`` turns SIGINT/SIGTERM into
KeyboardInterrupt so that ``finally`` blocks stop proxies and brokers.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from sharegroup.brokers import free_port

PROXY_READY_TIMEOUT_S = 60.0
PROXY_STOP_TIMEOUT_S = 10.0
SHAREGROUP = Path(sys.executable).with_name("sharegroup")

_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded here: no dlopen between fork and exec
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    # SIGKILL this child if the script dies without running its `finally` (SIGKILL, a crash).
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


SIGNALS: list[int] = []  # the signals that asked us to stop


def stop_on_signal(signum: int, _frame: object) -> None:
    # Ctrl-C and SIGTERM alike unwind through the `finally` blocks that stop everything.
    SIGNALS.append(signum)
    raise KeyboardInterrupt


class BenchError(RuntimeError):
    """The benchmark could not run (proxy did not start, records went missing, ...)."""


# ---------------------------------------------------------------------------- the proxy process


class ProxyProcess:
    """``sharegroup proxy`` as a child process; its output goes to a drain thread."""

    def __init__(
        self,
        upstream: str,
        configs: Sequence[str] = (),
        profile: str | None = None,
        code: str | None = None,
        listen_protocol: str = "PLAINTEXT",
        args: Sequence[str] = (),
        log_level: str = "WARNING",
        port: int | None = None,
    ) -> None:
        self.upstream = upstream
        self.args = list(args)  # further command-line arguments, e.g. --instance-id 1
        self.log_level = log_level
        self.port = port  # the listen port (None: a free one)
        self.listen_protocol = listen_protocol
        self.configs = list(configs)
        self.profile = profile
        self.code = code  # a source tree whose packages the proxy imports instead of these
        self.bootstrap = ""
        self._proc: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._tail: list[str] = []
        self._errors: list[str] = []  # the first lines logged at ERROR (or a traceback's)
        self._drainer: threading.Thread | None = None

    def start(self) -> ProxyProcess:
        argv = [str(SHAREGROUP), "proxy", "--bootstrap-server", self.upstream]
        listen = f"{self.listen_protocol}://127.0.0.1:{self.port or free_port()}"
        argv += ["--listen", listen, "--log-level", self.log_level, *self.args]
        for config in self.configs:
            argv += ["--config", config]
        if self.profile:
            argv = [sys.executable, "-m", "cProfile", "-o", self.profile, *argv]
        self._proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            start_new_session=True,  # Ctrl-C reaches us only; we stop the proxy in `finally`
            preexec_fn=die_with_parent,
            env=None if self.code is None else {**os.environ, "PYTHONPATH": self.code},
        )
        self._drainer = threading.Thread(target=self._drain, args=(self._proc,), daemon=True)
        self._drainer.start()
        deadline = time.monotonic() + PROXY_READY_TIMEOUT_S
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BenchError(
                    f"proxy not ready after {PROXY_READY_TIMEOUT_S:.0f} s" + self.tail()
                )
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise BenchError(f"proxy exited with {self._proc.wait()}" + self.tail())
            if "bootstrap.servers=" in line:
                self.bootstrap = line.split("bootstrap.servers=", 1)[1].split()[0]
                return self

    def _drain(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        # $SHAREGROUP_PROXY_LOG_DIR keeps every proxy's whole output (proxy-<pid>.log).
        keep_dir = os.environ.get("SHAREGROUP_PROXY_LOG_DIR")
        keep = (
            open(Path(keep_dir) / f"proxy-{proc.pid}.log", "a", encoding="utf-8")  # noqa: SIM115
            if keep_dir
            else None
        )
        with proc.stdout, keep or contextlib.nullcontext():
            for line in proc.stdout:
                if keep is not None:
                    keep.write(line)
                self._tail = [*self._tail[-40:], line.rstrip()]
                if len(self._errors) < 40 and ("ERROR" in line or "Traceback" in line):
                    self._errors.append(line.rstrip())
                self._lines.put(line)
        self._lines.put(None)

    def _drained(self) -> None:
        if self._drainer is not None:
            self._drainer.join(5)

    def tail(self) -> str:
        """The first error lines the proxy logged, then the last lines of its output."""
        errors = "".join(f"\n  proxy error: {line}" for line in self._errors)
        return errors + "".join(f"\n  proxy: {line}" for line in self._tail)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def check_alive(self) -> None:
        if self._proc is None or self._proc.poll() is not None:
            code = None if self._proc is None else self._proc.returncode
            raise BenchError(f"proxy process exited with {code}" + self.tail())

    def signal(self, signum: int) -> None:
        """Send the proxy a signal (SIGSTOP and SIGCONT pause and resume it)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL: the proxy gets no chance to clean up."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        self._drained()

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            self._drained()
            return
        proc.terminate()  # SIGTERM: the proxy stops cleanly (and cProfile writes its stats)
        try:
            proc.wait(PROXY_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        self._drained()


@contextlib.contextmanager
def running_proxy(
    upstream: str,
    configs: Sequence[str] = (),
    profile: str | None = None,
    code: str | None = None,
    listen_protocol: str = "PLAINTEXT",
) -> Iterator[ProxyProcess]:
    """The proxy in front of ``upstream``; ``configs`` are ``KEY=VALUE`` for ``--config``;
    ``profile`` runs it under cProfile, writing the stats there; ``code`` is a source tree (a
    checkout of another commit) to run instead of the installed one; ``listen_protocol`` is
    the listener's security protocol (SSL needs ``ssl.*`` configs)."""
    proxy = ProxyProcess(upstream, configs, profile, code, listen_protocol)
    try:
        yield proxy.start()
    finally:
        proxy.stop()
