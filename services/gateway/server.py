"""The gateway's process: settings, telemetry, the orchestrator channel, uvicorn, and a
graceful shutdown.

On SIGTERM or SIGINT the port stops accepting, HTTP responses in flight get ``grace_s`` to
finish (then they are cancelled, and their calls with them), open WebSockets are closed
with 1012 (service restart), and only then are the channel, the metrics endpoint and
telemetry closed, in that order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import uvicorn

from services.common.logging_setup import configure_logging
from services.common.server import process_lifetime
from services.common.settings import load_settings
from services.common.telemetry import Telemetry, configure_telemetry
from services.gateway.app import build_app
from services.gateway.http_protocol import with_header_timeout
from services.gateway.orchestrator_client import OrchestratorClient
from services.gateway.settings import GatewaySettings

logger = logging.getLogger(__name__)

SERVICE_NAME = "chorus-gateway"

_STARTED_POLL_S = 0.01


class _Server(uvicorn.Server):
    """uvicorn's server without its signal handling: ``serve`` below owns the signals,
    so that the channel and telemetry are closed after the server has drained (uvicorn
    would re-raise the signal once drained and end the process there)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class RunningGateway:
    """A started gateway: its port, and ``stop`` to drain it."""

    port: int
    _server: _Server
    _serving: asyncio.Task[None]
    _orchestrator: OrchestratorClient

    async def stop(self) -> None:
        """Stop accepting, let requests in flight finish (within the grace), then close
        the orchestrator channel."""
        self._server.should_exit = True
        try:
            await self._serving
        finally:
            await self._orchestrator.close()


async def start_gateway(settings: GatewaySettings, telemetry: Telemetry) -> RunningGateway:
    """Open the HTTP port and serve; port 0 picks a free one (tests), reported in the
    returned ``RunningGateway.port``. Raises OSError when the port cannot be bound."""
    orchestrator = OrchestratorClient(settings, telemetry.tracer_provider)
    config = uvicorn.Config(
        build_app(settings, telemetry, orchestrator),
        host=settings.host.removeprefix("[").removesuffix("]"),
        port=settings.port,
        lifespan="off",
        # Logging is the process's (configure_logging), as in every Chorus service.
        log_config=None,
        access_log=False,
        server_header=False,
        http=with_header_timeout(settings.header_timeout_s),
        ws_max_size=settings.max_ws_message_bytes,
        timeout_graceful_shutdown=math.ceil(settings.grace_s),
    )
    server = _Server(config)
    try:
        listener = listening_socket(config.host, settings.port)
    except OSError as error:
        await orchestrator.close()
        raise OSError(f"cannot listen on {settings.host}:{settings.port}: {error}") from None
    serving = asyncio.create_task(server.serve(sockets=[listener]))
    while not server.started:
        if serving.done():
            await orchestrator.close()
            serving.result()  # raises what stopped it
            raise OSError(f"the gateway stopped before serving on port {settings.port}")
        await asyncio.sleep(_STARTED_POLL_S)
    port: int = listener.getsockname()[1]
    return RunningGateway(port, server, serving, orchestrator)


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (``::`` takes IPv4 too), for uvicorn to listen on.

    Made with its protocol named, IPPROTO_TCP, rather than as uvicorn makes its own: asyncio
    sets TCP_NODELAY only on accepted sockets whose protocol says TCP, and without it every
    small response waits out the client's delayed acknowledgement (40 ms on Linux) between
    its headers and its body.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        listener.bind((host, port))
    except OSError:
        listener.close()
        raise
    return listener


async def serve(settings: GatewaySettings, telemetry: Telemetry) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully (see the module)."""
    async with process_lifetime(telemetry, settings.host, settings.metrics_port) as (
        started,
        stop_requested,
    ):
        running = await start_gateway(settings, telemetry)
        started.push_async_callback(running.stop)
        logger.info(
            "serving HTTP on %s:%d over the orchestrator at %s",
            settings.host,
            running.port,
            settings.orchestrator_address,
        )
        await stop_requested.wait()
        logger.info("shutting down: %.1f s for requests in flight", settings.grace_s)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the gateway until SIGTERM or SIGINT."""
    settings = load_settings(GatewaySettings, argv)
    configure_logging(settings.log_level)
    telemetry = configure_telemetry(SERVICE_NAME)
    asyncio.run(serve(settings, telemetry))
