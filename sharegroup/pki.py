"""Certificates for the TLS tests and the TLS benchmark, made when they run by a test CA.

Needs ``trustme`` (the ``dev`` extra): only tests and benchmarks import this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

P12_PASSWORD = "store-secret"


@dataclass(frozen=True)
class Pki:
    """PEM files: the CA, a server key+chain for 127.0.0.1/localhost, a client key+chain, and a
    second CA that signed nothing the server trusts."""

    ca: Path
    server: Path  # private key and certificate chain in one file (ssl.keystore.location)
    server_cert: Path
    server_key: Path
    client: Path
    client_cert: Path
    client_key: Path
    other_ca: Path
    stranger: Path  # key+chain of a client signed by other_ca
    kafka_keystore: Path  # the server's PKCS#8 key and chain, as Kafka's PEM keystore wants
    server_p12: Path  # the server's key and chain as a PKCS12 keystore (password P12_PASSWORD)
    client_p12: Path  # the client's, likewise
    ca_p12: Path  # the CA as a PKCS12 truststore (password P12_PASSWORD)


def make_pki(directory: Path) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    ca, other = trustme.CA(key_type=trustme.KeyType.RSA), trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("client.example")
    stranger = other.issue_cert("stranger.example")

    def write(name: str, data: bytes) -> Path:
        path = directory / name
        path.write_bytes(data)
        return path

    return Pki(
        ca=write("ca.pem", ca.cert_pem.bytes()),
        server=write("server.pem", server.private_key_and_cert_chain_pem.bytes()),
        server_cert=write(
            "server-cert.pem", b"".join(blob.bytes() for blob in server.cert_chain_pems)
        ),
        server_key=write("server-key.pem", server.private_key_pem.bytes()),
        client=write("client.pem", client.private_key_and_cert_chain_pem.bytes()),
        client_cert=write(
            "client-cert.pem", b"".join(blob.bytes() for blob in client.cert_chain_pems)
        ),
        client_key=write("client-key.pem", client.private_key_pem.bytes()),
        other_ca=write("other-ca.pem", other.cert_pem.bytes()),
        stranger=write("stranger.pem", stranger.private_key_and_cert_chain_pem.bytes()),
        kafka_keystore=write(
            "kafka-keystore.pem",
            _pkcs8(server.private_key_pem.bytes())
            + b"".join(blob.bytes() for blob in server.cert_chain_pems),
        ),
        server_p12=write("server.p12", p12_keystore(server)),
        client_p12=write("client.p12", p12_keystore(client)),
        ca_p12=write(
            "ca.p12",
            pkcs12.serialize_key_and_certificates(
                None,
                None,
                None,
                [x509.load_pem_x509_certificate(ca.cert_pem.bytes())],
                serialization.BestAvailableEncryption(P12_PASSWORD.encode()),
            ),
        ),
    )


def p12_keystore(issued: trustme.LeafCert) -> bytes:
    """A key and its chain as a PKCS12 keystore, as keytool or openssl pkcs12 -export make."""
    key = serialization.load_pem_private_key(issued.private_key_pem.bytes(), password=None)
    leaf, *chain = (x509.load_pem_x509_certificate(blob.bytes()) for blob in issued.cert_chain_pems)
    assert isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)  # trustme's kinds
    return pkcs12.serialize_key_and_certificates(
        b"sharegroup",
        key,
        leaf,
        chain or None,
        serialization.BestAvailableEncryption(P12_PASSWORD.encode()),
    )


def _pkcs8(pem: bytes) -> bytes:
    key = serialization.load_pem_private_key(pem, password=None)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
