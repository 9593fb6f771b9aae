"""Holding one stage of a request in its worker thread, so a test can watch the server
while that stage is provably running off the event loop and not yet finished."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

from opentelemetry import trace

P = ParamSpec("P")
T = TypeVar("T")


class StageHolder(ThreadPoolExecutor):
    """An event loop's default executor (``loop.set_default_executor``) that, while
    ``holding(span_name)`` is in force, keeps the jobs handed to it under that span (the
    work ``asyncio.to_thread`` runs for that stage of a request) waiting in their worker
    thread until the block ends. Every other job runs as it would anyway.

    A stage that runs on the event loop never reaches an executor, so it is never held:
    the request finishes without anything waiting here, which tests check for.
    """

    def __init__(self) -> None:
        super().__init__(max_workers=8, thread_name_prefix="held-stage")
        self._span_name: str | None = None
        self._released = threading.Event()
        self._released.set()
        self._lock = threading.Lock()
        self._waiting = 0
        self.submitted = 0
        """Jobs of the held stage handed over since ``holding`` began."""

    @property
    def waiting(self) -> int:
        """Jobs of the held stage waiting in a worker thread now."""
        with self._lock:
            return self._waiting

    @contextmanager
    def holding(self, span_name: str) -> Iterator[None]:
        """Hold the jobs handed over under a span named ``span_name`` until the block
        ends (including when it ends with an exception)."""
        self._span_name = span_name
        self.submitted = 0
        self._released.clear()
        try:
            yield
        finally:
            self._span_name = None
            self._released.set()

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        # Called on the event loop, in the context of the task that hands the job over.
        span = trace.get_current_span()
        if self._span_name is None or getattr(span, "name", None) != self._span_name:
            return super().submit(fn, *args, **kwargs)
        self.submitted += 1
        return super().submit(self._held, functools.partial(fn, *args, **kwargs))

    def _held(self, job: Callable[[], T]) -> T:
        with self._lock:
            self._waiting += 1
        try:
            self._released.wait()
        finally:
            with self._lock:
                self._waiting -= 1
        return job()
