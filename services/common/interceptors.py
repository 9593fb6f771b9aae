"""Server interceptors every Chorus service installs after OpenTelemetry's own.

- ErrorMappingInterceptor: the one place where exceptions become status codes. Domain
  errors (services.common.errors) keep their message; anything else is logged with its
  traceback and reaches the caller as a generic INTERNAL, never as a traceback or UNKNOWN.
- ReadinessInterceptor: refuses the service's own RPCs with UNAVAILABLE, naming the
  reason, until its models are loaded and warmed up (health and reflection stay open).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeAlias, cast

import grpc
from google.protobuf.message import DecodeError
from grpc import aio

from services.common.errors import ChorusError, InvalidArgument, Unavailable

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    # grpc's generics exist only in its stubs, so these aliases are for the type checker.
    Handler: TypeAlias = grpc.RpcMethodHandler[Any, Any]
    Continuation: TypeAlias = Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]]
    UnaryBehavior: TypeAlias = Callable[[Any, aio.ServicerContext[Any, Any]], Awaitable[Any]]
    StreamBehavior: TypeAlias = Callable[
        [Any, aio.ServicerContext[Any, Any]], AsyncGenerator[Any, None]
    ]


class ErrorMappingInterceptor(aio.ServerInterceptor):
    """Maps exceptions raised by servicers to gRPC status codes.

    A request whose bytes do not parse as the method's message (truncated, garbage,
    invalid UTF-8 in a string field) is INVALID_ARGUMENT too: grpc would otherwise answer
    UNKNOWN with protobuf's DecodeError, log a traceback and run no interceptor, so the
    RPC metrics would never see it.
    """

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        return wrap_handler(
            handler,
            handler_call_details.method,
            _map_unary,
            _map_stream,
            deserializer=_tolerant_deserializer(handler),
        )


class UndecodableRequest:
    """Stands for a request whose bytes did not parse, so that the handler chain runs
    (and is measured) and the error mapping can answer INVALID_ARGUMENT."""

    def __init__(self, message_name: str, problem: str) -> None:
        self.message_name = message_name
        self.problem = problem

    def error(self) -> InvalidArgument:
        """The error the caller gets: the request named, protobuf's reason kept short."""
        return InvalidArgument("request", f"not a valid {self.message_name}: {self.problem}")


def _tolerant_deserializer(handler: Handler | None) -> Callable[[bytes], Any] | None:
    """The handler's request deserializer, returning an UndecodableRequest instead of
    raising when the bytes do not parse."""
    deserialize = None if handler is None else handler.request_deserializer
    if deserialize is None:
        return None
    message = getattr(getattr(deserialize, "__self__", None), "DESCRIPTOR", None)
    name = message.full_name if message is not None else "request message"
    parse = deserialize

    def tolerant(data: bytes) -> Any:
        try:
            return parse(data)
        except DecodeError as error:
            return UndecodableRequest(name, str(error)[:200])

    return tolerant


class ReadinessInterceptor(aio.ServerInterceptor):
    """Answers UNAVAILABLE for the guarded services until ``readiness`` says ready."""

    def __init__(self, readiness: Readiness, guarded_services: Iterable[str]) -> None:
        self._readiness = readiness
        self._prefixes = tuple(f"/{name}/" for name in guarded_services)

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if not handler_call_details.method.startswith(self._prefixes):
            return handler
        readiness = self._readiness
        return guard_handler(
            handler, handler_call_details.method, lambda _context: readiness.check()
        )


class Readiness:
    """Whether the service's models are loaded; why not, when they are not."""

    def __init__(self) -> None:
        self._ready = False
        self._reason = "starting: models are loading"

    @property
    def ready(self) -> bool:
        """True once the models are loaded and warmed up."""
        return self._ready

    @property
    def reason(self) -> str:
        """Why the service is not ready (empty when it is)."""
        return self._reason

    def set_ready(self) -> None:
        """Mark the service ready to take requests."""
        self._ready, self._reason = True, ""

    def set_not_ready(self, reason: str) -> None:
        """Mark the service unable to take requests, for ``reason``."""
        self._ready, self._reason = False, reason

    def check(self) -> None:
        """Raise Unavailable with the reason unless the service is ready."""
        if not self._ready:
            raise Unavailable(f"service not ready: {self._reason}")


