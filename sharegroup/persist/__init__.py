"""Durable share-group state: the records of the state topic and their replay (pure)."""

from __future__ import annotations
