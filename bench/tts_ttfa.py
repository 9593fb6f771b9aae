"""TTS benchmark: time to first audio (TTFA) and total latency over gRPC, printed as JSON.

For each engine asked for (by default piper, the default engine, against espeak, in the
same run): measures the engine's real-time factor (``engine_realtime_x``: seconds of
audio made per second, each text whole, in-process); starts the TTS server in a child
process (as `make run` does), then drives it from this process with streaming clients at
several concurrency levels, for a one-sentence and a five-sentence text. Each row gives
TTFA and total latency percentiles, errors by status, and how many seconds of audio the
server made per second (``realtime_x``; ``realtime_x_per_stream``, what each stream got:
under 1, a listener hears it stall). Baselines measured in the same run:
- the same engine and streaming pipeline called in-process (no gRPC): the ratio of the
  gRPC figures to these is the transport's overhead;
- cache hits, from a second server with its result cache on.

piper runs its configured voice (the packaged one unless ``CHORUS_PIPER_MODEL`` says
otherwise). ``--engine coqui`` runs a Coqui model: ``--coqui-model`` (a folder or a Coqui
model name), or else a VITS with random weights built for the run, ``--vits-size tiny``
(the tests' model) or ``base`` (VITS's own layer sizes, as released VITS models have them,
so it runs at their speed).

    python -m bench.tts_ttfa [--engine piper espeak] [--requests N] [--concurrency 1 4 16]
    python -m bench.tts_ttfa --engine coqui [--vits-size base | --coqui-model PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
from chorus.tts.v1 import tts_pb2, tts_pb2_grpc
from opentelemetry.trace import NoOpTracer

from bench.load import Load, drive
from bench.report import print_report
from devtools.builders.tiny_vits import VITS_SIZES
from devtools.launcher import ServiceProcess
from services.common.pcm import SampleFormat
from services.common.sentences import split_sentences
from services.tts.engine_scheduler import EngineScheduler
from services.tts.engines import create_engine
from services.tts.engines.base import SpeechEngine
from services.tts.engines.coqui import CoquiEngine
from services.tts.engines.piper import PiperEngine
from services.tts.settings import TtsSettings
from services.tts.synthesis import SpeechStreamer, SynthesisSpec

DEFAULT_ENGINES = ["piper", "espeak"]
DEFAULT_CONCURRENCY = [1, 4, 16]
# Requests per scenario: a neural engine's long text takes seconds, espeak's milliseconds.
DEFAULT_REQUESTS = {"espeak": 200, "piper": 30, "coqui": 50}

# What piper is asked for on this 2-core machine.
GOAL_TTFA_P50_C1_MS = 80.0
GOAL_REALTIME_X = 8.0
GOAL_CLEAN_CONCURRENCY = 16

TEXTS = {
    "short": "Hello there, thanks for calling.",
    "long": (
        "Chorus turns text into speech that streams out as it is made. "
        "A realtime client starts playing the first sentence while the rest is still "
        "being synthesised, so the listener hears audio almost at once. "
        "This longer passage has several sentences, about twenty seconds of speech, "
        "to show how latency grows with the length of the text. "
        "The time to first audio should not grow with it at all. "
        "Every figure here comes from the same machine, in the same run."
    ),
}


async def grpc_scenario(
    stub: tts_pb2_grpc.TextToSpeechAsyncStub,
    text: str,
    concurrency: int,
    requests: int,
    timeout_s: float = 30.0,
) -> Load:
    """``requests`` Synthesize calls spread over ``concurrency`` concurrent clients."""
    request = tts_pb2.SynthesizeRequest(text=text)

    async def call() -> float | None:
        started, first = time.perf_counter(), None
        async for response in stub.Synthesize(request, timeout=timeout_s):
            if first is None and response.HasField("chunk"):
                first = time.perf_counter() - started
        return first

    return await drive(call, concurrency, requests)


def native_spec(engine: SpeechEngine, text: str) -> SynthesisSpec:
    """``text`` in the engine's default voice at its own rate, as 16-bit PCM chunks sent
    as soon as they are made: what every in-process scenario streams."""
    return SynthesisSpec(
        text=text,
        voice=engine.resolve_voice("", ""),
        speaking_rate=1.0,
        sample_rate=engine.sample_rate,
        sample_format=SampleFormat.S16LE,
        chunk_samples=0,
    )


async def in_process_scenario(
    streamer: SpeechStreamer, engine: SpeechEngine, text: str, requests: int
) -> Load:
    """The same pipeline without gRPC, one request at a time: the baseline."""
    spec = native_spec(engine, text)

    async def call() -> float | None:
        started, first = time.perf_counter(), None
        async for _chunk in streamer.stream(spec):
            if first is None:
                first = time.perf_counter() - started
        return first

    return await drive(call, 1, requests)


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
    audio_s: dict[str, float] = {}
    engine_x: dict[str, float] = {}
    for name, text in TEXTS.items():
        audio_s[name], engine_x[name] = await engine_realtime(scheduler, engine, text)
    results["audio_s"] = audio_s
    results["engine_realtime_x"] = engine_x
    streamer = SpeechStreamer(engine, scheduler, NoOpTracer())
    baseline = {
        name: summary(await in_process_scenario(streamer, engine, text, requests), audio_s[name])
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
                f"c{level}": summary(
                    await grpc_scenario(stub, text, level, max(requests, level), timeout_s),
                    audio_s[name],
                    level,
                )
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
            "short_c1": summary(
                await grpc_scenario(stub, TEXTS["short"], 1, requests, timeout_s),
                audio_s["short"],
            )
        }

    results["grpc_over_in_process_c1"] = {
        name: {
            metric: _ratio(grpc_results[name]["c1"], baseline[name], metric)
            for metric in ("ttfa_ms", "latency_ms")
        }
        for name in TEXTS
    }
    return results


async def engine_realtime(
    scheduler: EngineScheduler, engine: SpeechEngine, text: str, repeats: int = 5
) -> tuple[float, float]:
    """The seconds of audio ``text`` makes, and how many seconds of it the engine makes
    a second (the median of ``repeats`` calls on the scheduler's thread): its real-time
    factor, without the streamer or the transport."""
    rate = engine.sample_rate
    times: list[float] = []
    for _ in range(repeats):
        started = time.perf_counter()
        audio = await scheduler.run(0, engine.speak_whole, text)
        times.append(time.perf_counter() - started)
    seconds = audio.size / rate
    return round(seconds, 2), round(seconds / statistics.median(times), 1)


def summary(load: Load, audio_s: float, concurrency: int = 1) -> dict[str, object]:
    """``load``'s summary, with ``realtime_x``: the seconds of audio (``audio_s`` a
    request) its requests made per second of wall time; and that over ``concurrency``,
    what each stream got: under 1, a listener would hear the stream stall."""
    realtime = audio_s * len(load.latencies) / load.wall_s
    return {
        **load.summary(),
        "realtime_x": round(realtime, 1),
        "realtime_x_per_stream": round(realtime / concurrency, 2),
    }


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

    from devtools.builders.tiny_vits import build_vits

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


def describe(engine: SpeechEngine, description: dict[str, object]) -> dict[str, object]:
    """What was run: the model, how it ran, and its version."""
    if isinstance(engine, CoquiEngine):
        description = {
            **description,
            "architecture": engine.architecture,
            "device": engine.device,
        }
    elif isinstance(engine, PiperEngine):
        description = {
            **description,
            "voice": engine.voice.name,
            "providers": engine.providers,
            "copies": engine.copies,
            "threads": engine.threads,
            "decoded_in_windows": engine.windowed,
        }
    return {**description, "model_version": engine.model_version}


def piper_goals(piper: dict[str, Any], levels: Sequence[int]) -> dict[str, object]:
    """piper's figures against the goals set for it on this machine.

    The real-time factor is judged on the stream a client gets at concurrency 1 (its
    requests, over a minute or more of the run, average out the machine's noise); the
    engine's own, from a few calls at one moment, is shown beside it.
    """
    grpc_rows = piper["grpc"]
    ttfa = {name: grpc_rows[name]["c1"]["ttfa_ms"]["p50"] for name in TEXTS}
    served = {name: grpc_rows[name]["c1"]["realtime_x"] for name in TEXTS}
    goals: dict[str, object] = {
        f"ttfa_p50_c1_under_{GOAL_TTFA_P50_C1_MS:g}_ms": {
            "measured_ms": ttfa,
            "met": all(value < GOAL_TTFA_P50_C1_MS for value in ttfa.values()),
        },
        f"realtime_x_at_least_{GOAL_REALTIME_X:g}": {
            "grpc_stream_c1": served,
            "engine_in_process": piper["engine_realtime_x"],
            "met": all(value >= GOAL_REALTIME_X for value in served.values()),
        },
    }
    if GOAL_CLEAN_CONCURRENCY in levels:
        errors = {name: grpc_rows[name][f"c{GOAL_CLEAN_CONCURRENCY}"]["errors"] for name in TEXTS}
        goals[f"no_errors_at_c{GOAL_CLEAN_CONCURRENCY}"] = {
            "errors": errors,
            "met": not any(errors.values()),
        }
    return goals


def piper_over_espeak(piper: dict[str, Any], espeak: dict[str, Any]) -> dict[str, object]:
    """p50 ratios of piper's gRPC figures to espeak's, per text and concurrency."""
    return {
        name: {
            level: {
                metric: _ratio(piper["grpc"][name][level], espeak["grpc"][name][level], metric)
                for metric in ("ttfa_ms", "latency_ms")
            }
            for level in piper["grpc"][name]
        }
        for name in TEXTS
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and print its JSON to stdout."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--engine",
        nargs="+",
        choices=sorted(DEFAULT_REQUESTS),
        default=DEFAULT_ENGINES,
        help="engines to measure, one after the other (default: piper espeak)",
    )
    parser.add_argument(
        "--requests",
        type=int,
        help="requests per scenario (default: 30 for piper, 200 for espeak, 50 for coqui)",
    )
    parser.add_argument(
        "--concurrency", type=int, nargs="+", default=DEFAULT_CONCURRENCY, help="concurrent clients"
    )
    parser.add_argument(
        "--timeout-s",
        type=float,
        default=120.0,
        help="deadline of each Synthesize call (default 120 s: a listener's, longer than "
        "the five-sentence text takes to play)",
    )
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
    # The machine is shared: how busy it was frames every figure.
    load_before = os.getloadavg()[0]
    engines: dict[str, dict[str, Any]] = {}
    for name in args.engine:
        with contextlib.ExitStack() as stack:
            settings, env = TtsSettings(engine=name), {"CHORUS_ENGINE": name}
            description: dict[str, object] = {}
            if name == "coqui":
                model, description = stack.enter_context(
                    coqui_model(args.coqui_model, args.vits_size)
                )
                settings = TtsSettings(engine="coqui", coqui_model=model)
                env["CHORUS_COQUI_MODEL"] = model
            engine = create_engine(settings)
            requests = args.requests or DEFAULT_REQUESTS[name]
            figures = asyncio.run(run(engine, env, requests, args.concurrency, args.timeout_s))
            engines[name] = {
                "model": describe(engine, description),
                "requests": requests,
                **figures,
            }
    report: dict[str, object] = {
        "load_average_1m": {"start": load_before, "end": os.getloadavg()[0]},
        "texts_chars": {name: len(text) for name, text in TEXTS.items()},
        "texts_sentences": {name: len(split_sentences(text)) for name, text in TEXTS.items()},
        "engines": engines,
    }
    if "piper" in engines:
        report["piper_goals"] = piper_goals(engines["piper"], args.concurrency)
        if "espeak" in engines:
            report["piper_over_espeak_p50"] = piper_over_espeak(engines["piper"], engines["espeak"])
    print_report("tts_ttfa", report)


if __name__ == "__main__":
    main()
