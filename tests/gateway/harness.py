"""The gateway under test: served by uvicorn on a loopback port, as in production
(services.gateway.server.start_gateway), in front of a real orchestrator.

Each gateway records its spans in memory and its metrics in its own Prometheus registry,
so a test can read its trace and its figures without a collector.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import generate_latest

from services.common.api_keys import key_digest
from services.common.telemetry import Telemetry, configure_telemetry
from services.gateway.server import start_gateway
from services.gateway.settings import GatewaySettings

API_KEY = "gateway-tests-key"
"""The key the orchestrator of the gateway tests requires."""

KEY_ENTRY = f"tester:{key_digest(API_KEY)}"
"""Its entry in CHORUS_API_KEYS."""

AUTHORIZATION = {"Authorization": f"Bearer {API_KEY}"}


@dataclass
class Gateway:
    """A running gateway: where it listens and what it recorded."""

    port: int
    spans: InMemorySpanExporter
    telemetry: Telemetry

    @property
    def url(self) -> str:
        """Its HTTP base URL."""
        return f"http://127.0.0.1:{self.port}"

    def ws_url(self, path: str) -> str:
        """The WebSocket URL of ``path``."""
        return f"ws://127.0.0.1:{self.port}{path}"

    def finished_spans(self) -> list[ReadableSpan]:
        """The spans it has ended so far."""
        return list(self.spans.get_finished_spans())

    def metrics_text(self) -> str:
        """Its metrics as Prometheus would scrape them."""
        return generate_latest(self.telemetry.prometheus_registry).decode()


@asynccontextmanager
async def running_gateway(orchestrator_address: str, **settings: Any) -> AsyncIterator[Gateway]:
    """A gateway over the orchestrator at ``orchestrator_address`` with ``settings``
    (GatewaySettings fields) on a free loopback port; drained and stopped on exit."""
    spans = InMemorySpanExporter()
    telemetry = configure_telemetry("chorus-gateway", span_exporters=[spans], environ={})
    running = await start_gateway(
        GatewaySettings(
            host="127.0.0.1",
            port=0,
            metrics_port=0,
            orchestrator_address=orchestrator_address,
            **settings,
        ),
        telemetry,
    )
    try:
        yield Gateway(running.port, spans, telemetry)
    finally:
        await running.stop()
        telemetry.shutdown()
