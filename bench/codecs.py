"""Codec benchmark: what compressed audio out costs, and what a cache hit costs, as JSON.

The question it answers: should tts's result cache hold PCM and encode each request, or
hold each encoding as it was sent? For every codec and rate, ``encode_ms_per_audio_s``
is the CPU time (one thread) the streaming encoder takes per second of speech, fed in the
engine's 60 ms chunks, with ``first_chunk_ms`` (opening the encoder and encoding the
first chunk: what it adds to the time to first audio) and the bit rate it sends. Then
``cache``: the time to take one synthesis of the text from the result cache (lookup and
unpacking its chunks), in memory and from a local Redis, for the Ogg Opus entry and the
16-bit PCM one, with their sizes.

The speech is espeak-ng's, resampled to each rate as tts does (soxr), in-process.

    python -m bench.codecs [--repeats N]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.trace import NoOpTracer

from bench.report import print_report
from devtools.local_redis import RedisServer
from services.common.audio_codecs import (
    OPUS_SAMPLE_RATES,
    Codec,
    EncodedChunk,
    StreamEncoder,
    preload,
)
from services.common.cache import ResultCache
from services.common.pcm import SampleFormat, Samples, StreamResampler, encode
from services.common.sample_rates import SUPPORTED_SAMPLE_RATES
from services.tts.cached_audio import pack_chunks, unpack_chunks
from services.tts.engines.espeak import EspeakEngine

TEXT = " ".join(f"This is sentence number {i} of a rather long text." for i in range(8))
CHUNK_MS = 60
"""espeak-ng hands its PCM over about every 60 ms."""


def encode_whole(codec: Codec, rate: int, pcm: Samples) -> tuple[list[EncodedChunk], float]:
    """``pcm`` encoded in CHUNK_MS chunks; the chunks and the first chunk's time (s)."""
    step = rate * CHUNK_MS // 1000
    started = time.perf_counter()
    encoder = StreamEncoder(codec, rate)
    chunks = [EncodedChunk(encoder.encode(pcm[:step]), min(step, pcm.size))]
    first_s = time.perf_counter() - started
    for start in range(step, pcm.size, step):
        chunks.append(EncodedChunk(encoder.encode(pcm[start : start + step]), step))
    chunks.append(EncodedChunk(encoder.close(), 0))
    return chunks, first_s


def encoding_rows(speech: Samples, repeats: int) -> list[dict[str, Any]]:
    rows = []
    rates = {Codec.OGG_OPUS: OPUS_SAMPLE_RATES, Codec.MP3: SUPPORTED_SAMPLE_RATES}
    for codec, codec_rates in rates.items():
        for rate in codec_rates:
            pcm = StreamResampler(22050, rate).process(speech, last=True)
            seconds = pcm.size / rate
            totals, firsts = [], []
            for _ in range(repeats):
                started = time.perf_counter()
                chunks, first_s = encode_whole(codec, rate, pcm)
                totals.append(time.perf_counter() - started)
                firsts.append(first_s)
            size = sum(len(chunk.data) for chunk in chunks)
            rows.append(
                {
                    "codec": codec.value,
                    "sample_rate": rate,
                    "audio_s": round(seconds, 2),
                    "encode_ms_per_audio_s": round(min(totals) / seconds * 1000, 2),
                    "realtime_x": round(seconds / min(totals)),
                    "first_chunk_ms": round(statistics.median(firsts) * 1000, 2),
                    "kbit_per_s": round(size * 8 / seconds / 1000, 1),
                    "pcm_s16_kbit_per_s": rate * 16 // 1000,
                }
            )
    return rows


async def hit_times(
    cache: ResultCache, entries: dict[str, bytes], repeats: int
) -> dict[str, dict[str, float]]:
    """Median time (ms) to get and unpack each entry, stored under its name."""
    for name, blob in entries.items():
        await cache.put(name, blob)
    await asyncio.sleep(0.2)  # the Redis writes run in the background
    figures = {}
    for name, blob in entries.items():
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            value = await cache.get(name)
            assert value is not None
            unpack_chunks(value)
            times.append(time.perf_counter() - started)
        figures[name] = {
            "hit_ms": round(statistics.median(times) * 1000, 3),
            "entry_kb": round(len(blob) / 1024, 1),
        }
    return figures


async def cache_figures(speech: Samples, repeats: int) -> dict[str, Any]:
    opus, _ = encode_whole(
        Codec.OGG_OPUS, 48000, StreamResampler(22050, 48000).process(speech, True)
    )
    step = 22050 * CHUNK_MS // 1000
    pcm = [
        EncodedChunk(encode(speech[start : start + step], SampleFormat.S16LE), step)
        for start in range(0, speech.size, step)
    ]
    entries = {"ogg_opus_48000": pack_chunks(opus), "pcm_s16_22050": pack_chunks(pcm)}
    tracer, meter = NoOpTracer(), NoOpMeterProvider().get_meter("bench")
    memory = ResultCache(
        namespace="bench", max_bytes=1 << 28, redis_url=None, tracer=tracer, meter=meter
    )
    figures: dict[str, Any] = {"audio_s": round(speech.size / 22050, 2)}
    figures["memory"] = await hit_times(memory, entries, repeats)
    with tempfile.TemporaryDirectory() as folder, RedisServer(Path(folder)) as redis_server:
        # An LRU of 0 bytes keeps nothing: every hit comes from Redis.
        shared = ResultCache(
            namespace="bench",
            max_bytes=0,
            redis_url=redis_server.url,
            redis_timeout_s=1.0,
            tracer=tracer,
            meter=meter,
        )
        try:
            figures["redis"] = await hit_times(shared, entries, repeats)
        finally:
            await shared.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    engine = EspeakEngine()
    engine.load()
    speech = engine.speak_whole(TEXT)
    preload()
    print_report(
        "codecs",
        {
            "text_chars": len(TEXT),
            "chunk_ms": CHUNK_MS,
            "encoding": encoding_rows(speech, args.repeats),
            "cache": asyncio.run(cache_figures(speech, args.repeats * 20)),
        },
    )


if __name__ == "__main__":
    main()
