"""Prosody server: wires the Praat worker pool, cache and servicer into the common bootstrap."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from chorus.prosody.v1 import prosody_pb2, prosody_pb2_grpc
from grpc import aio

from services.common.admission import AdmissionController
from services.common.cache import ResultCache
from services.common.process_pool import ProcessPool
from services.common.server import run_service
from services.common.telemetry import Telemetry
from services.prosody.pipeline import ProsodyPipeline, warm_up
from services.prosody.servicer import ProsodyServicer
from services.prosody.settings import ProsodySettings

logger = logging.getLogger(__name__)

SERVICE_NAME = prosody_pb2.DESCRIPTOR.services_by_name["Prosody"].full_name


class ProsodyService:
    """The Prosody service with its pool of Praat workers (a ChorusService)."""

    def __init__(self, settings: ProsodySettings, telemetry: Telemetry) -> None:
        self.pool = ProcessPool(settings.workers, warm_up=warm_up)
        self.cache = ResultCache.from_settings("prosody", settings, telemetry)
        self.admission = AdmissionController.from_settings(settings, telemetry)
        self._servicer = ProsodyServicer(
            pipeline=ProsodyPipeline(self.pool, telemetry.tracer),
            cache=self.cache,
            admission=self.admission,
            tracer=telemetry.tracer,
            max_audio_s=settings.max_audio_s,
            min_confidence=settings.min_confidence,
            time_budget_s=settings.time_budget_s,
        )
        self.worker_pids: set[int] = set()

    @property
    def service_names(self) -> Sequence[str]:
        """The gRPC service this server offers."""
        return (SERVICE_NAME,)

    def add_to_server(self, server: aio.Server) -> None:
        """Register the Prosody servicer."""
        prosody_pb2_grpc.add_ProsodyServicer_to_server(self._servicer, server)

    async def load(self) -> None:
        """Start every worker process and run Praat once in each."""
        self.worker_pids = await self.pool.start()
        logger.info("%d Praat workers ready: %s", len(self.worker_pids), sorted(self.worker_pids))

    async def close(self) -> None:
        """Stop the workers and close the cache's connections."""
        await self.cache.close()
        self.pool.close()


def main(argv: Sequence[str] | None = None) -> None:
    """Run the prosody server until SIGTERM or SIGINT."""
    run_service(ProsodySettings, "chorus-prosody", ProsodyService, argv)
