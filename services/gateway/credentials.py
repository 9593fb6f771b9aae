"""Who a request is from, as the orchestrator is told: its API key and its address.

The orchestrator checks API keys (services.common.api_keys); the gateway forwards the
client's ``Authorization: Bearer <key>`` to it as the call's ``authorization`` metadata,
so one set of keys, configured there, governs both doors. Given keys of its own (the same
entries), the gateway also refuses a request without a known one before reading its body
or making a call. The client's address goes along as ``chorus-caller``: an orchestrator
that trusts its callers' metadata (CHORUS_TRUST_CALLER_METADATA, behind the gateway) then
shares its slots among the gateway's clients rather than treating the gateway as one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from starlette.requests import HTTPConnection

from services.common.api_keys import AUTHORIZATION_METADATA, ApiKeys, Unauthenticated
from services.common.callers import CALLER_METADATA
from services.common.settings import ServerSettings
from services.gateway.errors import ApiError
from services.gateway.settings import GatewaySettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Credentials:
    """What goes with a request's orchestrator call."""

    authorization: str
    """The client's ``Bearer <key>``, or empty."""
    caller: str
    """The client's address, or empty."""

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The call's metadata."""
        pairs = []
        if self.authorization:
            pairs.append((AUTHORIZATION_METADATA, self.authorization))
        if self.caller:
            pairs.append((CALLER_METADATA, self.caller))
        return tuple(pairs)


class KeyCheck:
    """The gateway's own check of API keys; with no keys configured, none."""

    def __init__(self, keys: ApiKeys | None) -> None:
        self._keys = keys

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> KeyCheck:
        """The keys of ``api_keys`` and ``api_keys_file``, read as the orchestrator reads
        its own. A keys file with no entry fails closed: every request is refused."""
        keys = ApiKeys.from_settings(
            ServerSettings(api_keys=settings.api_keys, api_keys_file=settings.api_keys_file)
        )
        if not keys and not settings.api_keys_file:
            return cls(None)
        logger.info("API keys checked at the gateway: %s", ", ".join(keys.names) or "none")
        return cls(keys)

    def credentials(self, connection: HTTPConnection, api_key: str = "") -> Credentials:
        """The credentials of a request or WebSocket; ``api_key`` stands for the
        Authorization header where a client cannot send one (a browser's WebSocket).

        Raises ApiError 401 when the gateway checks keys and this one is missing or
        unknown, or when the header cannot travel as gRPC metadata.
        """
        authorization = connection.headers.get("authorization", "").strip()
        if not authorization and api_key:
            authorization = f"Bearer {api_key.strip()}"
        if authorization and not (authorization.isascii() and authorization.isprintable()):
            raise _unauthenticated("malformed authorization: expected 'Bearer <key>'")
        if self._keys is not None:
            try:
                self._keys.authenticate(
                    [(AUTHORIZATION_METADATA, authorization)] if authorization else []
                )
            except Unauthenticated as error:
                raise _unauthenticated(
                    error.message.replace("metadata 'authorization", "header 'Authorization")
                ) from None
        client = connection.client
        return Credentials(authorization, client.host if client else "")


def _unauthenticated(message: str) -> ApiError:
    return ApiError(401, message, param=None, code="unauthenticated")
