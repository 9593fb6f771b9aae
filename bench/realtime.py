"""Realtime voice benchmark: speech for a text that arrives whole (Synthesize) and for one
that arrives as a language model writes it (SynthesizeStream fed a token at a time),
printed as JSON, in the shape NVIDIA Riva reports its own figures.

For each engine (piper, espeak) a tts server runs in a child process, caches off. For each
way in, encoding (16-bit PCM, Ogg Opus) and number of parallel streams (1, 4, 16):
- TTFA p50/p90/p99: for Synthesize from the request; for SynthesizeStream from the moment
  the first complete clause had been written (the token after its mark, as tts's clause
  rule has it: before that, nothing could be spoken);
- the gap between chunks p50/p99, and underruns: chunks that arrived after a player
  started at the first chunk would have played everything before them (the goal: none at
  4 streams);
- the real-time factor: seconds of audio per second of wall time, per stream.

    python -m bench.realtime [--engines piper espeak] [--streams 1 4 16] [--rounds 2]
        [--tokens-per-second 30]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import grpc
from chorus.audio.v1 import audio_pb2
from chorus.tts.v1 import tts_pb2, tts_pb2_grpc

from bench.report import print_report
from bench.stats import percentiles_ms
from devtools.launcher import ServiceProcess
from services.common.quantiles import percentile
from services.tts.clauses import ClauseAssembler

TEXT = (
    "Thanks for waiting, I found three flights that match. The earliest leaves at seven "
    "in the morning and arrives just before noon, with one stop in Denver. Would you like "
    "me to book it, or should I look for a direct flight instead?"
)
ENCODINGS = {
    "pcm": (audio_pb2.AUDIO_ENCODING_PCM_S16LE, 0),
    "opus": (audio_pb2.AUDIO_ENCODING_OGG_OPUS, 48000),
}


def tokens(text: str) -> list[str]:
    """``text`` as a language model's tokens come, near enough: words with the space
    before them, punctuation on its own."""
    return re.findall(r"\s*[\w']+|\s*[^\w\s]", text)


@dataclass
class Stream:
    """One stream's timings, from the moment that starts its TTFA (``t0``)."""

    t0: float = 0.0
    arrivals: list[float] = field(default_factory=list)
    audio_s: list[float] = field(default_factory=list)
    """Seconds of audio in each chunk."""

    def underruns(self) -> int:
        """Chunks that came after a player, started at the first chunk, had played all
        those before them (it waits for each, then plays on)."""
        late = 0
        played_out = self.arrivals[0] if self.arrivals else 0.0
        for index, (arrival, seconds) in enumerate(zip(self.arrivals, self.audio_s, strict=True)):
            if index and arrival > played_out + _TOLERANCE_S:
                late += 1
            played_out = max(played_out, arrival) + seconds
        return late


# A gap a player's buffer rides out unheard.
_TOLERANCE_S = 0.001


async def synthesize(
    stub: tts_pb2_grpc.TextToSpeechAsyncStub, encoding: int, rate: int, _pace_s: float
) -> Stream:
    stream = Stream(t0=time.perf_counter())
    sample_rate = 1
    async for response in stub.Synthesize(
        tts_pb2.SynthesizeRequest(text=TEXT, encoding=encoding, sample_rate_hz=rate),  # type: ignore[arg-type]
        timeout=300,
    ):
        if response.HasField("format"):
            sample_rate = response.format.sample_rate_hz
        elif response.HasField("chunk"):
            stream.arrivals.append(time.perf_counter())
            stream.audio_s.append(response.chunk.sample_count / sample_rate)
    return stream


