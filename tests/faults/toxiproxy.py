"""Toxiproxy: built from its Go module at a pinned version, run as a child process, driven
over its HTTP API.

``ensure_toxiproxy()`` runs ``go install github.com/Shopify/toxiproxy/v2/cmd/server@<version>``
with GOBIN in ``<cache>/toxiproxy/<version>/`` (the broker jars' cache root, ``.cache/``) once and reuses the binary after that
(``python -m tests.faults.toxiproxy`` does it from ``.ci/run``). ``Toxiproxy`` starts the server
on a free loopback port; ``proxy``/``toxic``/``remove_toxic``/``enable``/``reset`` are its API
(``POST /proxies``, ``POST /proxies/{name}/toxics``, ``DELETE /proxies/{name}/toxics/{toxic}``,
``POST /proxies/{name}``, ``POST /reset``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from sharegroup.brokers import _die_with_parent, free_port
from sharegroup.kafka_dist import cache_root

TOXIPROXY_VERSION = "v2.5.0"
MODULE = "github.com/Shopify/toxiproxy/v2/cmd/server"
CACHE = cache_root() / "toxiproxy" / TOXIPROXY_VERSION
BINARY = CACHE / "toxiproxy-server"


class ToxiproxyError(RuntimeError):
    pass


def _go() -> str:
    found = shutil.which("go") or (
        "/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None
    )
    if found is None:
        raise ToxiproxyError("go not found on PATH (Toxiproxy is built from its Go module)")
    return found


def ensure_toxiproxy() -> Path:
    """The toxiproxy-server binary of TOXIPROXY_VERSION, built once into .cache/."""
    if BINARY.exists():
        return BINARY
    CACHE.mkdir(parents=True, exist_ok=True)
    build = CACHE / "build"
    env = dict(os.environ, GOBIN=str(build), CGO_ENABLED="0")
    res = subprocess.run(
        [_go(), "install", f"{MODULE}@{TOXIPROXY_VERSION}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if res.returncode != 0:
        raise ToxiproxyError(f"building toxiproxy failed:\n{res.stdout}\n{res.stderr}")
    (build / "server").replace(BINARY)
    shutil.rmtree(build, ignore_errors=True)
    return BINARY


class Toxiproxy:
    """A toxiproxy-server on a free loopback port."""

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        binary = ensure_toxiproxy()
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(binary), "-host", "127.0.0.1", "-port", str(self.port), "-seed", "1"],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                self._call("GET", "/version")
                return self
            except (ToxiproxyError, OSError):
                if self.proc.poll() is not None:
                    raise ToxiproxyError(f"toxiproxy exited ({self.proc.returncode})") from None
                time.sleep(0.1)
        raise ToxiproxyError("toxiproxy did not answer within 30 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                text = resp.read()
        except urllib.error.HTTPError as e:
            raise ToxiproxyError(f"{method} {path}: {e.code} {e.read()!r}") from e
        except urllib.error.URLError as e:
            raise ToxiproxyError(f"{method} {path}: {e.reason}") from e
        try:
            return json.loads(text) if text.strip() else None
        except ValueError:  # /version answers plain text
            return text.decode(errors="replace")

    def proxy(self, name: str, listen_port: int, upstream_port: int) -> None:
        self._call(
            "POST",
            "/proxies",
            {
                "name": name,
                "listen": f"127.0.0.1:{listen_port}",
                "upstream": f"127.0.0.1:{upstream_port}",
                "enabled": True,
            },
        )

    def toxic(
        self,
        proxy: str,
        name: str,
        kind: str,
        attributes: dict[str, int],
        stream: str = "downstream",
    ) -> None:
        self._call(
            "POST",
            f"/proxies/{proxy}/toxics",
            {
                "name": name,
                "type": kind,
                "stream": stream,
                "toxicity": 1.0,
                "attributes": attributes,
            },
        )

    def remove_toxic(self, proxy: str, name: str) -> None:
        self._call("DELETE", f"/proxies/{proxy}/toxics/{name}")

    def enable(self, proxy: str, enabled: bool) -> None:
        """Disabled, the proxy closes every connection and accepts none."""
        self._call("POST", f"/proxies/{proxy}", {"enabled": enabled})

    def reset(self) -> None:
        """Every proxy enabled, every toxic gone."""
        self._call("POST", "/reset")


def main() -> int:
    print(ensure_toxiproxy())
    return 0


if __name__ == "__main__":
    sys.exit(main())
