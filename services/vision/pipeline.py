"""What the vision RPCs do, free of gRPC: encoded image in, boxes and PNGs out.

Nothing that takes CPU in proportion to an image's pixels runs on the event loop: decoding,
cropping, scaling the matte and encoding the PNGs run in threads (``asyncio.to_thread``),
the models in the model threads. Callers hold an admission slot around each call, so no
more images are in memory at once than admission lets run.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, TypeVar

from opentelemetry import trace

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

T = TypeVar("T")

IMAGE_FIELD = "image"
"""The request field an image comes in, as errors about it name it."""


@dataclass(frozen=True)
class Size:
    """An image's size in pixels."""

    width: int
    height: int


@dataclass(frozen=True)
class PeopleFound:
    """DetectPersons' answer: boxes in pixels of the image as sent, best first."""

    detections: list[Detection]
    size: Size


@dataclass(frozen=True)
class CutOut:
    """A matte as a grey PNG and the image cut out by it as an RGBA PNG."""

    alpha_png: bytes
    cutout_png: bytes
    size: Size
    """The size of the image the cut-out is of."""


@dataclass(frozen=True)
class Portrait:
    """Portrait's answer: the main person, cropped with a margin and cut out."""

    crop: Box
    person: Detection | None
    """The person the picture is of; None when nobody was found (then the crop is all)."""
    detections: list[Detection]
    cut_out: CutOut
    size: Size
    """The size of the image as sent."""


class VisionPipeline:
    """Detection, matting and portraits over one resident detector and matting model."""

    def __init__(
        self,
        *,
        detector: PersonDetector,
        matting: MattingModel,
        executor: Executor,
        batcher: DetectionBatcher[Any] | None,
        tracer: trace.Tracer,
        max_pixels: int,
        working_side: int,
    ) -> None:
        self.detector = detector
        self.matting = matting
        self._executor = executor
        self._batcher = batcher
        self._tracer = tracer
        self._max_pixels = max_pixels
        self._working_side = working_side

    async def detect(self, data: bytes, threshold: float, max_detections: int) -> PeopleFound:
        """People in the encoded image ``data`` scoring at least ``threshold``, at most
        ``max_detections`` (0: all). InvalidArgument naming ``image`` for a bad image."""
        image = await self._decode(data)
        detections = await self._detect(image, threshold, max_detections)
        return PeopleFound(detections, _size(image.original))

    async def remove_background(self, data: bytes, focus: Box | None) -> CutOut:
        """The image cut out of its background; ``focus`` (pixels, may reach past the
        edges) is where the subject is. InvalidArgument names ``focus`` when it covers
        none of the image."""
        image = await self._decode(data)
        clipped = _clipped_focus(focus, image.original) if focus is not None else None
        return await self._cut_out(image, clipped)

    async def portrait(self, data: bytes, margin: float, threshold: float) -> Portrait:
        """The main person (the largest box, weighted by its score) cropped with ``margin``
        (a share of the box's size on each side) and cut out; the whole image when nobody
        scores ``threshold``."""
        image = await self._decode(data)
        height, width = image.original.shape[:2]
        detections = await self._detect(image, threshold, 0)
        person = max(detections, key=lambda d: d.box.area * d.score, default=None)
        crop = (
            _expanded(person.box, margin, width, height)
            if person is not None
            else Box(0.0, 0.0, float(width), float(height))
        )
        x0, y0, x1, y1 = _pixels(crop)
        with self._tracer.start_as_current_span("vision.crop"):
            cropped = await asyncio.to_thread(crop_image, image, x0, y0, x1, y1, self._working_side)
        focus = (
            Box(person.box.x_min - x0, person.box.y_min - y0, person.box.x_max - x0,
                person.box.y_max - y0)
            if person is not None
            else None
        )  # fmt: skip
        return Portrait(
            crop=Box(float(x0), float(y0), float(x1), float(y1)),
            person=person,
            detections=detections,
            cut_out=await self._cut_out(cropped, focus),
            size=Size(width, height),
        )

    async def _decode(self, data: bytes) -> DecodedImage:
        """The image, decoded in a thread: a large one takes up to a second and hundreds
        of MB (its header's size is checked first)."""
        with self._tracer.start_as_current_span(
            "vision.decode", attributes={"chorus.vision.bytes": len(data)}
        ):
            return await asyncio.to_thread(
                decode_image, data, self._max_pixels, self._working_side, IMAGE_FIELD
            )

    async def _detect(
        self, image: DecodedImage, threshold: float, max_detections: int
    ) -> list[Detection]:
        """Detections in pixels of the original, best first."""
        with self._tracer.start_as_current_span(
            "vision.detect", attributes={"chorus.vision.engine": self.detector.name}
        ) as span:
            if self._batcher is not None:
                found = await self._batcher.detect(image.working, threshold, max_detections)
            else:
                found = await self._run(
                    self.detector.detect, image.working, threshold, max_detections
                )
            span.set_attribute("chorus.vision.detections", len(found))
        return [Detection(image.to_original(d.box), d.score, d.label) for d in found]

    async def _cut_out(self, image: DecodedImage, focus: Box | None) -> CutOut:
        """The matte at the original's size, encoded with the cut-out; ``focus`` in pixels
        of the original."""
        with self._tracer.start_as_current_span(
            "vision.matte", attributes={"chorus.vision.engine": self.matting.name}
        ):
            working_focus = image.to_working(focus) if focus is not None else None
            matte = await self._run(self.matting.matte, image.working, working_focus)
            height, width = image.original.shape[:2]
            if matte.shape != (height, width):
                matte = await asyncio.to_thread(resize_matte, matte, width, height)
        with self._tracer.start_as_current_span("vision.encode"):
            alpha, cutout = await asyncio.to_thread(_pngs, image.original, matte)
        return CutOut(alpha, cutout, _size(image.original))

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)


def _clipped_focus(box: Box, image: Image) -> Box:
    """``box`` cut to the image; InvalidArgument naming ``focus`` when nothing is left."""
    height, width = image.shape[:2]
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


def _expanded(box: Box, margin: float, width: int, height: int) -> Box:
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


def _pngs(image: Image, matte: Matte) -> tuple[bytes, bytes]:
    return alpha_png(matte), cutout_png(image, matte)


def _size(image: Image) -> Size:
    return Size(width=image.shape[1], height=image.shape[0])
