"""Request count and latency of a service's RPCs, by method and final status code."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
from grpc import aio
from opentelemetry.metrics import Meter

from services.common.callers import API_KEY
from services.common.interceptors import wrap_handler

if TYPE_CHECKING:
    from services.common.interceptors import (
        Continuation,
        Handler,
        StreamBehavior,
        UnaryBehavior,
    )

# A server sees a caller's deadline pass as a cancellation when the caller's deadline passes
# first, which it usually does: gRPC sends the timeout rounded up to three significant
# digits (1 s arrives as 1.01 s, 1.234 s as 1.24 s), so the server's deadline falls up to
# 1% of the timeout after the caller's; and the call's headers, which start the server's
# clock, and the cancellation reach the server with delays that differ on a busy host
# (measured: up to 60 ms on two shared cores). So a cancellation that lands within 1% of
# the timeout plus a delivery allowance of 200 ms before the server's deadline counts as the
# deadline; the allowance is capped at half the timeout, so that a short call cancelled in
# its first half still counts as cancelled.
_TIMEOUT_ROUNDING = 0.01
_DELIVERY_ALLOWANCE_S = 0.2
_DELIVERY_ALLOWANCE_SHARE = 0.5


class RpcMetricsInterceptor(aio.ServerInterceptor):
    """Counts and times every RPC of the measured services once it has ended.

    Records ``chorus.rpc.server.requests`` and ``chorus.rpc.server.duration`` (seconds),
    both with ``rpc.service`` and ``rpc.method`` (``chorus.tts.v1.TextToSpeech`` and
    ``Synthesize``, as OpenTelemetry's RPC conventions name them, and as admission control
    labels its rejections) and ``rpc.grpc.status_code`` (the status's name). Install it
    outside ErrorMappingInterceptor, so that it sees the status an exception was mapped
    to. An RPC made with an API key (services.common.api_keys) has the key's name too, as
    ``chorus.api_key``. Health and reflection are not measured: probes would drown the
    service's own traffic, and a health Watch lasts as long as its client.
    """

    def __init__(self, meter: Meter, measured_services: Iterable[str]) -> None:
        self._prefixes = tuple(f"/{name}/" for name in measured_services)
        self._requests = meter.create_counter(
            "chorus.rpc.server.requests", description="RPCs served, by method and status"
        )
        self._duration = meter.create_histogram(
            "chorus.rpc.server.duration",
            unit="s",
            description="RPC duration from the call to its status, by method and status",
        )

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if not handler_call_details.method.startswith(self._prefixes):
            return handler
        return wrap_handler(
            handler, handler_call_details.method, self._measure_unary, self._measure_stream
        )

    def _measure_unary(self, method: str, behavior: UnaryBehavior) -> UnaryBehavior:
        async def measured(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
            with self._measuring(method, context):
                return await behavior(request, context)

        return measured

    def _measure_stream(self, method: str, behavior: StreamBehavior) -> StreamBehavior:
        async def measured(
            request: Any, context: aio.ServicerContext[Any, Any]
        ) -> AsyncGenerator[Any, None]:
            with self._measuring(method, context):
                async with contextlib.aclosing(behavior(request, context)) as responses:
                    async for response in responses:
                        yield response

        return measured

    @contextlib.contextmanager
    def _measuring(self, method: str, context: aio.ServicerContext[Any, Any]) -> Iterator[None]:
        started = time.perf_counter()
        deadline = _CallerDeadline.of(context)
        try:
            yield
        except BaseException as error:
            self._record(method, started, _final_status(context, deadline, error))
            raise
        self._record(method, started, _final_status(context, deadline, None))

    def _record(self, method: str, started: float, status: grpc.StatusCode) -> None:
        service, _, name = method.removeprefix("/").partition("/")
        attributes = {
            "rpc.service": service,
            "rpc.method": name,
            "rpc.grpc.status_code": status.name,
        }
        api_key = API_KEY.get()
        if api_key:
            attributes["chorus.api_key"] = api_key
        self._requests.add(1, attributes)
        self._duration.record(time.perf_counter() - started, attributes)


@dataclass(frozen=True)
class _CallerDeadline:
    """The caller's deadline, as the server can know it: taken when the call starts."""

    at: float
    """When the server's deadline passes, on the monotonic clock."""
    tolerance_s: float
    """How long before ``at`` the caller's own deadline may pass (see _TIMEOUT_ROUNDING)."""

    @classmethod
    def of(cls, context: aio.ServicerContext[Any, Any]) -> _CallerDeadline | None:
        """The deadline of the call ``context`` serves; None when the caller set none."""
        # time_remaining() is typed float but is None without a deadline.
        remaining: float | None = context.time_remaining()
        if remaining is None:
            return None
        allowance_s = min(_DELIVERY_ALLOWANCE_S, remaining * _DELIVERY_ALLOWANCE_SHARE)
        return cls(
            at=time.monotonic() + remaining,
            tolerance_s=remaining * _TIMEOUT_ROUNDING + allowance_s,
        )

    def passed(self) -> bool:
        """Whether the caller's deadline has passed, within the rounding tolerance: a
        cancellation landing now is the caller's deadline, not a cancel."""
        return time.monotonic() >= self.at - self.tolerance_s


def _final_status(
    context: aio.ServicerContext[Any, Any],
    deadline: _CallerDeadline | None,
    error: BaseException | None,
) -> grpc.StatusCode:
    """The status an RPC ends with, given how its handler ended (``error`` None: returned).

    gRPC cancels the handler's task when the client cancels, the deadline passes or the
    server stops; a stream whose task is cancelled between messages is closed instead
    (GeneratorExit). A client's cancellation looks the same whether the client's code or
    its deadline sent it: only its timing tells them apart.
    """
    if isinstance(error, asyncio.CancelledError | GeneratorExit):
        if context.code() not in (None, grpc.StatusCode.OK):
            return context.code()  # the server ended the call (a stalled reader's stream)
        if deadline is not None and deadline.passed():
            return grpc.StatusCode.DEADLINE_EXCEEDED
        return grpc.StatusCode.CANCELLED
    if error is None or isinstance(error, aio.AbortError):
        # abort() and set_code() leave the code on the context; a plain return leaves none.
        return context.code() or grpc.StatusCode.OK
    # What grpc answers for an exception no interceptor mapped.
    return grpc.StatusCode.UNKNOWN
