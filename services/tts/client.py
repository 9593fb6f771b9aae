"""Command-line client: speak a text through a TTS server into a WAV file.

    python -m services.tts.client "Hello there" --out hello.wav

Prints the time to first audio (TTFA) and the total time as the client saw them, from
the moment the request is sent on a connected channel.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import wave
from collections.abc import Sequence
from pathlib import Path

import grpc
import numpy as np
from chorus.audio.v1 import audio_pb2
from chorus.tts.v1 import tts_pb2, tts_pb2_grpc

from services.common.pcm import SampleFormat, decode, encode

_FORMATS = {"s16": audio_pb2.AUDIO_ENCODING_PCM_S16LE, "f32": audio_pb2.AUDIO_ENCODING_PCM_F32LE}


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("text", help="what to say")
    parser.add_argument("--out", type=Path, required=True, help="WAV file to write")
    parser.add_argument("--address", default="localhost:50052", help="TTS server host:port")
    parser.add_argument("--voice", default="", help="voice name (see ListVoices)")
    parser.add_argument("--language", default="", help="language tag, e.g. en-us")
    parser.add_argument("--rate", type=float, default=0.0, help="speaking rate, 1.0 normal")
    parser.add_argument("--sample-rate", type=int, default=0, help="output Hz; 0 native")
    parser.add_argument("--encoding", choices=sorted(_FORMATS), default="s16")
    parser.add_argument("--chunk-ms", type=int, default=0, help="chunk duration; 0 engine's")
    parser.add_argument("--timeout", type=float, default=30.0, help="deadline in seconds")
    return parser.parse_args(argv)


async def _speak(args: argparse.Namespace) -> int:
    request = tts_pb2.SynthesizeRequest(
        text=args.text,
        voice=args.voice,
        language=args.language,
        sample_rate_hz=args.sample_rate,
        encoding=_FORMATS[args.encoding],
        speaking_rate=args.rate,
        chunk_duration_ms=args.chunk_ms,
    )
    async with grpc.aio.insecure_channel(args.address) as channel:
        stub = tts_pb2_grpc.TextToSpeechStub(channel)
        # Connect first, so that TTFA measures the request and not the TCP handshake.
        connecting = time.perf_counter()
        try:
            await asyncio.wait_for(channel.channel_ready(), args.timeout)
        except TimeoutError:
            print(f"error: cannot reach {args.address}", file=sys.stderr)
            return 1
        connect_s = time.perf_counter() - connecting
        started = time.perf_counter()
        ttfa: float | None = None
        sample_rate, sample_format = 0, SampleFormat.S16LE
        pieces: list[np.ndarray] = []
        summary = tts_pb2.SynthesisSummary()
        try:
            async for response in stub.Synthesize(request, timeout=args.timeout):
                kind = response.WhichOneof("content")
                if kind == "format":
                    sample_rate = response.format.sample_rate_hz
                    if response.format.encoding == audio_pb2.AUDIO_ENCODING_PCM_F32LE:
                        sample_format = SampleFormat.F32LE
                elif kind == "chunk":
                    if ttfa is None:
                        ttfa = time.perf_counter() - started
                    pieces.append(decode(response.chunk.audio, sample_format))
                elif kind == "summary":
                    summary = response.summary
        except grpc.aio.AioRpcError as error:
            print(f"error: {error.code().name}: {error.details()}", file=sys.stderr)
            return 1
        total = time.perf_counter() - started

    samples = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
    with wave.open(str(args.out), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(encode(samples, SampleFormat.S16LE))
    print(
        f"wrote {args.out}: {summary.audio_seconds:.2f} s of audio at {sample_rate} Hz, "
        f"{summary.chunk_count} chunks, voice {summary.voice}, engine {summary.engine}, "
        f"cache {'hit' if summary.cache_hit else 'miss'}"
    )
    print(
        f"TTFA {1000 * (ttfa or 0.0):.1f} ms, total {1000 * total:.1f} ms "
        f"(after connecting in {1000 * connect_s:.1f} ms)"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the client; returns the process exit status."""
    return asyncio.run(_speak(_parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
