"""The TTS server as `make run` starts it: a separate process, its client, SIGTERM.

The process plumbing is shown on espeak, whose sixty-sentence stream ends in well under a
second; one test starts the server as it comes, with its default engine, piper.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from chorus.tts.v1 import tts_pb2, tts_pb2_grpc

from devtools.launcher import REPO_ROOT, ServiceProcess, free_port
from tests.support.waiting import WAIT_S

LONG = " ".join(f"Sentence {i} keeps the stream busy for a while." for i in range(60))


@pytest.fixture
async def tts_process(tmp_path: Path) -> AsyncIterator[ServiceProcess]:
    # A drain grace far beyond a stream's length: a busy machine must not cut short the
    # stream a SIGTERM lets finish (the server exits as soon as its streams end).
    env = {"CHORUS_GRACE_S": str(WAIT_S), "CHORUS_ENGINE": "espeak"}
    async with ServiceProcess("services.tts", env=env, log_path=tmp_path / "tts.log") as process:
        yield process


async def test_client_writes_a_wav_and_reports_ttfa(
    tts_process: ServiceProcess, tmp_path: Path
) -> None:
    out = tmp_path / "hello.wav"
    completed = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "services.tts.client", "Hello there",
         "--out", str(out), "--address", tts_process.address],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert "TTFA" in completed.stdout
    with wave.open(str(out)) as wav:
        assert wav.getframerate() == 22050
        assert wav.getsampwidth() == 2
        assert 0.3 < wav.getnframes() / 22050 < 3


async def test_the_default_server_speaks_with_the_packaged_piper_voice(tmp_path: Path) -> None:
    async with (
        ServiceProcess("services.tts", log_path=tmp_path / "tts.log") as process,
        grpc.aio.insecure_channel(process.address) as channel,
    ):
        stub = tts_pb2_grpc.TextToSpeechStub(channel)
        voices = await stub.ListVoices(tts_pb2.ListVoicesRequest(), timeout=WAIT_S)
        assert voices.engine == "piper"
        assert [voice.name for voice in voices.voices] == ["en_US-joe-medium"]
        samples = 0
        async for response in stub.Synthesize(
            tts_pb2.SynthesizeRequest(text="Hello there."), timeout=WAIT_S
        ):
            samples += response.chunk.sample_count
            if response.HasField("summary"):
                assert response.summary.engine == "piper"
        assert 0.3 < samples / 22050 < 3


async def test_client_reports_bad_input_and_fails(
    tts_process: ServiceProcess, tmp_path: Path
) -> None:
    completed = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "services.tts.client", "Hi", "--rate", "-2",
         "--out", str(tmp_path / "x.wav"), "--address", tts_process.address],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert completed.returncode == 1
    assert "INVALID_ARGUMENT: speaking_rate" in completed.stderr


async def test_sigterm_lets_the_stream_in_flight_finish(tts_process: ServiceProcess) -> None:
    async with grpc.aio.insecure_channel(tts_process.address) as channel:
        stub = tts_pb2_grpc.TextToSpeechStub(channel)
        call = stub.Synthesize(tts_pb2.SynthesizeRequest(text=LONG), timeout=WAIT_S)
        first = await call.read()
        assert isinstance(first, tts_pb2.SynthesizeResponse)
        tts_process.terminate()
        responses = [first]
        while isinstance(response := await call.read(), tts_pb2.SynthesizeResponse):
            responses.append(response)
        assert responses[-1].HasField("summary")
        samples = sum(r.chunk.sample_count for r in responses if r.HasField("chunk"))
        assert samples == responses[-1].summary.sample_count

        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.ListVoices(tts_pb2.ListVoicesRequest(), timeout=5)
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    assert await asyncio.to_thread(tts_process.wait, WAIT_S) == 0


async def test_client_names_an_unreachable_server(tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    completed = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "services.tts.client", "Hi", "--timeout", "0.5",
         "--out", str(tmp_path / "x.wav"), "--address", address],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert completed.returncode == 1
    assert f"cannot reach {address}" in completed.stderr


async def test_sigterm_with_streams_in_flight_exits_cleanly_on_piper(tmp_path: Path) -> None:
    """ONNX Runtime torn down under a running inference at exit aborted the process
    ("terminate called without an active exception", status -6): the server waits for its
    engine threads before it exits."""
    log = tmp_path / "tts.log"
    process = ServiceProcess("services.tts", env={"CHORUS_GRACE_S": "1"}, log_path=log)
    async with process, grpc.aio.insecure_channel(process.address) as channel:
        stub = tts_pb2_grpc.TextToSpeechStub(channel)
        readers = [stub.Synthesize(tts_pb2.SynthesizeRequest(text=LONG)) for _ in range(3)]
        for reader in readers:
            # The first chunk: the engine is at work on these streams now.
            await reader.read()
        process.terminate()
        status = await asyncio.to_thread(process.wait, WAIT_S)
        for reader in readers:
            reader.cancel()
    assert status == 0, log.read_text()[-2000:]


async def test_sigterm_ends_streams_nobody_reads_when_the_grace_runs_out(tmp_path: Path) -> None:
    """Readers that never read would hold their streams for ever (the stall timeout is off
    here): the drain grace is what ends them, and the process exits."""
    log = tmp_path / "tts.log"
    env = {"CHORUS_GRACE_S": "1", "CHORUS_STALL_TIMEOUT_S": "0", "CHORUS_ENGINE": "espeak"}
    process = ServiceProcess("services.tts", env=env, log_path=log)
    async with process, grpc.aio.insecure_channel(process.address) as channel:
        stub = tts_pb2_grpc.TextToSpeechStub(channel)
        unread = [stub.Synthesize(tts_pb2.SynthesizeRequest(text=LONG)) for _ in range(8)]
        for call in unread:
            await call.read()
        process.terminate()
        status = await asyncio.to_thread(process.wait, WAIT_S)
        for call in unread:
            call.cancel()
    assert status == 0, log.read_text()[-2000:]
