"""sharegroup: Kafka share groups (KIP-932) for any Kafka cluster — the engine and the tools."""

from __future__ import annotations

__version__ = "0.1.0"
