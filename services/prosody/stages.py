"""Stage timings taken in a worker process, and the spans they become in the service's trace.

A worker process has no trace of its own: it times each stage of its work on the wall
clock (``time.time_ns``, the clock spans use), hands the timings back with its result, and
the service process records them as spans under the request's span, so one trace shows
the Praat stages even though they ran in another process.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from opentelemetry import trace


@dataclass(frozen=True)
class Stage:
    """One timed stage of the work, in ``time.time_ns`` units, to become a span."""

    name: str
    start_ns: int
    end_ns: int


@contextmanager
def timed(name: str, stages: list[Stage]) -> Iterator[None]:
    """Append the stage ``name`` to ``stages`` when the block finishes without error."""
    started = time.time_ns()
    yield
    stages.append(Stage(name, started, time.time_ns()))


def record_spans(tracer: trace.Tracer, stages: Iterable[Stage], worker_pid: int) -> None:
    """One span per stage, under the current span, tagged with the worker's process id."""
    for stage in stages:
        span = tracer.start_span(
            stage.name,
            start_time=stage.start_ns,
            attributes={"chorus.prosody.worker_pid": worker_pid},
        )
        span.end(end_time=stage.end_ns)
