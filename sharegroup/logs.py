"""Logging of ``sharegroup proxy``: one line per event, as text or as JSON (``--log-format``).

JSON lines carry ``ts`` (ISO 8601, UTC), ``level``, ``logger``, ``message``, the formatted
``exc`` when there is one, and every ``extra=`` field a call passes. The formatter is a few
lines over the standard library's ``json`` and ``logging`` rather than a dependency.

Third-party libraries (kafka-python's ``kafka`` loggers, ``trio``) log at WARNING and above,
and librdkafka (the state store's clients) at ERROR: its warnings are about retries it makes
itself, such as a coordinator still loading. ``--log-level DEBUG`` shows everything: at the
default level only the proxy's own events are shown.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

#: Loggers of libraries the proxy uses, and the lowest level they show unless the level is DEBUG.
THIRD_PARTY = {
    "kafka": logging.WARNING,
    "librdkafka": logging.ERROR,
    "trio": logging.WARNING,
    "urllib3": logging.WARNING,
    "asyncio": logging.WARNING,
    "prometheus_client": logging.WARNING,
}
FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in out:
                out[key] = value
        return json.dumps(out, default=str)


def configure(level: str = "INFO", fmt: str = "text", stream: TextIO | None = None) -> None:
    """Set up the root logger for the command line (replacing earlier handlers)."""
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r} is not one of {', '.join(FORMATS)}")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name, quiet in THIRD_PARTY.items():
        logging.getLogger(name).setLevel(logging.NOTSET if level == "DEBUG" else quiet)
