"""Security settings of the proxy, from Kafka-named configs: TLS on the listeners, and TLS and
SASL on the proxy's own connections to the upstream cluster.

Listeners (Kafka's broker names): the security protocol comes with ``--listen``
(``SSL://host:port``; PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL), and for SSL and SASL_SSL

* ``ssl.keystore.type`` — PEM (the default) or PKCS12; ``ssl.keystore.location`` — one PEM file
  holding the private key and the certificate chain (or ``ssl.keystore.certificate.chain.location``
  and ``ssl.keystore.key.location``, two files), or a PKCS12 file; ``ssl.key.password`` — for an
  encrypted PEM key; ``ssl.keystore.password`` — opens a PKCS12 keystore;
* ``ssl.truststore.type`` — PEM or PKCS12; ``ssl.truststore.location`` — the CAs client
  certificates are checked against; ``ssl.truststore.password`` — of a PKCS12 truststore, if any;
* ``ssl.client.auth`` — ``none`` (default), ``requested``, ``required``;
* ``ssl.enabled.protocols`` — default ``TLSv1.2,TLSv1.3``; ``ssl.cipher.suites`` — OpenSSL names.

Upstream (Kafka's client names under the prefix ``upstream.``): ``upstream.security.protocol``,
``upstream.ssl.truststore.location``, ``upstream.ssl.keystore.location`` (the proxy's own client
certificate; never presented for a client's relayed connection), the same store types and
passwords under the prefix,
``upstream.ssl.endpoint.identification.algorithm`` (``https``, the default, checks the host name;
empty does not), ``upstream.ssl.enabled.protocols``, ``upstream.sasl.mechanism`` (PLAIN,
SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER), ``upstream.sasl.username``,
``upstream.sasl.password``, ``upstream.sasl.oauthbearer.token.file``,
``upstream.sasl.oauthbearer.token.command``.

Secrets are never taken from the command line: a secret config's value is either in a config
file or a reference in the syntax of Kafka's config providers (KIP-297, KIP-887):
``${env:NAME}``, ``${file:PATH}`` (the whole file) or ``${file:PATH:KEY}`` (a key of a properties
file). Secret values never appear in logs or in ``repr``.

PKCS12 stores are read with the ``cryptography`` library; Python's ``ssl`` loads a key only from
a file, so a PKCS12 key is handed to it through a private temporary file, encrypted there with a
random one-time password and removed at once. JKS stores are refused with the ``keytool``
command that converts them (no well-kept Python library reads JKS).
"""

from __future__ import annotations

import os
import re
import secrets
import ssl
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from model import ConfigError
from proxy.sasl import SaslSettings, TokenSource, token_expiry

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER")
UPSTREAM_PREFIX = "upstream."

LISTENER_KEYS = {
    "ssl.keystore.type",
    "ssl.keystore.location",
    "ssl.keystore.certificate.chain.location",
    "ssl.keystore.key.location",
    "ssl.key.password",
    "ssl.keystore.password",
    "ssl.truststore.type",
    "ssl.truststore.location",
    "ssl.truststore.password",
    "ssl.client.auth",
    "ssl.enabled.protocols",
    "ssl.cipher.suites",
}
UPSTREAM_KEYS = {
    UPSTREAM_PREFIX + key
    for key in (
        "security.protocol",
        "ssl.keystore.type",
        "ssl.keystore.location",
        "ssl.key.password",
        "ssl.keystore.password",
        "ssl.truststore.type",
        "ssl.truststore.location",
        "ssl.truststore.password",
        "ssl.endpoint.identification.algorithm",
        "ssl.enabled.protocols",
        "ssl.cipher.suites",
        "sasl.mechanism",
        "sasl.username",
        "sasl.password",
        "sasl.oauthbearer.token.file",
        "sasl.oauthbearer.token.command",
    )
}
SECURITY_KEYS = LISTENER_KEYS | UPSTREAM_KEYS
# Never accepted as a literal on the command line, never logged.
SECRET_KEYS = {
    prefix + key
    for prefix in ("", UPSTREAM_PREFIX)
    for key in ("ssl.key.password", "ssl.keystore.password", "ssl.truststore.password")
} | {"upstream.sasl.password"}
STORE_TYPES = ("PEM", "PKCS12")

