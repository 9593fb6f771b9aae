"""Synthesize in Ogg Opus and MP3, over a real gRPC channel on loopback with the espeak
engine, decoded with the library that encoded it (PyAV).

Tolerances (tests.support.compressed_audio): a whole Opus stream decodes to exactly the
samples the summary counts; MP3 to those plus LAME's 1105-sample delay and up to one
frame of padding. A stream cut after any chunk decodes up to the PCM sent by then, less
what the encoder still held (Opus: at most 50 ms; MP3: its delay and three frames).
"""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np
import pytest
from chorus.audio.v1 import audio_pb2
from chorus.tts.v1 import tts_pb2

from services.common.pcm import SampleFormat, Samples, decode
from tests.support.compressed_audio import (
    MP3_DELAY,
    OPUS_DECODE_RATE,
    OPUS_LAG_S,
    decode_mp3,
    decode_ogg_opus,
    mp3_frame_samples,
    mp3_lag_samples,
)
from tests.support.waiting import wait_until
from tests.tts.harness import Synthesis, TtsServer, details, synthesize

TEXT = "Hello there. This is Chorus speaking, in a compressed stream. Goodbye for now."
OPUS = audio_pb2.AUDIO_ENCODING_OGG_OPUS
MP3 = audio_pb2.AUDIO_ENCODING_MP3


def envelope(samples: Samples, rate: int) -> Samples:
    """RMS per 10 ms: the speech as heard, blind to espeak's sample-level jitter."""
    frame = rate // 100
    frames = samples.size // frame
    squared = samples[: frames * frame].reshape(frames, frame).astype(np.float64) ** 2
    rms: Samples = np.sqrt(squared.mean(axis=1)).astype(np.float32)
    return rms


def sounds_alike(a: Samples, a_rate: int, b: Samples, b_rate: int) -> bool:
    first, second = envelope(a, a_rate), envelope(b, b_rate)
    frames = min(first.size, second.size)
    close_in_length = abs(first.size - second.size) <= 0.03 * second.size
    return close_in_length and float(np.corrcoef(first[:frames], second[:frames])[0, 1]) > 0.9


def check_chunks(result: Synthesis) -> None:
    """Sequence, offsets and sample counts as for PCM; every chunk carries bytes."""
    offset = 0
    for index, chunk in enumerate(result.chunks):
        assert chunk.sequence == index
        assert chunk.sample_offset == offset
        assert chunk.audio
        offset += chunk.sample_count
    assert offset == result.summary.sample_count > 0
    assert result.summary.chunk_count == len(result.chunks)
    assert result.summary.audio_seconds == pytest.approx(offset / result.format.sample_rate_hz)


async def pcm_of(tts: TtsServer, rate: int) -> Samples:
    pcm = await synthesize(tts.stub, text=TEXT, sample_rate_hz=rate)
    return decode(pcm.audio, SampleFormat.S16LE)


@pytest.mark.parametrize(("requested", "rate"), [(0, 48000), (16000, 16000), (8000, 8000)])
async def test_ogg_opus_stream_decodes_to_the_speech(
    tts: TtsServer, requested: int, rate: int
) -> None:
    result = await synthesize(tts.stub, text=TEXT, encoding=OPUS, sample_rate_hz=requested)
    assert result.format.encoding == OPUS
    assert result.format.sample_rate_hz == rate
    assert result.format.channels == 1
    check_chunks(result)
    assert result.audio.startswith(b"OggS")

    decoded = decode_ogg_opus(result.audio)
    # Exactly the samples sent, at the 48 kHz every Opus decoder plays.
    assert decoded.size == result.summary.sample_count * OPUS_DECODE_RATE // rate
    assert sounds_alike(decoded, OPUS_DECODE_RATE, await pcm_of(tts, rate), rate)
    # Compressed: far fewer bytes than 16-bit PCM at the same rate.
    assert len(result.audio) < result.summary.sample_count * 2 / 4


