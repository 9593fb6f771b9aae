"""The detection batcher, by structure: which requests went to the model together, and
what each got back, never how long anything took. (When a batch leaves is the common
batcher's policy, tested in tests/common/test_batcher.py; here it is seen through the
detector's own parts: preparation, thresholds and limits, failures, cancellation.)

The model here is a batch function that answers each image with detections scored from
its pixel value, and can hold each call in its thread until the test lets it go, so a test
knows that a batch is running while more requests arrive.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import pytest

from services.vision.batcher import DetectionBatcher
from services.vision.engines.base import Box, Detection, Image
from tests.support.waiting import WAIT_S, wait_until

POISON = 13
"""An image of this value makes the model call fail (Model) or its preparation (prepare)."""


def image(value: int) -> Image:
    return np.full((4, 4, 3), value, np.uint8)


def value_of(image: Image) -> int:
    return int(image[0, 0, 0])


class Model:
    """A batch function: each image gets two detections, scored its value / 255 and half
    that; records each call's images; can hold every call until ``release``."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        self.started = 0
        self._lock = threading.Lock()
        self._go = threading.Event()
        self._go.set()
        self.asked: list[tuple[float, int]] = []
        """Each call's score threshold and limit."""

    def __call__(
        self, images: list[Image], threshold: float, max_detections: int
    ) -> list[list[Detection]]:
        values = [value_of(image) for image in images]
        with self._lock:
            self.calls.append(values)
            self.asked.append((threshold, max_detections))
            self.started += 1
        if not self._go.wait(WAIT_S):
            raise TimeoutError("the test never released the model")
        if POISON in values:
            raise RuntimeError("model exploded")
        found = [
            [Detection(Box(0, 0, 1, 1), v / 255), Detection(Box(0, 0, 2, 2), v / 510)]
            for v in values
        ]
        return [f[:max_detections] if max_detections else f for f in found]

    @contextmanager
    def holding(self) -> Iterator[None]:
        """Calls started inside the block wait in their thread until it ends."""
        self._go.clear()
        try:
            yield
        finally:
            self._go.set()


@pytest.fixture
def made() -> Iterator[list[DetectionBatcher[Image]]]:
    """The batchers a test made, closed after it."""
    batchers: list[DetectionBatcher[Image]] = []
    yield batchers
    for made_batcher in batchers:
        made_batcher.close()


@pytest.fixture
def batcher(made: list[DetectionBatcher[Image]]) -> Callable[..., DetectionBatcher[Image]]:
    """Makes a batcher over a model, closed after the test."""

    def make(
        model: Model,
        max_batch: int = 8,
        window_s: float = 0.0,
        in_flight: int = 1,
        prepare: Callable[[Image], Image] | None = None,
    ) -> DetectionBatcher[Image]:
        made.append(
            DetectionBatcher(
                model,
                max_batch=max_batch,
                window_s=window_s,
                max_in_flight=in_flight,
                prepare=prepare,
            )
        )
        return made[-1]

    return make


MakeBatcher = Callable[..., DetectionBatcher[Image]]


def scores(found: list[Detection]) -> list[int]:
    """Each detection's score back as the pixel value it came from (x255)."""
    return [round(d.score * 255) for d in found]


async def test_a_full_batch_goes_at_once_and_the_rest_follows(batcher: MakeBatcher) -> None:
    model = Model()
    # A window far longer than the test's bound: only full batches, and batches of
    # requests that waited for the busy model, can finish in time.
    detector = batcher(model, max_batch=3, window_s=3600)
    await asyncio.wait_for(
        asyncio.gather(*(detector.detect(image(50), 0.0, 0) for _ in range(6))), WAIT_S
    )
    assert detector.batch_sizes == [3, 3]


