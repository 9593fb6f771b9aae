"""TTS server: wires engine, cache, admission control and servicer into the common bootstrap."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from chorus.tts.v1 import tts_pb2, tts_pb2_grpc
from grpc import aio

from services.common import audio_codecs
from services.common.admission import AdmissionController
from services.common.cache import ResultCache
from services.common.server import run_service
from services.common.telemetry import Telemetry
from services.tts.engine_scheduler import EngineScheduler
from services.tts.engines import create_engine
from services.tts.engines.base import SpeechEngine
from services.tts.servicer import TextToSpeechServicer
from services.tts.settings import TtsSettings
from services.tts.synthesis import SpeechStreamer

logger = logging.getLogger(__name__)

# Long enough for a cancelled synthesis to notice (engines stop within one piece).
ENGINE_STOP_TIMEOUT_S = 5.0
SERVICE_NAME = tts_pb2.DESCRIPTOR.services_by_name["TextToSpeech"].full_name


class TtsService:
    """The TextToSpeech service with its resident engine (a ChorusService)."""

    def __init__(
        self, settings: TtsSettings, telemetry: Telemetry, engine: SpeechEngine | None = None
    ) -> None:
        self._settings = settings
        self.engine = engine if engine is not None else create_engine(settings)
        self._scheduler = EngineScheduler(settings.engine_workers)
        self.cache = ResultCache.from_settings("tts", settings, telemetry)
        self.admission = AdmissionController.from_settings(settings, telemetry)
        self._servicer = TextToSpeechServicer(
            engine=self.engine,
            streamer=SpeechStreamer(
                self.engine,
                self._scheduler,
                telemetry.tracer,
                sentences_ahead=settings.sentences_ahead,
                max_merged_ms=settings.max_merged_ms,
            ),
            cache=self.cache,
            admission=self.admission,
            tracer=telemetry.tracer,
            meter=telemetry.meter,
            max_text_chars=settings.max_text_chars,
        )

    @property
    def service_names(self) -> Sequence[str]:
        """The gRPC service this server offers."""
        return (SERVICE_NAME,)

    def add_to_server(self, server: aio.Server) -> None:
        """Register the TextToSpeech servicer."""
        tts_pb2_grpc.add_TextToSpeechServicer_to_server(self._servicer, server)

    async def load(self) -> None:
        """Load and warm up the engine on its own thread, off the event loop."""
        await self._scheduler.run(0, self.engine.load)
        await self._scheduler.run(0, self.engine.warm_up)
        # The Ogg Opus and MP3 encoders too, so the first such request pays nothing more.
        await asyncio.to_thread(audio_codecs.preload)
        logger.info("engine %s ready (%s)", self.engine.name, self.engine.model_version)

    async def close(self) -> None:
        """Close the cache's connections and stop the engine's threads, waiting (a few
        seconds at most) for a synthesis in flight to end: a native runtime (ONNX Runtime)
        torn down under a running inference at interpreter exit aborts the process."""
        await self.cache.close()
        self._scheduler.shutdown()
        if await asyncio.to_thread(self._scheduler.join, ENGINE_STOP_TIMEOUT_S):
            self.engine.close()
        else:
            logger.warning("engine threads still busy after %g s", ENGINE_STOP_TIMEOUT_S)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the tts server until SIGTERM or SIGINT."""
    run_service(TtsSettings, "chorus-tts", TtsService, argv)
