"""API keys at the edge: who may call the orchestrator, and under which name.

Callers send ``authorization: Bearer <key>`` metadata. The server knows each key only by
its SHA-256 digest and a name (``name:sha256hex``, from the ``api_keys`` setting or the
file ``api_keys_file`` names), so neither the settings, the manifests nor the logs ever
hold a key in plain text. A call without a key, or with one that is not known, is refused
with UNAUTHENTICATED before the service sees it (and never with the key in the message).
A known key's name is the RPC's caller: it is on the RPC's span and metrics as
``chorus.api_key``, admission control holds it to its share, and the orchestrator names it
to the inner services (chorus-caller). Health and reflection are never guarded: probes
carry no key. With no keys configured there is no check at all (local runs and tests).

To make an entry for a new key::

    printf '%s' "$KEY" | sha256sum   # -> name:<the hex digest>
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from grpc import aio
from opentelemetry import trace

from services.common.callers import API_KEY
from services.common.errors import ChorusError
from services.common.interceptors import guard_handler
from services.common.settings import ServerSettings

if TYPE_CHECKING:
    from services.common.interceptors import Continuation, Handler

logger = logging.getLogger(__name__)

AUTHORIZATION_METADATA = "authorization"
SPAN_ATTRIBUTE = "chorus.api_key"
"""The attribute that names the key an RPC was made with, on its span and its metrics."""

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_DIGEST = re.compile(r"[0-9a-fA-F]{64}")


class Unauthenticated(ChorusError):
    """The call carries no API key, or one the service does not know."""

    code = grpc.StatusCode.UNAUTHENTICATED


def key_digest(key: str) -> str:
    """The entry a key is configured by: the SHA-256 hex digest of its UTF-8 bytes."""
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKeys:
    """The known keys, by digest, each with its name."""

    def __init__(self, names_by_digest: Mapping[str, str]) -> None:
        self._names = {digest.lower(): name for digest, name in names_by_digest.items()}

    @classmethod
    def parse(cls, text: str, source: str) -> ApiKeys:
        """Keys from ``name:sha256hex`` entries separated by commas or new lines (blank
        lines and ``#`` comments skipped). Raises ValueError naming the entry's position in
        ``source`` (never its text: a plain key pasted by mistake must not reach a log)."""
        names: dict[str, str] = {}
        entries = [
            entry.strip()
            for line in text.splitlines()
            for entry in line.split("#", 1)[0].split(",")
        ]
        for position, entry in enumerate((entry for entry in entries if entry), start=1):
            name, separator, digest = entry.partition(":")
            name, digest = name.strip(), digest.strip().lower()
            if not separator or not _DIGEST.fullmatch(digest):
                raise ValueError(
                    f"{source}: entry {position} is not name:sha256hex (64 hex digits of the "
                    "key's SHA-256; never the key itself)"
                )
            if not _NAME.fullmatch(name):
                raise ValueError(
                    f"{source}: entry {position}: a name is 1 to 64 letters, digits, '.', "
                    "'_' or '-'"
                )
            if digest in names:
                raise ValueError(f"{source}: entry {position} repeats the key of {names[digest]}")
            if name in names.values():
                raise ValueError(f"{source}: entry {position} repeats the name {name}")
            names[digest] = name
        return cls(names)

    @classmethod
    def from_settings(cls, settings: ServerSettings) -> ApiKeys:
        """The keys of ``settings.api_keys`` and of the file ``settings.api_keys_file``."""
        keys = cls.parse(settings.api_keys, "CHORUS_API_KEYS")
        if settings.api_keys_file:
            path = Path(settings.api_keys_file)
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as error:
                raise ValueError(f"CHORUS_API_KEYS_FILE: cannot read {path}: {error}") from None
            keys = keys.merged(cls.parse(text, str(path)))
        return keys

    def merged(self, other: ApiKeys) -> ApiKeys:
        """Both sets of keys; the same key or name twice is a configuration error."""
        for digest, name in other._names.items():
            if digest in self._names or name in self._names.values():
                raise ValueError(f"API key {name} is configured twice")
        return ApiKeys({**self._names, **other._names})

    @property
    def names(self) -> list[str]:
        """The keys' names, sorted."""
        return sorted(self._names.values())

    def __bool__(self) -> bool:
        return bool(self._names)

    def name_of(self, key: str) -> str | None:
        """The name of ``key``; None when it is not known."""
        return self._names.get(key_digest(key))

    def authenticate(self, metadata: Iterable[tuple[str, Any]]) -> str:
        """The name of the key in ``metadata``'s ``authorization: Bearer <key>``; raises
        Unauthenticated when there is none or it is not known."""
        header = next(
            (
                value
                for key, value in metadata
                if key == AUTHORIZATION_METADATA and isinstance(value, str)
            ),
            None,
        )
        if header is None:
            raise Unauthenticated("missing API key: send metadata 'authorization: Bearer <key>'")
        scheme, _, key = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise Unauthenticated("malformed authorization: expected 'Bearer <key>'")
        name = self.name_of(key.strip())
        if name is None:
            raise Unauthenticated("unknown API key")
        return name


class ApiKeyInterceptor(aio.ServerInterceptor):
    """Refuses the guarded services' RPCs without a known key (UNAUTHENTICATED); for the
    others sets API_KEY (which CallerInterceptor, inside this one, makes the caller) and
    names the key on the RPC's span. Install it inside ErrorMappingInterceptor, so that the
    refusal is mapped and measured, and outside ReadinessInterceptor, so that a caller
    without a key learns nothing about the service's state."""

    def __init__(self, keys: ApiKeys, guarded_services: Iterable[str]) -> None:
        self._keys = keys
        self._prefixes = tuple(f"/{name}/" for name in guarded_services)

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if not handler_call_details.method.startswith(self._prefixes):
            return handler
        keys = self._keys

        def authenticate(context: aio.ServicerContext[Any, Any]) -> None:
            name = keys.authenticate(context.invocation_metadata() or ())
            API_KEY.set(name)
            trace.get_current_span().set_attribute(SPAN_ATTRIBUTE, name)

        return guard_handler(handler, handler_call_details.method, authenticate)


def api_key_interceptors(
    settings: ServerSettings, guarded_services: Iterable[str]
) -> list[aio.ServerInterceptor]:
    """The key check for ``settings``: none when no keys are configured (neither
    ``api_keys`` nor ``api_keys_file``). A keys file with no entry fails closed: every
    call is refused. Raises ValueError (at start-up) when the keys are malformed."""
    keys = ApiKeys.from_settings(settings)
    if not keys and not settings.api_keys_file:
        return []
    if keys:
        logger.info("API keys required: %d (%s)", len(keys.names), ", ".join(keys.names))
    else:
        logger.warning(
            "API keys required, but %s has none: every call is refused",
            settings.api_keys_file,
        )
    return [ApiKeyInterceptor(keys, guarded_services)]
