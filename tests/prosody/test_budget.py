"""The per-request time budget: past it the caller gets its own audio back, at once."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio
from chorus.prosody.v1 import prosody_pb2

from services.prosody.server import ProsodyService
from services.prosody.settings import ProsodySettings
from tests.prosody.harness import ProsodyServer, espeak_wav, wav_audio
from tests.support.service_harness import server_starter

pytestmark = pytest.mark.asyncio(loop_scope="module")

LONG_TEXT = " ".join(f"This is sentence number {i} of a long message." for i in range(10))


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def hurried() -> AsyncIterator[ProsodyServer]:
    """A prosody server whose budget is far too short for 25 s of speech."""
    settings = ProsodySettings(host="127.0.0.1", port=0, workers=1, time_budget_s=0.01)
    async with server_starter(ProsodyServer) as start:
        yield await start(lambda telemetry: ProsodyService(settings, telemetry), settings, True)


async def test_an_exhausted_budget_returns_the_original_with_the_reason(
    hurried: ProsodyServer,
) -> None:
    speech = espeak_wav(LONG_TEXT)
    started = time.perf_counter()
    response = await hurried.stub.Adjust(
        prosody_pb2.AdjustRequest(audio=wav_audio(speech), preset="celebration"), timeout=30
    )
    assert time.perf_counter() - started < 1.0
    assert response.fallback
    assert "time budget" in response.fallback_reason
    assert response.audio.wav == speech


async def test_a_short_deadline_cuts_the_budget(hurried: ProsodyServer) -> None:
    # The server's budget is tiny anyway; a caller deadline shorter than the work must
    # still get an answer, not DEADLINE_EXCEEDED, when there is time to send one.
    speech = espeak_wav(LONG_TEXT)
    response = await hurried.stub.Adjust(
        prosody_pb2.AdjustRequest(audio=wav_audio(speech), tempo=1.1), timeout=0.5
    )
    assert response.fallback


async def test_a_deadline_already_too_short_is_deadline_exceeded(hurried: ProsodyServer) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await hurried.stub.Adjust(
            prosody_pb2.AdjustRequest(audio=wav_audio(espeak_wav(LONG_TEXT)), tempo=1.1),
            timeout=0.0001,
        )
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
