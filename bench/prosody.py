"""Prosody benchmark: Adjust latency over gRPC, printed as JSON.

Starts the prosody server in a child process (its cache off, so every request does the
work), then sends Adjust requests with the "celebration" preset on 1, 5 and 20 s of
speech, at concurrency 1 and 4, with and without the confidence check (closed loop, with
bench.load). The baseline, in this same run, is the worker's own job (``adjust_job``:
adjust, confidence check, fallback decision) called in-process: no gRPC, no worker hop.

    python -m bench.prosody [--requests 30]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence

import grpc
import numpy as np
from chorus.prosody.v1 import prosody_pb2, prosody_pb2_grpc

from bench.load import drive
from bench.report import print_report
from bench.stats import percentiles_ms
from devtools.launcher import ServiceProcess
from services.common.pcm import Samples
from services.common.wav import write_wav
from services.prosody.pipeline import AdjustSpec, adjust_job
from services.prosody.presets import PRESETS
from services.prosody.settings import ProsodySettings
from services.tts.engines.espeak import EspeakEngine

DURATIONS_S = (1, 5, 20)
TEXT = (
    "Congratulations on the new job! Everyone here is proud of you, and we cannot wait to "
    "hear all about it. Let us celebrate together this weekend, with cake and music. "
)


def speech(seconds: float) -> tuple[Samples, int]:
    """``seconds`` of espeak speech (the text repeated as needed), and its rate."""
    engine = EspeakEngine()
    engine.load()
    once = engine.speak_whole(TEXT)
    repeats = int(seconds * engine.sample_rate) // once.size + 1
    return np.tile(once, repeats)[: int(seconds * engine.sample_rate)], engine.sample_rate


async def grpc_scenario(
    stub: prosody_pb2_grpc.ProsodyAsyncStub,
    wav: bytes,
    concurrency: int,
    requests: int,
    confidence: bool,
) -> dict[str, object]:
    """``requests`` Adjust calls over ``concurrency`` concurrent clients."""
    mode = prosody_pb2.CONFIDENCE_MODE_CHECK if confidence else prosody_pb2.CONFIDENCE_MODE_SKIP
    request = prosody_pb2.AdjustRequest(
        audio=prosody_pb2.Audio(wav=wav), preset="celebration", confidence_mode=mode
    )
    fallbacks = 0

    async def call() -> None:
        nonlocal fallbacks
        response = await stub.Adjust(request, timeout=60)
        fallbacks += response.fallback

    load = await drive(call, concurrency, requests)
    return {**load.summary(), "fallbacks": fallbacks}


def in_process_scenario(
    samples: Samples, rate: int, requests: int, confidence: bool
) -> dict[str, object]:
    """The same Praat work called directly, one request at a time: the baseline."""
    spec = AdjustSpec(
        PRESETS["celebration"],
        check_confidence=confidence,
        # The server's default threshold, the one the gRPC scenarios' requests get.
        min_confidence=ProsodySettings.min_confidence,
    )
    latencies = []
    for _ in range(requests):
        started = time.perf_counter()
        adjust_job(samples, rate, spec)
        latencies.append(time.perf_counter() - started)
    return {"requests": requests, "latency_ms": percentiles_ms(latencies)}


async def run(requests: int) -> dict[str, object]:
    """Every scenario; returns the JSON document's figures."""
    clips = {f"{seconds}s": speech(seconds) for seconds in DURATIONS_S}
    baseline = {
        name: {
            "with_confidence": in_process_scenario(samples, rate, requests, True),
            "without_confidence": in_process_scenario(samples, rate, requests, False),
        }
        for name, (samples, rate) in clips.items()
    }

    async with (
        ServiceProcess(
            "services.prosody",
            env={"CHORUS_CACHE_MAX_BYTES": "0", "CHORUS_LOG_LEVEL": "WARNING"},
        ) as server,
        grpc.aio.insecure_channel(server.address) as channel,
    ):
        stub = prosody_pb2_grpc.ProsodyStub(channel)
        figures: dict[str, dict[str, object]] = {}
        for name, (samples, rate) in clips.items():
            wav = write_wav(samples, rate)
            await grpc_scenario(stub, wav, 1, 2, True)  # channel and workers warm
            figures[name] = {
                f"c{level}_{'with' if check else 'without'}_confidence": await grpc_scenario(
                    stub, wav, level, requests, check
                )
                for level in (1, 4)
                for check in (True, False)
            }

    ratios = {
        name: round(
            _p50(figures[name]["c1_with_confidence"]) / _p50(baseline[name]["with_confidence"]), 2
        )
        for name in clips
    }
    return {"in_process": baseline, "grpc": figures, "grpc_over_in_process_c1_p50": ratios}


def _p50(summary: object) -> float:
    assert isinstance(summary, dict)
    return float(summary["latency_ms"]["p50"])


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and print its JSON to stdout."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=30, help="requests per scenario")
    args = parser.parse_args(argv)
    print_report(
        "prosody",
        {
            "preset": "celebration",
            **asyncio.run(run(args.requests)),
        },
    )


if __name__ == "__main__":
    main()
