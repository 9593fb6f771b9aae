"""What the HTTP gateway adds to time to first audio, against the orchestrator's gRPC.

The suite runs in separate processes (espeak, caches off, as bench.e2e), with the gateway
in its own in front of the orchestrator (devtools.suite.gateway_processes, as `make run`
starts it). Four ways to the same speech, the same text at the same 24 kHz 16-bit PCM,
measured in alternating rounds so that whatever else the machine does weighs on all alike,
at concurrency 1 and 16:

- ``speak_grpc``: the orchestrator's Speak called directly; TTFA is the first audio
  message (the baseline);
- ``http_openai``: POST /v1/audio/speech (``response_format: pcm``) over a kept-alive
  connection; TTFA is the first body byte;
- ``speak_stream_grpc``: SpeakStream called directly (config, the text, end); TTFA from
  the text written to the first audio message;
- ``ws_realtime``: the same over the gateway's WebSocket; TTFA from the text sent to the
  first audio frame (the conversation's handshake and config before it, as a realtime
  client opens its conversation before the text comes).

Errors are counted by kind (a gRPC status, an HTTP status, a WebSocket close code); the
ratios are each path's TTFA over its gRPC baseline's, percentile by percentile.

    python -m bench.gateway [--rounds 8 --per-client 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import grpc
import httpx
from chorus.audio.v1 import audio_pb2
from chorus.orchestrator.v1 import orchestrator_pb2 as pb
from chorus.orchestrator.v1 import orchestrator_pb2_grpc
from chorus.tts.v1 import tts_pb2
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from bench.load import Call, Failure, Load, drive
from bench.report import print_report
from devtools.launcher import free_port
from devtools.suite import SERVICES, gateway_processes, running_suite, suite_processes

TEXT = "Congratulations on the new job! We are all so proud of you."
RATE = 24000
LEVELS = (1, 16)
SUITE_ENV = {"CHORUS_CACHE_MAX_BYTES": "0", "CHORUS_LOG_LEVEL": "WARNING"}


class Paths:
    """The four calls, over one gRPC channel and one HTTP connection pool."""

    def __init__(
        self, orchestrator: orchestrator_pb2_grpc.OrchestratorAsyncStub, http: httpx.AsyncClient
    ) -> None:
        self._orchestrator = orchestrator
        self._http = http
        self.ws_url = str(http.base_url.copy_with(scheme="ws", path="/v1/realtime/speech"))

    def calls(self) -> dict[str, Call]:
        """Each path's call, by name."""
        return {
            "speak_grpc": self.speak_grpc,
            "http_openai": self.http_openai,
            "speak_stream_grpc": self.speak_stream_grpc,
            "ws_realtime": self.ws_realtime,
        }

    async def speak_grpc(self) -> float:
        started, first = time.perf_counter(), None
        request = pb.SpeakRequest(
            text=TEXT, sample_rate_hz=RATE, encoding=audio_pb2.AUDIO_ENCODING_PCM_S16LE
        )
        try:
            async for response in self._orchestrator.Speak(request, timeout=120):
                if first is None and response.HasField("audio"):
                    first = time.perf_counter() - started
        except grpc.aio.AioRpcError as error:
            raise Failure(error.code().name) from None
        return _first(first)

    async def http_openai(self) -> float:
        started, first = time.perf_counter(), None
        body = {"model": "tts-1", "voice": "alloy", "input": TEXT, "response_format": "pcm"}
        try:
            async with self._http.stream("POST", "/v1/audio/speech", json=body) as response:
                if response.status_code != 200:
                    raise Failure(f"http_{response.status_code}")
                async for chunk in response.aiter_raw():
                    if first is None and chunk:
                        first = time.perf_counter() - started
        except httpx.HTTPError as error:
            raise Failure(type(error).__name__) from None
        return _first(first)

    async def speak_stream_grpc(self) -> float:
        call = self._orchestrator.SpeakStream(timeout=120)
        first = None
        try:
            await call.write(
                pb.SpeakStreamRequest(config=pb.SpeakStreamConfig(sample_rate_hz=RATE))
            )
            started = time.perf_counter()
            await call.write(pb.SpeakStreamRequest(text=TEXT))
            await call.write(pb.SpeakStreamRequest(end=tts_pb2.End()))
            await call.done_writing()
            async for response in call:
                if first is None and response.HasField("audio"):
                    first = time.perf_counter() - started
        except grpc.aio.AioRpcError as error:
            raise Failure(error.code().name) from None
        return _first(first)

    async def ws_realtime(self) -> float:
        first = None
        try:
            async with connect(self.ws_url, open_timeout=60) as ws:
                await ws.send(json.dumps({"type": "config", "sample_rate_hz": RATE}))
                started = time.perf_counter()
                await ws.send(json.dumps({"type": "text", "text": TEXT}))
                await ws.send(json.dumps({"type": "end"}))
                async for frame in ws:
                    if first is None and isinstance(frame, bytes):
                        first = time.perf_counter() - started
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd is not None else "none"
            raise Failure(f"ws_close_{code}") from None
        except OSError as error:
            raise Failure(type(error).__name__) from None
        return _first(first)


