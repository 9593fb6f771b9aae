"""Collects work items that arrive close together into batches for one model call.

A GPU runs a batch of eight in little more time than one, so items wait a little for each
other, up to ``max_batch`` of them per call:

- an item that arrives while a worker is idle is due ``window_s`` after it arrived: a lone
  item waits at most that long for company;
- an item that arrives while every worker is busy is due at once: it waits for a worker
  anyway, gathering with others into the next batch, which starts the moment a worker is
  free. Under load batches grow as large as one run lets them, with no window at all;
- a batch leaves when ``max_batch`` items wait or one of them is due, with the oldest.

So no item waits longer than the batches in flight plus its own window.

Callers of any kind can wait for their item: ``submit`` returns a
``concurrent.futures.Future``, which a thread waits for with ``result()`` and a coroutine
with ``asyncio.wrap_future`` (no thread held while it waits). Batches run on the
batcher's own threads, one batch per thread at a time, so ``workers`` threads serve that
many model copies.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")

RunBatch = Callable[[Sequence[ItemT]], Sequence["ResultT | BaseException"]]
"""Runs one batch: a result (or the exception that item failed with) per item, in order."""


class BatcherClosed(RuntimeError):
    """The batcher was closed before the item ran."""


@dataclass
class _Pending(Generic[ItemT, ResultT]):
    item: ItemT
    future: Future[ResultT]
    due: float


class Batcher(Generic[ItemT, ResultT]):
    """Runs ``run_batch`` over batches of at most ``max_batch`` submitted items.

    ``run_batch`` gets the items in the order they arrived. An item it answers with an
    exception fails alone; when it raises, the batch is run again one item at a time, so
    an item that breaks the batched call fails only its own caller. ``on_batch`` (for
    spans, metrics and tests) sees each batch, on the thread that runs it, just before it
    runs.
    """

    def __init__(
        self,
        run_batch: RunBatch[ItemT, ResultT],
        *,
        max_batch: int,
        window_s: float,
        workers: int = 1,
        name: str = "batcher",
        on_batch: Callable[[Sequence[ItemT]], None] | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch}")
        if not window_s >= 0:  # NaN too
            raise ValueError(f"window_s must be 0 or more, not {window_s}")
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        self.max_batch = max_batch
        self.window_s = window_s
        self._run_batch = run_batch
        self._on_batch = on_batch
        self._pending: list[_Pending[ItemT, ResultT]] = []
        self._changed = threading.Condition()
        self._closed = False
        self.workers = workers
        self._busy = 0  # workers running a batch
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{index}", daemon=True)
            for index in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def waiting(self) -> int:
        """Items queued for a batch that has not started yet (not counting cancelled ones)."""
        with self._changed:
            return sum(not pending.future.cancelled() for pending in self._pending)

    def submit(self, item: ItemT) -> Future[ResultT]:
        """Queue ``item`` for the next batch; its future holds its result or exception.

        A future cancelled before its batch starts is left out of it. BatcherClosed once
        ``close`` has been called.
        """
        future: Future[ResultT] = Future()
        with self._changed:
            if self._closed:
                raise BatcherClosed("batcher closed")
            # Every worker busy: the item waits for one anyway, no window on top of that.
            window = self.window_s if self._busy < self.workers else 0.0
            self._pending.append(_Pending(item, future, time.monotonic() + window))
            self._changed.notify()
        return future

    def close(self, timeout_s: float = 5.0) -> bool:
        """Stop taking items, fail those still waiting with BatcherClosed, and wait up to
        ``timeout_s`` for the batches running now; True if every thread ended."""
        with self._changed:
            self._closed = True
            dropped, self._pending = self._pending, []
            self._changed.notify_all()
        for pending in dropped:
            if pending.future.set_running_or_notify_cancel():
                pending.future.set_exception(BatcherClosed("batcher closed"))
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)

    def _work(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            try:
                running = [
                    pending for pending in batch if pending.future.set_running_or_notify_cancel()
                ]
                if running:
                    self._run(running)
            finally:
                with self._changed:
                    self._busy -= 1

    def _next_batch(self) -> list[_Pending[ItemT, ResultT]] | None:
        """The oldest items, once ``max_batch`` wait or one of them is due (this worker
        then counts as busy); None once closed."""
        with self._changed:
            while True:
                if self._closed:
                    return None
                # A cancelled item gives up its place in the batch to the one behind it.
                self._pending = [p for p in self._pending if not p.future.cancelled()]
                if self._pending:
                    wait_s = min(pending.due for pending in self._pending) - time.monotonic()
                    if len(self._pending) >= self.max_batch or wait_s <= 0:
                        batch = self._pending[: self.max_batch]
                        del self._pending[: self.max_batch]
                        self._busy += 1
                        return batch
                    self._changed.wait(wait_s)
                else:
                    self._changed.wait()

    def _run(self, batch: list[_Pending[ItemT, ResultT]]) -> None:
        items = [pending.item for pending in batch]
        try:
            if self._on_batch is not None:
                self._on_batch(items)
            results = self._run_batch(items)
            if len(results) != len(batch):
                raise RuntimeError(f"run_batch gave {len(results)} results for {len(batch)} items")
        except Exception as error:
            if len(batch) == 1:
                batch[0].future.set_exception(error)
                return
            # One item may have broken the batched call: run each alone, so that only
            # its own caller sees the error.
            logger.warning(
                "batch of %d failed (%s); running its items one by one", len(batch), error
            )
            for pending in batch:
                self._run([pending])
            return
        for pending, result in zip(batch, results, strict=True):
            if isinstance(result, BaseException):
                pending.future.set_exception(result)
            else:
                pending.future.set_result(result)
