"""Vision servicer: validates requests, serves from cache or the pipeline, maps results to
protobuf. Every call holds an admission slot from before its image is decoded (see
services.vision.pipeline), so a request beyond the limit is refused or queued before it
costs any memory."""

from __future__ import annotations

import asyncio
import hashlib
import math

from chorus.vision.v1 import vision_pb2, vision_pb2_grpc

from services.common.admission import AdmissionController
from services.common.cache import ResultCache, cache_key
from services.common.errors import InvalidArgument
from services.common.grpc_context import Context
from services.vision.engines.base import Box, Detection
from services.vision.pipeline import Size, VisionPipeline

DEFAULT_SCORE_THRESHOLD = 0.25
DEFAULT_MARGIN = 0.15
MAX_MARGIN = 2.0
# Below this, hashing on the loop is quicker than handing the work to a thread.
_HASH_IN_THREAD_BYTES = 1 << 20


class VisionServicer(vision_pb2_grpc.VisionServicer):
    """Serves chorus.vision.v1.Vision over the vision pipeline."""

    def __init__(
        self, *, pipeline: VisionPipeline, cache: ResultCache, admission: AdmissionController
    ) -> None:
        self._pipeline = pipeline
        self._cache = cache
        self._admission = admission

    async def DetectPersons(
        self, request: vision_pb2.DetectPersonsRequest, context: Context
    ) -> vision_pb2.DetectPersonsResponse:
        """People in the image: boxes, scores, class."""
        threshold = _score_threshold(request.score_threshold)
        if request.max_detections < 0:
            raise InvalidArgument("max_detections", f"{request.max_detections} is negative")
        detector = self._pipeline.detector.name

        async def detect() -> vision_pb2.DetectPersonsResponse:
            async with self._admission.slot("DetectPersons"):
                found = await self._pipeline.detect(
                    request.image, threshold, request.max_detections
                )
            return vision_pb2.DetectPersonsResponse(
                detections=[_detection_proto(d) for d in found.detections],
                image_size=_size_proto(found.size),
                engine=detector,
            )

        key = cache_key(
            "detect", await _digest(request.image), threshold, request.max_detections, detector
        )
        return await self._cache.response(key, vision_pb2.DetectPersonsResponse.FromString, detect)

    async def RemoveBackground(
        self, request: vision_pb2.RemoveBackgroundRequest, context: Context
    ) -> vision_pb2.RemoveBackgroundResponse:
        """Alpha matte and RGBA cut-out of the image."""
        focus = _box(request.focus) if request.HasField("focus") else None
        matting = self._pipeline.matting.name

        async def remove() -> vision_pb2.RemoveBackgroundResponse:
            async with self._admission.slot("RemoveBackground"):
                cut = await self._pipeline.remove_background(request.image, focus)
            return vision_pb2.RemoveBackgroundResponse(
                alpha_png=cut.alpha_png,
                cutout_png=cut.cutout_png,
                image_size=_size_proto(cut.size),
                engine=matting,
            )

        key = cache_key(
            "matte",
            await _digest(request.image),
            request.focus.SerializeToString(deterministic=True).hex() if focus else None,
            matting,
        )
        return await self._cache.response(
            key, vision_pb2.RemoveBackgroundResponse.FromString, remove
        )

    async def Portrait(
        self, request: vision_pb2.PortraitRequest, context: Context
    ) -> vision_pb2.PortraitResponse:
        """Detect, pick the main person, crop with a margin, remove the background."""
        margin = request.margin or DEFAULT_MARGIN
        if math.isnan(margin) or not 0.0 <= margin <= MAX_MARGIN:
            raise InvalidArgument("margin", f"{margin:g} is outside 0 to {MAX_MARGIN:g}")

        async def portrait() -> vision_pb2.PortraitResponse:
            async with self._admission.slot("Portrait"):
                made = await self._pipeline.portrait(request.image, margin, DEFAULT_SCORE_THRESHOLD)
            response = vision_pb2.PortraitResponse(
                crop=_box_proto(made.crop),
                cutout_png=made.cut_out.cutout_png,
                alpha_png=made.cut_out.alpha_png,
                detections=[_detection_proto(d) for d in made.detections],
                image_size=_size_proto(made.size),
            )
            if made.person is not None:
                response.person.CopyFrom(_detection_proto(made.person))
            return response

        key = cache_key(
            "portrait",
            await _digest(request.image),
            margin,
            self._pipeline.detector.name,
            self._pipeline.matting.name,
        )
        return await self._cache.response(key, vision_pb2.PortraitResponse.FromString, portrait)


def _score_threshold(value: float) -> float:
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise InvalidArgument("score_threshold", f"{value:g} is outside 0 to 1")
    return value or DEFAULT_SCORE_THRESHOLD


async def _digest(data: bytes) -> str:
    """The cache's name for ``data``; a large image is hashed in a thread (16 MB: about
    10 ms)."""
    if len(data) < _HASH_IN_THREAD_BYTES:
        return _sha256(data)
    digest: str = await asyncio.to_thread(_sha256, data)
    return digest


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _box_proto(box: Box) -> vision_pb2.Box:
    return vision_pb2.Box(x_min=box.x_min, y_min=box.y_min, x_max=box.x_max, y_max=box.y_max)


def _detection_proto(detection: Detection) -> vision_pb2.Detection:
    return vision_pb2.Detection(
        box=_box_proto(detection.box), score=detection.score, label=detection.label
    )


def _box(box: vision_pb2.Box) -> Box:
    return Box(box.x_min, box.y_min, box.x_max, box.y_max)


def _size_proto(size: Size) -> vision_pb2.ImageSize:
    return vision_pb2.ImageSize(width=size.width, height=size.height)
