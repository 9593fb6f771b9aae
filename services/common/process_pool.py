"""A pool of worker processes for model code that holds the GIL (Praat, for one).

Workers are spawned, not forked: forking a process that runs gRPC's threads is unsafe.
Each worker is a process of its own (a one-process executor), so that a worker that dies
takes down only itself: its request fails with UNAVAILABLE, the requests on the other
workers go on, and a replacement is started and warmed up before it takes work. All
workers are started and warmed up before the service turns SERVING, so no request pays
for a process start.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from services.common.errors import Unavailable

logger = logging.getLogger(__name__)

T = TypeVar("T")


def _warm_up(initializer: Callable[[], None] | None) -> int:
    if initializer is not None:
        initializer()
    return os.getpid()


class _Worker:
    """One spawned process, and the id it reported when warmed up."""

    def __init__(self) -> None:
        self.executor = ProcessPoolExecutor(
            max_workers=1, mp_context=multiprocessing.get_context("spawn")
        )
        self.pid = 0

    async def warm_up(self, initializer: Callable[[], None] | None) -> None:
        loop = asyncio.get_running_loop()
        self.pid = await loop.run_in_executor(self.executor, _warm_up, initializer)

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


class ProcessPool:
    """``workers`` spawned processes running picklable functions for an asyncio service."""

    def __init__(self, workers: int, warm_up: Callable[[], None] | None = None) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self._workers = workers
        self._warm_up = warm_up
        self._idle: asyncio.Queue[_Worker] = asyncio.Queue()
        self._all: set[_Worker] = set()
        self._replacing: set[asyncio.Task[None]] = set()
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def workers(self) -> int:
        """How many worker processes the pool runs."""
        return self._workers

    @property
    def idle_workers(self) -> int:
        """Workers warmed up and waiting for a job now."""
        return self._idle.qsize()

    @property
    def pids(self) -> set[int]:
        """Process ids of the workers that are warmed up now."""
        return {worker.pid for worker in self._all if worker.pid}

    async def start(self) -> set[int]:
        """Start every worker and run the warm-up in each; returns their process ids."""
        self._loop = asyncio.get_running_loop()
        started = [self._new_worker() for _ in range(self._workers)]
        await asyncio.gather(*(worker.warm_up(self._warm_up) for worker in started))
        for worker in started:
            self._idle.put_nowait(worker)
        return {worker.pid for worker in started}

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """Run ``function(*args)`` in an idle worker (waiting for one); Unavailable if the
        worker died doing it.

        A caller that stops waiting (a time budget, a cancelled RPC) does not free the
        worker early: it goes back to the idle workers when its function returns.
        """
        worker = await self._idle.get()
        try:
            job: Future[T] = worker.executor.submit(function, *args)
        except BrokenProcessPool as error:
            self._replace(worker)
            raise Unavailable("a worker process died; retry the request") from error
        job.add_done_callback(lambda _: self._release(worker, job))
        try:
            return await asyncio.wrap_future(job)
        except BrokenProcessPool as error:
            raise Unavailable("a worker process died; retry the request") from error

    def close(self) -> None:
        """Stop the workers; work in flight is abandoned."""
        self._closed = True
        for task in self._replacing:
            task.cancel()
        for worker in self._all:
            worker.close()

    def _new_worker(self) -> _Worker:
        worker = _Worker()
        self._all.add(worker)
        return worker

    def _release(self, worker: _Worker, job: Future[Any]) -> None:
        """Done callback of a job (on the executor's thread): the worker is idle again, or
        is replaced when its process died."""
        broken = not job.cancelled() and isinstance(job.exception(), BrokenProcessPool)
        if self._closed:
            return
        if self._loop is None:
            raise RuntimeError("the pool is used before start()")
        if broken:
            self._loop.call_soon_threadsafe(self._replace, worker)
        else:
            self._loop.call_soon_threadsafe(self._idle.put_nowait, worker)

    def _replace(self, dead: _Worker) -> None:
        """Start a new worker for ``dead`` and warm it up before it takes work."""
        if self._closed or dead not in self._all:
            return
        logger.error("worker process %d died; starting a replacement", dead.pid)
        self._all.discard(dead)
        dead.close()
        replacement = self._new_worker()
        task = asyncio.get_running_loop().create_task(self._warm_and_add(replacement))
        self._replacing.add(task)
        task.add_done_callback(self._replacing.discard)

    async def _warm_and_add(self, worker: _Worker) -> None:
        try:
            await worker.warm_up(self._warm_up)
        except BrokenProcessPool:
            # The replacement died warming up: try again with another.
            self._replace(worker)
            return
        logger.info("replacement worker %d warmed up", worker.pid)
        self._idle.put_nowait(worker)
