"""Admission control: a bounded number of requests in flight and a bounded queue.

Beyond both bounds a request is refused at once with RESOURCE_EXHAUSTED, so overload
never builds an unbounded queue and callers learn to back off within microseconds. One
caller (CALLER, set per RPC by services.common.callers.CallerInterceptor) holds at
most its share of the slots, so a client that opens many streams and never reads them
cannot take the service from everyone else.
"""

from __future__ import annotations

import asyncio
import collections
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from opentelemetry.metrics import Meter, Observation

from services.common.callers import CALLER
from services.common.errors import ResourceExhausted
from services.common.settings import ServerSettings
from services.common.telemetry import Telemetry


class AdmissionController:
    """Grants slots to at most ``max_in_flight`` requests, queueing ``max_queue`` more, and
    to one caller at most ``caller_share`` of the slots (1: no per-caller limit).

    Waiters are served first come, first served. Used from one asyncio event loop.
    """

    def __init__(
        self,
        *,
        max_in_flight: int,
        max_queue: int,
        queue_timeout_s: float,
        meter: Meter,
        caller_share: float = 1.0,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        if max_queue < 0:
            raise ValueError("max_queue must not be negative")
        if not 0.0 < caller_share <= 1.0:
            raise ValueError("caller_share must be in (0, 1]")
        self._max_in_flight = max_in_flight
        self._max_queue = max_queue
        self._queue_timeout_s = queue_timeout_s
        # Held and queued requests count: a caller cannot park more in the queue either.
        self._per_caller_limit = (
            None if caller_share >= 1.0 else max(1, math.floor(max_in_flight * caller_share))
        )
        self._per_caller: collections.Counter[str] = collections.Counter()
        self._in_flight = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._rejections = meter.create_counter(
            "chorus.admission.rejections",
            description="Requests refused because the service was at capacity",
        )
        meter.create_observable_gauge(
            "chorus.admission.queue_depth",
            callbacks=[lambda _options: [Observation(len(self._waiters))]],
            description="Requests waiting for a slot",
        )
        meter.create_observable_gauge(
            "chorus.admission.in_flight",
            callbacks=[lambda _options: [Observation(self._in_flight)]],
            description="Requests holding a slot",
        )

    @classmethod
    def from_settings(cls, settings: ServerSettings, telemetry: Telemetry) -> AdmissionController:
        """The bounds a server's settings describe (CHORUS_MAX_IN_FLIGHT, ...)."""
        return cls(
            max_in_flight=settings.max_in_flight,
            max_queue=settings.max_queue,
            queue_timeout_s=settings.queue_timeout_s,
            meter=telemetry.meter,
            caller_share=settings.caller_share,
        )

    @property
    def in_flight(self) -> int:
        """Requests currently holding a slot."""
        return self._in_flight

    @property
    def queued(self) -> int:
        """Requests currently waiting for a slot."""
        return len(self._waiters)

    def held_by(self, caller: str) -> int:
        """Slots ``caller`` holds or waits for now."""
        return self._per_caller[caller]

    @asynccontextmanager
    async def slot(self, method: str) -> AsyncIterator[None]:
        """Hold one slot for the duration of the block; refuse at once when full, or when
        the current caller already holds its share."""
        caller = CALLER.get()
        if self._per_caller_limit is not None and caller:
            held = self._per_caller[caller]
            if held >= self._per_caller_limit:
                self._reject(
                    method,
                    f"caller {caller[:64]} holds {held} of the {self._max_in_flight} slots, "
                    "its whole share",
                )
        self._per_caller[caller] += 1
        try:
            await self._acquire(method)
            try:
                yield
            finally:
                self._release()
        finally:
            self._per_caller[caller] -= 1
            if not self._per_caller[caller]:
                del self._per_caller[caller]

    async def _acquire(self, method: str) -> None:
        if self._in_flight < self._max_in_flight and not self._waiters:
            self._in_flight += 1
            return
        if len(self._waiters) >= self._max_queue:
            self._reject(method, "queue full")
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), self._queue_timeout_s)
        except TimeoutError:
            if waiter.done():
                # Granted in the same instant the timeout fired: keep the slot.
                return
            waiter.cancel()
            self._waiters.remove(waiter)
            self._reject(method, f"no slot within {self._queue_timeout_s:g} s")
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release()
            else:
                waiter.cancel()
                self._waiters.remove(waiter)
            raise

    def _release(self) -> None:
        # Hand the slot straight to the oldest waiter so no newcomer can jump the queue.
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._in_flight -= 1

    def _reject(self, method: str, reason: str) -> None:
        self._rejections.add(1, {"rpc.method": method})
        raise ResourceExhausted(
            f"server at capacity ({self._max_in_flight} in flight, "
            f"{len(self._waiters)} queued): {reason}; retry with backoff"
        )
