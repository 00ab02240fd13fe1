"""Helpers that make failures in other threads reach the test.

``ProxyThread``: the proxy in-process for tests with blocking clients (see ``proxy/thread.py``);
leaving its ``with`` block fails the test if the proxy's loop ended on an error or did not stop.

``Workers``: test code run in threads (e.g. one consumer each). ``join`` waits for all of them
within a deadline, fails the test if one is still running, and re-raises the first exception a
worker raised (an assertion in a worker is a failure of the test, with its own traceback).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import TracebackType

from proxy import thread


class ProxyThread(thread.ProxyThread):
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        super().__exit__(exc_type, exc, tb)
        if exc_type is not None:
            return  # the test's own failure comes first
        if self.is_alive():
            raise AssertionError("the proxy thread did not stop within 15 s")
        if self.error is not None:
            raise AssertionError(f"the proxy stopped on an error: {self.error!r}") from self.error


class Workers:
    """Threads running test code; ``join`` re-raises what they raised."""

    def __init__(self) -> None:
        self._threads: list[threading.Thread] = []
        self._errors: list[tuple[str, BaseException]] = []
        self._lock = threading.Lock()

    def start(self, target: Callable[..., object], *args: object, name: str = "") -> None:
        def run() -> None:
            try:
                target(*args)
            except BaseException as e:  # noqa: BLE001 - handed to the test thread by join()
                with self._lock:
                    self._errors.append((threading.current_thread().name, e))

        name = name or f"worker-{len(self._threads)}"
        th = threading.Thread(target=run, name=name, daemon=True)
        self._threads.append(th)
        th.start()

    def join(self, timeout_s: float) -> None:
        """Wait at most ``timeout_s`` for every worker; then fail on a hung or failed one."""
        deadline = time.monotonic() + timeout_s
        for th in self._threads:
            th.join(max(0.0, deadline - time.monotonic()))
        hung = [th.name for th in self._threads if th.is_alive()]
        with self._lock:
            errors = list(self._errors)
        if errors:
            name, first = errors[0]
            first.add_note(f"raised in thread {name}")
            for other, e in errors[1:]:
                first.add_note(f"also in thread {other}: {e!r}")
            if hung:
                first.add_note(f"still running after {timeout_s} s: {hung}")
            raise first
        if hung:
            raise AssertionError(f"still running after {timeout_s} s: {hung}")
