"""Closed-loop load: a fixed number of calls spread over concurrent clients."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import grpc

from bench.stats import percentiles_ms

Call = Callable[[], Awaitable[float | None]]
"""One request; returns its time to first audio in seconds, or None; raises a gRPC error
or Failure when it fails."""


class Failure(Exception):
    """A request that failed other than with a gRPC status, by kind (``http_503``...)."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


@dataclass
class Load:
    """What one scenario measured."""

    latencies: list[float] = field(default_factory=list)
    firsts: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0

    def summary(self) -> dict[str, object]:
        """Counts, errors by status, latency (and TTFA) percentiles, throughput."""
        figures: dict[str, object] = {"requests": len(self.latencies), "errors": self.errors}
        if self.firsts:
            figures["ttfa_ms"] = percentiles_ms(self.firsts)
        figures["latency_ms"] = percentiles_ms(self.latencies)
        figures["throughput_rps"] = round(len(self.latencies) / self.wall_s, 2)
        return figures


async def drive(call: Call, concurrency: int, requests: int, load: Load | None = None) -> Load:
    """Make ``requests`` calls over ``concurrency`` clients, each waiting for its last;
    what they measured is added to ``load`` (a new one by default), which is returned."""
    load = Load() if load is None else load
    remaining = requests

    async def client() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            try:
                first = await call()
            except (grpc.aio.AioRpcError, Failure) as error:
                kind = error.kind if isinstance(error, Failure) else error.code().name
                load.errors[kind] = load.errors.get(kind, 0) + 1
                continue
            load.latencies.append(time.perf_counter() - started)
            if first is not None:
                load.firsts.append(first)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    load.wall_s += time.perf_counter() - started
    return load
