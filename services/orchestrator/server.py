"""Orchestrator server: channels to the inner services, the servicer, the common bootstrap."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from chorus.orchestrator.v1 import orchestrator_pb2, orchestrator_pb2_grpc
from chorus.prosody.v1 import prosody_pb2
from chorus.tts.v1 import tts_pb2
from chorus.vision.v1 import vision_pb2
from grpc import aio
from grpc_health.v1 import health

from services.common import audio_codecs
from services.common.admission import AdmissionController
from services.common.health_dependencies import Dependency, DependencyHealth
from services.common.server import run_service
from services.common.telemetry import Telemetry
from services.orchestrator.servicer import OrchestratorServicer
from services.orchestrator.settings import OrchestratorSettings
from services.orchestrator.speech import SpeechClient
from services.orchestrator.upstreams import Upstream, UpstreamTls
from services.orchestrator.vision_client import VisionClient

SERVICE_NAME = orchestrator_pb2.DESCRIPTOR.services_by_name["Orchestrator"].full_name

HEALTH_PREFIX = "orchestrator/"
"""Each inner service's state is reported under ``orchestrator/<name>`` (``orchestrator/tts``).
Only tts is required, every RPC needs it; without prosody or vision ComposeMessage still
answers (partial), and Speak and SynthesizeBatch without a preset do not need them."""


def _full_name(module: object, service: str) -> str:
    return module.DESCRIPTOR.services_by_name[service].full_name  # type: ignore[attr-defined, no-any-return]


class OrchestratorService:
    """The Orchestrator service and its channels to tts, prosody and vision."""

    def __init__(self, settings: OrchestratorSettings, telemetry: Telemetry) -> None:
        provider = telemetry.tracer_provider
        tls = UpstreamTls.from_settings(settings)
        self.tts = Upstream(
            "tts", settings.tts_address, _full_name(tts_pb2, "TextToSpeech"), provider, tls
        )
        self.prosody = Upstream(
            "prosody", settings.prosody_address, _full_name(prosody_pb2, "Prosody"), provider, tls
        )
        self.vision = Upstream(
            "vision", settings.vision_address, _full_name(vision_pb2, "Vision"), provider, tls
        )
        self.admission = AdmissionController.from_settings(settings, telemetry)
        self.dependency_health = DependencyHealth(
            [
                Dependency(HEALTH_PREFIX + upstream.name, upstream.channel, required)
                for upstream, required in (
                    (self.tts, True),
                    (self.prosody, False),
                    (self.vision, False),
                )
            ]
        )
        self._servicer = OrchestratorServicer(
            speech=SpeechClient(self.tts, self.prosody),
            vision=VisionClient(self.vision),
            admission=self.admission,
            tracer=telemetry.tracer,
            meter=telemetry.meter,
            max_text_chars=settings.max_text_chars,
            batch_concurrency=settings.batch_concurrency,
            max_batch_segments=settings.max_batch_segments,
        )

    @property
    def service_names(self) -> Sequence[str]:
        """The gRPC service this server offers."""
        return (SERVICE_NAME,)

    def add_to_server(self, server: aio.Server) -> None:
        """Register the Orchestrator servicer."""
        orchestrator_pb2_grpc.add_OrchestratorServicer_to_server(self._servicer, server)

    async def load(self) -> None:
        """Load the Ogg Opus and MP3 encoders (Speak with a preset encodes here), so the
        first such request pays nothing more. Nothing else: an inner service that is down
        answers UNAVAILABLE by name."""
        await asyncio.to_thread(audio_codecs.preload)

    def watch_dependencies(self, health_servicer: health.aio.HealthServicer) -> None:
        """Report tts, prosody and vision on ``health_servicer`` (``orchestrator/tts``, ...),
        and the overall health NOT_SERVING while tts is unavailable."""
        self.dependency_health.start(health_servicer)

    async def close(self) -> None:
        """Stop reporting the inner services' health, then close the channels."""
        await self.dependency_health.stop()
        for upstream in (self.tts, self.prosody, self.vision):
            await upstream.close()


def main(argv: Sequence[str] | None = None) -> None:
    """Run the orchestrator until SIGTERM or SIGINT."""
    run_service(OrchestratorSettings, "chorus-orchestrator", OrchestratorService, argv)
