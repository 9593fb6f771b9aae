"""The prosody server as a separate process, with its spawned Praat workers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
from chorus.prosody.v1 import prosody_pb2, prosody_pb2_grpc

from devtools.launcher import ServiceProcess
from tests.prosody.harness import espeak_wav
from tests.support.waiting import WAIT_S


async def test_serves_then_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    log = tmp_path / "prosody.log"
    # A budget beyond the request's deadline: a busy machine must not cause a fallback.
    env = {"CHORUS_WORKERS": "2", "CHORUS_TIME_BUDGET_S": "3600"}
    process = ServiceProcess("services.prosody", env=env, log_path=log)
    process.start()
    try:
        await process.wait_healthy(timeout_s=60)
        async with grpc.aio.insecure_channel(process.address) as channel:
            stub = prosody_pb2_grpc.ProsodyStub(channel)
            response = await stub.Adjust(
                prosody_pb2.AdjustRequest(
                    audio=prosody_pb2.Audio(wav=espeak_wav()), preset="celebration"
                ),
                timeout=30,
            )
        assert not response.fallback, response.fallback_reason
        assert response.confidence.score >= 0.7
    finally:
        process.terminate()
        status = await asyncio.to_thread(process.wait, WAIT_S)
    assert status == 0, log.read_text()
    assert "2 Praat workers ready" in log.read_text()
