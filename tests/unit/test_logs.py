"""sharegroup/logs.py: JSON lines, and third-party loggers held at WARNING by default."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from sharegroup.logs import THIRD_PARTY, configure


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {name: logging.getLogger(name).level for name in THIRD_PARTY}
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)
    for name, lvl in levels.items():
        logging.getLogger(name).setLevel(lvl)


def test_json_lines_carry_level_logger_message_extra_and_traceback() -> None:
    out = io.StringIO()
    configure("INFO", "json", out)
    log = logging.getLogger("sharegroup.test")
    log.info("share group %s deleted", "g1", extra={"group": "g1"})
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert {k: first[k] for k in ("level", "logger", "message", "group")} == {
        "level": "INFO",
        "logger": "sharegroup.test",
        "message": "share group g1 deleted",
        "group": "g1",
    }
    assert first["ts"].endswith("+00:00")
    assert second["level"] == "ERROR" and "ValueError: boom" in second["exc"]


def test_third_party_info_is_quiet_by_default_and_shown_at_debug() -> None:
    out = io.StringIO()
    configure("INFO", "text", out)
    logging.getLogger("kafka.conn").info("connecting to 127.0.0.1:9092")
    logging.getLogger("kafka.conn").warning("connection lost")
    logging.getLogger("librdkafka").warning("GETPID: coordinator load in progress: retrying")
    logging.getLogger("librdkafka").error("all brokers down")
    logging.getLogger("sharegroup.proxy").info("listening")
    lines = out.getvalue().splitlines()
    assert [ln.split(" ", 3)[2:] for ln in lines] == [
        ["WARNING", "kafka.conn: connection lost"],
        ["ERROR", "librdkafka: all brokers down"],
        ["INFO", "sharegroup.proxy: listening"],
    ]
    out = io.StringIO()
    configure("DEBUG", "text", out)
    logging.getLogger("kafka.conn").info("connecting")
    assert "kafka.conn: connecting" in out.getvalue()


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="xml"):
        configure("INFO", "xml")
