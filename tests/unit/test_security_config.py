"""Security configs, secrets, the SASL client exchanges and the client-principal tracker."""

from __future__ import annotations

import base64
import json
import socket
import ssl
import subprocess
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import scramp
import trustme

from model import ConfigError
from proxy.client_auth import ANONYMOUS, AuthRefused, ClientAuth, bearer_subject
from proxy.sasl import OAuthBearer, Plain, Scram, TokenSource, token_expiry, user_of
from proxy.security import (
    UpstreamSecurity,
    check_command_line,
    listener_security,
    resolve,
    security_settings,
    upstream_security,
)
from sharegroup.pki import P12_PASSWORD, Pki, make_pki, p12_keystore


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
    with pytest.raises(ConfigError, match="keytool -importkeystore"):
        listener_security("SSL", {"ssl.keystore.type": "JKS"})
    with pytest.raises(ConfigError, match="supported are PEM, PKCS12"):
        listener_security("SSL", {"ssl.truststore.type": "BCFKS"})
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


def handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> Any:
    """A TLS handshake between the two contexts over a socket pair: the client certificate
    the server saw."""
    a, b = socket.socketpair()
    a.settimeout(10)
    b.settimeout(10)
    seen: dict[str, Any] = {}

    def serve() -> None:
        try:
            with server.wrap_socket(a, server_side=True) as s:
                seen["peer"] = s.getpeercert()
                s.sendall(b"ok")
        except (ssl.SSLError, OSError) as e:
            seen["error"] = e

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with client.wrap_socket(b, server_hostname="127.0.0.1") as c:
            assert c.recv(2) == b"ok"
    finally:
        thread.join(10)
    assert "error" not in seen, seen.get("error")
    return seen["peer"]


def pkcs12_sides(pki: Pki, **listener_extra: str) -> tuple[ssl.SSLContext, UpstreamSecurity]:
    listener = listener_security(
        "SSL",
        {
            "ssl.keystore.type": "PKCS12",
            "ssl.keystore.location": str(pki.server_p12),
            "ssl.keystore.password": P12_PASSWORD,
            "ssl.truststore.type": "PKCS12",
            "ssl.truststore.location": str(pki.ca_p12),
            "ssl.truststore.password": P12_PASSWORD,
            "ssl.client.auth": "required",
            **listener_extra,
        },
    )
    upstream = upstream_security(
        {
            "upstream.security.protocol": "SSL",
            "upstream.ssl.truststore.type": "PKCS12",
            "upstream.ssl.truststore.location": str(pki.ca_p12),
            "upstream.ssl.truststore.password": P12_PASSWORD,
            "upstream.ssl.keystore.type": "PKCS12",
            "upstream.ssl.keystore.location": str(pki.client_p12),
            "upstream.ssl.keystore.password": P12_PASSWORD,
        }
    )
    assert listener.ssl_context is not None and upstream.ssl_context is not None
    return listener.ssl_context, upstream


def test_pkcs12_keystores_and_truststores_on_both_sides(pki: Pki) -> None:
    """A listener and an upstream connection each with a PKCS12 keystore and truststore, made
    at test time: the handshake passes both ways (the server proves itself with the PKCS12
    key, the client is checked against the PKCS12 CA)."""
    server, upstream = pkcs12_sides(pki)
    assert upstream.ssl_context is not None
    peer = handshake(server, upstream.ssl_context)
    assert ("DNS", "client.example") in peer["subjectAltName"]
    # librdkafka (the state topic's clients) reads the PKCS12 keystore itself, and the CAs as
    # PEM text, since it reads no PKCS12 truststore.
    rdkafka = upstream.librdkafka
    assert rdkafka["ssl.keystore.location"] == str(pki.client_p12)
    assert rdkafka["ssl.keystore.password"] == P12_PASSWORD
    assert rdkafka["ssl.ca.pem"].startswith("-----BEGIN CERTIFICATE-----")
    assert "ssl.ca.location" not in rdkafka
    assert P12_PASSWORD not in repr(upstream)


