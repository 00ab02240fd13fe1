"""The decisions of IncrementalAlterConfigs on GROUP config resources (type 32) for share
groups, as Kafka's GroupConfigManager makes them: only the share
group configs it knows, SET with a value or DELETE, every value checked against the broker's
bounds before anything changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from model import ConfigError, ErrorCode, GroupConfig
from model.config import GROUP_CONFIG_KEYS
from sharegroup.core.messages import Refused
from sharegroup.engine import ShareEngine

SET, DELETE = 0, 1  # IncrementalAlterConfigs' config operations; APPEND and SUBTRACT are 2, 3


@dataclass(frozen=True, slots=True)
class ConfigChange:
    """Validated changes of one group's overrides (None deletes one), with the overrides as
    they were (to undo when persisting fails) and as they will be (what is persisted)."""

    group_id: str
    changes: dict[str, str | None]
    before: dict[str, str]
    after: dict[str, str]


class ConfigsCore:
    def __init__(self, engine: ShareEngine) -> None:
        self.engine = engine

    def plan(
        self, group_id: str, operations: Sequence[tuple[str, int, str | None]]
    ) -> Refused | ConfigChange:
        """Check (name, operation, value) changes of a group's configs; nothing changes."""
        if not group_id:
            return Refused(ErrorCode.INVALID_GROUP_ID, "group id must not be empty")
        changes: dict[str, str | None] = {}
        for name, op, value in operations:
            if name not in GROUP_CONFIG_KEYS:
                return Refused(
                    ErrorCode.INVALID_CONFIG, f"unknown or unsupported group config {name!r}"
                )
            if op == SET:
                if value is None:
                    return Refused(ErrorCode.INVALID_REQUEST, f"{name}: SET needs a value")
                changes[name] = value
            elif op == DELETE:
                changes[name] = None
            else:
                return Refused(
                    ErrorCode.INVALID_REQUEST,
                    f"{name}: APPEND/SUBTRACT do not apply to group configs",
                )
        entry = self.engine.group(group_id)
        before = dict(entry.overrides) if entry else {}
        after = dict(before)
        for k, v in changes.items():
            if v is None:
                after.pop(k, None)
            else:
                after[k] = v
        broker = self.engine.broker_config
        try:
            GroupConfig.defaults(broker).with_overrides(broker, after)
        except ConfigError as e:
            return Refused(ErrorCode.INVALID_CONFIG, str(e))
        return ConfigChange(group_id, changes, before, after)

    def apply(self, change: ConfigChange) -> None:
        self.engine.set_group_configs(change.group_id, change.changes)

    def undo(self, change: ConfigChange) -> None:
        """Persisting failed: the overrides go back to what they were."""
        self.engine.set_group_configs(
            change.group_id, {**dict.fromkeys(change.after), **change.before}
        )
