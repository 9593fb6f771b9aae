"""Text with nothing to say, through the gateway with the default voice (Piper), which
makes no audio for it: every format still answers 200 with a file a player opens (a WAV
header of no samples, 20 ms of silence in MP3 and Ogg Opus, no PCM bytes), with and
without a preset (prosody cannot reshape silence; the speech goes out as it is)."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator

import httpx
import numpy as np
import pytest
import pytest_asyncio

from services.tts.server import TtsService
from services.tts.settings import TtsSettings
from tests.gateway.harness import running_gateway
from tests.orchestrator.real_suite import Server, loopback, real_suite
from tests.support.compressed_audio import decode_mp3, decode_ogg_opus

pytestmark = pytest.mark.asyncio(loop_scope="module")

NOTHING_TO_SAY = "\N{GRINNING FACE} \N{PARTY POPPER}"
"""Piper's phonemizer has no word for either emoji: no audio at all."""


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """A gateway over a suite whose tts speaks with the packaged Piper voice."""
    piper = Server(TtsService, loopback(TtsSettings(), engine="piper"))
    async with (
        real_suite(inner={"tts": piper}) as suite,
        running_gateway(suite.orchestrator.address) as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=60) as client,
    ):
        yield client


async def speech(http: httpx.AsyncClient, response_format: str, preset: str) -> bytes:
    request = {"model": "tts-1", "voice": "alloy", "input": NOTHING_TO_SAY}
    request |= {"response_format": response_format} | ({"preset": preset} if preset else {})
    response = await http.post("/v1/audio/speech", json=request)
    assert response.status_code == 200, response.text
    return response.content


@pytest.mark.parametrize("preset", ["", "celebration"])
async def test_every_format_is_a_file_a_player_opens(http: httpx.AsyncClient, preset: str) -> None:
    wav = await speech(http, "wav", preset)
    assert len(wav) == 44
    riff, _, wave, _, _, _, channels, rate, *_ = struct.unpack("<4sI4s4sIHHIIHH4sI", wav)
    assert (riff, wave, channels, rate) == (b"RIFF", b"WAVE", 1, 24000)

    for decoded in (
        decode_mp3(await speech(http, "mp3", preset))[0],
        decode_ogg_opus(await speech(http, "opus", preset)),
    ):
        assert 0 < decoded.size < 0.2 * 48000
        assert np.abs(decoded).max() < 1e-3

    assert await speech(http, "pcm", preset) == b""
