"""Channels to the inner services: made once, round-robin over healthy replicas, retrying
only calls that have not started, with errors that name the service."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import grpc
from grpc import aio
from opentelemetry.instrumentation.grpc import aio_client_interceptors
from opentelemetry.sdk.trace import TracerProvider

from services.common.callers import forward_caller_interceptors
from services.common.errors import (
    ChorusError,
    DeadlineExceeded,
    InvalidArgument,
    ResourceExhausted,
    Unavailable,
)
from services.common.tls import FilesStamp, channel_credentials, files_stamp
from services.orchestrator.call_scope import call_scope_interceptors
from services.orchestrator.settings import OrchestratorSettings

logger = logging.getLogger(__name__)

StubT = TypeVar("StubT")

# Calls still running on a channel retired by a TLS rotation get this long to end before
# they are cancelled: as long as a realtime conversation's stream may go on (the servers'
# CHORUS_CONNECTION_AGE_GRACE_S, the gateway's realtime deadline).
_RETIRED_CHANNEL_GRACE_S = 3600.0

# gRPC's own retries: a call is retried only while no response has arrived, which is the
# rule for streams (a retried stream would replay audio the caller already has).
_RETRY_POLICY = {
    "maxAttempts": 3,
    "initialBackoff": "0.05s",
    "maxBackoff": "0.5s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}

# A replica that comes back is noticed within this: gRPC's default backoff grows to two
# minutes, which would keep the orchestrator's health NOT_SERVING long after tts returned.
# Inner services are in the cluster; a connection attempt every few seconds costs nothing.
_MAX_RECONNECT_BACKOFF_MS = 5000
# Never idle: an idle channel has no connection, so a service that went away meanwhile
# would be reported SERVING until the next request found out (see DependencyHealth).
_NO_IDLE_TIMEOUT_MS = 2**31 - 1


def channel_target(addresses: str) -> str:
    """A gRPC target for ``addresses``: one host:port, a comma list of IPv4 host:port
    (each a replica), or any target gRPC resolves itself (``dns:///tts-headless:50052``)."""
    parts = [part.strip() for part in addresses.split(",") if part.strip()]
    if not parts:
        raise ValueError("no address given")
    if len(parts) == 1:
        return parts[0]
    return "ipv4:" + ",".join(parts)


def service_config(service: str) -> str:
    """Round-robin over the addresses whose health (grpc.health.v1 Watch on ``service``)
    is SERVING, and retries as above."""
    return json.dumps(
        {
            "loadBalancingConfig": [{"round_robin": {}}],
            "healthCheckConfig": {"serviceName": service},
            "methodConfig": [{"name": [{"service": service}], "retryPolicy": _RETRY_POLICY}],
        }
    )


@dataclass(frozen=True)
class UpstreamTls:
    """TLS to the inner services: the CA their certificates are checked against, the
    client certificate and key the orchestrator presents (mutual TLS), and the name their
    certificates are checked for when not the host in the address. Files are PEM, read
    when a channel is made; ``Upstream`` makes a new channel when they change."""

    ca_file: str
    cert_file: str = ""
    key_file: str = ""
    server_name: str = ""

    @classmethod
    def from_settings(cls, settings: OrchestratorSettings) -> UpstreamTls | None:
        """The ``upstream_*`` settings, or None (plaintext) when no file is set."""
        if not (settings.upstream_ca_file or settings.upstream_cert_file):
            return None
        return cls(
            settings.upstream_ca_file,
            settings.upstream_cert_file,
            settings.upstream_key_file,
            settings.upstream_server_name,
        )

    def credentials(self) -> grpc.ChannelCredentials:
        """Channel credentials from the files as they are now."""
        return channel_credentials(self.ca_file, self.cert_file, self.key_file)

    def options(self) -> list[tuple[str, str]]:
        """Channel options: the name to check certificates for, when one is set."""
        return [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []

    def stamp(self) -> FilesStamp | None:
        """The files' stamp (see ``files_stamp``), or None while one cannot be read."""
        paths = [path for path in (self.ca_file, self.cert_file, self.key_file) if path]
        try:
            return files_stamp(paths)
        except OSError:
            return None


class Upstream:
    """One service this process calls (the orchestrator's inner services; the gateway's
    orchestrator): its name for errors, and the channel every call shares (each call owned
    by the CallScope of the RPC it is made for, when there is one); over TLS with ``tls``.

    With TLS, the files are looked at again (a ``stat`` each) when a call asks for the
    channel at least ``tls_check_interval_s`` after the last look; once they changed
    (cert-manager rotated the client certificate or the CA), calls get a new channel made
    from the new files, and the old one is closed once the calls on it end (at most
    ``_RETIRED_CHANNEL_GRACE_S`` later). A channel's credentials cannot be changed, and its
    reconnections would present the old certificate until it expires.
    """

    def __init__(
        self,
        name: str,
        addresses: str,
        service: str,
        tracer_provider: TracerProvider,
        tls: UpstreamTls | None = None,
        tls_check_interval_s: float = 1.0,
    ) -> None:
        self.name = name
        self._target = channel_target(addresses)
        self._options: list[tuple[str, Any]] = [
            ("grpc.service_config", service_config(service)),
            ("grpc.enable_retries", 1),
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ("grpc.max_reconnect_backoff_ms", _MAX_RECONNECT_BACKOFF_MS),
            ("grpc.client_idle_timeout_ms", _NO_IDLE_TIMEOUT_MS),
        ]
        self._interceptors = [
            *aio_client_interceptors(tracer_provider=tracer_provider),
            *forward_caller_interceptors(),
            *call_scope_interceptors(),
        ]
        self._tls = tls
        self._tls_check_interval_s = tls_check_interval_s
        self._tls_stamp = tls.stamp() if tls is not None else None
        self._tls_checked = time.monotonic()
        self._channel = self._new_channel()
        self._stubs: dict[Callable[[aio.Channel], Any], tuple[aio.Channel, Any]] = {}
        self._retiring: set[asyncio.Task[None]] = set()
        self.channels_made = 1
        """How many channels this upstream has made (one more at each TLS rotation)."""

    def channel(self) -> aio.Channel:
        """The channel new calls are made on (a new one once the TLS files changed)."""
        if self._tls is not None and (
            time.monotonic() - self._tls_checked >= self._tls_check_interval_s
        ):
            self._follow_tls_rotation(self._tls)
        return self._channel

    def stub(self, stub_type: Callable[[aio.Channel], StubT]) -> StubT:
        """A ``stub_type`` stub on the current channel (one per channel, made once)."""
        channel = self.channel()
        stub = self._stubs.get(stub_type)
        if stub is None or stub[0] is not channel:
            stub = self._stubs[stub_type] = (channel, stub_type(channel))
        return cast(StubT, stub[1])

    def _new_channel(self) -> aio.Channel:
        if self._tls is None:
            return aio.insecure_channel(
                self._target, options=self._options, interceptors=self._interceptors
            )
        return aio.secure_channel(
            self._target,
            self._tls.credentials(),
            options=self._options + self._tls.options(),
            interceptors=self._interceptors,
        )

    def _follow_tls_rotation(self, tls: UpstreamTls) -> None:
        self._tls_checked = time.monotonic()
        stamp = tls.stamp()
        # None: a file missing for a moment, half way through a rotation; look again later.
        if stamp is None or stamp == self._tls_stamp:
            return
        try:
            channel = self._new_channel()
        except (OSError, ValueError, grpc.RpcError) as error:
            logger.warning("%s: TLS files changed but cannot be used yet: %s", self.name, error)
            return
        self._tls_stamp = stamp
        retired, self._channel = self._channel, channel
        self.channels_made += 1
        logger.info("%s: TLS files changed: new calls use a channel made from them", self.name)
        task = asyncio.get_running_loop().create_task(retired.close(_RETIRED_CHANNEL_GRACE_S))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    def error(
        self, error: grpc.aio.AioRpcError, fields: Mapping[str, str] | None = None
    ) -> ChorusError:
        """What the caller should see for a failed call to this service.

        Only what the caller can act on reaches it: the failed service's name and the
        status, never an inner address or an inner error's details (they are logged).
        INVALID_ARGUMENT is the caller's mistake, passed on naming the caller's field:
        ``fields`` maps this service's field names to the caller's where they differ
        (vision's ``image`` is the caller's ``photo``).
        """
        code, details = error.code(), error.details() or ""
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            field, _, problem = details.partition(": ")
            return InvalidArgument((fields or {}).get(field, field), problem)
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return DeadlineExceeded(f"deadline passed waiting for {self.name}")
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            return ResourceExhausted(f"{self.name} is at capacity: {details}")
        # The caller learns which service failed, never where it runs or why inside (gRPC's
        # details name the inner address, "ipv4:10.0.3.7:50052: connection refused"):
        # those go to the log.
        logger.warning("%s call failed: %s: %s", self.name, code.name, details)
        if code == grpc.StatusCode.UNAVAILABLE:
            return Unavailable(f"{self.name} unavailable")
        return Unavailable(f"{self.name} unavailable: {code.name}")

    async def close(self) -> None:
        """Close the channel, and any channel retired by a rotation still closing."""
        await self._channel.close()
        await asyncio.gather(*self._retiring)