async def synthesize_stream(
    stub: tts_pb2_grpc.TextToSpeechAsyncStub, encoding: int, rate: int, pace_s: float
) -> Stream:
    stream = Stream()
    clause_rule = ClauseAssembler(len(TEXT))

    async def written() -> AsyncIterator[tts_pb2.SynthesizeStreamRequest]:
        yield tts_pb2.SynthesizeStreamRequest(
            config=tts_pb2.SynthesisConfig(encoding=encoding, sample_rate_hz=rate)  # type: ignore[arg-type]
        )
        for token in tokens(TEXT):
            await asyncio.sleep(pace_s)
            if clause_rule.add(token) and not stream.t0:
                stream.t0 = time.perf_counter()
            yield tts_pb2.SynthesizeStreamRequest(text=token)
        if not stream.t0:
            stream.t0 = time.perf_counter()
        yield tts_pb2.SynthesizeStreamRequest(end=tts_pb2.End())

    sample_rate = 1
    async for response in stub.SynthesizeStream(written(), timeout=300):
        if response.HasField("format"):
            sample_rate = response.format.sample_rate_hz
        elif response.HasField("chunk"):
            stream.arrivals.append(time.perf_counter())
            stream.audio_s.append(response.chunk.sample_count / sample_rate)
    return stream


WAYS = {"synthesize": synthesize, "synthesize_stream": synthesize_stream}


async def scenario(
    stub: tts_pb2_grpc.TextToSpeechAsyncStub,
    way: str,
    encoding: str,
    streams: int,
    rounds: int,
    pace_s: float,
) -> dict[str, object]:
    """``rounds`` rounds of ``streams`` streams at once; their figures."""
    runs: list[Stream] = []
    errors: dict[str, int] = {}
    code, rate = ENCODINGS[encoding]
    for _ in range(rounds):
        results = await asyncio.gather(
            *(WAYS[way](stub, code, rate, pace_s) for _ in range(streams)),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, grpc.aio.AioRpcError):
                errors[result.code().name] = errors.get(result.code().name, 0) + 1
            elif isinstance(result, BaseException):
                raise result
            else:
                runs.append(result)
    firsts = [run.arrivals[0] - run.t0 for run in runs if run.arrivals]
    gaps = [b - a for run in runs for a, b in zip(run.arrivals, run.arrivals[1:], strict=False)]
    realtime = [sum(run.audio_s) / (run.arrivals[-1] - run.t0) for run in runs if run.arrivals]
    return {
        "streams": len(runs),
        "errors": errors,
        "ttfa_ms": {
            "p50": round(1000 * percentile(firsts, 0.5), 3) if firsts else None,
            "p90": round(1000 * percentile(firsts, 0.9), 3) if firsts else None,
            "p99": round(1000 * percentile(firsts, 0.99), 3) if firsts else None,
        },
        "chunk_gap_ms": {k: v for k, v in percentiles_ms(gaps).items() if k != "p95"},
        "underruns": sum(run.underruns() for run in runs),
        "realtime_x_per_stream_p50": round(percentile(realtime, 0.5), 2) if realtime else None,
    }


async def run(
    engines: Sequence[str], levels: Sequence[int], rounds: int, tokens_per_second: float
) -> dict[str, object]:
    figures: dict[str, object] = {}
    for engine in engines:
        env = {
            "CHORUS_ENGINE": engine,
            "CHORUS_CACHE_MAX_BYTES": "0",
            "CHORUS_LOG_LEVEL": "WARNING",
        }
        async with (
            ServiceProcess("services.tts", env=env) as process,
            grpc.aio.insecure_channel(process.address) as channel,
        ):
            stub = tts_pb2_grpc.TextToSpeechStub(channel)
            await scenario(stub, "synthesize", "pcm", 1, 2, 0.0)  # warm every path
            rows: dict[str, object] = {}
            for way in WAYS:
                for encoding in ENCODINGS:
                    for streams in levels:
                        rows[f"{way}/{encoding}/c{streams}"] = await scenario(
                            stub, way, encoding, streams, rounds, 1 / tokens_per_second
                        )
            figures[engine] = rows
    return figures


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and print its JSON to stdout."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engines", nargs="+", default=["piper", "espeak"])
    parser.add_argument("--streams", nargs="+", type=int, default=[1, 4, 16])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each scenario")
    parser.add_argument("--tokens-per-second", type=float, default=30.0)
    args = parser.parse_args(argv)
    report = {
        "text_chars": len(TEXT),
        "text_tokens": len(tokens(TEXT)),
        "tokens_per_second": args.tokens_per_second,
        "rounds": args.rounds,
        **asyncio.run(run(args.engines, args.streams, args.rounds, args.tokens_per_second)),
    }
    print_report("realtime", report)


if __name__ == "__main__":
    main()
