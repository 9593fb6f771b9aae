"""TTS benchmark: time to first audio (TTFA) and total latency over gRPC, printed as JSON.

Starts the TTS server in a child process (as `make run` does), then drives it from this
process with streaming clients at several concurrency levels, for a short and a long
text. Baselines measured in the same run:
- the same engine and streaming pipeline called in-process (no gRPC): the ratio of the
  gRPC figures to these is the transport's overhead;
- cache hits, from a second server with its result cache on.

    python -m bench.tts_ttfa [--requests 200] [--concurrency 1 4 16 64]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence
from typing import Any

import grpc
from chorus.tts.v1 import tts_pb2, tts_pb2_grpc
from opentelemetry.trace import NoOpTracer

from bench.load import drive
from bench.report import print_report
from services.common.launcher import ServiceProcess
from services.common.pcm import SampleFormat
from services.tts.engine_scheduler import EngineScheduler
from services.tts.espeak_engine import EspeakEngine
from services.tts.synthesis import SpeechStreamer, SynthesisSpec

TEXTS = {
    "short": "Hello there, thanks for calling.",
    "long": (
        "Chorus turns text into speech that streams out as it is made. "
        "A realtime client starts playing the first sentence while the rest is still "
        "being synthesised, so the listener hears audio almost at once. "
        "This longer passage has several sentences, about twenty seconds of speech, "
        "to show how latency grows with the length of the text. "
        "The time to first audio should not grow with it at all."
    ),
}


async def grpc_scenario(
    stub: tts_pb2_grpc.TextToSpeechAsyncStub, text: str, concurrency: int, requests: int
) -> dict[str, object]:
    """``requests`` Synthesize calls spread over ``concurrency`` concurrent clients."""

    async def call() -> float | None:
        started, first = time.perf_counter(), None
        async for response in stub.Synthesize(tts_pb2.SynthesizeRequest(text=text), timeout=30):
            if first is None and response.HasField("chunk"):
                first = time.perf_counter() - started
        return first

    return (await drive(call, concurrency, requests)).summary()


async def in_process_scenario(
    streamer: SpeechStreamer, engine: EspeakEngine, text: str, requests: int
) -> dict[str, object]:
    """The same pipeline without gRPC, one request at a time: the baseline."""
    spec = SynthesisSpec(
        text=text,
        voice=engine.resolve_voice("", ""),
        speaking_rate=1.0,
        sample_rate=engine.sample_rate,
        sample_format=SampleFormat.S16LE,
        chunk_samples=0,
    )

    async def call() -> float | None:
        started, first = time.perf_counter(), None
        async for _chunk in streamer.stream(spec):
            if first is None:
                first = time.perf_counter() - started
        return first

    return (await drive(call, 1, requests)).summary()


async def run(requests: int, levels: Sequence[int]) -> dict[str, object]:
    """Every scenario; returns the JSON document."""
    results: dict[str, object] = {}

    engine = EspeakEngine()
    engine.load()
    engine.warm_up()
    streamer = SpeechStreamer(engine, EngineScheduler(1), NoOpTracer())
    baseline = {
        name: await in_process_scenario(streamer, engine, text, requests)
        for name, text in TEXTS.items()
    }
    results["in_process"] = baseline

    async with (
        ServiceProcess(
            "services.tts", env={"CHORUS_CACHE_MAX_BYTES": "0", "CHORUS_LOG_LEVEL": "WARNING"}
        ) as uncached,
        grpc.aio.insecure_channel(uncached.address) as channel,
    ):
        stub = tts_pb2_grpc.TextToSpeechStub(channel)
        await grpc_scenario(stub, TEXTS["short"], 1, 10)  # connection and server warm-up
        grpc_results: dict[str, dict[str, object]] = {}
        for name, text in TEXTS.items():
            grpc_results[name] = {
                f"c{level}": await grpc_scenario(stub, text, level, max(requests, level))
                for level in levels
            }
        results["grpc"] = grpc_results

    async with (
        ServiceProcess("services.tts", env={"CHORUS_LOG_LEVEL": "WARNING"}) as cached,
        grpc.aio.insecure_channel(cached.address) as channel,
    ):
        stub = tts_pb2_grpc.TextToSpeechStub(channel)
        await grpc_scenario(stub, TEXTS["short"], 1, 1)  # fills the cache
        results["grpc_cache_hit"] = {
            "short_c1": await grpc_scenario(stub, TEXTS["short"], 1, requests)
        }

    results["grpc_over_in_process_c1"] = {
        name: {
            metric: _ratio(grpc_results[name]["c1"], baseline[name], metric)
            for metric in ("ttfa_ms", "latency_ms")
        }
        for name in TEXTS
    }
    return results


def _ratio(numerator: Any, denominator: Any, metric: str) -> float:
    """p50 ratio of one metric between two summaries."""
    return round(float(numerator[metric]["p50"]) / float(denominator[metric]["p50"]), 2)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and print its JSON to stdout."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="requests per scenario")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64])
    args = parser.parse_args(argv)
    figures = asyncio.run(run(args.requests, args.concurrency))
    print_report(
        "tts_ttfa",
        {
            "engine": "espeak",
            "texts_chars": {name: len(text) for name, text in TEXTS.items()},
            **figures,
        },
    )


if __name__ == "__main__":
    main()
