"""The trace id of each response in its ``x-trace-id`` header, so that a client (or the
person reading its logs) can find the request's trace."""

from __future__ import annotations

from opentelemetry import trace
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = b"x-trace-id"

# The messages that carry a response's headers, over HTTP and at a WebSocket's handshake.
_HEADERS_MESSAGES = ("http.response.start", "websocket.accept")


def current_trace_id() -> str:
    """The current span's trace id (32 hex digits), or empty outside a trace."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else ""


class TraceIdHeader:
    """ASGI middleware that adds ``x-trace-id``; install it inside OpenTelemetry's, whose
    span it names."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        trace_id = current_trace_id()
        if not trace_id:
            await self._app(scope, receive, send)
            return
        value = trace_id.encode()

        async def send_with_trace_id(message: Message) -> None:
            if message["type"] in _HEADERS_MESSAGES:
                headers = [*message.get("headers", ()), (HEADER, value)]
                message = {**message, "headers": headers}
            await send(message)

        await self._app(scope, receive, send_with_trace_id)