_REFERENCE = re.compile(r"^\$\{(env|file):(.+)\}$")
_TLS_VERSIONS = {
    "TLSv1.2": ssl.TLSVersion.TLSv1_2,
    "TLSv1.3": ssl.TLSVersion.TLSv1_3,
}


def is_reference(value: str) -> bool:
    return _REFERENCE.match(value.strip()) is not None


def check_command_line(configs: Mapping[str, str]) -> None:
    """Refuse secrets written out on the command line (they would show in ``ps`` and in shell
    history): they belong in a config file or behind ``${env:...}``/``${file:...}``."""
    for key, value in configs.items():
        if key in SECRET_KEYS and not is_reference(value):
            raise ConfigError(
                f"{key} must not be given on the command line: put it in --config-file, or "
                f"write {key}=${{env:NAME}} or {key}=${{file:PATH}}"
            )


def resolve(key: str, value: str) -> str:
    """The value of a config, with a ``${env:...}``/``${file:...}`` reference looked up."""
    match = _REFERENCE.match(value.strip())
    if match is None:
        return value
    provider, target = match.groups()
    if provider == "env":
        if target not in os.environ:
            raise ConfigError(f"{key}: environment variable {target} is not set")
        return os.environ[target]
    path, sub = Path(target), None
    if not path.is_file() and ":" in target:
        head, _, sub = target.rpartition(":")
        path = Path(head)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{key}: cannot read {path}: {e.strerror}") from None
    if sub is None:
        return text.strip()
    for line in text.splitlines():
        name, sep, found = line.strip().partition("=")
        if sep and name.strip() == sub:
            return found.strip()
    raise ConfigError(f"{key}: {path} has no key {sub!r}")


def _protocol(key: str, value: str) -> str:
    protocol = value.strip().upper()
    if protocol not in PROTOCOLS:
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(PROTOCOLS)}")
    return protocol


def _file(key: str, value: str) -> str:
    if not Path(value).is_file():
        raise ConfigError(f"{key}: {value}: no such file")
    return value


def _store_type(configs: Mapping[str, str], prefix: str, store: str) -> str:
    key = f"{prefix}ssl.{store}.type"
    kind = configs.get(key, "PEM").strip().upper()
    if kind == "JKS":
        raise ConfigError(
            f"{key}=JKS: JKS stores are not supported; convert the store to PKCS12 with "
            "keytool -importkeystore -srckeystore STORE.jks -destkeystore STORE.p12 "
            "-deststoretype PKCS12, and set "
            f"{key}=PKCS12"
        )
    if kind not in STORE_TYPES:
        raise ConfigError(f"{key}={kind}: the store types supported are {', '.join(STORE_TYPES)}")
    password = f"{prefix}ssl.{store}.password"
    if kind == "PEM" and password in configs:
        hint = f" (a PEM key's password is {prefix}ssl.key.password)" if store == "keystore" else ""
        raise ConfigError(f"{password} is for PKCS12 stores, and {key} is PEM{hint}")
    return kind


def _secret(configs: Mapping[str, str], key: str) -> str | None:
    return resolve(key, configs[key]) if key in configs else None


def _read_pkcs12(
    configs: Mapping[str, str], prefix: str, store: str
) -> pkcs12.PKCS12KeyAndCertificates:
    """The PKCS12 store of ``prefix``ssl.``store``.location, opened with its password."""
    location_key = f"{prefix}ssl.{store}.location"
    location = _file(location_key, configs[location_key])
    password = _secret(configs, f"{prefix}ssl.{store}.password")
    try:
        data = Path(location).read_bytes()
        return pkcs12.load_pkcs12(data, None if password is None else password.encode())
    except OSError as e:
        raise ConfigError(f"{location_key}: cannot read {location}: {e.strerror}") from None
    except ValueError:
        raise ConfigError(
            f"{location_key}: {location} is not a PKCS12 store, or "
            f"{prefix}ssl.{store}.password is wrong or missing"
        ) from None


