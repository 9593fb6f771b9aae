"""The gateway's one channel to the orchestrator, made once and shared by every request.

Balanced and retried as the orchestrator's own channels to the inner services are
(services.orchestrator.upstreams: round-robin over the addresses, a call retried on
UNAVAILABLE only before anything came back, so a stream is never replayed), traced by
OpenTelemetry's gRPC client interceptors (the request's trace context goes along in the
call's metadata), over TLS when a CA or client certificate is configured.
"""

from __future__ import annotations

from chorus.orchestrator.v1 import orchestrator_pb2, orchestrator_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.sdk.trace import TracerProvider

from services.gateway.settings import GatewaySettings
from services.orchestrator.upstreams import Upstream, UpstreamTls

ORCHESTRATOR_SERVICE = orchestrator_pb2.DESCRIPTOR.services_by_name["Orchestrator"].full_name


class OrchestratorClient:
    """The stub every endpoint calls, and the orchestrator's health for readiness.

    The channel is the orchestrator's own kind of upstream channel: balanced over the
    replicas whose Orchestrator service is SERVING (it follows their lifecycle alone, so
    one without tts still gets calls, and answers them with a status that names tts, a
    503 the client can read), a replica that comes back found within seconds, and made
    anew from the TLS files when they are rotated.
    """

    def __init__(self, settings: GatewaySettings, tracer_provider: TracerProvider) -> None:
        tls = (
            UpstreamTls(
                settings.orchestrator_ca_file,
                settings.orchestrator_cert_file,
                settings.orchestrator_key_file,
                settings.orchestrator_server_name,
            )
            if settings.orchestrator_ca_file or settings.orchestrator_cert_file
            else None
        )
        self._upstream = Upstream(
            "orchestrator",
            settings.orchestrator_address,
            ORCHESTRATOR_SERVICE,
            tracer_provider,
            tls,
        )

    @property
    def stub(self) -> orchestrator_pb2_grpc.OrchestratorAsyncStub:
        """The Orchestrator stub on the current channel."""
        return self._upstream.stub(orchestrator_pb2_grpc.OrchestratorStub)

    async def serving(self, timeout_s: float) -> str:
        """The orchestrator's overall health (``SERVING``, ``NOT_SERVING``, ...): SERVING
        only while it can reach tts. Raises grpc.aio.AioRpcError when it does not answer."""
        health = self._upstream.stub(health_pb2_grpc.HealthStub)
        response = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout_s)
        name: str = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
        return name

    async def close(self) -> None:
        """Close the channel; calls still open on it end CANCELLED."""
        await self._upstream.close()