async def test_batches_grow_while_the_model_is_busy(batcher: MakeBatcher) -> None:
    model = Model()
    detector = batcher(model, max_batch=4, window_s=0.0)
    with model.holding():
        first = asyncio.create_task(detector.detect(image(1), 0.0, 0))
        # No window: a request to an idle model goes at once, alone.
        await wait_until(lambda: model.started == 1, "the first batch running")
        rest = [asyncio.create_task(detector.detect(image(2 + i), 0.0, 0)) for i in range(10)]
        await wait_until(lambda: detector.waiting == 10, "ten requests gathered")
        assert detector.batch_sizes == [1]
    await asyncio.wait_for(asyncio.gather(first, *rest), WAIT_S)
    # Those that came during the run went in full batches as the model freed, in order.
    assert detector.batch_sizes == [1, 4, 4, 2]
    assert model.calls == [[1], [2, 3, 4, 5], [6, 7, 8, 9], [10, 11]]


async def test_a_request_arriving_during_a_run_goes_in_the_next_batch_as_it_ends(
    batcher: MakeBatcher,
) -> None:
    model = Model()
    detector = batcher(model, max_batch=2, window_s=3600)
    with model.holding():
        running = [asyncio.create_task(detector.detect(image(v), 0.0, 0)) for v in (1, 2)]
        await wait_until(lambda: model.started == 1, "the full batch running")
        late = asyncio.create_task(detector.detect(image(3), 0.0, 0))
        await wait_until(lambda: detector.waiting == 1, "the late request waiting")
    # It did not join the running batch, and did not wait an hour for company after it.
    assert scores(await asyncio.wait_for(late, WAIT_S)) == [3, 2]
    await asyncio.gather(*running)
    assert model.calls == [[1, 2], [3]]


async def test_two_batches_in_flight_when_the_setting_allows(batcher: MakeBatcher) -> None:
    model = Model()
    detector = batcher(model, max_batch=2, window_s=0.0, in_flight=2)
    with model.holding():
        first = asyncio.create_task(detector.detect(image(1), 0.0, 0))
        await wait_until(lambda: model.started == 1, "the first batch running")
        second = asyncio.create_task(detector.detect(image(2), 0.0, 0))
        await wait_until(lambda: model.started == 2, "the second batch running")
        third = asyncio.create_task(detector.detect(image(3), 0.0, 0))
        await wait_until(lambda: detector.waiting == 1, "the third waiting for a slot")
    await asyncio.wait_for(asyncio.gather(first, second, third), WAIT_S)
    assert detector.batch_sizes == [1, 1, 1]


async def test_each_request_keeps_its_own_threshold_and_limit(batcher: MakeBatcher) -> None:
    model = Model()
    detector = batcher(model, max_batch=4, window_s=3600)
    # (pixel value, threshold, limit): detections score value/255 and value/510.
    asked = [(200, 0.0, 0), (200, 0.5, 0), (100, 0.3, 0), (250, 0.0, 1)]
    results = await asyncio.wait_for(
        asyncio.gather(*(detector.detect(image(v), t, n) for v, t, n in asked)), WAIT_S
    )
    assert detector.batch_sizes == [4]
    # One call at the lowest threshold asked, for all detections (one request wants all) ...
    assert model.asked == [(0.0, 0)]
    # ... and each request keeps its own image's detections above its own threshold.
    assert [scores(found) for found in results] == [[200, 100], [200], [100], [250]]


async def test_a_batch_asks_the_model_for_its_largest_limit(batcher: MakeBatcher) -> None:
    model = Model()
    detector = batcher(model, max_batch=3, window_s=3600)
    results = await asyncio.wait_for(
        asyncio.gather(
            *(detector.detect(image(v), 0.3, n) for v, n in ((200, 1), (100, 2), (50, 1)))
        ),
        WAIT_S,
    )
    # No request wants more than two, so the model finds no more than two in any image.
    assert model.asked == [(0.3, 2)]
    assert [scores(found) for found in results] == [[200], [100], []]


