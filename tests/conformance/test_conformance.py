"""The differential conformance test against live targets (docs/conformance.md).

The same Hypothesis state machine (``sharegroup.conformance``) runs against the proxy in front of
Tansu, the proxy in front of Apache Kafka 3.9, and Apache Kafka 4.4 share groups directly (the
reference). CI runs the ``conformance-ci`` settings profile: a bounded, derandomized number of
examples per target. Longer campaigns: ``SHAREGROUP_CONFORMANCE_EXAMPLES=200 pytest
tests/conformance`` or ``sharegroup conformance --bootstrap-server ... --examples 200``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, Phase, Verbosity, settings

from proxy.dlq import MARKED_TOPICS_KEY
from sharegroup.brokers import Broker
from sharegroup.conformance import runner
from sharegroup.conformance.machine import TargetSpec
from tests.harness import ProxyThread

pytestmark = pytest.mark.integration

PROFILE = "conformance-ci"
settings.register_profile(
    PROFILE,
    max_examples=int(os.environ.get("SHAREGROUP_CONFORMANCE_EXAMPLES", "6")),
    stateful_step_count=int(os.environ.get("SHAREGROUP_CONFORMANCE_STEPS", "30")),
    deadline=None,
    database=None,
    derandomize=os.environ.get("SHAREGROUP_CONFORMANCE_RANDOM", "") == "",
    report_multiple_bugs=True,
    suppress_health_check=list(HealthCheck),
    # No shrinking in CI: on a live target every shrink step replays a whole example (seconds),
    # so a failure is reported as found; `sharegroup conformance` shrinks.
    phases=[Phase.explicit, Phase.generate],
    verbosity=Verbosity.quiet,
    print_blob=False,
)

PROXY_CONFIGS = {
    "group.share.min.record.lock.duration.ms": "1000",
    # Kafka 3.9 refuses the DLQ topic config: the proxy marks the kit's DLQ topics itself.
    MARKED_TOPICS_KEY: "dlq.conformance-*",
}
LOCK_MS = 3000


@pytest.fixture(params=["proxy-tansu", "proxy-kafka39", "kafka4", "kafka4-dlq"])
def target(request: pytest.FixtureRequest) -> Iterator[TargetSpec]:
    """Kafka 4.4 twice: with share.version=1 (its DLQ examples check that nothing is
    dead-lettered) and with share.version=2 (Kafka's own DLQ, the reference for the proxy's)."""
    if request.param.startswith("kafka4"):
        broker: Broker = request.getfixturevalue(request.param.replace("-", "_"))
        yield TargetSpec(broker.bootstrap, name=request.param, lock_ms=LOCK_MS)
        return
    broker = request.getfixturevalue(request.param.removeprefix("proxy-"))
    with ProxyThread(broker.bootstrap, PROXY_CONFIGS) as p:
        yield TargetSpec(p.bootstrap, name=request.param, lock_ms=LOCK_MS)


def test_conformance(target: TargetSpec) -> None:
    profile = settings.get_profile(PROFILE)
    if target.name == "kafka4-dlq":
        # The reference for the DLQ checks: twice the examples, so that its derandomized
        # examples reach rejected records and the delivery limit with a DLQ topic.
        profile = settings(profile, max_examples=2 * (profile.max_examples or 1))
    result = runner.run(target, hypothesis_settings=profile)
    print(runner.table(result))
    print(runner.summary(result))
    report = runner.details(result)
    if report:
        print(report)
    assert result.examples > 0
    assert result.ok, f"{runner.summary(result)}\n{report}"
