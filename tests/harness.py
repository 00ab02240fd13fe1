"""Run the proxy in-process, in a thread with its own Trio loop, for tests with blocking clients."""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Self

import trio

from proxy.app import build_proxy
from proxy.server import Proxy, ProxyConfig
from proxy.shares import ShareService
from proxy.upstream import parse_servers


class ProxyThread:
    """``with ProxyThread("127.0.0.1:9092") as p: p.bootstrap`` -> the address clients use."""

    def __init__(
        self, upstream: str, configs: dict[str, str] | None = None, **options: object
    ) -> None:
        self.configs = dict(configs or {})
        self.config = ProxyConfig(bootstrap=parse_servers(upstream), listen_port=0)
        for key, value in options.items():
            setattr(self.config, key, value)
        self.bootstrap = ""
        self.proxy: Proxy | None = None
        self.shares: ShareService | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="proxy", daemon=True)

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as e:  # noqa: BLE001 - reported to the test thread
            self._error = e
            self._ready.set()

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        proxy, self.shares = build_proxy(self.config, self.configs)
        async with trio.open_nursery() as nursery:
            await nursery.start(proxy.run)
            self.proxy = proxy
            host, port = proxy.bootstrap_address
            self.bootstrap = f"{host}:{port}"
            self._ready.set()
            await self._stop.wait()
            nursery.cancel_scope.cancel()

    def call(self, fn: object, *args: object) -> object:
        """Run a sync function inside the proxy's Trio loop (to inspect state safely)."""
        assert self._token is not None
        return trio.from_thread.run_sync(fn, *args, trio_token=self._token)  # type: ignore[arg-type]

    def __enter__(self) -> Self:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("proxy did not start within 30 s")
        if self._error is not None:
            raise RuntimeError(f"proxy failed to start: {self._error!r}") from self._error
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None and self._stop is not None and self._thread.is_alive():
            trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self._thread.join(15)