@pytest.mark.parametrize(("requested", "rate"), [(0, 22050), (44100, 44100)])
async def test_mp3_stream_decodes_to_the_speech(tts: TtsServer, requested: int, rate: int) -> None:
    result = await synthesize(tts.stub, text=TEXT, encoding=MP3, sample_rate_hz=requested)
    assert result.format.encoding == MP3
    assert result.format.sample_rate_hz == rate
    check_chunks(result)

    decoded, decoded_rate = decode_mp3(result.audio)
    assert decoded_rate == rate
    extra = decoded.size - result.summary.sample_count
    assert MP3_DELAY <= extra <= MP3_DELAY + mp3_frame_samples(rate)
    assert sounds_alike(decoded[MP3_DELAY:], rate, await pcm_of(tts, rate), rate)


@pytest.mark.parametrize("chunk_duration_ms", [0, 40])
@pytest.mark.parametrize("encoding", [OPUS, MP3], ids=["opus", "mp3"])
async def test_a_stream_cut_after_any_chunk_decodes_up_to_there(
    tts: TtsServer, encoding: int, chunk_duration_ms: int
) -> None:
    """What a client has received when the connection drops, after whichever chunk, plays:
    the audio sent so far, less what the encoder still held."""
    result = await synthesize(
        tts.stub, text=TEXT, encoding=encoding, chunk_duration_ms=chunk_duration_ms
    )
    rate = result.format.sample_rate_hz
    assert len(result.chunks) > 5
    received = b""
    previous = -1.0  # MP3's first frames may hold less than its delay
    for chunk in result.chunks:
        received += chunk.audio
        sent_s = (chunk.sample_offset + chunk.sample_count) / rate
        if encoding == OPUS:
            seconds = decode_ogg_opus(received).size / OPUS_DECODE_RATE
            assert sent_s - OPUS_LAG_S <= seconds <= sent_s, f"chunk {chunk.sequence}"
        else:
            samples, _ = decode_mp3(received)
            seconds = (samples.size - MP3_DELAY) / rate
            assert sent_s - mp3_lag_samples(rate) / rate <= seconds, f"chunk {chunk.sequence}"
        assert seconds >= previous
        previous = seconds


async def test_the_cache_keeps_each_encoding_apart_and_replays_its_bytes(tts: TtsServer) -> None:
    first = await synthesize(tts.stub, text=TEXT, encoding=OPUS)
    again = await synthesize(tts.stub, text=TEXT, encoding=OPUS)
    assert not first.summary.cache_hit
    assert again.summary.cache_hit
    assert [(c.audio, c.sample_count) for c in again.chunks] == [
        (c.audio, c.sample_count) for c in first.chunks
    ]
    for other in ({"encoding": MP3}, {"encoding": audio_pb2.AUDIO_ENCODING_PCM_S16LE}):
        result = await synthesize(tts.stub, text=TEXT, **other)
        assert not result.summary.cache_hit, other


async def test_cancelling_an_encoded_stream_frees_its_slot(tts: TtsServer) -> None:
    long_text = " ".join(f"Sentence number {i} of a longer text." for i in range(30))
    call = tts.stub.Synthesize(tts_pb2.SynthesizeRequest(text=long_text, encoding=OPUS), timeout=30)
    async for response in call:
        if response.HasField("chunk"):
            break
    call.cancel()
    await wait_until(lambda: tts.service.admission.in_flight == 0)


@pytest.mark.parametrize(
    ("fields", "field_named"),
    [
        ({"encoding": 5}, "encoding"),
        ({"encoding": 42}, "encoding"),
        ({"encoding": OPUS, "sample_rate_hz": 22050}, "sample_rate_hz"),
        ({"encoding": OPUS, "sample_rate_hz": 44100}, "sample_rate_hz"),
        ({"encoding": OPUS, "sample_rate_hz": -48000}, "sample_rate_hz"),
        ({"encoding": MP3, "sample_rate_hz": 12000}, "sample_rate_hz"),
    ],
)
async def test_a_bad_encoding_or_rate_is_refused_before_anything_is_sent(
    tts: TtsServer, fields: dict[str, Any], field_named: str
) -> None:
    received: list[tts_pb2.SynthesizeResponse] = []

    async def call() -> None:
        request = tts_pb2.SynthesizeRequest(text="Hi.", **fields)
        received.extend([r async for r in tts.stub.Synthesize(request, timeout=30)])

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call()
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details(raised.value).startswith(f"{field_named}:"), details(raised.value)
    assert received == []
