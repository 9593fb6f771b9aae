"""How fast an overloaded server says no: RESOURCE_EXHAUSTED latency, client-side.

A tts server (espeak) with 4 slots and no queue is filled by streams that are never read
(the hostile client of the robustness audit), then asked again and again:
- by the same caller, refused for holding its whole share of the slots;
- by other callers while every slot is taken, refused for capacity;
and, as the baseline in the same run, a small request the server answers (ListVoices).
Prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence

import grpc
from chorus.tts.v1 import tts_pb2, tts_pb2_grpc

from bench.report import print_report
from bench.stats import percentiles_ms
from devtools.launcher import ServiceProcess
from services.common.callers import CALLER_METADATA

# Minutes of audio, far beyond what gRPC buffers for a reader that never reads.
LONG_TEXT = "This sentence is spoken again and again. " * 120
SLOTS = 4


def as_caller(name: str) -> tuple[tuple[str, str]]:
    """Metadata naming the caller, as the orchestrator names end callers to tts."""
    return ((CALLER_METADATA, name),)


async def refusal_latencies(
    stub: tts_pb2_grpc.TextToSpeechAsyncStub, caller: str, requests: int
) -> tuple[list[float], dict[str, int]]:
    """Client-side time from the call to its status, for ``requests`` one after another."""
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    for _ in range(requests):
        started = time.perf_counter()
        call = stub.Synthesize(tts_pb2.SynthesizeRequest(text="Hello."), metadata=as_caller(caller))
        code = grpc.StatusCode.OK
        try:
            async for _ in call:
                pass
        except grpc.aio.AioRpcError as error:
            code = error.code()
        latencies.append(time.perf_counter() - started)
        statuses[code.name] = statuses.get(code.name, 0) + 1
    return latencies, statuses


async def answer_latencies(stub: tts_pb2_grpc.TextToSpeechAsyncStub, requests: int) -> list[float]:
    """Client-side time of a small answered request (ListVoices), the baseline."""
    latencies = []
    for _ in range(requests):
        started = time.perf_counter()
        await stub.ListVoices(tts_pb2.ListVoicesRequest(language="en"))
        latencies.append(time.perf_counter() - started)
    return latencies


async def run(requests: int) -> dict[str, object]:
    """Fill the slots, then measure refusals and the baseline."""
    env = {
        "CHORUS_ENGINE": "espeak",
        "CHORUS_MAX_IN_FLIGHT": str(SLOTS),
        "CHORUS_MAX_QUEUE": "0",
        "CHORUS_CALLER_SHARE": "0.5",
        "CHORUS_CACHE_MAX_BYTES": "0",
        "CHORUS_LOG_LEVEL": "WARNING",
    }
    async with (
        ServiceProcess("services.tts", env=env) as tts,
        grpc.aio.insecure_channel(tts.address) as channel,
    ):
        stub: tts_pb2_grpc.TextToSpeechAsyncStub = tts_pb2_grpc.TextToSpeechStub(channel)
        await answer_latencies(stub, 20)  # warm the channel and the server
        hogs = [
            stub.Synthesize(
                tts_pb2.SynthesizeRequest(text=LONG_TEXT), metadata=as_caller(f"hog-{i // 2}")
            )
            for i in range(SLOTS)
        ]
        try:
            for hog in hogs:
                await hog.initial_metadata()
            # Let every hog's first sentence fill its flow-control window.
            await asyncio.sleep(1.0)
            share, share_statuses = await refusal_latencies(stub, "hog-0", requests)
            full, full_statuses = await refusal_latencies(stub, "newcomer", requests)
            baseline = await answer_latencies(stub, requests)
        finally:
            for hog in hogs:
                hog.cancel()
    share_ms, full_ms, baseline_ms = (
        percentiles_ms(share),
        percentiles_ms(full),
        percentiles_ms(baseline),
    )
    return {
        "slots": SLOTS,
        "requests_per_row": requests,
        "refused_for_share": {**share_ms, "statuses": share_statuses},
        "refused_at_capacity": {**full_ms, "statuses": full_statuses},
        "answered_list_voices": baseline_ms,
        "refusal_over_answer_p50": {
            "share": round((share_ms["p50"] or 0) / (baseline_ms["p50"] or 1), 2),
            "capacity": round((full_ms["p50"] or 0) / (baseline_ms["p50"] or 1), 2),
        },
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and print its JSON document."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=500, help="requests per row")
    args = parser.parse_args(argv)
    print_report("admission", asyncio.run(run(args.requests)))


if __name__ == "__main__":
    main()