def _trusted_pem(configs: Mapping[str, str], prefix: str) -> str | None:
    """The CAs of a PKCS12 truststore as PEM text; None for a PEM truststore (or none)."""
    if f"{prefix}ssl.truststore.location" not in configs:
        return None
    if _store_type(configs, prefix, "truststore") != "PKCS12":
        return None
    store = _read_pkcs12(configs, prefix, "truststore")
    certs = [c.certificate for c in store.additional_certs]
    if store.cert is not None:
        certs.insert(0, store.cert.certificate)
    if not certs:
        raise ConfigError(f"{prefix}ssl.truststore.location: the PKCS12 store holds no certificate")
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)


def _load_truststore(context: ssl.SSLContext, configs: Mapping[str, str], prefix: str) -> bool:
    """Trust the CAs of ``prefix``ssl.truststore.*; False when no truststore is set."""
    key = f"{prefix}ssl.truststore.location"
    if key not in configs:
        return False
    pem = _trusted_pem(configs, prefix)
    try:
        if pem is None:
            context.load_verify_locations(_file(key, configs[key]))
        else:
            context.load_verify_locations(cadata=pem)
    except ssl.SSLError as e:
        raise ConfigError(f"{key}: cannot load the certificates: {e}") from None
    return True


def _load_pkcs12_chain(context: ssl.SSLContext, configs: Mapping[str, str], prefix: str) -> None:
    for key in ("certificate.chain.location", "key.location"):
        if f"{prefix}ssl.keystore.{key}" in configs:
            raise ConfigError(
                f"{prefix}ssl.keystore.{key} is for PEM keystores; a PKCS12 keystore is one file, "
                f"{prefix}ssl.keystore.location"
            )
    store_password = _secret(configs, f"{prefix}ssl.keystore.password")
    key_password = _secret(configs, f"{prefix}ssl.key.password")
    if key_password is not None and key_password != store_password:
        raise ConfigError(
            f"{prefix}ssl.key.password differs from {prefix}ssl.keystore.password: a PKCS12 "
            "keystore whose key has its own password is not supported"
        )
    store = _read_pkcs12(configs, prefix, "keystore")
    if store.key is None or store.cert is None:
        raise ConfigError(
            f"{prefix}ssl.keystore.location: the PKCS12 store holds no private key and certificate"
        )
    one_time = secrets.token_urlsafe(32)
    pem = store.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(one_time.encode()),
    ) + b"".join(
        c.certificate.public_bytes(serialization.Encoding.PEM)
        for c in (store.cert, *store.additional_certs)
    )
    with tempfile.TemporaryDirectory(prefix="sharegroup-keystore-") as private:
        path = Path(private) / "keystore.pem"
        path.touch(mode=0o600)
        path.write_bytes(pem)
        try:
            context.load_cert_chain(path, password=one_time)
        except ssl.SSLError as e:
            raise ConfigError(f"{prefix}ssl.keystore: cannot load the key and chain: {e}") from None


def _protocol_range(context: ssl.SSLContext, key: str, value: str) -> None:
    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [n for n in names if n not in _TLS_VERSIONS]
    if unknown or not names:
        raise ConfigError(f"{key}: {value!r}: supported protocols are {', '.join(_TLS_VERSIONS)}")
    versions = sorted(_TLS_VERSIONS[n] for n in names)
    context.minimum_version = versions[0]
    context.maximum_version = versions[-1]


def _load_chain(context: ssl.SSLContext, configs: Mapping[str, str], prefix: str) -> bool:
    """Load the certificate chain and key of ``prefix``ssl.keystore.*; False when none set."""
    if _store_type(configs, prefix, "keystore") == "PKCS12":
        if prefix + "ssl.keystore.location" not in configs:
            raise ConfigError(
                f"{prefix}ssl.keystore.type=PKCS12 needs {prefix}ssl.keystore.location"
            )
        _load_pkcs12_chain(context, configs, prefix)
        return True
    location = configs.get(prefix + "ssl.keystore.location")
    chain = configs.get(prefix + "ssl.keystore.certificate.chain.location")
    key_file = configs.get(prefix + "ssl.keystore.key.location")
    password_key = prefix + "ssl.key.password"
    password = resolve(password_key, configs[password_key]) if password_key in configs else None
    if location:
        cert, key = _file(prefix + "ssl.keystore.location", location), None
    elif chain and key_file:
        cert = _file(prefix + "ssl.keystore.certificate.chain.location", chain)
        key = _file(prefix + "ssl.keystore.key.location", key_file)
    elif chain or key_file:
        raise ConfigError(
            f"{prefix}ssl.keystore.certificate.chain.location and "
            f"{prefix}ssl.keystore.key.location go together"
        )
    else:
        return False
    try:
        context.load_cert_chain(cert, key, password=password)
    except (ssl.SSLError, OSError) as e:
        raise ConfigError(f"{prefix}ssl.keystore: cannot load the key and chain: {e}") from None
    return True


