"""Speak in Ogg Opus and MP3: without a preset tts encodes, with one the orchestrator
encodes prosody's reshaped PCM, one encoder for the whole response. Decoded with the
library that encodes (PyAV); tolerances as in tests.support.compressed_audio.

Against the real tts (espeak), prosody and vision servers on loopback.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio
from chorus.audio.v1 import audio_pb2
from chorus.orchestrator.v1 import orchestrator_pb2 as pb

from tests.orchestrator.real_suite import Suite, real_suite
from tests.support.compressed_audio import (
    MP3_DELAY,
    OPUS_DECODE_RATE,
    OPUS_LAG_S,
    decode_mp3,
    decode_ogg_opus,
    mp3_frame_samples,
)
from tests.support.waiting import WAIT_S

pytestmark = pytest.mark.asyncio(loop_scope="module")

TEXT = "Congratulations on the new job! We are all so proud of you. See you soon."
OPUS = audio_pb2.AUDIO_ENCODING_OGG_OPUS
MP3 = audio_pb2.AUDIO_ENCODING_MP3


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def suite() -> AsyncIterator[Suite]:
    async with real_suite() as started:
        yield started


async def speak(suite: Suite, **fields: Any) -> tuple[audio_pb2.AudioFormat, list[bytes], Any]:
    """The format, the audio messages and the summary of one Speak call."""
    responses = [r async for r in suite.stub.Speak(pb.SpeakRequest(**fields), timeout=60)]
    assert responses[0].HasField("format")
    assert responses[-1].HasField("summary")
    audio = [r.audio for r in responses if r.HasField("audio")]
    assert all(audio)
    return responses[0].format, audio, responses[-1].summary


@pytest.mark.parametrize("preset", ["celebration", ""], ids=["preset", "no-preset"])
async def test_speak_in_ogg_opus_decodes_as_it_arrives(suite: Suite, preset: str) -> None:
    audio_format, audio, summary = await speak(suite, text=TEXT, preset=preset, encoding=OPUS)
    assert audio_format.encoding == OPUS
    assert audio_format.sample_rate_hz == 48000
    if preset:
        assert len(summary.sentences) == 3
    stream = b"".join(audio)
    assert stream.startswith(b"OggS")
    # One stream for the whole response, exactly as long as the speech the summary counts.
    assert decode_ogg_opus(stream).size == round(summary.audio_seconds * OPUS_DECODE_RATE)
    # Cut after any message, what arrived plays.
    received, previous = b"", 0
    for message in audio:
        received += message
        decoded = decode_ogg_opus(received).size
        assert decoded >= previous
        previous = decoded
    assert previous / OPUS_DECODE_RATE > summary.audio_seconds - OPUS_LAG_S - 1e-9


async def test_speak_with_a_preset_in_opus_at_a_rate_tts_does_not_make(suite: Suite) -> None:
    """12 kHz is an Opus rate but not one tts makes: tts and prosody work at 16 kHz, and
    the orchestrator resamples before it encodes."""
    audio_format, audio, summary = await speak(
        suite, text=TEXT, preset="calm", encoding=OPUS, sample_rate_hz=12000
    )
    assert audio_format.sample_rate_hz == 12000
    decoded = decode_ogg_opus(b"".join(audio))
    assert decoded.size == round(summary.audio_seconds * 12000) * OPUS_DECODE_RATE // 12000
    assert summary.audio_seconds > 2


@pytest.mark.parametrize("preset", ["calm", ""], ids=["preset", "no-preset"])
async def test_speak_in_mp3(suite: Suite, preset: str) -> None:
    audio_format, audio, summary = await speak(suite, text=TEXT, preset=preset, encoding=MP3)
    assert audio_format.encoding == MP3
    assert audio_format.sample_rate_hz == 22050
    decoded, rate = decode_mp3(b"".join(audio))
    assert rate == 22050
    samples = round(summary.audio_seconds * rate)
    assert MP3_DELAY <= decoded.size - samples <= MP3_DELAY + mp3_frame_samples(rate)


async def test_speak_with_a_preset_in_float_pcm(suite: Suite) -> None:
    audio_format, audio, summary = await speak(
        suite, text=TEXT, preset="calm", encoding=audio_pb2.AUDIO_ENCODING_PCM_F32LE
    )
    assert audio_format.encoding == audio_pb2.AUDIO_ENCODING_PCM_F32LE
    assert sum(map(len, audio)) == 4 * round(summary.audio_seconds * 22050)


@pytest.mark.parametrize(
    ("fields", "field_named"),
    [
        ({"encoding": 9}, "encoding"),
        ({"encoding": OPUS, "sample_rate_hz": 22050}, "sample_rate_hz"),
        ({"encoding": OPUS, "sample_rate_hz": 44100, "preset": "calm"}, "sample_rate_hz"),
        ({"encoding": MP3, "sample_rate_hz": 12000}, "sample_rate_hz"),
    ],
)
async def test_speak_refuses_a_bad_encoding_or_rate_before_sending_anything(
    suite: Suite, fields: dict[str, Any], field_named: str
) -> None:
    received: list[pb.SpeakResponse] = []

    async def call() -> None:
        request = pb.SpeakRequest(text="In what form?", **fields)
        received.extend([r async for r in suite.stub.Speak(request, timeout=WAIT_S)])

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call()
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (raised.value.details() or "").startswith(f"{field_named}: "), raised.value.details()
    assert received == []