def guard_handler(
    handler: Handler | None,
    method: str,
    check: Callable[[aio.ServicerContext[Any, Any]], None],
) -> Handler | None:
    """``handler`` with ``check`` run on each call's context before its behaviour: what
    ``check`` raises ends the call (the error mapping, outside, gives it its status)."""

    def guard_unary(_method: str, behavior: UnaryBehavior) -> UnaryBehavior:
        async def guarded(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
            check(context)
            return await behavior(request, context)

        return guarded

    def guard_stream(_method: str, behavior: StreamBehavior) -> StreamBehavior:
        async def guarded(
            request: Any, context: aio.ServicerContext[Any, Any]
        ) -> AsyncGenerator[Any, None]:
            check(context)
            async with contextlib.aclosing(behavior(request, context)) as responses:
                async for response in responses:
                    yield response

        return guarded

    return wrap_handler(handler, method, guard_unary, guard_stream)


def wrap_handler(
    handler: Handler | None,
    method: str,
    wrap_unary: Callable[[str, UnaryBehavior], UnaryBehavior],
    wrap_stream: Callable[[str, StreamBehavior], StreamBehavior],
    deserializer: Callable[[bytes], Any] | None = None,
) -> Handler | None:
    """Rebuild ``handler`` with its unary-request behaviour wrapped (every Chorus
    interceptor wraps handlers through this), and its request deserializer replaced by
    ``deserializer`` when one is given.

    A bidirectional handler takes the request stream where a server-streaming one takes
    the request, so ``wrap_stream`` wraps both. Client-streaming RPCs (one response to a
    request stream) pass through unchanged: Chorus serves none of them.
    """
    if handler is None or (handler.request_streaming and not handler.response_streaming):
        return handler
    request_deserializer = deserializer or handler.request_deserializer
    if handler.request_streaming:
        return grpc.stream_stream_rpc_method_handler(
            wrap_stream(method, cast("StreamBehavior", handler.stream_stream)),
            request_deserializer=request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.response_streaming:
        behavior: Any = handler.unary_stream
        # A streaming handler is an async generator, or a coroutine that writes with
        # context.write (grpc's own health Watch); OpenTelemetry's interceptor, outside
        # this one, iterates whatever it gets, so both leave here as async generators.
        if not inspect.isasyncgenfunction(behavior):
            behavior = _as_async_generator(cast("UnaryBehavior", behavior))
        wrapped = wrap_stream(method, cast("StreamBehavior", behavior))
        return grpc.unary_stream_rpc_method_handler(
            wrapped,
            request_deserializer=request_deserializer,
            response_serializer=handler.response_serializer,
        )
    return grpc.unary_unary_rpc_method_handler(
        wrap_unary(method, cast("UnaryBehavior", handler.unary_unary)),
        request_deserializer=request_deserializer,
        response_serializer=handler.response_serializer,
    )


def _as_async_generator(behavior: UnaryBehavior) -> StreamBehavior:
    """A coroutine-style streaming handler as an async generator that yields nothing."""

    async def generator(
        request: Any, context: aio.ServicerContext[Any, Any]
    ) -> AsyncGenerator[Any, None]:
        await behavior(request, context)
        return
        yield  # makes this function an async generator

    return generator


def _map_unary(method: str, behavior: UnaryBehavior) -> UnaryBehavior:
    async def mapped(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
        try:
            if isinstance(request, UndecodableRequest):
                raise request.error()
            return await behavior(request, context)
        except aio.AbortError:
            raise
        except Exception as error:
            await _abort_for(context, method, error)

    return mapped


def _map_stream(method: str, behavior: StreamBehavior) -> StreamBehavior:
    async def mapped(
        request: Any, context: aio.ServicerContext[Any, Any]
    ) -> AsyncGenerator[Any, None]:
        bidirectional = False
        try:
            if isinstance(request, UndecodableRequest):
                raise request.error()
            bidirectional = isinstance(request, AsyncIterator)
            if bidirectional:
                request = _decoded(request)
            # aclosing: a cancelled RPC closes the servicer's generator at once, in this task.
            async with contextlib.aclosing(behavior(request, context)) as responses:
                async for response in responses:
                    yield response
        except aio.AbortError:
            raise
        except Exception as error:
            if bidirectional:
                await _read_what_is_left(context)
            await _abort_for(context, method, error)

    return mapped


# How long a bidirectional stream that failed waits for its client to stop sending.
_READ_WHAT_IS_LEFT_S = 1.0


async def _read_what_is_left(context: aio.ServicerContext[Any, Any]) -> None:
    """Read and drop what the client is still sending, until it closes its side (within
    _READ_WHAT_IS_LEFT_S), before the status goes out: a gRPC client still writing when
    the status arrives may report "Internal error from Core" in place of it."""

    async def drain() -> None:
        while await context.read() is not aio.EOF:
            pass

    with contextlib.suppress(Exception):
        await asyncio.wait_for(drain(), _READ_WHAT_IS_LEFT_S)


async def _decoded(requests: AsyncIterator[Any]) -> AsyncGenerator[Any, None]:
    """A request stream that raises InvalidArgument at a message that did not parse."""
    async for request in requests:
        if isinstance(request, UndecodableRequest):
            raise request.error()
        yield request


async def _abort_for(context: aio.ServicerContext[Any, Any], method: str, error: Exception) -> None:
    """End the RPC (abort raises) with the status ``error`` maps to; details of the
    unexpected stay in the log."""
    if isinstance(error, ChorusError):
        logger.info("%s -> %s: %s", method, error.code.name, error.message)
        await context.abort(error.code, error.message)
    else:
        logger.error("%s failed", method, exc_info=error)
        await context.abort(grpc.StatusCode.INTERNAL, "internal error; see the server log")
