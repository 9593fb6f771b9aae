"""Vision servicer: validates, serves from cache or the engines, maps boxes and mattes back.

Nothing that takes CPU in proportion to an image's pixels runs on the event loop: decoding,
cropping, scaling the matte and encoding the PNGs run in threads (``asyncio.to_thread``),
the models in the model threads. All of it happens while the request holds an admission
slot, taken before the image is decoded, so a request beyond the limit is refused (or
queued) before it costs any memory, and no more images are in memory at once than
admission lets run.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

from chorus.vision.v1 import vision_pb2, vision_pb2_grpc
from grpc import aio
from opentelemetry import trace

from services.common.admission import AdmissionController
from services.common.cache import ResultCache, cache_key
from services.common.errors import InvalidArgument
from services.vision.batcher import DetectionBatcher
from services.vision.engines.base import Box, Detection, Image, Matte, MattingModel, PersonDetector
from services.vision.images import (
    DecodedImage,
    alpha_png,
    crop_image,
    cutout_png,
    decode_image,
    resize_matte,
)

Context = aio.ServicerContext[Any, Any]
T = TypeVar("T")

DEFAULT_SCORE_THRESHOLD = 0.25
DEFAULT_MARGIN = 0.15
MAX_MARGIN = 2.0
# Below this, hashing on the loop is quicker than handing the work to a thread.
_HASH_IN_THREAD_BYTES = 1 << 20


class VisionServicer(vision_pb2_grpc.VisionServicer):
    """Serves chorus.vision.v1.Vision over one resident detector and matting model."""

    def __init__(
        self,
        *,
        detector: PersonDetector,
        matting: MattingModel,
        executor: Executor,
        batcher: DetectionBatcher | None,
        cache: ResultCache,
        admission: AdmissionController,
        tracer: trace.Tracer,
        max_pixels: int,
        working_side: int,
    ) -> None:
        self._detector = detector
        self._matting = matting
        self._executor = executor
        self._batcher = batcher
        self._cache = cache
        self._admission = admission
        self._tracer = tracer
        self._max_pixels = max_pixels
        self._working_side = working_side

    async def DetectPersons(
        self, request: vision_pb2.DetectPersonsRequest, context: Context
    ) -> vision_pb2.DetectPersonsResponse:
        """People in the image: boxes, scores, class."""
        threshold = _score_threshold(request.score_threshold)
        if request.max_detections < 0:
            raise InvalidArgument("max_detections", f"{request.max_detections} is negative")
        key = cache_key(
            "detect",
            await _digest(request.image),
            threshold,
            request.max_detections,
            self._detector.name,
        )
        cached = await self._cache.get_message(key, vision_pb2.DetectPersonsResponse)
        if cached is not None:
            cached.cache_hit = True
            return cached
        async with self._admission.slot("DetectPersons"):
            image = await self._decode(request.image)
            detections = await self._detect(image, threshold, request.max_detections)
            response = vision_pb2.DetectPersonsResponse(
                detections=[_detection_proto(d) for d in detections],
                image_size=_size(image.original),
                engine=self._detector.name,
            )
        await self._cache.put_message(key, response)
        return response

    async def RemoveBackground(
        self, request: vision_pb2.RemoveBackgroundRequest, context: Context
    ) -> vision_pb2.RemoveBackgroundResponse:
        """Alpha matte and RGBA cut-out of the image."""
        key = cache_key(
            "matte",
            await _digest(request.image),
            request.focus.SerializeToString(deterministic=True).hex()
            if request.HasField("focus")
            else None,
            self._matting.name,
        )
        cached = await self._cache.get_message(key, vision_pb2.RemoveBackgroundResponse)
        if cached is not None:
            cached.cache_hit = True
            return cached
        async with self._admission.slot("RemoveBackground"):
            image = await self._decode(request.image)
            focus = _focus(request, image.original) if request.HasField("focus") else None
            matte = await self._matte(image, focus)
            alpha, cutout = await self._encode(image.original, matte)
            response = vision_pb2.RemoveBackgroundResponse(
                alpha_png=alpha,
                cutout_png=cutout,
                image_size=_size(image.original),
                engine=self._matting.name,
            )
        await self._cache.put_message(key, response)
        return response

    async def Portrait(
        self, request: vision_pb2.PortraitRequest, context: Context
    ) -> vision_pb2.PortraitResponse:
        """Detect, pick the main person, crop with a margin, remove the background."""
        margin = request.margin or DEFAULT_MARGIN
        if math.isnan(margin) or not 0.0 <= margin <= MAX_MARGIN:
            raise InvalidArgument("margin", f"{margin:g} is outside 0 to {MAX_MARGIN:g}")
        key = cache_key(
            "portrait",
            await _digest(request.image),
            margin,
            self._detector.name,
            self._matting.name,
        )
        cached = await self._cache.get_message(key, vision_pb2.PortraitResponse)
        if cached is not None:
            cached.cache_hit = True
            return cached
        async with self._admission.slot("Portrait"):
            image = await self._decode(request.image)
            height, width = image.original.shape[:2]
            detections = await self._detect(image, DEFAULT_SCORE_THRESHOLD, 0)
            person = _main_person(detections)
            crop = (
                _expand(person.box, margin, width, height)
                if person is not None
                else Box(0.0, 0.0, float(width), float(height))
            )
            x0, y0, x1, y1 = _pixels(crop)
            with self._tracer.start_as_current_span("vision.crop"):
                cropped = await asyncio.to_thread(
                    crop_image, image, x0, y0, x1, y1, self._working_side
                )
            focus = (
                Box(person.box.x_min - x0, person.box.y_min - y0, person.box.x_max - x0,
                    person.box.y_max - y0)
                if person is not None
                else None
            )  # fmt: skip
            matte = await self._matte(cropped, focus)
            alpha, cutout = await self._encode(cropped.original, matte)
            response = vision_pb2.PortraitResponse(
                crop=_box_proto(Box(float(x0), float(y0), float(x1), float(y1))),
                cutout_png=cutout,
                alpha_png=alpha,
                detections=[_detection_proto(d) for d in detections],
                image_size=_size(image.original),
            )
            if person is not None:
                response.person.CopyFrom(_detection_proto(person))
        await self._cache.put_message(key, response)
        return response

    async def _decode(self, data: bytes) -> DecodedImage:
        """The request's image, decoded in a thread while the caller holds an admission
        slot (as prosody decodes audio): a large image takes up to a second to decode and
        hundreds of MB to hold, so no more are decoded at once than admission lets run
        (the header's size is checked first)."""
        with self._tracer.start_as_current_span(
            "vision.decode", attributes={"chorus.vision.bytes": len(data)}
        ):
            return await asyncio.to_thread(
                decode_image, data, self._max_pixels, self._working_side, "image"
            )

    async def _detect(
        self, image: DecodedImage, threshold: float, max_detections: int
    ) -> list[Detection]:
        """Detections in pixels of the original, best first."""
        with self._tracer.start_as_current_span(
            "vision.detect", attributes={"chorus.vision.engine": self._detector.name}
        ) as span:
            if self._batcher is not None:
                found = await self._batcher.detect(image.working, threshold, max_detections)
            else:
                found = await self._run(
                    self._detector.detect, image.working, threshold, max_detections
                )
            span.set_attribute("chorus.vision.detections", len(found))
        return [Detection(image.to_original(d.box), d.score, d.label) for d in found]

    async def _matte(self, image: DecodedImage, focus: Box | None) -> Matte:
        """The matte at the original's size; ``focus`` in pixels of the original."""
        with self._tracer.start_as_current_span(
            "vision.matte", attributes={"chorus.vision.engine": self._matting.name}
        ):
            working_focus = image.to_working(focus) if focus is not None else None
            matte = await self._run(self._matting.matte, image.working, working_focus)
            height, width = image.original.shape[:2]
            if matte.shape == (height, width):
                return matte
            return await asyncio.to_thread(resize_matte, matte, width, height)

    async def _encode(self, image: Image, matte: Matte) -> tuple[bytes, bytes]:
        """The alpha PNG and the cut-out PNG, encoded in a thread (seconds for a large
        image)."""
        with self._tracer.start_as_current_span("vision.encode"):
            return await asyncio.to_thread(_pngs, image, matte)

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)


