"""Fixtures: real TTS servers on loopback ports, stopped after each test."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest
from chorus.tts.v1 import tts_pb2_grpc
from grpc import aio
from opentelemetry.instrumentation.grpc import aio_client_interceptors
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.common.server import start_server
from services.common.telemetry import configure_telemetry
from services.tts.engine import SpeechEngine
from services.tts.server import TtsService
from services.tts.settings import TtsSettings
from tests.tts.harness import StartTts, TtsServer


@pytest.fixture
async def start_tts() -> AsyncIterator[StartTts]:
    """Start TTS servers with given settings overrides (and optionally an engine)."""
    started: list[TtsServer] = []

    async def start(
        engine: SpeechEngine | None = None, load: bool = True, **overrides: Any
    ) -> TtsServer:
        spans = InMemorySpanExporter()
        metrics = InMemoryMetricReader()
        telemetry = configure_telemetry(
            "chorus-tts-test", span_exporters=[spans], metric_readers=[metrics], environ={}
        )
        settings = dataclasses.replace(TtsSettings(host="127.0.0.1", port=0), **overrides)
        service = TtsService(settings, telemetry, engine)
        running = await start_server(service, settings, telemetry)
        if load:
            assert await running.load_service()
        channel = aio.insecure_channel(
            f"127.0.0.1:{running.port}",
            interceptors=aio_client_interceptors(tracer_provider=telemetry.tracer_provider),
        )
        server = TtsServer(
            running=running,
            service=service,
            channel=channel,
            stub=tts_pb2_grpc.TextToSpeechStub(channel),
            spans=spans,
            metrics=metrics,
            telemetry=telemetry,
        )
        started.append(server)
        return server

    yield start
    for server in started:
        await server.channel.close()
        await server.running.stop(0.5)
        server.telemetry.shutdown()


@pytest.fixture
async def tts(start_tts: StartTts) -> TtsServer:
    """One TTS server with default settings and the espeak engine, ready to serve."""
    return await start_tts()
