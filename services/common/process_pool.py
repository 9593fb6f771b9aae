"""A pool of worker processes for model code that holds the GIL (Praat, for one).

Workers are spawned, not forked: forking a process that runs gRPC's threads is unsafe.
All of them are started and warmed up before the service turns SERVING, so no request
pays for a process start; a pool whose worker died is replaced instead of failing every
later request.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import multiprocessing.synchronize
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from services.common.errors import Unavailable

logger = logging.getLogger(__name__)

T = TypeVar("T")

# How long a worker's warm-up waits for the others to start: a bound for a worker that
# never comes up, far beyond what spawning and warming up takes on a busy machine.
_START_TIMEOUT_S = 60.0

# Set in each worker process by ``_keep_start_barrier``: the pool's start barrier.
_start_barrier: multiprocessing.synchronize.Barrier | None = None


def _keep_start_barrier(barrier: multiprocessing.synchronize.Barrier) -> None:
    global _start_barrier
    _start_barrier = barrier


def _warm_up(initializer: Callable[[], None] | None) -> int:
    if initializer is not None:
        initializer()
    # Hold this worker until every worker holds a warm-up: then none can take a second
    # one while another process is still starting, so each process runs exactly one,
    # however unevenly they start on a busy machine (a timed hold could not promise it).
    if _start_barrier is None:
        raise RuntimeError("a ProcessPool warm-up runs only in one of the pool's workers")
    _start_barrier.wait(_START_TIMEOUT_S)
    return os.getpid()


class ProcessPool:
    """``workers`` spawned processes running picklable functions for an asyncio service."""

    def __init__(self, workers: int, warm_up: Callable[[], None] | None = None) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self._workers = workers
        self._warm_up = warm_up
        self._executor = self._new_executor()

    @property
    def workers(self) -> int:
        """How many worker processes the pool runs."""
        return self._workers

    async def start(self) -> set[int]:
        """Start every worker and run the warm-up in each; returns their process ids."""
        loop = asyncio.get_running_loop()
        pids = await asyncio.gather(
            *(
                loop.run_in_executor(self._executor, _warm_up, self._warm_up)
                for _ in range(self._workers)
            )
        )
        return set(pids)

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """Run ``function(*args)`` in a worker; Unavailable if the worker died doing it."""
        loop = asyncio.get_running_loop()
        executor = self._executor
        try:
            return await loop.run_in_executor(executor, function, *args)
        except BrokenProcessPool as error:
            self._replace_broken(executor)
            raise Unavailable("a worker process died; retry the request") from error

    def close(self) -> None:
        """Stop the workers; work in flight is abandoned."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _replace_broken(self, broken: ProcessPoolExecutor) -> None:
        # Several requests may see the same broken pool; only the first replaces it.
        if broken is not self._executor:
            return
        logger.error("a worker process died; starting a new pool of %d", self._workers)
        broken.shutdown(wait=False, cancel_futures=True)
        self._executor = self._new_executor()

    def _new_executor(self) -> ProcessPoolExecutor:
        context = multiprocessing.get_context("spawn")
        return ProcessPoolExecutor(
            max_workers=self._workers,
            mp_context=context,
            initializer=_keep_start_barrier,
            initargs=(context.Barrier(self._workers),),
        )
