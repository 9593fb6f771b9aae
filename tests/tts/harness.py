"""Test harness: a real TTS server on loopback, what its telemetry saw, stream helpers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from chorus.audio.v1 import audio_pb2
from chorus.tts.v1 import tts_pb2, tts_pb2_grpc
from grpc import aio
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.common.server import RunningServer
from services.common.telemetry import Telemetry
from services.tts.server import TtsService


@dataclass
class TtsServer:
    """A started server, a channel to it, and what its telemetry recorded."""

    running: RunningServer
    service: TtsService
    channel: aio.Channel
    stub: tts_pb2_grpc.TextToSpeechAsyncStub
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader
    telemetry: Telemetry

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.running.port}"

    def finished_spans(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.spans.get_finished_spans() if span.name == name]

    def metric_points(self, name: str) -> list[Any]:
        data = self.metrics.get_metrics_data()
        if data is None:
            return []
        return [
            point
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == name
            for point in metric.data.data_points
        ]


StartTts = Callable[..., Awaitable[TtsServer]]
"""The ``start_tts`` fixture: starts a server with settings overrides."""


@dataclass
class Synthesis:
    """Everything one Synthesize stream returned."""

    format: audio_pb2.AudioFormat
    chunks: list[tts_pb2.AudioChunk]
    summary: tts_pb2.SynthesisSummary

    @property
    def audio(self) -> bytes:
        return b"".join(chunk.audio for chunk in self.chunks)


async def synthesize(stub: tts_pb2_grpc.TextToSpeechAsyncStub, **fields: Any) -> Synthesis:
    """Run one Synthesize call to the end and sort its messages."""
    formats, chunks, summaries = [], [], []
    async for response in stub.Synthesize(tts_pb2.SynthesizeRequest(**fields), timeout=30):
        kind = response.WhichOneof("content")
        if kind == "format":
            formats.append(response.format)
        elif kind == "chunk":
            chunks.append(response.chunk)
        else:
            summaries.append(response.summary)
    assert len(formats) == 1
    assert len(summaries) == 1
    return Synthesis(formats[0], chunks, summaries[0])
