"""Batches detection requests into model calls sized to what the device does for the price
of one.

A GPU runs a batch of eight images in about the time of one, and 32 in about two (YOLO11x
on an H200: 22-31 ms, 24 ms, 49 ms), so requests that wait a little for each other are
served many times over for the cost of one. The policy (``BatchPolicy``):

- a batch starts when a slot is free (fewer than ``max_in_flight`` batches running) and
  either ``max_batch`` requests wait, or the oldest waiting one is due;
- a request that arrives while a slot is free is due ``window_s`` after it arrived: a lone
  request waits at most that long for company;
- a request that arrives while every slot is busy is due at once: it waits for the slot
  anyway, gathering with others into the next batch, which starts the moment a batch
  ends. So under load batches grow as large as the time of one run lets them, with no
  window at all, and at low load nothing waits longer than the window.

On one GPU one batch at a time is right (``max_in_flight`` 1): a second would only queue
on the device and hold its requests back from the batch after it.

Each request's image is prepared (letterboxed) in its own thread before it joins
(``prepare``), so only the model call itself runs once per batch. A request cancelled
while it waits leaves its place; one cancelled while its batch runs is dropped from the
answers. A batch whose model call fails fails the requests in it and no others: the next
batch runs as usual. A request whose preparation fails (its image) fails alone.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar, cast

from opentelemetry import trace

from services.vision.engines.base import Detection, Image

InputT = TypeVar("InputT")

BatchRun = Callable[[list[InputT], float, int], list[list[Detection]]]
"""Detects in each prepared image at one score threshold, at most so many (0: all)."""

BATCH_SIZE_ATTRIBUTE = "chorus.vision.batch_size"
"""The span attribute naming how many images the request's model call held."""


class Cancellable(Protocol):
    """A scheduled callback (asyncio's TimerHandle)."""

    def cancel(self) -> None:
        """Do not run it."""


class Clock(Protocol):
    """When things happen: the running event loop, or a test's fake."""

    def time(self) -> float:
        """Now, in seconds."""

    def call_at(self, when: float, callback: Callable[[], object]) -> Cancellable:
        """Run ``callback`` at ``when`` (this clock's time)."""


@dataclass(frozen=True)
class BatchPolicy:
    """When waiting requests go to the model, and how many at once (see the module)."""

    max_batch: int
    window_s: float
    max_in_flight: int = 1

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if not self.window_s >= 0:
            raise ValueError("the batch window must be 0 or more")
        if self.max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")

    def due(self, arrived: float, in_flight: int) -> float:
        """When a request arriving at ``arrived`` with ``in_flight`` batches running is
        due: after the window when a slot is free, else at once (the slot is its wait)."""
        return arrived + self.window_s if in_flight < self.max_in_flight else arrived

    def batch_now(self, now: float, waiting: int, earliest_due: float, in_flight: int) -> int:
        """How many of the ``waiting`` requests start now as one batch (0: none yet)."""
        if waiting == 0 or in_flight >= self.max_in_flight:
            return 0
        if waiting >= self.max_batch or now >= earliest_due:
            return min(waiting, self.max_batch)
        return 0


@dataclass(eq=False)  # each request is itself: found in a list by identity
class _Pending(Generic[InputT]):
    item: InputT
    score_threshold: float
    max_detections: int
    due: float
    result: asyncio.Future[list[Detection]]
    batch_size: int = field(default=0)


