"""The per-request time budget: past it the caller gets its own audio back, at once."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from chorus.prosody.v1 import prosody_pb2

from services.prosody import servicer
from services.prosody.server import ProsodyService
from services.prosody.settings import ProsodySettings
from tests.prosody.harness import ProsodyServer, espeak_wav, wav_audio
from tests.support.service_harness import server_starter
from tests.support.waiting import WAIT_S
from tests.support.worker_jobs import hold_until_exists

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
    response = await hurried.stub.Adjust(
        prosody_pb2.AdjustRequest(audio=wav_audio(speech), preset="celebration"), timeout=30
    )
    # The server stopped waiting when its budget ran out (not when the work was done):
    # the answer says which budget it was.
    assert response.fallback
    assert "time budget of 0.01 s exceeded" in response.fallback_reason
    assert response.audio.wav == speech


@pytest_asyncio.fixture(loop_scope="module")
async def patient() -> AsyncIterator[ProsodyServer]:
    """A prosody server with one worker and a budget longer than any caller's deadline."""
    settings = ProsodySettings(host="127.0.0.1", port=0, workers=1, time_budget_s=3600)
    async with server_starter(ProsodyServer) as start:
        yield await start(lambda telemetry: ProsodyService(settings, telemetry), settings, True)


async def test_a_short_deadline_cuts_the_budget(
    patient: ProsodyServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A caller deadline shorter than the work must still get an answer, not
    # DEADLINE_EXCEEDED: the server's budget is cut to the deadline, less a margin kept
    # for sending the answer. The margin is widened here so that a busy machine has time
    # to send it; the work is made certain to outlast the deadline by holding the one
    # worker until the answer is in.
    margin_s = 2.0
    deadline_s = 5.0
    monkeypatch.setattr(servicer, "_DEADLINE_MARGIN_S", margin_s)
    release = tmp_path / "release"
    holder = asyncio.create_task(patient.service.pool.run(hold_until_exists, str(release), WAIT_S))
    try:
        response = await patient.stub.Adjust(
            prosody_pb2.AdjustRequest(audio=wav_audio(espeak_wav()), tempo=1.1),
            timeout=deadline_s,
        )
    finally:
        release.touch()
    assert await holder
    assert response.fallback
    budget = re.search(r"time budget of ([0-9.]+) s exceeded", response.fallback_reason)
    assert budget is not None, response.fallback_reason
    # Cut from an hour to what the deadline left, less the margin (give or take the
    # rounding gRPC applies to a deadline it sends).
    assert float(budget[1]) < deadline_s - margin_s / 2


async def test_a_deadline_already_too_short_is_deadline_exceeded(hurried: ProsodyServer) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await hurried.stub.Adjust(
            prosody_pb2.AdjustRequest(audio=wav_audio(espeak_wav(LONG_TEXT)), tempo=1.1),
            timeout=0.0001,
        )
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
