"""The Prometheus scrape endpoint: ``GET /metrics`` over HTTP, beside the gRPC port.

prometheus_client's own server answers on a thread of its own, so a scrape (which runs
every metric callback) never holds up the event loop that streams audio.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server

logger = logging.getLogger(__name__)


class MetricsEndpoint:
    """A running endpoint; ``stop`` closes its port and ends its thread."""

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread

    @property
    def port(self) -> int:
        """The port it listens on (the one picked when asked for port 0)."""
        return self._server.server_port

    @property
    def thread(self) -> threading.Thread:
        """The thread answering scrapes (it has ended once ``stop`` returns), so that a
        test can watch this endpoint's own thread rather than every thread in the process."""
        return self._thread

    async def stop(self) -> None:
        """Stop answering and close the port; waits for the serving thread to end."""
        # shutdown() waits up to the server's poll interval (0.5 s): not on the event loop.
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def start_metrics_endpoint(registry: CollectorRegistry, host: str, port: int) -> MetricsEndpoint:
    """Serve ``registry`` on ``host:port`` (port 0 picks a free one).

    ``host`` is written as for gRPC: ``[::]`` (every address) loses its brackets here.
    Raises OSError when the port cannot be bound, so a misconfigured server stops at
    start-up rather than running unobserved.
    """
    address = host.removeprefix("[").removesuffix("]")
    try:
        server, thread = start_http_server(port, addr=address, registry=registry)
    except OSError as error:
        raise OSError(f"cannot serve metrics on {host}:{port}: {error}") from error
    endpoint = MetricsEndpoint(server, thread)
    logger.info("metrics on http://%s:%d/metrics", host, endpoint.port)
    return endpoint
