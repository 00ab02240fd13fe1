"""SASL on the client side, without I/O: the exchanges the proxy runs when it logs in to the
upstream cluster with its own credentials (SaslHandshake, then SaslAuthenticate round trips).

PLAIN (RFC 4616), SCRAM-SHA-256/512 (RFC 5802/7677, through ``scramp``: the crypto is not ours)
and OAUTHBEARER (RFC 7628's client response, as Kafka's OAuthBearerSaslClient sends it). The
bearer token comes from a file or a command, is re-read when 80% of its lifetime has passed
(Kafka's ``sasl.login.refresh.window.factor`` default) and otherwise reused.

The client's own SASL exchanges are not run here: they are relayed to the upstream over the
client's own connection (see ``proxy.connection``), and only the user name is read from them.
"""

from __future__ import annotations

import base64
import binascii
import json
import shlex
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import scramp

REFRESH_WINDOW_FACTOR = 0.8
TOKEN_COMMAND_TIMEOUT_S = 30.0


class SaslError(Exception):
    """The login failed: refused by the broker, or a token could not be had."""


@dataclass
class TokenSource:
    """Where an OAUTHBEARER token comes from: a file (read again on refresh) or a command (run
    again on refresh, the token on its standard output)."""

    file: str | None = None
    command: str | None = None
    clock: Callable[[], float] = time.time
    _token: str | None = field(default=None, repr=False)
    _refresh_at: float = 0.0

    def token(self) -> str:
        now = self.clock()
        if self._token is None or now >= self._refresh_at:
            token = self._read()
            expiry = token_expiry(token)
            if expiry is not None and expiry <= now:
                raise SaslError("the OAUTHBEARER token has expired")
            self._token = token
            # Without an expiry claim the token is read again for every login.
            self._refresh_at = (
                now + (expiry - now) * REFRESH_WINDOW_FACTOR if expiry is not None else now
            )
        return self._token

    def _read(self) -> str:
        if self.file is not None:
            try:
                token = Path(self.file).read_text(encoding="utf-8").strip()
            except OSError as e:
                raise SaslError(f"cannot read the token file {self.file}: {e.strerror}") from None
        elif self.command is not None:
            try:
                done = subprocess.run(
                    shlex.split(self.command),
                    capture_output=True,
                    text=True,
                    timeout=TOKEN_COMMAND_TIMEOUT_S,
                    check=False,
                )
            except (OSError, subprocess.TimeoutExpired) as e:
                raise SaslError(f"the token command failed: {e}") from None
            if done.returncode != 0:
                raise SaslError(f"the token command exited with {done.returncode}")
            token = done.stdout.strip()
        else:
            raise SaslError("no OAUTHBEARER token source configured")
        if not token:
            raise SaslError("the OAUTHBEARER token is empty")
        return token


def token_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT (seconds since the epoch), not verified: the broker verifies
    it, the proxy only needs to know when to fetch a new one. None for other tokens."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (ValueError, binascii.Error):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, int | float) else None


@dataclass
class SaslSettings:
    mechanism: str
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    tokens: TokenSource | None = None

    def authenticator(self) -> Authenticator:
        if self.mechanism == "OAUTHBEARER":
            assert self.tokens is not None
            return OAuthBearer(self.tokens.token())
        assert self.username is not None and self.password is not None
        if self.mechanism == "PLAIN":
            return Plain(self.username, self.password)
        return Scram(self.mechanism, self.username, self.password)


class Authenticator:
    """One login: ``first()`` is the first client message; ``step(server)`` takes each server
    message and returns the next client message, or None when the exchange is complete."""

    def first(self) -> bytes:
        raise NotImplementedError

    def step(self, server: bytes) -> bytes | None:
        raise NotImplementedError


class Plain(Authenticator):
    def __init__(self, username: str, password: str) -> None:
        self._message = b"\0" + username.encode() + b"\0" + password.encode()

    def first(self) -> bytes:
        return self._message

    def step(self, server: bytes) -> bytes | None:
        return None


class Scram(Authenticator):
    def __init__(self, mechanism: str, username: str, password: str) -> None:
        self._client = scramp.ScramClient([mechanism], username, password)
        self._final_sent = False

    def first(self) -> bytes:
        return str(self._client.get_client_first()).encode()

    def step(self, server: bytes) -> bytes | None:
        try:
            if not self._final_sent:
                self._client.set_server_first(server.decode())
                self._final_sent = True
                return str(self._client.get_client_final()).encode()
            self._client.set_server_final(server.decode())
        except (scramp.ScramException, UnicodeDecodeError) as e:
            raise SaslError(f"SCRAM exchange failed: {e}") from None
        return None


class OAuthBearer(Authenticator):
    def __init__(self, token: str) -> None:
        self._token = token

    def first(self) -> bytes:
        return b"n,," + b"\x01auth=Bearer " + self._token.encode() + b"\x01\x01"

    def step(self, server: bytes) -> bytes | None:
        if server:
            # An error (JSON) from the server: RFC 7628 has the client answer with a lone
            # separator, after which the server fails the exchange.
            return b"\x01"
        return None


def user_of(mechanism: str, first_client_message: bytes) -> str | None:
    """The user name a client's first SASL message names (PLAIN's authcid, SCRAM's ``n=``),
    or None (OAUTHBEARER and anything unreadable: the principal then comes from nowhere)."""
    try:
        if mechanism == "PLAIN":
            parts = first_client_message.split(b"\0")
            # authzid NUL authcid NUL password; Kafka's principal is the authcid (an authzid
            # other than it fails the login upstream).
            return parts[1].decode() if len(parts) == 3 else None
        if mechanism.startswith("SCRAM-"):
            text = first_client_message.decode()
            # gs2 header "n,," (or "n,a=authzid,") then "n=user,r=nonce"
            _, _, bare = text.partition(",")
            _, _, bare = bare.partition(",")
            for attribute in bare.split(","):
                if attribute.startswith("n="):
                    return attribute[2:].replace("=2C", ",").replace("=3D", "=")
    except UnicodeDecodeError:
        return None
    return None