@dataclass(frozen=True)
class ListenerSecurity:
    """How clients connect to the proxy's listeners."""

    protocol: str = "PLAINTEXT"
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False)

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def sasl(self) -> bool:
        return self.protocol in ("SASL_PLAINTEXT", "SASL_SSL")


def listener_security(protocol: str, configs: Mapping[str, str]) -> ListenerSecurity:
    protocol = _protocol("--listen", protocol)
    if protocol not in ("SSL", "SASL_SSL"):
        used = sorted(k for k in LISTENER_KEYS if k in configs)
        if used:
            raise ConfigError(f"{', '.join(used)}: set, but the listener is {protocol}")
        return ListenerSecurity(protocol)
    _store_type(configs, "", "truststore")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _protocol_range(
        context, "ssl.enabled.protocols", configs.get("ssl.enabled.protocols", "TLSv1.2,TLSv1.3")
    )
    if "ssl.cipher.suites" in configs:
        try:
            context.set_ciphers(configs["ssl.cipher.suites"].replace(" ", ""))
        except ssl.SSLError:
            raise ConfigError(
                f"ssl.cipher.suites: no usable cipher in {configs['ssl.cipher.suites']!r}"
            ) from None
    if not _load_chain(context, configs, ""):
        raise ConfigError(
            f"a {protocol} listener needs ssl.keystore.location (PEM key and chain, or PKCS12)"
        )
    auth = configs.get("ssl.client.auth", "none").strip().lower()
    modes = {"none": ssl.CERT_NONE, "requested": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}
    if auth not in modes:
        raise ConfigError(f"ssl.client.auth: {auth!r} is not none, requested or required")
    if not _load_truststore(context, configs, "") and auth != "none":
        raise ConfigError(f"ssl.client.auth={auth} needs ssl.truststore.location")
    context.verify_mode = modes[auth]
    return ListenerSecurity(protocol, context)


@dataclass(frozen=True)
class UpstreamSecurity:
    """How the proxy connects to the upstream brokers.

    ``ssl_context`` is for the proxy's own connections and carries its own client certificate
    when one is configured; ``relay_ssl_context`` is for the connections that relay a client's
    requests and never does (a client must not borrow the proxy's identity).
    """

    protocol: str = "PLAINTEXT"
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False)
    relay_ssl_context: ssl.SSLContext | None = field(default=None, repr=False)
    sasl: SaslSettings | None = None
    # librdkafka's names for the same settings (the state store's producer and admin client).
    librdkafka: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.protocol in ("SASL_PLAINTEXT", "SASL_SSL")


