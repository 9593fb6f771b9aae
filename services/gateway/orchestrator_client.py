"""The gateway's one channel to the orchestrator, made once and shared by every request.

Balanced and retried as the orchestrator's own channels to the inner services are
(services.orchestrator.upstreams: round-robin over the addresses, a call retried on
UNAVAILABLE only before anything came back, so a stream is never replayed), traced by
OpenTelemetry's gRPC client interceptors (the request's trace context goes along in the
call's metadata), over TLS when a CA or client certificate is configured.
"""

from __future__ import annotations

from typing import Any

from chorus.orchestrator.v1 import orchestrator_pb2, orchestrator_pb2_grpc
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.instrumentation.grpc import aio_client_interceptors
from opentelemetry.sdk.trace import TracerProvider

from services.common.tls import channel_credentials
from services.gateway.settings import GatewaySettings
from services.orchestrator.upstreams import channel_target, service_config

ORCHESTRATOR_SERVICE = orchestrator_pb2.DESCRIPTOR.services_by_name["Orchestrator"].full_name

# The compose result carries a WAV and a PNG: far past gRPC's default 4 MiB.
_MAX_RECEIVE_BYTES = 64 * 1024 * 1024
# An orchestrator that restarts is found again within this (gRPC's default backoff grows
# to two minutes, during which every request would be a 503).
_MAX_RECONNECT_BACKOFF_MS = 5000


class OrchestratorClient:
    """The stub every endpoint calls, and the orchestrator's health for readiness."""

    def __init__(self, settings: GatewaySettings, tracer_provider: TracerProvider) -> None:
        target = channel_target(settings.orchestrator_address)
        # Balanced over the replicas whose Orchestrator service is SERVING: it follows their
        # lifecycle alone, so one without tts still gets calls, and answers them with a
        # status that names tts (a 503 the client can read), rather than none at all.
        options: list[tuple[str, Any]] = [
            ("grpc.service_config", service_config(ORCHESTRATOR_SERVICE)),
            ("grpc.enable_retries", 1),
            ("grpc.max_receive_message_length", _MAX_RECEIVE_BYTES),
            ("grpc.max_reconnect_backoff_ms", _MAX_RECONNECT_BACKOFF_MS),
        ]
        interceptors = aio_client_interceptors(tracer_provider=tracer_provider)
        if settings.orchestrator_ca_file or settings.orchestrator_cert_file:
            credentials = channel_credentials(
                settings.orchestrator_ca_file,
                settings.orchestrator_cert_file,
                settings.orchestrator_key_file,
            )
            if settings.orchestrator_server_name:
                options.append(("grpc.ssl_target_name_override", settings.orchestrator_server_name))
            self._channel = aio.secure_channel(
                target, credentials, options=options, interceptors=interceptors
            )
        else:
            self._channel = aio.insecure_channel(target, options=options, interceptors=interceptors)
        self.stub = orchestrator_pb2_grpc.OrchestratorStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    async def serving(self, timeout_s: float) -> str:
        """The orchestrator's overall health (``SERVING``, ``NOT_SERVING``, ...): SERVING
        only while it can reach tts. Raises grpc.aio.AioRpcError when it does not answer."""
        response = await self._health.Check(
            health_pb2.HealthCheckRequest(service=""), timeout=timeout_s
        )
        name: str = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
        return name

    async def close(self) -> None:
        """Close the channel; calls still open on it end CANCELLED."""
        await self._channel.close()
