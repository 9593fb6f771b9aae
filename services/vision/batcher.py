"""Batches detection requests into model calls sized to what the device does for the price
of one.

A GPU runs a batch of eight images in about the time of one, and 32 in about two (YOLO11x
on an H200: 22-31 ms, 24 ms, 49 ms), so requests that wait a little for each other are
served many times over for the cost of one. When a batch starts, and how large it grows,
is the suite's one batching policy (``services.common.batcher``): a lone request waits at
most the window for company; one arriving while the model is busy joins the next batch,
which starts the moment the running one ends. On one GPU one batch at a time is right
(``max_in_flight`` 1): a second would only queue on the device and hold its requests back
from the batch after it.

What is the detector's own is here: each request's image is prepared (letterboxed) in a
worker thread before it joins (``prepare``), so only the model call runs once per batch;
a batch runs at the lowest score threshold and the largest limit asked in it, and each
request keeps what it asked for. A request cancelled while it waits leaves its place; one
cancelled while its batch runs is dropped from the answers. A request whose preparation
fails (its image) fails alone; a batch whose model call fails is run again image by
image, so only the request that broke it fails.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from opentelemetry import trace

from services.common.batcher import Batcher
from services.vision.engines.base import Detection, Image

InputT = TypeVar("InputT")

BatchRun = Callable[[list[InputT], float, int], list[list[Detection]]]
"""Detects in each prepared image at one score threshold, at most so many (0: all)."""

BATCH_SIZE_ATTRIBUTE = "chorus.vision.batch_size"
"""The span attribute naming how many images the request's model call held."""


@dataclass(frozen=True)
class _Request(Generic[InputT]):
    item: InputT
    score_threshold: float
    max_detections: int


@dataclass(frozen=True)
class _Answer:
    detections: list[Detection]
    batch_size: int


class DetectionBatcher(Generic[InputT]):
    """Collects concurrent ``detect`` calls into batches of at most ``max_batch`` images."""

    def __init__(
        self,
        run: BatchRun[InputT],
        *,
        max_batch: int,
        window_s: float,
        max_in_flight: int = 1,
        prepare: Callable[[Image], InputT] | None = None,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        """``run`` detects in a batch (on the batcher's threads, ``max_in_flight`` of
        them); ``prepare``, when given, turns an image into ``run``'s input in a worker
        thread first; ``on_batch`` hears each batch's size."""
        self._model_call = run
        self._prepare = prepare
        self._on_batch = on_batch
        self.batch_sizes: list[int] = []
        """Sizes of the batches started so far, in order (for benchmarks and tests)."""
        self._batcher: Batcher[_Request[InputT], _Answer] = Batcher(
            self._run_batch,
            max_batch=max_batch,
            window_s=window_s,
            workers=max_in_flight,
            name="vision-batch",
            on_batch=self._started,
        )

    @property
    def max_batch(self) -> int:
        """The most images in one model call."""
        return self._batcher.max_batch

    @property
    def window_s(self) -> float:
        """How long a request arriving to an idle model waits for company, at most."""
        return self._batcher.window_s

    @property
    def max_in_flight(self) -> int:
        """How many batches may run at once."""
        return self._batcher.workers

    @property
    def waiting(self) -> int:
        """Requests waiting for a batch now."""
        return self._batcher.waiting

    async def detect(
        self, image: Image, score_threshold: float, max_detections: int
    ) -> list[Detection]:
        """Detections for one image scoring at least ``score_threshold``, at most
        ``max_detections`` (0: all), computed in a batch with whatever else came."""
        if self._prepare is None:
            item = cast(InputT, image)
        else:
            item = await asyncio.to_thread(self._prepare, image)
        # Cancelling the wait cancels the request too, unless its batch has started.
        answer = await asyncio.wrap_future(
            self._batcher.submit(_Request(item, score_threshold, max_detections))
        )
        trace.get_current_span().set_attribute(BATCH_SIZE_ATTRIBUTE, answer.batch_size)
        return answer.detections

    def close(self) -> None:
        """Fail the requests still waiting and stop the batcher's threads."""
        self._batcher.close()

    def _started(self, batch: Sequence[_Request[InputT]]) -> None:
        self.batch_sizes.append(len(batch))
        if self._on_batch is not None:
            self._on_batch(len(batch))

    def _run_batch(self, batch: Sequence[_Request[InputT]]) -> list[_Answer]:
        # One threshold for the batch (the lowest asked) and one limit (the largest, or
        # none when a request wants all); each request then keeps what it asked for.
        threshold = min(request.score_threshold for request in batch)
        limits = [request.max_detections for request in batch]
        limit = 0 if 0 in limits else max(limits)
        found = self._model_call([request.item for request in batch], threshold, limit)
        if len(found) != len(batch):
            raise RuntimeError(f"{len(found)} answers to a batch of {len(batch)} images")
        return [
            _Answer(_kept(request, detections), len(batch))
            for request, detections in zip(batch, found, strict=True)
        ]


def _kept(request: _Request[Any], detections: list[Detection]) -> list[Detection]:
    """The detections a request asked for, from its batch's (best first, all above the
    batch's lowest threshold)."""
    kept = [d for d in detections if d.score >= request.score_threshold]
    return kept[: request.max_detections] if request.max_detections else kept
