"""The proxy in a thread of its own with its own Trio loop.

For callers that are not Trio code — tests with blocking Kafka clients, the live scenario
runner — and want a proxy in-process: ``with ProxyThread("127.0.0.1:9092") as p: p.bootstrap``.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import traceback
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

import outcome
import trio

from proxy.app import build_proxy
from proxy.server import Proxy, ProxyConfig
from proxy.shares import ShareService
from proxy.upstream import parse_servers

log = logging.getLogger("sharegroup.proxy")


class ProxyThread:
    def __init__(
        self,
        upstream: str,
        configs: dict[str, str] | None = None,
        port: int = 0,
        **options: object,
    ) -> None:
        """``port`` 0 picks free ports; ``options`` set ``ProxyConfig`` fields."""
        self.configs = dict(configs or {})
        self.config = ProxyConfig(bootstrap=parse_servers(upstream), listen_port=port)
        for key, value in options.items():
            setattr(self.config, key, value)
        self.bootstrap = ""
        self.port = 0
        self.proxy: Proxy | None = None
        self.shares: ShareService | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="sharegroup-proxy", daemon=True)

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as e:  # reported to the starting thread, or logged
            if self._ready.is_set():  # it was serving: nobody else will hear of it
                log.exception("the proxy stopped on an error")
            self._error = e
            self._ready.set()

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        proxy, self.shares = build_proxy(self.config, dict(self.configs))
        async with trio.open_nursery() as nursery:
            await nursery.start(proxy.run)
            self.proxy = proxy
            host, self.port = proxy.bootstrap_address
            self.bootstrap = f"{host}:{self.port}"
            self._ready.set()
            await self._stop.wait()
            nursery.cancel_scope.cancel()

    @property
    def error(self) -> BaseException | None:
        """The exception the proxy's loop ended on, if it ended on one."""
        return self._error

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> Self:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the proxy did not start within 30 s")
        if self._error is not None:
            raise RuntimeError(f"the proxy failed to start: {self._error!r}") from self._error
        return self

    def call(self, fn: Callable[..., Any], *args: object, timeout_s: float = 30.0) -> Any:
        """Run a sync function inside the proxy's Trio loop (to read its state safely).

        Raises ``TimeoutError`` when the loop has not run it within ``timeout_s``: a caller
        waiting without a bound on a loop that is stuck would be stuck too (and, in a test,
        beyond pytest-timeout's reach once its one alarm has fired)."""
        assert self._token is not None
        done = threading.Event()
        answer: list[outcome.Outcome[Any]] = []

        def job() -> None:
            answer.append(outcome.capture(fn, *args))  # its value, or what it raised
            done.set()

        self._token.run_sync_soon(job)
        if not done.wait(timeout_s):
            raise TimeoutError(
                f"the proxy's loop did not run {fn!r} within {timeout_s} s; it is at:\n"
                + self.where()
            )
        return answer[0].unwrap()

    def stop(self, timeout_s: float = 15.0) -> None:
        """Ask the loop to stop and wait up to ``timeout_s`` for its thread; never blocks longer
        (a loop that does not stop is logged, and its daemon thread left behind)."""
        if self._token is not None and self._stop is not None and self._thread.is_alive():
            with contextlib.suppress(trio.RunFinishedError):
                self._token.run_sync_soon(self._stop.set)
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            log.error(
                "the proxy's loop did not stop within %s s; leaving its thread, which is at:\n%s",
                timeout_s,
                self.where(),
            )

    def where(self) -> str:
        """The stack of the loop's thread now (what a stuck loop is stuck in)."""
        frame = sys._current_frames().get(self._thread.ident or -1)
        return "".join(traceback.format_stack(frame)) if frame is not None else "(not running)"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
