"""Runs engine calls on worker threads, each request's first sentence ahead of the rest.

With several streams in flight, a FIFO would make a new request's first sentence wait
behind every later sentence of the streams before it. Ordering by the sentence's index
within its request instead keeps time to first audio low under load, while later
sentences, whose listeners already have audio playing, wait their turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

_STOP_PRIORITY = -1  # sorts before any sentence, so shutdown is prompt


@dataclass(order=True)
class _Job:
    priority: int
    sequence: int
    call: Callable[[], Any] | None = field(compare=False)
    done: Callable[[BaseException | None, Any], None] | None = field(compare=False)


class EngineScheduler:
    """A pool of ``workers`` threads taking engine calls by priority, then arrival."""

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self._jobs: queue.PriorityQueue[_Job] = queue.PriorityQueue()
        self._sequence = itertools.count()
        self._threads = [
            threading.Thread(target=self._work, name=f"tts-engine-{i}", daemon=True)
            for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def threads(self) -> tuple[threading.Thread, ...]:
        """The worker threads, so that a caller (a test) can watch this pool's own threads
        end after ``shutdown`` instead of counting every thread in the process."""
        return tuple(self._threads)

    @property
    def queued(self) -> int:
        """Calls waiting for a worker (approximate while workers are taking calls)."""
        return self._jobs.qsize()

    async def run(self, priority: int, function: Callable[..., Any], *args: Any) -> Any:
        """Run ``function(*args)`` on a worker thread; lower ``priority`` runs first."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()

        def settle(error: BaseException | None, result: Any) -> None:
            if future.cancelled():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

        def done(error: BaseException | None, result: Any) -> None:
            # A loop already closed has nobody left waiting for the answer.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, error, result)

        self._jobs.put(_Job(priority, next(self._sequence), lambda: function(*args), done))
        return await future

    def shutdown(self) -> None:
        """Stop the threads once the calls running now finish; queued calls are dropped."""
        for _ in self._threads:
            self._jobs.put(_Job(_STOP_PRIORITY, next(self._sequence), None, None))

    def join(self, timeout_s: float) -> bool:
        """Wait (blocking) up to ``timeout_s`` in all for the threads to end after
        ``shutdown``; True if they all did."""
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job.call is None or job.done is None:
                return
            try:
                result = job.call()
            except BaseException as error:  # handed to the awaiting coroutine
                job.done(error, None)
            else:
                job.done(None, result)
