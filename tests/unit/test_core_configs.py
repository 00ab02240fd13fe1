"""The GROUP config resource decisions (``sharegroup/core/configs.py``), no I/O."""

from __future__ import annotations

from model import BrokerConfig, ErrorCode
from sharegroup.core.configs import DELETE, SET, ConfigChange, ConfigsCore
from sharegroup.core.messages import Refused
from sharegroup.engine import ShareEngine

G = "g"
LOCK = "share.record.lock.duration.ms"


def make() -> ConfigsCore:
    return ConfigsCore(ShareEngine(BrokerConfig.from_mapping()))


def refusal(got: Refused | ConfigChange) -> ErrorCode:
    assert isinstance(got, Refused), got
    return got.code


def test_plan_refuses_bad_requests_before_anything_changes() -> None:
    core = make()
    assert refusal(core.plan("", [])) == ErrorCode.INVALID_GROUP_ID
    assert refusal(core.plan(G, [("group.id", SET, "x")])) == ErrorCode.INVALID_CONFIG
    assert refusal(core.plan(G, [(LOCK, SET, None)])) == ErrorCode.INVALID_REQUEST
    assert refusal(core.plan(G, [(LOCK, 2, "1")])) == ErrorCode.INVALID_REQUEST  # APPEND
    assert refusal(core.plan(G, [(LOCK, SET, "5")])) == ErrorCode.INVALID_CONFIG  # out of bounds
    assert core.engine.group(G) is None


def test_set_then_delete_and_undo() -> None:
    core = make()
    change = core.plan(G, [(LOCK, SET, "20000")])
    assert isinstance(change, ConfigChange) and change.after == {LOCK: "20000"}
    assert core.engine.group_config(G).record_lock_duration_ms != 20000  # planned, not applied
    core.apply(change)
    assert core.engine.group_config(G).record_lock_duration_ms == 20000
    gone = core.plan(G, [(LOCK, DELETE, None)])
    assert isinstance(gone, ConfigChange) and gone.after == {} and gone.before == {LOCK: "20000"}
    core.apply(gone)
    core.undo(gone)  # persisting failed
    assert core.engine.group_config(G).record_lock_duration_ms == 20000