class DetectionBatcher(Generic[InputT]):
    """Collects concurrent ``detect`` calls into batches, as ``policy`` says."""

    def __init__(
        self,
        run: BatchRun[InputT],
        executor: Executor,
        policy: BatchPolicy,
        *,
        prepare: Callable[[Image], InputT] | None = None,
        clock: Clock | None = None,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        """``run`` detects in a batch (on ``executor``); ``prepare``, when given, turns an
        image into ``run``'s input in a worker thread first; ``clock`` is the running
        loop unless a test brings its own; ``on_batch`` hears each batch's size."""
        self._model_call = run
        self._executor = executor
        self.policy = policy
        self._prepare = prepare
        self._clock = clock
        self._on_batch = on_batch
        self._waiting: list[_Pending[InputT]] = []
        self._in_flight = 0
        self._timer: Cancellable | None = None
        self._timer_at = math.inf
        self._tasks: set[asyncio.Task[None]] = set()
        self.batch_sizes: list[int] = []
        """Sizes of the batches started so far, in order (for benchmarks and tests)."""

    @property
    def waiting(self) -> int:
        """Requests waiting for a batch now."""
        return len(self._waiting)

    @property
    def in_flight(self) -> int:
        """Batches running now."""
        return self._in_flight

    async def detect(
        self, image: Image, score_threshold: float, max_detections: int
    ) -> list[Detection]:
        """Detections for one image scoring at least ``score_threshold``, at most
        ``max_detections`` (0: all), computed in a batch with whatever else came."""
        if self._prepare is None:
            item = cast(InputT, image)
        else:
            item = await asyncio.to_thread(self._prepare, image)
        clock = self._now_clock()
        pending = _Pending(
            item,
            score_threshold,
            max_detections,
            self.policy.due(clock.time(), self._in_flight),
            asyncio.get_running_loop().create_future(),
        )
        self._waiting.append(pending)
        self._dispatch()
        try:
            found = await pending.result
        except asyncio.CancelledError:
            self._withdraw(pending)
            raise
        trace.get_current_span().set_attribute(BATCH_SIZE_ATTRIBUTE, pending.batch_size)
        return found

    def _now_clock(self) -> Clock:
        return self._clock if self._clock is not None else asyncio.get_running_loop()

    def _withdraw(self, pending: _Pending[InputT]) -> None:
        """A cancelled request gives up its place, if it has not gone to the model yet."""
        if pending in self._waiting:
            self._waiting.remove(pending)
            self._dispatch()

    def _dispatch(self, fired_at: float = -math.inf) -> None:
        """Start every batch the policy allows now, then set the timer for the next."""
        clock = self._now_clock()
        # A timer may fire a hair before its time by the clock: it is due all the same.
        now = max(clock.time(), fired_at)
        while count := self.policy.batch_now(
            now, len(self._waiting), self._earliest_due(), self._in_flight
        ):
            batch, self._waiting = self._waiting[:count], self._waiting[count:]
            self._start(batch)
        wanted = (
            self._earliest_due()
            if self._waiting and self._in_flight < self.policy.max_in_flight
            else math.inf
        )
        if wanted == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = wanted
        if wanted < math.inf:
            self._timer = clock.call_at(wanted, lambda: self._on_timer(wanted))

    def _on_timer(self, when: float) -> None:
        self._timer = None
        self._timer_at = math.inf
        self._dispatch(fired_at=when)

    def _earliest_due(self) -> float:
        return min((pending.due for pending in self._waiting), default=math.inf)

    def _start(self, batch: list[_Pending[InputT]]) -> None:
        """Hand ``batch`` to the model now (its thread starts on it at once) and answer
        its requests when it is done."""
        self._in_flight += 1
        self.batch_sizes.append(len(batch))
        if self._on_batch is not None:
            self._on_batch(len(batch))
        # One threshold for the batch (the lowest asked) and one limit (the largest, or
        # none when a request wants all); each request then keeps what it asked for.
        threshold = min(pending.score_threshold for pending in batch)
        limits = [pending.max_detections for pending in batch]
        limit = 0 if 0 in limits else max(limits)
        loop = asyncio.get_running_loop()
        call = loop.run_in_executor(
            self._executor,
            self._model_call,
            [pending.item for pending in batch],
            threshold,
            limit,
        )
        task = loop.create_task(self._answer(batch, call))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(
        self, batch: list[_Pending[InputT]], call: asyncio.Future[list[list[Detection]]]
    ) -> None:
        """Each request of ``batch`` gets its own detections, or the call's error."""
        try:
            results = await call
            if len(results) != len(batch):
                raise RuntimeError(f"{len(results)} answers to a batch of {len(batch)} images")
        except Exception as error:
            self._finished()
            for pending in batch:
                if not pending.result.done():
                    pending.result.set_exception(error)
            return
        except asyncio.CancelledError:
            self._finished()
            for pending in batch:
                pending.result.cancel()
            raise
        # The slot is freed first, so the next batch goes to the model before these
        # answers are handed out: each takes the event loop a little while.
        self._finished()
        for pending, detections in zip(batch, results, strict=True):
            pending.batch_size = len(batch)
            if not pending.result.done():
                pending.result.set_result(_kept(pending, detections))

    def _finished(self) -> None:
        """A batch has ended: its slot is free for whatever waits."""
        self._in_flight -= 1
        self._dispatch()


def _kept(pending: _Pending[Any], detections: list[Detection]) -> list[Detection]:
    """The detections a request asked for, from its batch's (best first, all above the
    batch's lowest threshold)."""
    kept = [d for d in detections if d.score >= pending.score_threshold]
    return kept[: pending.max_detections] if pending.max_detections else kept
