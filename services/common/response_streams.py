"""Response streams that end when their reader stalls, and close the moment their call ends.

gRPC's asyncio server sends a streaming handler's messages from the call's own task, one at
a time: a reader that stops reading leaves that task blocked in the send, and the handler
(with its admission slot and whatever it holds) suspended at its ``yield``, until the
caller's deadline or for ever without one. A call that ends while the task is blocked there
(the client cancels, the server stops) leaves the handler suspended too: gRPC never closes
it, and garbage collection does later, from another task, where OpenTelemetry's span and
context tokens can no longer be detached.

StreamGuardInterceptor runs every step of the handler chain (OpenTelemetry's span
included, so it is installed first) in one ``contextvars.Context`` of its own, a task per
step. So the handler can be closed from anywhere, at once, in the context it ran in:

- when the reader makes no progress for ``stall_timeout_s`` (a message's send has not
  completed), the call ends with DEADLINE_EXCEEDED, saying so; the status is queued behind
  the messages already sent, so a reader that comes back gets it after them;
- when the call ends in any way while the handler is suspended.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import AsyncGenerator, Iterable
from typing import TYPE_CHECKING, Any

import grpc
from grpc import aio

from services.common.interceptors import wrap_handler

if TYPE_CHECKING:
    from services.common.interceptors import (
        Continuation,
        Handler,
        StreamBehavior,
        UnaryBehavior,
    )

logger = logging.getLogger(__name__)

STALL_STATUS = grpc.StatusCode.DEADLINE_EXCEEDED


class StreamGuardInterceptor(aio.ServerInterceptor):
    """Ends response streams of ``guarded_services`` whose reader stalls; closes their
    handlers as soon as their calls end. Install it first (outermost)."""

    def __init__(self, guarded_services: Iterable[str], stall_timeout_s: float) -> None:
        """``stall_timeout_s`` 0 turns the stall timeout off (calls still close at once)."""
        self._prefixes = tuple(f"/{name}/" for name in guarded_services)
        self._stall_timeout_s = stall_timeout_s

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if not handler_call_details.method.startswith(self._prefixes):
            return handler
        return wrap_handler(handler, handler_call_details.method, _unchanged, self._guard_stream)

    def _guard_stream(self, method: str, behavior: StreamBehavior) -> StreamBehavior:
        stall_timeout_s = self._stall_timeout_s

        async def guarded(
            request: Any, context: aio.ServicerContext[Any, Any]
        ) -> AsyncGenerator[Any, None]:
            stream = _GuardedStream(method, behavior(request, context), context, stall_timeout_s)
            try:
                while (response := await stream.next()) is not _END:
                    stream.sending()
                    yield response
                    stream.sent()
            finally:
                await stream.close()

        return guarded


def _unchanged(_method: str, behavior: UnaryBehavior) -> UnaryBehavior:
    return behavior


_END = object()


class _GuardedStream:
    """One call's handler chain, stepped in a context of its own."""

    def __init__(
        self,
        method: str,
        responses: AsyncGenerator[Any, None],
        context: aio.ServicerContext[Any, Any],
        stall_timeout_s: float,
    ) -> None:
        self._method = method
        self._responses = responses
        self._context = context
        self._stall_timeout_s = stall_timeout_s
        # Every step runs in this one Context, never two at once: a token a step sets
        # (OpenTelemetry's attach, a span made current) can be reset by a later step.
        self._steps_context = contextvars.copy_context()
        self._loop = asyncio.get_running_loop()
        self._call_task = asyncio.current_task()
        self._step: asyncio.Task[Any] | None = None
        self._closing: asyncio.Task[None] | None = None
        self._stall_timer: asyncio.TimerHandle | None = None
        # The call's task may be blocked in a send, which nothing here would see end.
        context.add_done_callback(lambda _context: self._close_soon())  # type: ignore[arg-type]

    async def next(self) -> Any:
        """The handler's next response, or _END once it has returned."""
        self._step = self._loop.create_task(self._anext(), context=self._steps_context)
        return await self._step

    async def _anext(self) -> Any:
        try:
            return await anext(self._responses)
        except StopAsyncIteration:
            return _END

    def sending(self) -> None:
        """A response is being sent: the reader has the stall timeout to take it."""
        if self._stall_timeout_s > 0:
            self._stall_timer = self._loop.call_later(self._stall_timeout_s, self._stalled)

    def sent(self) -> None:
        """The response went out: the reader is making progress."""
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None

    async def close(self) -> None:
        """Close the handler (a no-op once it has ended) and wait until it has."""
        self.sent()
        self._close_soon()
        if self._closing is not None:
            await asyncio.shield(self._closing)

    def _close_soon(self) -> None:
        if self._closing is None and self._step is not None and self._step.done():
            # Not mid-step: the handler is suspended at a yield (or finished, when
            # aclose does nothing), and is closed in its own context.
            self._closing = self._loop.create_task(self._aclose(), context=self._steps_context)

    async def _aclose(self) -> None:
        try:
            await self._responses.aclose()
        except Exception:
            logger.exception("%s: closing the handler failed", self._method)

    def _stalled(self) -> None:
        self._stall_timer = None
        details = (
            f"the reader took no message for {self._stall_timeout_s:g} s (the stream's "
            "stall timeout); the stream was ended to free its slot"
        )
        logger.warning("%s: %s", self._method, details)
        # The status goes out as soon as the reader takes the messages queued before it;
        # meanwhile the handler is closed and the call's task no longer waits on the send.
        self._context.set_code(STALL_STATUS)
        self._context.set_details(details)
        abort = self._loop.create_task(self._context.abort(STALL_STATUS, details))
        abort.add_done_callback(_expect_abort_error)
        # abort() starts its send on its first step, which must come before the cancel.
        self._loop.call_soon(self._cancel_call)
        self._close_soon()

    def _cancel_call(self) -> None:
        if self._call_task is not None:
            self._call_task.cancel()


def _expect_abort_error(abort: asyncio.Task[None]) -> None:
    """abort() ends in AbortError once its status is sent, or in an error if the call went
    first: either way there is nothing left to do."""
    if not abort.cancelled():
        abort.exception()
