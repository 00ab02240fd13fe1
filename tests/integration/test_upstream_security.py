"""The proxy's own connections to a secured upstream: TLS, SASL PLAIN, SCRAM-SHA-256/512 and
OAUTHBEARER token handling, against Kafka 3.9 with a SASL_SSL listener."""

from __future__ import annotations

import pytest
import trio

from model import ConfigError
from proxy import wire
from proxy.security import upstream_security
from proxy.upstream import BrokerConnection, UpstreamError
from sharegroup.brokers import Broker
from sharegroup.pki import Pki
from tests.conftest import SECURE_USERS

pytestmark = pytest.mark.integration


def settings(pki: Pki, **extra: str) -> dict[str, str]:
    return {
        "upstream.security.protocol": "SASL_SSL",
        "upstream.ssl.truststore.location": str(pki.ca),
        **extra,
    }


async def metadata_via(broker: Broker, configs: dict[str, str]) -> list[int]:
    security = upstream_security(configs)
    failed: UpstreamError | None = None
    nodes: list[int] = []
    async with trio.open_nursery() as nursery:
        conn = BrokerConnection(broker.host, broker.port, 1 << 20, security)
        try:
            await conn.start(nursery)
            version = conn.version_for(wire.METADATA, 12)
            resp = await conn.request(wire.metadata_request(version, None), version)
            nodes = [b.node_id for b in resp.brokers]
        except UpstreamError as e:
            failed = e
        finally:
            await conn.aclose()
            nursery.cancel_scope.cancel()
    if failed is not None:
        raise failed
    return nodes


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
async def test_proxy_logs_in_with_each_mechanism(
    kafka39_sasl: Broker, pki: Pki, mechanism: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SG_TEST_PROXY_PASSWORD", SECURE_USERS["proxy"])
    configs = settings(
        pki,
        **{
            "upstream.sasl.mechanism": mechanism,
            "upstream.sasl.username": "proxy",
            "upstream.sasl.password": "${env:SG_TEST_PROXY_PASSWORD}",
        },
    )
    assert await metadata_via(kafka39_sasl, configs) == [1]


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-512"])
async def test_wrong_password_is_refused(kafka39_sasl: Broker, pki: Pki, mechanism: str) -> None:
    configs = settings(
        pki,
        **{
            "upstream.sasl.mechanism": mechanism,
            "upstream.sasl.username": "proxy",
            "upstream.sasl.password": "not-the-password",
        },
    )
    with pytest.raises(UpstreamError, match=r"SASL authentication .* failed"):
        await metadata_via(kafka39_sasl, configs)


async def test_untrusted_broker_certificate_is_refused(kafka39_sasl: Broker, pki: Pki) -> None:
    configs = settings(
        pki,
        **{
            "upstream.ssl.truststore.location": str(pki.other_ca),
            "upstream.sasl.mechanism": "PLAIN",
            "upstream.sasl.username": "proxy",
            "upstream.sasl.password": SECURE_USERS["proxy"],
        },
    )
    with pytest.raises(UpstreamError, match="TLS handshake"):
        await metadata_via(kafka39_sasl, configs)


async def test_mechanism_not_enabled_names_what_the_broker_offers(
    kafka39_sasl: Broker, pki: Pki, tmp_path: pytest.TempPathFactory
) -> None:
    configs = settings(
        pki,
        **{
            "upstream.sasl.mechanism": "OAUTHBEARER",
            "upstream.sasl.oauthbearer.token.command": "echo some-token",
        },
    )
    with pytest.raises(UpstreamError, match=r"OAUTHBEARER is not enabled .*SCRAM-SHA-512"):
        await metadata_via(kafka39_sasl, configs)


def test_sasl_configs_without_sasl_protocol_are_an_error() -> None:
    with pytest.raises(ConfigError, match=r"upstream\.sasl\.username"):
        upstream_security({"upstream.sasl.username": "x"})