def test_a_pkcs12_keystore_presents_its_whole_chain(tmp_path: Path) -> None:
    """A server certificate signed by an intermediate CA: the client trusts only the root, so
    the handshake passes only if the intermediate from the PKCS12 store is sent too."""
    root = trustme.CA()
    intermediate = root.create_child_ca()
    store = tmp_path / "chained.p12"
    store.write_bytes(p12_keystore(intermediate.issue_cert("127.0.0.1")))
    listener = listener_security(
        "SSL",
        {
            "ssl.keystore.type": "PKCS12",
            "ssl.keystore.location": str(store),
            "ssl.keystore.password": P12_PASSWORD,
        },
    )
    assert listener.ssl_context is not None
    client = ssl.create_default_context()
    root.configure_trust(client)
    assert handshake(listener.ssl_context, client) is None  # no client certificate asked for


def test_pkcs12_stores_refused_with_the_reason(pki: Pki) -> None:
    base = {
        "ssl.keystore.type": "PKCS12",
        "ssl.keystore.location": str(pki.server_p12),
        "ssl.keystore.password": P12_PASSWORD,
    }
    with pytest.raises(ConfigError, match=r"ssl\.keystore\.password is wrong or missing"):
        listener_security("SSL", {**base, "ssl.keystore.password": "wrong"})
    with pytest.raises(ConfigError, match=r"ssl\.keystore\.password is wrong or missing"):
        listener_security("SSL", {**base, "ssl.keystore.location": str(pki.server)})  # PEM
    with pytest.raises(ConfigError, match="holds no private key"):
        listener_security("SSL", {**base, "ssl.keystore.location": str(pki.ca_p12)})
    with pytest.raises(ConfigError, match="its own password is not supported"):
        listener_security("SSL", {**base, "ssl.key.password": "other"})
    with pytest.raises(ConfigError, match=r"for PKCS12 stores, and ssl\.keystore\.type is PEM"):
        listener_security(
            "SSL", {"ssl.keystore.location": str(pki.server), "ssl.keystore.password": "x"}
        )
    with pytest.raises(ConfigError, match="must not be given on the command line"):
        check_command_line({"ssl.keystore.password": P12_PASSWORD})


def test_pkcs12_stores_written_by_javas_keytool(pki: Pki, tmp_path: Path) -> None:
    """Stores as Java's keytool writes them (its own encryption and bags): a keystore converted
    from ours, and a truststore of the CA imported as a trusted certificate."""
    keystore, truststore = tmp_path / "keytool-keystore.p12", tmp_path / "keytool-truststore.p12"
    java_password = "java-secret"
    for command in (
        [
            "keytool",
            "-importkeystore",
            "-noprompt",
            "-srckeystore",
            str(pki.server_p12),
            "-srcstoretype",
            "PKCS12",
            "-srcstorepass",
            P12_PASSWORD,
            "-destkeystore",
            str(keystore),
            "-deststoretype",
            "PKCS12",
            "-deststorepass",
            java_password,
        ],
        [
            "keytool",
            "-importcert",
            "-noprompt",
            "-alias",
            "ca",
            "-file",
            str(pki.ca),
            "-keystore",
            str(truststore),
            "-storetype",
            "PKCS12",
            "-storepass",
            java_password,
        ],
    ):
        subprocess.run(command, check=True, capture_output=True, timeout=60)
    server, upstream = pkcs12_sides(
        pki,
        **{
            "ssl.keystore.location": str(keystore),
            "ssl.keystore.password": java_password,
            "ssl.truststore.location": str(truststore),
            "ssl.truststore.password": java_password,
        },
    )
    assert upstream.ssl_context is not None
    peer = handshake(server, upstream.ssl_context)
    assert ("DNS", "client.example") in peer["subjectAltName"]


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
