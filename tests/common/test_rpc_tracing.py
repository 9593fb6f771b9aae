"""The server span interceptor closes a streaming handler with its own stream, in the
context the handler ran in, behind the stream guard as the servers install them."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc import aio
from opentelemetry.sdk.trace import TracerProvider

from services.common.response_streams import StreamGuardInterceptor
from services.common.rpc_tracing import RpcTracingInterceptor

SERVICE = "test.Traced"
IN_HANDLER: contextvars.ContextVar[str] = contextvars.ContextVar("in_handler")


class Counting:
    """A server-streaming handler that counts for ever; notes how it was closed."""

    def __init__(self) -> None:
        self.yielded = asyncio.Event()
        self.closed = asyncio.Event()
        self.close_errors: list[BaseException] = []

    async def count(self, _request: bytes, _context: object) -> AsyncIterator[bytes]:
        # A token set here resets only in this same context, as a span made current does.
        token = IN_HANDLER.set("counting")
        try:
            number = 0
            while True:
                number += 1
                self.yielded.set()
                yield str(number).encode()
                await asyncio.sleep(0)
        finally:
            try:
                IN_HANDLER.reset(token)
            except ValueError as error:
                self.close_errors.append(error)
            self.closed.set()


@pytest.mark.usefixtures("no_garbage_collection")
async def test_a_cancelled_stream_closes_its_handler_in_its_context() -> None:
    handler = Counting()
    server = aio.server(
        interceptors=[
            StreamGuardInterceptor([SERVICE], stall_timeout_s=0),
            RpcTracingInterceptor(TracerProvider()),
        ]
    )
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                SERVICE, {"Count": grpc.unary_stream_rpc_method_handler(handler.count)}
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            count: aio.UnaryStreamMultiCallable[bytes, bytes] = channel.unary_stream(
                f"/{SERVICE}/Count"
            )
            call = count(b"")
            assert await call.read() == b"1"
            call.cancel()
            # OpenTelemetry's own wrapper leaves the handler's stream open when it is
            # closed: without the interceptor's closing it, this waits in vain.
            await asyncio.wait_for(handler.closed.wait(), 30)
        assert handler.close_errors == []
    finally:
        await server.stop(0)
