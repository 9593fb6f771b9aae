"""A server span per RPC: OpenTelemetry's gRPC instrumentation, and our own for the calls
it cannot trace.

OpenTelemetry's asyncio server interceptor breaks on bidirectional streams (it iterates the
request stream as if it were one request), so those get a span made here, shaped as its
spans are: named after the method, kind SERVER, a child of the caller's trace context from
the call's metadata, with the RPC's attributes and its final status code. One stream is one
trace, however long it lasts.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc
from grpc import aio
from opentelemetry import propagate, trace
from opentelemetry.instrumentation.grpc import aio_server_interceptor
from opentelemetry.trace import SpanKind, Status, StatusCode

if TYPE_CHECKING:
    from services.common.interceptors import Continuation, Handler


class RpcTracingInterceptor(aio.ServerInterceptor):
    """OpenTelemetry's server spans for unary and server-streaming RPCs; spans of the same
    shape for bidirectional ones."""

    def __init__(self, tracer_provider: trace.TracerProvider) -> None:
        self._instrumented = aio_server_interceptor(tracer_provider=tracer_provider)
        self._tracer = tracer_provider.get_tracer(__name__)

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is not None and handler.response_streaming and not handler.request_streaming:
            return await self._traced_server_stream(handler, handler_call_details)
        if handler is None or not (handler.request_streaming and handler.response_streaming):
            return await self._instrumented.intercept_service(  # type: ignore[no-any-return]
                _resolved(handler), handler_call_details
            )
        traced = self._traced(handler_call_details, handler.stream_stream)
        return grpc.stream_stream_rpc_method_handler(
            traced,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    async def _traced_server_stream(
        self, handler: Handler, details: grpc.HandlerCallDetails
    ) -> Handler | None:
        """OpenTelemetry's span for a server-streaming call, with the handler's stream
        closed when OpenTelemetry's is: its wrapper iterates the stream without closing
        it, which would leave the handler to garbage collection, closed from another
        context than it ran in (and its spans' context tokens never detached)."""
        opened: list[AsyncGenerator[Any, None]] = []  # this call's handler stream
        # The asyncio server's behaviours are async generator functions, which grpc's
        # stubs type as the synchronous server's.
        behavior: Any = handler.unary_stream

        def opening(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
            stream: AsyncGenerator[Any, None] = behavior(request, context)
            opened.append(stream)
            return stream

        instrumented = await self._instrumented.intercept_service(
            _resolved(_replace(handler, opening)), details
        )
        traced = instrumented.unary_stream

        async def closing(
            request: Any, context: aio.ServicerContext[Any, Any]
        ) -> AsyncGenerator[Any, None]:
            try:
                async with contextlib.aclosing(traced(request, context)) as responses:
                    async for response in responses:
                        yield response
            finally:
                for stream in opened:
                    await stream.aclose()

        return _replace(instrumented, closing)

    def _traced(self, details: grpc.HandlerCallDetails, behavior: Any) -> Any:
        tracer = self._tracer
        method = details.method
        service, _, name = method.removeprefix("/").partition("/")

        async def traced(
            requests: AsyncIterator[Any], context: aio.ServicerContext[Any, Any]
        ) -> AsyncGenerator[Any, None]:
            carrier = {key: value for key, value in context.invocation_metadata() or ()}
            with tracer.start_as_current_span(
                method,
                context=propagate.extract(carrier),
                kind=SpanKind.SERVER,
                attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": name},
                record_exception=False,
                set_status_on_exception=False,
            ) as span:
                try:
                    async with contextlib.aclosing(behavior(requests, context)) as responses:
                        async for response in responses:
                            yield response
                finally:
                    code = context.code() or grpc.StatusCode.OK
                    span.set_attribute("rpc.grpc.status_code", code.value[0])
                    if code != grpc.StatusCode.OK:
                        span.set_status(Status(StatusCode.ERROR, f"{code.name}"))

        return traced


def _resolved(handler: Handler | None) -> Continuation:
    """A continuation that answers with the handler already found."""

    async def continuation(_details: grpc.HandlerCallDetails) -> Handler | None:
        return handler

    return continuation


def _replace(handler: Handler, unary_stream: Any) -> Handler:
    """``handler`` (a server-streaming one) with ``unary_stream`` as its behaviour."""
    return grpc.unary_stream_rpc_method_handler(
        unary_stream,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )
