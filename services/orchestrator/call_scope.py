"""The upstream work of one orchestrator RPC, ended when that RPC ends.

Whatever an RPC was waiting on when its caller went away, the tts, prosody and vision
calls and the tasks it started must end with it. Neither the handler's own cleanup nor
cancelling the task that awaits a call can promise that:

- grpc.aio cancels the RPC's task but does not close a streaming handler's generator
  when the task was blocked in gRPC itself (writing to a client that does not read): the
  handler's ``finally`` blocks run only once the generator is garbage-collected
  (grpc/grpc PR #42295);
- an aio call object sits in a reference cycle, so a call merely dropped (a generator
  that was iterating it, closed) is cancelled by the cycle collector, whenever that runs;
- OpenTelemetry's client interceptor awaits a unary call's status in a task of its own,
  and cancelling that task, which cancelling the call's wrapper does, leaves the call on.

So a CallScope owns the RPC's upstream work, and gRPC's done callback for the RPC, which
runs however the RPC ends (returned, failed, cancelled, past its deadline), cancels what is
still running. The handler opens the scope, which becomes current in its context (and in
the tasks it starts, which copy it), the way OpenTelemetry carries the current span; every
upstream channel ends with call_scope_interceptors, which hand each call, as gRPC made it,
to the current scope.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextvars import ContextVar
from typing import Any, TypeVar

from grpc import aio

from services.common.grpc_context import Context

CallT = TypeVar("CallT", bound=aio.Call)
RequestT = TypeVar("RequestT")
ResponseT = TypeVar("ResponseT")
T = TypeVar("T")

_current: ContextVar[CallScope | None] = ContextVar("chorus_call_scope", default=None)


class CallScope:
    """Owns the upstream calls and tasks of one RPC; cancels those still running when the
    RPC ends."""

    def __init__(self, context: Context) -> None:
        self._running: set[aio.Call | asyncio.Task[Any]] = set()
        self._closed = False
        # grpc-stubs declares the callback type as a plain class, which no function fits.
        context.add_done_callback(lambda _context: self.close())  # type: ignore[arg-type]

    @classmethod
    def open(cls, context: Context) -> CallScope:
        """A scope for the RPC of ``context``, current from here on in the handler's
        context, so every upstream call made for the RPC belongs to it.

        Left current when the handler ends: each RPC runs in a task, hence a context, of
        its own.
        """
        scope = cls(context)
        _current.set(scope)
        return scope

    @staticmethod
    def current() -> CallScope | None:
        """The scope of the RPC the running code serves, if any."""
        return _current.get()

    def task(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """``work`` in a task owned until it is done; cancelled at once if the RPC has ended."""
        task = asyncio.create_task(work)
        self.own(task)
        return task

    def own(self, work: aio.Call | asyncio.Task[Any]) -> None:
        """Own ``work`` until it is done; cancel it at once if the RPC has ended."""
        if self._closed:
            work.cancel()
            return
        self._running.add(work)
        work.add_done_callback(lambda _work: self._running.discard(work))

    def close(self) -> None:
        """Cancel every call and task still running, and any started from now on."""
        self._closed = True
        running, self._running = self._running, set()
        for work in running:
            work.cancel()


class _UnaryCalls(aio.UnaryUnaryClientInterceptor):
    """Hands each unary call to the current scope."""

    async def intercept_unary_unary(
        self,
        continuation: Callable[
            [aio.ClientCallDetails, RequestT], Awaitable[aio.UnaryUnaryCall[RequestT, ResponseT]]
        ],
        client_call_details: aio.ClientCallDetails,
        request: RequestT,
    ) -> ResponseT | aio.UnaryUnaryCall[RequestT, ResponseT]:
        return _owned(await continuation(client_call_details, request))


class _StreamCalls(aio.UnaryStreamClientInterceptor):
    """Hands each server-streaming call to the current scope."""

    async def intercept_unary_stream(
        self,
        continuation: Callable[
            [aio.ClientCallDetails, RequestT], Awaitable[aio.UnaryStreamCall[RequestT, ResponseT]]
        ],
        client_call_details: aio.ClientCallDetails,
        request: RequestT,
    ) -> AsyncIterator[ResponseT] | aio.UnaryStreamCall[RequestT, ResponseT]:
        return _owned(await continuation(client_call_details, request))


class _BidirectionalCalls(aio.StreamStreamClientInterceptor):
    """Hands each bidirectional call to the current scope."""

    async def intercept_stream_stream(
        self,
        continuation: Callable[
            [aio.ClientCallDetails, Any],
            Awaitable[aio.StreamStreamCall[RequestT, ResponseT]],
        ],
        client_call_details: aio.ClientCallDetails,
        request_iterator: Any,
    ) -> AsyncIterator[ResponseT] | aio.StreamStreamCall[RequestT, ResponseT]:
        return _owned(await continuation(client_call_details, request_iterator))


def call_scope_interceptors() -> list[aio.ClientInterceptor]:
    """For the end of an upstream channel's interceptors: they hand each call to the
    current CallScope.

    Innermost, so that what they hand over is gRPC's own call, which cancels the RPC, not
    the wrapper outer interceptors see. (One per kind of call: a channel files an
    interceptor under the first kind it implements.)
    """
    return [_UnaryCalls(), _StreamCalls(), _BidirectionalCalls()]


def _owned(call: CallT) -> CallT:
    """``call``, owned by the current scope when there is one."""
    scope = CallScope.current()
    if scope is not None:
        scope.own(call)
    return call
