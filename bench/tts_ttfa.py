"""TTS benchmark: time to first audio (TTFA) and total latency over gRPC, printed as JSON.

Starts the TTS server in a child process (as `make run` does), then drives it from this
process with streaming clients at several concurrency levels, for a short and a long
text. Baselines measured in the same run:
- the same engine and streaming pipeline called in-process (no gRPC): the ratio of the
  gRPC figures to these is the transport's overhead;
- cache hits, from a second server with its result cache on.

The engine is espeak unless ``--engine coqui`` asks for a Coqui model: ``--coqui-model``
(a folder or a Coqui model name), or else a VITS with random weights built for the run,
``--vits-size tiny`` (the tests' model) or ``base`` (VITS's own layer sizes, as released
VITS models have them, so it runs at their speed).

    python -m bench.tts_ttfa [--requests 200] [--concurrency 1 4 16 64] [--timeout-s 30]
    python -m bench.tts_ttfa --engine coqui [--vits-size base | --coqui-model PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
from chorus.tts.v1 import tts_pb2, tts_pb2_grpc
from opentelemetry.trace import NoOpTracer

from bench.load import drive
from bench.report import print_report
from services.common.launcher import ServiceProcess
from services.common.pcm import SampleFormat
from services.tts.engine_scheduler import EngineScheduler
from services.tts.engines import create_engine
from services.tts.engines.base import SpeechEngine
from services.tts.engines.coqui import CoquiEngine
from services.tts.settings import TtsSettings
from services.tts.synthesis import SpeechStreamer, SynthesisSpec
from tests.tts.tiny_vits import VITS_SIZES

DEFAULT_CONCURRENCY = {"espeak": [1, 4, 16, 64], "coqui": [1, 4, 16]}

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
    stub: tts_pb2_grpc.TextToSpeechAsyncStub,
    text: str,
    concurrency: int,
    requests: int,
    timeout_s: float = 30.0,
) -> dict[str, object]:
    """``requests`` Synthesize calls spread over ``concurrency`` concurrent clients."""
    request = tts_pb2.SynthesizeRequest(text=text)

    async def call() -> float | None:
        started, first = time.perf_counter(), None
        async for response in stub.Synthesize(request, timeout=timeout_s):
            if first is None and response.HasField("chunk"):
                first = time.perf_counter() - started
        return first

    return (await drive(call, concurrency, requests)).summary()


async def in_process_scenario(
    streamer: SpeechStreamer, engine: SpeechEngine, text: str, requests: int
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


async def run(
    engine: SpeechEngine,
    env: dict[str, str],
    requests: int,
    levels: Sequence[int],
    timeout_s: float,
) -> dict[str, object]:
    """Every scenario: in-process on ``engine`` (loaded here), over gRPC on servers that
    ``env`` configures for the same engine, each call given ``timeout_s``; returns the
    JSON document's figures."""
    results: dict[str, object] = {}

    # Loaded on the thread that runs it, as the server does (torch computes more slowly
    # on threads other than the first that ran it in a process).
    scheduler = EngineScheduler(1)
    await scheduler.run(0, engine.load)
    await scheduler.run(0, engine.warm_up)
    streamer = SpeechStreamer(engine, scheduler, NoOpTracer())
    baseline = {
        name: await in_process_scenario(streamer, engine, text, requests)
        for name, text in TEXTS.items()
    }
    results["in_process"] = baseline

    async with (
        ServiceProcess(
            "services.tts",
            env={**env, "CHORUS_CACHE_MAX_BYTES": "0", "CHORUS_LOG_LEVEL": "WARNING"},
        ) as uncached,
        grpc.aio.insecure_channel(uncached.address) as channel,
    ):
        stub = tts_pb2_grpc.TextToSpeechStub(channel)
        await grpc_scenario(stub, TEXTS["short"], 1, 10)  # connection and server warm-up
        grpc_results: dict[str, dict[str, object]] = {}
        for name, text in TEXTS.items():
            grpc_results[name] = {
                f"c{level}": await grpc_scenario(stub, text, level, max(requests, level), timeout_s)
                for level in levels
            }
        results["grpc"] = grpc_results

    async with (
        ServiceProcess("services.tts", env={**env, "CHORUS_LOG_LEVEL": "WARNING"}) as cached,
        grpc.aio.insecure_channel(cached.address) as channel,
    ):
        stub = tts_pb2_grpc.TextToSpeechStub(channel)
        await grpc_scenario(stub, TEXTS["short"], 1, 1)  # fills the cache
        results["grpc_cache_hit"] = {
            "short_c1": await grpc_scenario(stub, TEXTS["short"], 1, requests, timeout_s)
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


@contextlib.contextmanager
def coqui_model(model: str, vits_size: str) -> Iterator[tuple[str, dict[str, object]]]:
    """The model to run (``model``, else a VITS of ``vits_size`` built in a temporary
    folder for the run) and how to describe it in the JSON."""
    if model:
        yield model, {"source": model}
        return
    import torch

    from tests.tts.tiny_vits import build_vits

    with tempfile.TemporaryDirectory(prefix="chorus-bench-vits-") as folder:
        built = Path(folder)
        # In a child process, so that torch's first thread here is the engine's (see run).
        child = multiprocessing.get_context("spawn").Process(
            target=build_vits, args=(built,), kwargs={"size": vits_size}
        )
        child.start()
        child.join()
        if child.exitcode != 0:
            raise RuntimeError(f"building the {vits_size} VITS failed ({child.exitcode})")
        weights = torch.load(built / "model.pth", weights_only=True)["model"]
        description: dict[str, object] = {
            "source": "built for the run, random weights",
            "size": vits_size,
            "parameters": sum(tensor.numel() for tensor in weights.values()),
        }
        yield str(built), description


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and print its JSON to stdout."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="requests per scenario")
    parser.add_argument(
        "--concurrency",
        type=int,
        nargs="+",
        help="concurrent clients (default: 1 4 16 64 for espeak, 1 4 16 for coqui)",
    )
    parser.add_argument(
        "--timeout-s", type=float, default=30.0, help="deadline of each Synthesize call"
    )
    parser.add_argument("--engine", choices=sorted(DEFAULT_CONCURRENCY), default="espeak")
    parser.add_argument(
        "--coqui-model", default="", help="coqui: a model folder or a Coqui model name"
    )
    parser.add_argument(
        "--vits-size",
        choices=sorted(VITS_SIZES),
        default="tiny",
        help="coqui without --coqui-model: the size of the random-weight VITS to build",
    )
    args = parser.parse_args(argv)
    levels = args.concurrency or DEFAULT_CONCURRENCY[args.engine]
    header: dict[str, object] = {"engine": args.engine}
    with contextlib.ExitStack() as stack:
        settings, env = TtsSettings(), {}
        description: dict[str, object] = {}
        if args.engine == "coqui":
            model, description = stack.enter_context(coqui_model(args.coqui_model, args.vits_size))
            settings = TtsSettings(engine="coqui", coqui_model=model)
            env = {"CHORUS_ENGINE": "coqui", "CHORUS_COQUI_MODEL": model}
        engine = create_engine(settings)
        figures = asyncio.run(run(engine, env, args.requests, levels, args.timeout_s))
    if isinstance(engine, CoquiEngine):
        header["model"] = {
            **description,
            "architecture": engine.architecture,
            "device": engine.device,
            "model_version": engine.model_version,
        }
    print_report(
        "tts_ttfa",
        {**header, "texts_chars": {name: len(text) for name, text in TEXTS.items()}, **figures},
    )


if __name__ == "__main__":
    main()
