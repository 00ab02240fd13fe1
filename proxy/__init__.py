"""The Trio proxy: Kafka protocol relay with share-group APIs answered locally."""

from __future__ import annotations
