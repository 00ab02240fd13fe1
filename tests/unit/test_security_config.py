"""Security configs, secrets, the SASL client exchanges and the client-principal tracker."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import scramp

from model import ConfigError
from proxy.client_auth import ANONYMOUS, AuthRefused, ClientAuth, bearer_subject
from proxy.sasl import OAuthBearer, Plain, Scram, TokenSource, token_expiry, user_of
from proxy.security import (
    check_command_line,
    listener_security,
    resolve,
    security_settings,
    upstream_security,
)
from sharegroup.pki import Pki, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def jwt(claims: dict[str, object]) -> str:
    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none'})}.{part(claims)}.sig"


def test_secrets_are_refused_on_the_command_line_unless_referenced() -> None:
    with pytest.raises(ConfigError, match="must not be given on the command line"):
        check_command_line({"upstream.sasl.password": "hunter2"})
    check_command_line({"upstream.sasl.password": "${env:PW}", "ssl.key.password": "${file:/x}"})
    check_command_line({"upstream.sasl.username": "proxy"})


def test_references_are_resolved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SG_PW", "from-env")
    assert resolve("k", "${env:SG_PW}") == "from-env"
    whole = tmp_path / "secret"
    whole.write_text("from-file\n")
    assert resolve("k", f"${{file:{whole}}}") == "from-file"
    props = tmp_path / "secrets.properties"
    props.write_text("a=1\nproxy.password = from-key\n")
    assert resolve("k", f"${{file:{props}:proxy.password}}") == "from-key"
    assert resolve("k", "plain") == "plain"
    with pytest.raises(ConfigError, match="NOPE is not set"):
        resolve("k", "${env:NOPE}")
    with pytest.raises(ConfigError, match="has no key 'missing'"):
        resolve("k", f"${{file:{props}:missing}}")


def test_listener_configs(pki: Pki) -> None:
    assert listener_security("PLAINTEXT", {}).ssl_context is None
    with pytest.raises(ConfigError, match=r"needs ssl\.keystore\.location"):
        listener_security("SSL", {})
    with pytest.raises(ConfigError, match="set, but the listener is PLAINTEXT"):
        listener_security("PLAINTEXT", {"ssl.keystore.location": str(pki.server)})
    with pytest.raises(ConfigError, match="only PEM"):
        listener_security("SSL", {"ssl.keystore.type": "JKS"})
    with pytest.raises(ConfigError, match=r"needs ssl\.truststore\.location"):
        listener_security(
            "SSL", {"ssl.keystore.location": str(pki.server), "ssl.client.auth": "required"}
        )
    with pytest.raises(ConfigError, match="supported protocols"):
        listener_security(
            "SSL", {"ssl.keystore.location": str(pki.server), "ssl.enabled.protocols": "SSLv3"}
        )
    split = {
        "ssl.keystore.certificate.chain.location": str(pki.server_cert),
        "ssl.keystore.key.location": str(pki.server_key),
    }
    assert listener_security("SASL_SSL", split).tls
    with pytest.raises(ConfigError, match="is not one of"):
        listener_security("TLS", {})


def test_sasl_on_one_side_only_is_refused(pki: Pki) -> None:
    upstream = {
        "upstream.security.protocol": "SASL_PLAINTEXT",
        "upstream.sasl.mechanism": "PLAIN",
        "upstream.sasl.username": "p",
        "upstream.sasl.password": "x",
    }
    with pytest.raises(ConfigError, match="SASL on both sides or on neither"):
        security_settings("PLAINTEXT", upstream)
    listener, up = security_settings("SASL_PLAINTEXT", upstream)
    assert listener.sasl and up.sasl is not None and up.sasl.username == "p"
    assert "x" not in repr(up)  # no secret in reprs (and so in logs)


def test_upstream_sasl_requirements() -> None:
    base = {"upstream.security.protocol": "SASL_SSL"}
    with pytest.raises(ConfigError, match="is not supported"):
        upstream_security({**base, "upstream.sasl.mechanism": "GSSAPI"})
    with pytest.raises(ConfigError, match=r"needs upstream\.sasl\.username"):
        upstream_security(
            {**base, "upstream.sasl.mechanism": "PLAIN", "upstream.sasl.password": "x"}
        )
    with pytest.raises(ConfigError, match="OAUTHBEARER needs one of"):
        upstream_security({**base, "upstream.sasl.mechanism": "OAUTHBEARER"})


def test_scram_client_against_scramps_server() -> None:
    for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
        server_mech = scramp.ScramMechanism(mechanism)
        info = server_mech.make_auth_info("s3cret")
        server = server_mech.make_server(lambda _u, info=info: info)
        client = Scram(mechanism, "alice", "s3cret")
        first = client.first()
        assert user_of(mechanism, first) == "alice"
        server.set_client_first(first.decode())
        final = client.step(server.get_server_first().encode())
        assert final is not None
        server.set_client_final(final.decode())
        assert client.step(server.get_server_final().encode()) is None


def test_plain_and_oauthbearer_messages() -> None:
    assert Plain("alice", "pw").first() == b"\0alice\0pw"
    assert user_of("PLAIN", b"\0alice\0pw") == "alice"
    token = jwt({"sub": "svc", "exp": 2_000_000_000})
    message = OAuthBearer(token).first()
    assert message == b"n,,\x01auth=Bearer " + token.encode() + b"\x01\x01"
    assert bearer_subject(message) == "svc"


def test_token_is_read_again_after_80_percent_of_its_lifetime(tmp_path: Path) -> None:
    now = [1000.0]
    path = tmp_path / "token"
    path.write_text(jwt({"sub": "a", "exp": 1100}))
    source = TokenSource(file=str(path), clock=lambda: now[0])
    first = source.token()
    assert token_expiry(first) == 1100
    path.write_text(jwt({"sub": "b", "exp": 1300}))
    now[0] = 1079.0
    assert source.token() == first  # within 80% of 100 s
    now[0] = 1081.0
    assert source.token() != first


def answer(error: int = 0, auth: bytes = b"") -> SimpleNamespace:
    return SimpleNamespace(error_code=error, auth_bytes=auth)


def test_principal_only_after_the_upstream_accepted_the_last_round() -> None:
    auth = ClientAuth(sasl_listener=True)
    with pytest.raises(AuthRefused):
        auth.gate(3)  # Metadata before authentication
    auth.gate(18)
    assert auth.handshake(1, SimpleNamespace(mechanism="SCRAM-SHA-512")) == 0
    auth.authenticate(SimpleNamespace(auth_bytes=b"n,,n=alice,r=abc"))
    auth.answer(answer(auth=b"r=abcdef,s=..,i=4096"))
    assert not auth.authenticated  # one round of two
    auth.authenticate(SimpleNamespace(auth_bytes=b"c=biws,r=abcdef,p=..."))
    auth.answer(answer(auth=b"v=..."))
    assert auth.principal == "User:alice"
    auth.gate(3)


def test_failed_authentication_names_no_principal() -> None:
    auth = ClientAuth(sasl_listener=True)
    auth.handshake(1, SimpleNamespace(mechanism="PLAIN"))
    auth.authenticate(SimpleNamespace(auth_bytes=b"\0alice\0wrong"))
    auth.answer(answer(error=58))
    assert auth.principal is None


def test_reauthentication_as_someone_else_is_refused() -> None:
    auth = ClientAuth(sasl_listener=True)
    for user, ok in (("alice", True), ("bob", False)):
        auth.handshake(1, SimpleNamespace(mechanism="PLAIN"))
        auth.authenticate(SimpleNamespace(auth_bytes=b"\0" + user.encode() + b"\0pw"))
        if ok:
            auth.answer(answer())
        else:
            with pytest.raises(AuthRefused, match="re-authenticated as User:bob"):
                auth.answer(answer())
    assert auth.principal == "User:alice"


def test_listener_without_sasl_is_anonymous_and_refuses_sasl() -> None:
    auth = ClientAuth(sasl_listener=False)
    assert auth.principal == ANONYMOUS
    with pytest.raises(AuthRefused):
        auth.handshake(1, SimpleNamespace(mechanism="PLAIN"))


def test_unsupported_mechanism_and_v0_handshake() -> None:
    auth = ClientAuth(sasl_listener=True)
    assert auth.handshake(1, SimpleNamespace(mechanism="GSSAPI")) == 33
    with pytest.raises(AuthRefused, match="v0"):
        auth.handshake(0, SimpleNamespace(mechanism="PLAIN"))
