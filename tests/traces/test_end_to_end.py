"""A real TTS server's spans, written as OTLP/JSON lines, read by the command line.

The server and a traced client each have their own service name and share one
:class:`OtlpJsonFileExporter`, as two processes would share a collector; an in-memory
exporter beside it keeps what the SDK recorded, to check the command's numbers against.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from chorus.tts.v1 import tts_pb2_grpc
from grpc import aio
from opentelemetry.instrumentation.grpc import aio_client_interceptors
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from devtools.launcher import REPO_ROOT
from services.common.server import start_server
from services.common.telemetry import configure_telemetry
from services.traces.otlp_file import OtlpJsonFileExporter
from services.tts.server import TtsService
from services.tts.settings import TtsSettings
from tests.tts.harness import synthesize

pytestmark = pytest.mark.asyncio(loop_scope="module")

TEXTS = (
    "The first request. It has two sentences.",
    "A second request, one sentence.",
    "A third. Short. Sentences.",
)


@dataclass(frozen=True)
class Recorded:
    """The trace file the requests left, and the spans the SDK recorded for them."""

    path: Path
    spans: tuple[ReadableSpan, ...]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def recorded(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Recorded]:
    path = tmp_path_factory.mktemp("traces") / "traces.json"
    exporter = OtlpJsonFileExporter(path)
    memory = InMemorySpanExporter()
    tts = configure_telemetry("chorus-tts", span_exporters=[exporter, memory], environ={})
    caller = configure_telemetry("chorus-caller", span_exporters=[exporter, memory], environ={})
    settings = TtsSettings(host="127.0.0.1", port=0)
    running = await start_server(TtsService(settings, tts), settings, tts)
    try:
        assert await running.load_service()
        async with aio.insecure_channel(
            f"127.0.0.1:{running.port}",
            interceptors=aio_client_interceptors(tracer_provider=caller.tracer_provider),
        ) as channel:
            stub = tts_pb2_grpc.TextToSpeechStub(channel)
            for text in (*TEXTS, TEXTS[0]):  # the last from the cache
                await synthesize(stub, text=text)
            with pytest.raises(grpc.aio.AioRpcError):
                await synthesize(stub, text="  ")
    finally:
        await running.stop(0.5)
        tts.shutdown()
        caller.shutdown()
    yield Recorded(path, memory.get_finished_spans())


async def run_traces(*arguments: str) -> str:
    completed = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "services.traces", *arguments],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


def duration_ms(span: ReadableSpan) -> float:
    assert span.start_time is not None
    assert span.end_time is not None
    return (span.end_time - span.start_time) / 1e6


async def test_the_waterfall_names_the_real_stages_with_their_durations(
    recorded: Recorded,
) -> None:
    out = await run_traces("waterfall", str(recorded.path), "--limit", "0")
    headers = [line for line in out.splitlines() if line.startswith("trace ")]
    assert len(headers) == 5
    assert all("services: chorus-caller, chorus-tts" in header for header in headers)
    assert all("/chorus.tts.v1.TextToSpeech/Synthesize" in header for header in headers)
    for stage in ("tts.synthesize", "tts.sentence", "cache.get", "@ tts.first_audio"):
        assert f" {stage} " in out, stage
    # Each tts.synthesize line's duration is what the SDK recorded, to the microsecond.
    shown = sorted(
        float(line.split()[1]) for line in out.splitlines() if " tts.synthesize " in line
    )
    expected = sorted(
        round(duration_ms(s), 3) for s in recorded.spans if s.name == "tts.synthesize"
    )
    assert shown == expected
    assert len(shown) == 4
    # The rejected request: the caller's span failed with the gRPC status.
    (failed,) = [line for line in out.splitlines() if " ERROR " in line]
    assert "chorus-caller" in failed
    assert "/chorus.tts.v1.TextToSpeech/Synthesize" in failed


async def test_the_summary_counts_the_real_stages(recorded: Recorded) -> None:
    data = json.loads(await run_traces("summary", str(recorded.path), "--json"))
    assert (data["traces"], data["spans"]) == (5, len(recorded.spans))
    stages = {(stage["service"], stage["name"]): stage for stage in data["stages"]}
    synthesize = stages["chorus-tts", "tts.synthesize"]
    assert (synthesize["count"], synthesize["traces"]) == (4, 4)
    durations = [duration_ms(s) for s in recorded.spans if s.name == "tts.synthesize"]
    assert synthesize["max_ms"] == pytest.approx(max(durations))
    assert 0 < synthesize["mean_share"] < 1
    sentences = stages["chorus-tts", "tts.sentence"]
    assert sentences["count"] == 2 + 1 + 3  # the cached request synthesises nothing
    # Every request has spans below its root, so each names one slowest stage.
    assert sum(stage["slowest"] for stage in data["stages"]) == 5

    table = await run_traces("summary", str(recorded.path), "--top", "4")
    assert table.startswith("5 requests, ")
    assert "most often the slowest stage: " in table
    assert len([line for line in table.splitlines() if line.startswith("chorus-")]) == 4