async def test_a_failed_model_call_fails_only_the_request_that_broke_it(
    batcher: MakeBatcher,
) -> None:
    model = Model()
    detector = batcher(model, max_batch=2, window_s=0.0)
    with model.holding():
        before = asyncio.create_task(detector.detect(image(1), 0.0, 0))
        await wait_until(lambda: model.started == 1, "the first batch running")
        doomed = [asyncio.create_task(detector.detect(image(v), 0.0, 0)) for v in (POISON, 2)]
        after = asyncio.create_task(detector.detect(image(3), 0.0, 0))
        await wait_until(lambda: detector.waiting == 3, "three requests gathered")
    results = await asyncio.wait_for(
        asyncio.gather(before, *doomed, after, return_exceptions=True), WAIT_S
    )
    # The failed batch was run again image by image: only the poisoned one failed.
    assert model.calls == [[1], [POISON, 2], [POISON], [2], [3]]
    assert isinstance(results[1], RuntimeError)
    found = [results[i] for i in (0, 2, 3)]
    assert [scores(f) for f in found if isinstance(f, list)] == [[1, 0], [2, 1], [3, 2]]
    # The batcher goes on.
    assert scores(await detector.detect(image(4), 0.0, 0)) == [4, 2]


async def test_an_image_that_fails_its_preparation_fails_alone(batcher: MakeBatcher) -> None:
    def prepare(image: Image) -> Image:
        if value_of(image) == POISON:
            raise ValueError("not an image the model takes")
        return image

    model = Model()
    detector = batcher(model, max_batch=2, window_s=3600, prepare=prepare)
    results = await asyncio.wait_for(
        asyncio.gather(
            *(detector.detect(image(v), 0.0, 0) for v in (1, POISON, 2)), return_exceptions=True
        ),
        WAIT_S,
    )
    assert isinstance(results[1], ValueError)
    # The other two made a full batch (in the order their preparations finished).
    assert [sorted(call) for call in model.calls] == [[1, 2]]


async def test_a_cancelled_waiting_request_frees_its_place(batcher: MakeBatcher) -> None:
    model = Model()
    detector = batcher(model, max_batch=2, window_s=0.0)
    with model.holding():
        first = asyncio.create_task(detector.detect(image(1), 0.0, 0))
        await wait_until(lambda: model.started == 1, "the first batch running")
        waiting = {v: asyncio.create_task(detector.detect(image(v), 0.0, 0)) for v in (2, 3, 4)}
        await wait_until(lambda: detector.waiting == 3, "three requests waiting")
        waiting[3].cancel()
        await wait_until(lambda: detector.waiting == 2, "the cancelled request gone")
    await asyncio.wait_for(asyncio.gather(first, waiting[2], waiting[4]), WAIT_S)
    # Its place in the next batch went to the request behind it; the model never saw it.
    assert model.calls == [[1], [2, 4]]
    assert waiting[3].cancelled()


async def test_a_request_cancelled_while_its_batch_runs_leaves_the_others_their_answers(
    batcher: MakeBatcher,
) -> None:
    model = Model()
    detector = batcher(model, max_batch=2, window_s=3600)
    with model.holding():
        gone, kept = (asyncio.create_task(detector.detect(image(v), 0.0, 0)) for v in (1, 2))
        await wait_until(lambda: model.started == 1, "the batch running")
        gone.cancel()
    assert scores(await asyncio.wait_for(kept, WAIT_S)) == [2, 1]
    assert gone.cancelled()
    # The batcher goes on: the next two make a batch of their own.
    later = await asyncio.wait_for(
        asyncio.gather(*(detector.detect(image(v), 0.0, 1) for v in (3, 4))), WAIT_S
    )
    assert [scores(found) for found in later] == [[3], [4]]
    assert model.calls == [[1, 2], [3, 4]]


async def test_images_are_prepared_in_parallel_off_the_event_loop(batcher: MakeBatcher) -> None:
    # Three preparations that each wait for the other two: they pass only if all three
    # run at once, in threads of their own (never one after another, nor on the loop).
    meeting = threading.Barrier(3, timeout=WAIT_S)
    threads: set[int] = set()

    def prepare(image: Image) -> Image:
        threads.add(threading.get_ident())
        meeting.wait()
        return image

    model = Model()
    detector = batcher(model, max_batch=3, window_s=3600, prepare=prepare)
    await asyncio.wait_for(
        asyncio.gather(*(detector.detect(image(v), 0.0, 0) for v in (1, 2, 3))), WAIT_S
    )
    assert len(threads) == 3
    assert threading.get_ident() not in threads
    assert detector.batch_sizes == [3]
