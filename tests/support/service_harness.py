"""Real Chorus servers started in the test's process on loopback ports.

Each server gets its own telemetry with in-memory span and metric capture, and a client
channel that carries trace context, so tests can assert on what SREs would see.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from grpc import aio
from opentelemetry.instrumentation.grpc import aio_client_interceptors
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.common.server import ChorusService, RunningServer, start_server
from services.common.settings import ServerSettings
from services.common.telemetry import Telemetry, configure_telemetry
from tests.support.metrics import metric_points

ServiceT = TypeVar("ServiceT", bound=ChorusService)


@dataclass
class ServerUnderTest(Generic[ServiceT]):
    """A started server, a traced channel to it, and what its telemetry recorded."""

    running: RunningServer
    service: ServiceT
    channel: aio.Channel
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader
    telemetry: Telemetry

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.running.port}"

    def finished_spans(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.spans.get_finished_spans() if span.name == name]

    def metric_points(self, name: str) -> list[Any]:
        return metric_points(self.metrics, name)


HarnessT = TypeVar("HarnessT", bound=ServerUnderTest[Any])


@asynccontextmanager
async def server_starter(
    harness: type[HarnessT],
) -> AsyncIterator[
    Callable[[Callable[[Telemetry], Any], ServerSettings, bool], Awaitable[HarnessT]]
]:
    """Yields ``start(build, settings, load)``, which starts a server and returns it as a
    ``harness``; every server started is stopped on exit."""
    started: list[HarnessT] = []

    async def start(
        build: Callable[[Telemetry], Any], settings: ServerSettings, load: bool
    ) -> HarnessT:
        spans = InMemorySpanExporter()
        metrics = InMemoryMetricReader()
        telemetry = configure_telemetry(
            "chorus-test", span_exporters=[spans], metric_readers=[metrics], environ={}
        )
        service = build(telemetry)
        running = await start_server(service, settings, telemetry)
        channel = aio.insecure_channel(
            f"127.0.0.1:{running.port}",
            interceptors=aio_client_interceptors(tracer_provider=telemetry.tracer_provider),
        )
        server = harness(running, service, channel, spans, metrics, telemetry)
        started.append(server)
        if load:
            assert await running.load_service()
        return server

    try:
        yield start
    finally:
        for server in started:
            await server.channel.close()
            await server.running.stop(0.5)
            server.telemetry.shutdown()
