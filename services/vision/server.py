"""Vision server: wires detector, matting model, batcher and cache into the common bootstrap."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from chorus.vision.v1 import vision_pb2, vision_pb2_grpc
from grpc import aio
from opentelemetry import metrics

from services.common.admission import AdmissionController
from services.common.cache import ResultCache
from services.common.devices import torch_cuda_available
from services.common.server import run_service
from services.common.telemetry import Telemetry
from services.vision.batcher import BatchRun, DetectionBatcher
from services.vision.engines import create_detector, create_matting
from services.vision.engines.base import Image
from services.vision.engines.prepared import PreparingDetector
from services.vision.pipeline import VisionPipeline
from services.vision.servicer import VisionServicer
from services.vision.settings import VisionSettings

logger = logging.getLogger(__name__)

SERVICE_NAME = vision_pb2.DESCRIPTOR.services_by_name["Vision"].full_name


class VisionService:
    """The Vision service with its resident models (a ChorusService)."""

    def __init__(self, settings: VisionSettings, telemetry: Telemetry) -> None:
        self.detector = create_detector(settings)
        self.matting = create_matting(settings, self.detector)
        self._executor = ThreadPoolExecutor(
            max_workers=settings.workers, thread_name_prefix="vision-model"
        )
        self.batcher = self._batcher(settings, telemetry)
        self.cache = ResultCache.from_settings("vision", settings, telemetry)
        self.admission = AdmissionController.from_settings(settings, telemetry)
        pipeline = VisionPipeline(
            detector=self.detector,
            matting=self.matting,
            executor=self._executor,
            batcher=self.batcher,
            tracer=telemetry.tracer,
            max_pixels=settings.max_pixels,
            working_side=settings.working_side,
        )
        self._servicer = VisionServicer(
            pipeline=pipeline, cache=self.cache, admission=self.admission
        )

    @property
    def service_names(self) -> Sequence[str]:
        """The gRPC service this server offers."""
        return (SERVICE_NAME,)

    def add_to_server(self, server: aio.Server) -> None:
        """Register the Vision servicer."""
        vision_pb2_grpc.add_VisionServicer_to_server(self._servicer, server)

    async def load(self) -> None:
        """Load and warm up both models off the event loop."""
        loop = asyncio.get_running_loop()
        for model in (self.detector, self.matting):
            await loop.run_in_executor(self._executor, model.load)
            await loop.run_in_executor(self._executor, model.warm_up)
        logger.info("detector %s and matting %s ready", self.detector.name, self.matting.name)

    async def close(self) -> None:
        """Close the cache's connections and the model threads."""
        await self.cache.close()
        if self.batcher is not None:
            await asyncio.to_thread(self.batcher.close)
        self._executor.shutdown(wait=False, cancel_futures=True)
        for model in (self.detector, self.matting):
            model.close()

    def _batcher(
        self, settings: VisionSettings, telemetry: Telemetry
    ) -> DetectionBatcher[Any] | None:
        """A batcher when the detector batches and batching is on (auto: on the GPU), with
        the batch size and window of the device it runs on unless set explicitly."""
        detector = self.detector
        # auto: batch where the GPU is; asked-for CUDA that is absent fails loading anyway.
        on_gpu = settings.device != "cpu" and torch_cuda_available()
        wanted = settings.batching == "on" or (settings.batching == "auto" and on_gpu)
        limits = settings.batch_limits("cuda" if on_gpu else "cpu")
        if not detector.batches or not wanted or limits.max_batch < 2:
            return None
        sizes = _batch_size_histogram(telemetry.meter, limits.max_batch)
        logger.info(
            "batching detections: at most %d images, window %g ms, %d batch(es) at once",
            limits.max_batch, limits.window_ms, settings.batch_in_flight,
        )  # fmt: skip
        if isinstance(detector, PreparingDetector):
            preparing: PreparingDetector[Any] = detector
            run: BatchRun[Any] = preparing.detect_prepared
            prepare: Callable[[Image], Any] | None = preparing.prepare
        else:
            run, prepare = detector.detect_batch, None
        return DetectionBatcher(
            run,
            max_batch=limits.max_batch,
            window_s=limits.window_ms / 1000,
            max_in_flight=settings.batch_in_flight,
            prepare=prepare,
            on_batch=sizes.record,
        )


def _batch_size_histogram(meter: metrics.Meter, max_batch: int) -> metrics.Histogram:
    """``chorus.vision.batch_size``, with one bucket per size up to ``max_batch``: the
    exact count of batches of each size."""
    return meter.create_histogram(
        "chorus.vision.batch_size",
        unit="{image}",
        description="images in each batched detection",
        explicit_bucket_boundaries_advisory=[float(size) for size in range(1, max_batch)],
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Run the vision server until SIGTERM or SIGINT."""
    run_service(VisionSettings, "chorus-vision", VisionService, argv)