def upstream_security(configs: Mapping[str, str]) -> UpstreamSecurity:
    p = UPSTREAM_PREFIX
    protocol = _protocol(p + "security.protocol", configs.get(p + "security.protocol", "PLAINTEXT"))
    rdkafka: dict[str, Any] = {"security.protocol": protocol.lower()}
    own = relay = None
    if protocol in ("SSL", "SASL_SSL"):
        _store_type(configs, p, "truststore")
        own = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        relay = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        enabled = configs.get(p + "ssl.enabled.protocols", "TLSv1.2,TLSv1.3")
        check_host = configs.get(p + "ssl.endpoint.identification.algorithm", "https").strip()
        if check_host.lower() not in ("https", ""):
            raise ConfigError(
                f"{p}ssl.endpoint.identification.algorithm: {check_host!r} is not https or empty"
            )
        for context in (own, relay):
            _protocol_range(context, p + "ssl.enabled.protocols", enabled)
            context.check_hostname = bool(check_host)
            if not _load_truststore(context, configs, p):
                context.load_default_certs()
            if p + "ssl.cipher.suites" in configs:
                context.set_ciphers(configs[p + "ssl.cipher.suites"].replace(" ", ""))
        trusted_pem = _trusted_pem(configs, p)
        if trusted_pem is not None:
            rdkafka["ssl.ca.pem"] = trusted_pem  # librdkafka reads no PKCS12 truststore
        elif p + "ssl.truststore.location" in configs:
            rdkafka["ssl.ca.location"] = configs[p + "ssl.truststore.location"]
        rdkafka["ssl.endpoint.identification.algorithm"] = "https" if check_host else "none"
        if _load_chain(own, configs, p):
            location = configs[p + "ssl.keystore.location"]
            if _store_type(configs, p, "keystore") == "PKCS12":
                rdkafka["ssl.keystore.location"] = location
                password = _secret(configs, p + "ssl.keystore.password")
                if password is not None:
                    rdkafka["ssl.keystore.password"] = password
            else:
                rdkafka["ssl.certificate.location"] = location
                rdkafka["ssl.key.location"] = location
                password = _secret(configs, p + "ssl.key.password")
                if password is not None:
                    rdkafka["ssl.key.password"] = password
    else:
        used = sorted(k for k in configs if k.startswith(p + "ssl."))
        if used:
            raise ConfigError(f"{', '.join(used)}: set, but {p}security.protocol is {protocol}")
    sasl = None
    if protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
        sasl = _sasl_settings(configs, rdkafka)
    else:
        used = sorted(k for k in configs if k.startswith(p + "sasl."))
        if used:
            raise ConfigError(f"{', '.join(used)}: set, but {p}security.protocol is {protocol}")
    return UpstreamSecurity(protocol, own, relay, sasl, rdkafka)


def _sasl_settings(configs: Mapping[str, str], rdkafka: dict[str, Any]) -> SaslSettings:
    p = UPSTREAM_PREFIX
    mechanism = configs.get(p + "sasl.mechanism", "GSSAPI").strip().upper()
    if mechanism not in MECHANISMS:
        raise ConfigError(
            f"{p}sasl.mechanism: {mechanism!r} is not supported ({', '.join(MECHANISMS)})"
        )
    rdkafka["sasl.mechanism"] = mechanism
    if mechanism == "OAUTHBEARER":
        file = configs.get(p + "sasl.oauthbearer.token.file")
        command = configs.get(p + "sasl.oauthbearer.token.command")
        if (file is None) == (command is None):
            raise ConfigError(
                f"OAUTHBEARER needs one of {p}sasl.oauthbearer.token.file and "
                f"{p}sasl.oauthbearer.token.command"
            )
        tokens = TokenSource(file=file, command=command)

        def oauth_cb(_config: str) -> tuple[str, float]:
            token = tokens.token()
            expiry = token_expiry(token)
            return token, expiry if expiry is not None else time.time() + 3600

        rdkafka["oauth_cb"] = oauth_cb
        return SaslSettings(mechanism, tokens=tokens)
    missing = [k for k in ("sasl.username", "sasl.password") if p + k not in configs]
    if missing:
        raise ConfigError(f"{mechanism} needs {' and '.join(p + k for k in missing)}")
    username = configs[p + "sasl.username"]
    password = resolve(p + "sasl.password", configs[p + "sasl.password"])
    rdkafka["sasl.username"] = username
    rdkafka["sasl.password"] = password
    return SaslSettings(mechanism, username, password)


def security_settings(
    listen_protocol: str, configs: Mapping[str, str]
) -> tuple[ListenerSecurity, UpstreamSecurity]:
    """Both sides, checked against each other: a client authenticates itself to the upstream
    through the proxy, so a SASL listener needs a SASL upstream and the other way round."""
    listener = listener_security(listen_protocol, configs)
    upstream = upstream_security(configs)
    if listener.sasl != upstream.uses_sasl:
        raise ConfigError(
            f"listener {listener.protocol} with {UPSTREAM_PREFIX}security.protocol="
            f"{upstream.protocol}: clients authenticate to the upstream through the proxy, so "
            "use SASL on both sides or on neither"
        )
    return listener, upstream
