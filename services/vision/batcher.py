"""Batches detection requests that arrive together into one model call (on the GPU).

A GPU runs a batch of eight images in little more time than one, so requests that arrive
within ``max_wait_s`` of each other share a call. The first request of a batch waits at
most that long; under no load a request runs alone at once after the wait.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass

from services.vision.engines.base import Detection, Image

BatchDetect = Callable[[list[Image], float], list[list[Detection]]]
"""Detects in each image at one score threshold, with no count limit."""


@dataclass
class _Pending:
    image: Image
    score_threshold: float
    max_detections: int
    result: asyncio.Future[list[Detection]]


class DetectionBatcher:
    """Collects concurrent ``detect`` calls into batches of at most ``max_batch``."""

    def __init__(
        self, detect_batch: BatchDetect, executor: Executor, max_batch: int, max_wait_s: float
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._detect_batch = detect_batch
        self._executor = executor
        self._max_batch = max_batch
        self._max_wait_s = max_wait_s
        self._pending: list[_Pending] = []
        self._flush: asyncio.TimerHandle | None = None
        self._running: set[asyncio.Task[None]] = set()
        self.batch_sizes: list[int] = []
        """Sizes of the batches run so far (for spans and tests)."""

    async def detect(
        self, image: Image, score_threshold: float, max_detections: int
    ) -> list[Detection]:
        """Detections for one image, computed in a batch with whatever else came."""
        loop = asyncio.get_running_loop()
        pending = _Pending(image, score_threshold, max_detections, loop.create_future())
        self._pending.append(pending)
        if len(self._pending) >= self._max_batch:
            self._run_batch()
        elif self._flush is None:
            self._flush = loop.call_later(self._max_wait_s, self._run_batch)
        return await pending.result

    def _run_batch(self) -> None:
        """Send everything waiting, in batches of at most ``max_batch``."""
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        while self._pending:
            batch = self._pending[: self._max_batch]
            self._pending = self._pending[self._max_batch :]
            self.batch_sizes.append(len(batch))
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(self, batch: list[_Pending]) -> None:
        # One threshold for the batch (the lowest asked); each request then keeps its own.
        threshold = min(item.score_threshold for item in batch)
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(
                self._executor, self._detect_batch, [item.image for item in batch], threshold
            )
        except Exception as error:
            for item in batch:
                if not item.result.done():
                    item.result.set_exception(error)
            return
        for item, detections in zip(batch, results, strict=True):
            kept = [d for d in detections if d.score >= item.score_threshold]
            if item.max_detections:
                kept = kept[: item.max_detections]
            if not item.result.done():
                item.result.set_result(kept)
