"""Run the proxy in-process for tests with blocking clients (see ``proxy/thread.py``)."""

from __future__ import annotations

from proxy.thread import ProxyThread

__all__ = ["ProxyThread"]
