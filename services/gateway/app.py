"""The gateway's ASGI application: its routes, and what every request goes through.

Each route is one endpoint object's method (services.gateway.openai_speech,
realtime_ws, messages_sse, probes); this module wires them to paths, serves the static
demo page at ``/``, answers every error with the one JSON shape (services.gateway.errors)
and wraps it all in OpenTelemetry's ASGI middleware: one server span per request or
WebSocket, the parent of the orchestrator call made for it.
"""

from __future__ import annotations

from pathlib import Path

from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocketClose

from services.common.stream_timing import StreamMetrics
from services.common.telemetry import Telemetry
from services.gateway import messages_sse, openai_speech, realtime_ws
from services.gateway.credentials import KeyCheck
from services.gateway.errors import ApiError
from services.gateway.messages_sse import ComposeMessages
from services.gateway.openai_speech import OpenAiSpeech
from services.gateway.orchestrator_client import OrchestratorClient
from services.gateway.probes import Probes
from services.gateway.realtime_ws import RealtimeSpeech
from services.gateway.settings import GatewaySettings
from services.gateway.trace_ids import TraceIdHeader

STATIC_DIR = Path(__file__).parent / "static"

UNTRACED_PATHS = "/healthz,/readyz"
"""Probes would drown the traces (and the HTTP metrics) of the requests that matter."""

_CODES = {404: "not_found", 405: "method_not_allowed"}
_CLIENT_CLOSED_REQUEST = 499
_WS_NOT_FOUND = 4404


def build_app(
    settings: GatewaySettings, telemetry: Telemetry, orchestrator: OrchestratorClient
) -> ASGIApp:
    """The application, calling ``orchestrator``, recording into ``telemetry``."""
    keys = KeyCheck.from_settings(settings)
    metrics = StreamMetrics(telemetry.meter, "gateway", "an HTTP or WebSocket audio stream")
    probes = Probes(orchestrator)
    routes: list[BaseRoute] = [
        Route(
            openai_speech.ROUTE,
            OpenAiSpeech(orchestrator, keys, settings, metrics).handle,
            methods=["POST"],
        ),
        WebSocketRoute(
            realtime_ws.ROUTE, RealtimeSpeech(orchestrator, keys, settings, metrics).handle
        ),
        Route(
            messages_sse.ROUTE,
            ComposeMessages(orchestrator, keys, settings).handle,
            methods=["POST"],
        ),
        Route("/healthz", probes.live, methods=["GET"]),
        Route("/readyz", probes.ready, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(TraceIdHeader)],
        exception_handlers={
            ApiError: _api_error,
            HTTPException: _http_error,
            ClientDisconnect: _client_disconnected,
            Exception: _unexpected,
        },
    )
    # The demo page is what no route matches, rather than a route at "/": a mount there
    # would match every path, and a route's wrong method would read as 404, not 405.
    app.router.default = _StaticPages(StaticFiles(directory=STATIC_DIR, html=True))
    return OpenTelemetryMiddleware(
        app,
        excluded_urls=UNTRACED_PATHS,
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
        # A span for every chunk of a streamed body would dwarf the trace it belongs to.
        exclude_spans=["receive", "send"],
    )


class _StaticPages:
    """The static files over HTTP; a WebSocket to any other path is closed (4404)."""

    def __init__(self, files: StaticFiles) -> None:
        self._files = files

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await WebSocketClose(code=_WS_NOT_FOUND)(scope, receive, send)
            return
        await self._files(scope, receive, send)


async def _api_error(_request: Request, error: Exception) -> Response:
    assert isinstance(error, ApiError)
    return error.response()


async def _http_error(_request: Request, error: Exception) -> Response:
    """Starlette's own refusals (no such path, wrong method) in the one error shape."""
    assert isinstance(error, HTTPException)
    code = _CODES.get(error.status_code, "invalid_argument")
    return ApiError(error.status_code, error.detail, param=None, code=code).response(error.headers)


async def _client_disconnected(_request: Request, _error: Exception) -> Response:
    # Nobody is left to read it; the status is for the access log and the metrics.
    return Response(status_code=_CLIENT_CLOSED_REQUEST)


async def _unexpected(_request: Request, _error: Exception) -> Response:
    """A bug of the gateway's: the client gets a generic 500 (Starlette raises the error
    on, and the server logs it with its traceback)."""
    return ApiError(500, "internal error", param=None, code="internal").response()