def _first(first: float | None) -> float:
    if first is None:
        raise Failure("no_audio")
    return first


def _ratios(through: dict[str, object], baseline: dict[str, object]) -> dict[str, float | None]:
    """TTFA percentiles of ``through`` over those of ``baseline``."""
    ours, theirs = through.get("ttfa_ms"), baseline.get("ttfa_ms")
    assert isinstance(ours, dict)
    assert isinstance(theirs, dict)
    return {
        q: round(ours[q] / theirs[q], 3) if ours[q] and theirs[q] else None
        for q in ("p50", "p95", "p99")
    }


async def run(rounds: int, per_client: int, engine: str) -> dict[str, object]:
    """Alternating rounds of every path at every level; their figures and ratios."""
    loads: dict[tuple[int, str], Load] = {}
    with tempfile.TemporaryDirectory() as folder:
        suite = suite_processes(
            {name: free_port() for name in SERVICES},
            "",
            Path(folder),
            {**SUITE_ENV, "CHORUS_ENGINE": engine},
        )
        async with running_suite(suite) as started:
            orchestrator_address = started["orchestrator"].address
            gateway = gateway_processes(
                orchestrator_address, Path(folder), {"CHORUS_LOG_LEVEL": "WARNING"}
            )
            async with (
                running_suite(gateway) as front,
                grpc.aio.insecure_channel(orchestrator_address) as channel,
                httpx.AsyncClient(
                    base_url=f"http://{front['gateway'].address}",
                    timeout=120,
                    limits=httpx.Limits(max_connections=max(LEVELS)),
                ) as http,
            ):
                paths = Paths(orchestrator_pb2_grpc.OrchestratorStub(channel), http)
                calls = paths.calls()
                for call in calls.values():  # warm every path, and every connection
                    await drive(call, max(LEVELS), max(LEVELS), Load())
                for level in LEVELS:
                    for name in calls:
                        loads[(level, name)] = Load()
                    for _ in range(rounds):
                        for name, call in calls.items():
                            await drive(call, level, level * per_client, loads[(level, name)])
    figures: dict[str, object] = {}
    for level in LEVELS:
        summaries = {name: load.summary() for (at, name), load in loads.items() if at == level}
        figures[f"c{level}"] = {
            **summaries,
            "ttfa_ratio": {
                "http_openai_over_speak_grpc": _ratios(
                    summaries["http_openai"], summaries["speak_grpc"]
                ),
                "ws_realtime_over_speak_grpc": _ratios(
                    summaries["ws_realtime"], summaries["speak_grpc"]
                ),
                "ws_realtime_over_speak_stream_grpc": _ratios(
                    summaries["ws_realtime"], summaries["speak_stream_grpc"]
                ),
            },
        }
    return {
        "text_chars": len(TEXT),
        "engine": engine,
        "sample_rate_hz": RATE,
        "rounds": rounds,
        "requests_per_round": {f"c{level}": level * per_client for level in LEVELS},
        **figures,
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Run the comparison and print its JSON to stdout."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument(
        "--per-client", type=int, default=8, help="requests per client in each round"
    )
    parser.add_argument(
        "--engine",
        default="espeak",
        help="tts engine (espeak, the fastest: the gateway's own cost shows most; piper)",
    )
    args = parser.parse_args(argv)
    print_report("gateway", asyncio.run(run(args.rounds, args.per_client, args.engine)))


if __name__ == "__main__":
    main()
