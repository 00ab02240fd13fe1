"""Security settings of the proxy, from Kafka-named configs: TLS on the listeners, and TLS and
SASL on the proxy's own connections to the upstream cluster.

Listeners (Kafka's broker names): the security protocol comes with ``--listen``
(``SSL://host:port``; PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL), and for SSL and SASL_SSL

* ``ssl.keystore.type`` — PEM only; ``ssl.keystore.location`` — one PEM file holding the private
  key and the certificate chain (or ``ssl.keystore.certificate.chain.location`` and
  ``ssl.keystore.key.location``, two files); ``ssl.key.password`` — for an encrypted key;
* ``ssl.truststore.type`` — PEM; ``ssl.truststore.location`` — the CAs client certificates are
  checked against;
* ``ssl.client.auth`` — ``none`` (default), ``requested``, ``required``;
* ``ssl.enabled.protocols`` — default ``TLSv1.2,TLSv1.3``; ``ssl.cipher.suites`` — OpenSSL names.

Upstream (Kafka's client names under the prefix ``upstream.``): ``upstream.security.protocol``,
``upstream.ssl.truststore.location``, ``upstream.ssl.keystore.location`` (the proxy's own client
certificate; never presented for a client's relayed connection),
``upstream.ssl.endpoint.identification.algorithm`` (``https``, the default, checks the host name;
empty does not), ``upstream.ssl.enabled.protocols``, ``upstream.sasl.mechanism`` (PLAIN,
SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER), ``upstream.sasl.username``,
``upstream.sasl.password``, ``upstream.sasl.oauthbearer.token.file``,
``upstream.sasl.oauthbearer.token.command``.

Secrets are never taken from the command line: a secret config's value is either in a config
file or a reference in the syntax of Kafka's config providers (KIP-297, KIP-887):
``${env:NAME}``, ``${file:PATH}`` (the whole file) or ``${file:PATH:KEY}`` (a key of a properties
file). Secret values never appear in logs or in ``repr``.
"""

from __future__ import annotations

import os
import re
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    "ssl.truststore.type",
    "ssl.truststore.location",
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
        "ssl.truststore.type",
        "ssl.truststore.location",
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
SECRET_KEYS = {"ssl.key.password", "upstream.ssl.key.password", "upstream.sasl.password"}

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


def _pem_only(configs: Mapping[str, str], prefix: str) -> None:
    for store in ("keystore", "truststore"):
        key = f"{prefix}ssl.{store}.type"
        kind = configs.get(key, "PEM").strip().upper()
        if kind != "PEM":
            raise ConfigError(f"{key}={kind}: only PEM stores are supported")


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
    _pem_only(configs, "")
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
        raise ConfigError(f"a {protocol} listener needs ssl.keystore.location (PEM key and chain)")
    auth = configs.get("ssl.client.auth", "none").strip().lower()
    modes = {"none": ssl.CERT_NONE, "requested": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}
    if auth not in modes:
        raise ConfigError(f"ssl.client.auth: {auth!r} is not none, requested or required")
    if "ssl.truststore.location" in configs:
        context.load_verify_locations(
            _file("ssl.truststore.location", configs["ssl.truststore.location"])
        )
    elif auth != "none":
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
        _pem_only(configs, p)
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
            if p + "ssl.truststore.location" in configs:
                context.load_verify_locations(
                    _file(p + "ssl.truststore.location", configs[p + "ssl.truststore.location"])
                )
            else:
                context.load_default_certs()
            if p + "ssl.cipher.suites" in configs:
                context.set_ciphers(configs[p + "ssl.cipher.suites"].replace(" ", ""))
        if p + "ssl.truststore.location" in configs:
            rdkafka["ssl.ca.location"] = configs[p + "ssl.truststore.location"]
        rdkafka["ssl.endpoint.identification.algorithm"] = "https" if check_host else "none"
        if _load_chain(own, configs, p):
            rdkafka["ssl.certificate.location"] = configs[p + "ssl.keystore.location"]
            rdkafka["ssl.key.location"] = configs[p + "ssl.keystore.location"]
            if p + "ssl.key.password" in configs:
                rdkafka["ssl.key.password"] = resolve(
                    p + "ssl.key.password", configs[p + "ssl.key.password"]
                )
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
