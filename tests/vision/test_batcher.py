import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from services.vision.batcher import DetectionBatcher
from services.vision.engines.base import Box, Detection, Image
from tests.support.waiting import WAIT_S


class Recording:
    """A batch function that reports each image's mean value as one detection's score."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.lock = threading.Lock()

    def __call__(self, images: list[Image], threshold: float) -> list[list[Detection]]:
        with self.lock:
            self.calls.append(len(images))
        return [
            [
                Detection(Box(0, 0, 1, 1), float(image.mean()) / 255),
                Detection(Box(0, 0, 2, 2), float(image.mean()) / 510),
            ]
            for image in images
        ]


def image(value: int) -> Image:
    return np.full((4, 4, 3), value, np.uint8)


async def test_requests_arriving_together_share_one_call() -> None:
    detect = Recording()
    batcher = DetectionBatcher(detect, ThreadPoolExecutor(2), max_batch=8, max_wait_s=0.02)
    results = await asyncio.gather(*(batcher.detect(image(100 + i), 0.0, 0) for i in range(5)))
    assert detect.calls == [5]
    # Each request gets its own image's results, in order.
    assert [round(r[0].score * 255) for r in results] == [100, 101, 102, 103, 104]


async def test_a_full_batch_goes_at_once_and_the_rest_follows() -> None:
    detect = Recording()
    # A wait far longer than the test's bound: only full batches going at once, without
    # that wait, can finish in time.
    batcher = DetectionBatcher(detect, ThreadPoolExecutor(2), max_batch=3, max_wait_s=3600)
    await asyncio.wait_for(
        asyncio.gather(*(batcher.detect(image(50), 0.0, 0) for i in range(6))), WAIT_S
    )
    assert detect.calls == [3, 3]


async def test_each_request_keeps_its_own_threshold_and_limit() -> None:
    batcher = DetectionBatcher(Recording(), ThreadPoolExecutor(1), max_batch=4, max_wait_s=0.01)
    strict, limited = await asyncio.gather(
        batcher.detect(image(255), 0.9, 0), batcher.detect(image(255), 0.0, 1)
    )
    assert [round(d.score, 2) for d in strict] == [1.0]
    assert len(limited) == 1


async def test_a_failed_batch_fails_every_request_in_it() -> None:
    def broken(images: list[Image], threshold: float) -> list[list[Detection]]:
        raise RuntimeError("model exploded")

    batcher = DetectionBatcher(broken, ThreadPoolExecutor(1), max_batch=4, max_wait_s=0.01)
    results = await asyncio.gather(
        batcher.detect(image(1), 0.0, 0), batcher.detect(image(2), 0.0, 0), return_exceptions=True
    )
    assert all(isinstance(r, RuntimeError) for r in results)


def test_batch_size_at_least_one() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        DetectionBatcher(Recording(), ThreadPoolExecutor(1), max_batch=0, max_wait_s=0.01)
