"""Who a client is, learned from its own SASL exchange with the upstream (sans-I/O).

A client on a SASL listener authenticates to the upstream cluster itself: its SaslHandshake
and SaslAuthenticate requests are relayed over its own upstream connection, and the upstream
decides. The proxy reads the user name from the client's first SASL message and takes it as
the principal only once the upstream has answered the last round of the exchange without an
error. Until then the connection may send nothing but ApiVersions, SaslHandshake and
SaslAuthenticate (Kafka closes a connection that does). A client on a listener without SASL is
``User:ANONYMOUS``, as in Kafka: a TLS client certificate cannot name a principal, since the
proxy terminates TLS and the upstream never sees the certificate.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from proxy.sasl import user_of

SASL_HANDSHAKE = 17
SASL_AUTHENTICATE = 36
ANONYMOUS = "User:ANONYMOUS"
UNSUPPORTED_SASL_MECHANISM = 33
# The mechanisms whose exchange the proxy can follow, and how many SaslAuthenticate rounds
# end a successful one.
ROUNDS = {"PLAIN": 1, "SCRAM-SHA-256": 2, "SCRAM-SHA-512": 2, "OAUTHBEARER": 1}


class AuthRefused(Exception):
    """The client broke the SASL protocol: close its connection (with this message logged)."""


class ClientAuth:
    def __init__(self, sasl_listener: bool) -> None:
        self.sasl = sasl_listener
        self.principal: str | None = None if sasl_listener else ANONYMOUS
        self._mechanism: str | None = None
        self._user: str | None = None
        self._rounds = 0

    @property
    def authenticated(self) -> bool:
        return self.principal is not None

    def gate(self, api_key: int) -> None:
        """Before authentication only ApiVersions and the SASL requests may come."""
        if not self.authenticated and api_key not in (18, SASL_HANDSHAKE, SASL_AUTHENTICATE):
            raise AuthRefused(f"request of API key {api_key} before SASL authentication")

    def handshake(self, version: int, request: Any) -> int:
        """A SaslHandshake to relay: 0, or the error code to answer with here."""
        if not self.sasl:
            raise AuthRefused("SaslHandshake on a listener without SASL")
        if version < 1:
            # v0 is followed by SASL tokens without Kafka framing, which the relay cannot read.
            raise AuthRefused("SaslHandshake v0 (unframed SASL tokens) is not supported")
        mechanism = str(request.mechanism)
        if mechanism not in ROUNDS:
            return UNSUPPORTED_SASL_MECHANISM
        self._mechanism, self._user, self._rounds = mechanism, None, 0
        return 0

    def authenticate(self, request: Any) -> None:
        """A SaslAuthenticate to relay."""
        if self._mechanism is None:
            raise AuthRefused("SaslAuthenticate without a SaslHandshake")
        if self._rounds == 0:
            message = bytes(request.auth_bytes or b"")
            self._user = (
                bearer_subject(message)
                if self._mechanism == "OAUTHBEARER"
                else user_of(self._mechanism, message)
            )

    def answer(self, response: Any) -> None:
        """The upstream's answer to a relayed SaslAuthenticate."""
        if self._mechanism is None:
            return
        if response.error_code:
            self._mechanism = None  # the upstream closes the connection after a failure
            return
        self._rounds += 1
        done = self._rounds >= ROUNDS[self._mechanism]
        if self._mechanism == "OAUTHBEARER" and response.auth_bytes:
            done = False  # an error challenge: the failure follows
        if not done:
            return
        principal = f"User:{self._user}" if self._user else None
        self._mechanism = None
        if principal is None:
            raise AuthRefused("authenticated upstream, but the principal could not be read")
        if self.principal is not None and principal != self.principal:
            # Re-authentication (KIP-368) must keep the principal, as Kafka requires.
            raise AuthRefused(f"re-authenticated as {principal}, was {self.principal}")
        self.principal = principal


def bearer_subject(message: bytes) -> str | None:
    """The ``sub`` claim of the JWT in an OAUTHBEARER client response (Kafka's default
    principal claim), unverified: it counts only once the upstream accepted the token."""
    for part in message.split(b"\x01"):
        if part.startswith(b"auth=Bearer "):
            token = part[len(b"auth=Bearer ") :].decode(errors="replace").strip()
            pieces = token.split(".")
            if len(pieces) != 3:
                return None
            payload = pieces[1] + "=" * (-len(pieces[1]) % 4)
            try:
                claims = json.loads(base64.urlsafe_b64decode(payload))
            except (ValueError, binascii.Error):
                return None
            sub = claims.get("sub") if isinstance(claims, dict) else None
            return sub if isinstance(sub, str) else None
    return None