def _score_threshold(value: float) -> float:
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise InvalidArgument("score_threshold", f"{value:g} is outside 0 to 1")
    return value or DEFAULT_SCORE_THRESHOLD


def _focus(request: vision_pb2.RemoveBackgroundRequest, image: Image) -> Box:
    height, width = image.shape[:2]
    box = Box(request.focus.x_min, request.focus.y_min, request.focus.x_max, request.focus.y_max)
    clipped = Box(
        max(0.0, box.x_min), max(0.0, box.y_min), min(width, box.x_max), min(height, box.y_max)
    )
    if (
        not all(math.isfinite(v) for v in (box.x_min, box.y_min, box.x_max, box.y_max))
        or clipped.area < 1.0
    ):
        raise InvalidArgument(
            "focus",
            f"box ({box.x_min:g}, {box.y_min:g})-({box.x_max:g}, {box.y_max:g}) "
            f"does not cover any of the {width}x{height} image",
        )
    return clipped


def _main_person(detections: list[Detection]) -> Detection | None:
    """The person the picture is of: the largest box, weighted by confidence."""
    return max(detections, key=lambda d: d.box.area * d.score, default=None)


def _expand(box: Box, margin: float, width: int, height: int) -> Box:
    dx = (box.x_max - box.x_min) * margin
    dy = (box.y_max - box.y_min) * margin
    return Box(
        max(0.0, box.x_min - dx),
        max(0.0, box.y_min - dy),
        min(float(width), box.x_max + dx),
        min(float(height), box.y_max + dy),
    )


def _pixels(box: Box) -> tuple[int, int, int, int]:
    x0, y0 = math.floor(box.x_min), math.floor(box.y_min)
    return x0, y0, max(x0 + 1, math.ceil(box.x_max)), max(y0 + 1, math.ceil(box.y_max))


async def _digest(data: bytes) -> str:
    """The cache's name for ``data``; a large image is hashed in a thread (16 MB: about
    10 ms)."""
    if len(data) < _HASH_IN_THREAD_BYTES:
        return _sha256(data)
    return await asyncio.to_thread(_sha256, data)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _pngs(image: Image, matte: Matte) -> tuple[bytes, bytes]:
    return alpha_png(matte), cutout_png(image, matte)


def _size(image: Image) -> vision_pb2.ImageSize:
    return vision_pb2.ImageSize(width=image.shape[1], height=image.shape[0])


def _box_proto(box: Box) -> vision_pb2.Box:
    return vision_pb2.Box(x_min=box.x_min, y_min=box.y_min, x_max=box.x_max, y_max=box.y_max)


def _detection_proto(detection: Detection) -> vision_pb2.Detection:
    return vision_pb2.Detection(
        box=_box_proto(detection.box), score=detection.score, label=detection.label
    )
