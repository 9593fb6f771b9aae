"""TextToSpeech over a real gRPC channel on loopback, with the coqui engine on a tiny VITS.

The tiny model speaks a sentence the same way every time (see devtools/builders/tiny_vits.py), so
what the client receives is compared sample for sample with what a second engine, loaded
from the same folder in the test's process, makes directly.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import grpc
import numpy as np
import pytest
import soxr
from chorus.audio.v1 import audio_pb2
from chorus.tts.v1 import tts_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.pcm import SampleFormat, decode, encode
from services.common.sentences import split_sentences
from services.tts.engines.coqui import CoquiEngine
from tests.support.waiting import WAIT_S, wait_until
from tests.tts.harness import (
    HeldEngine,
    StartTts,
    TtsServer,
    details,
    samples_made_before_cancel,
    synthesize,
)

SHORT = "Hello there. This is Chorus speaking."
LONG = " ".join(f"This is sentence number {i} of a rather long text." for i in range(40))
HEALTH_NAMES = ("", "chorus.tts.v1.TextToSpeech")


@pytest.fixture(scope="module")
def direct(tiny_vits_dir: Path) -> CoquiEngine:
    """The same model, loaded in the test's process: the audio the server should send."""
    engine = CoquiEngine(str(tiny_vits_dir))
    engine.load()
    return engine


@pytest.fixture
async def tts(start_tts: StartTts, tiny_vits_dir: Path) -> TtsServer:
    """A server configured for the coqui engine as an operator would: by settings."""
    return await start_tts(engine="coqui", coqui_model=str(tiny_vits_dir))


async def health_status(tts: TtsServer) -> set[int]:
    health = health_pb2_grpc.HealthStub(tts.channel)
    return {
        (await health.Check(health_pb2.HealthCheckRequest(service=name))).status
        for name in HEALTH_NAMES
    }


async def test_chunks_arrive_in_order_with_the_models_audio(
    tts: TtsServer, direct: CoquiEngine
) -> None:
    result = await synthesize(tts.stub, text=SHORT)

    assert result.format.sample_rate_hz == 22050
    assert result.format.encoding == audio_pb2.AUDIO_ENCODING_PCM_S16LE
    # VITS makes a sentence at once: one chunk per sentence, the first sent while the
    # second is made.
    assert len(result.chunks) == len(split_sentences(SHORT)) == 2
    offset = 0
    for index, chunk in enumerate(result.chunks):
        assert chunk.sequence == index
        assert chunk.sample_offset == offset
        assert chunk.sample_count * 2 == len(chunk.audio)
        offset += chunk.sample_count
    assert result.audio == encode(direct.speak_whole(SHORT), SampleFormat.S16LE)

    summary = result.summary
    assert summary.engine == "coqui"
    assert summary.model_version == direct.model_version
    assert summary.voice == "default"
    assert summary.sample_count == offset
    assert 0 < summary.first_chunk_seconds <= summary.synthesis_seconds
    assert not summary.cache_hit


async def test_float_output_at_the_native_rate_is_the_models_samples(
    tts: TtsServer, direct: CoquiEngine
) -> None:
    result = await synthesize(tts.stub, text=SHORT, encoding=audio_pb2.AUDIO_ENCODING_PCM_F32LE)
    assert result.format.encoding == audio_pb2.AUDIO_ENCODING_PCM_F32LE
    assert np.array_equal(decode(result.audio, SampleFormat.F32LE), direct.speak_whole(SHORT))


async def test_resampled_output_in_fixed_size_chunks(tts: TtsServer, direct: CoquiEngine) -> None:
    result = await synthesize(
        tts.stub,
        text=SHORT,
        sample_rate_hz=16000,
        encoding=audio_pb2.AUDIO_ENCODING_PCM_F32LE,
        chunk_duration_ms=100,
    )
    assert result.format.sample_rate_hz == 16000
    sizes = [chunk.sample_count for chunk in result.chunks]
    assert all(size == 1600 for size in sizes[:-1])
    assert 0 < sizes[-1] <= 1600

    received = decode(result.audio, SampleFormat.F32LE)
    expected = soxr.resample(direct.speak_whole(SHORT), 22050, 16000, quality="HQ")
    assert abs(received.size - expected.size) <= 2
    common = min(received.size, expected.size)
    assert np.abs(received[:common] - expected[:common]).max() < 1e-3


async def test_concurrent_requests_share_passes_and_each_gets_its_own_audio(
    start_tts: StartTts, tiny_vits_dir: Path, direct: CoquiEngine
) -> None:
    batch_sizes: list[int] = []
    engine = CoquiEngine(
        str(tiny_vits_dir),
        max_batch=2,
        # No test waits this out: a pass starts when both requests' sentences are in.
        batch_window_ms=3_600_000.0,
        on_batch=lambda requests: batch_sizes.append(len(requests)),
    )
    tts = await start_tts(engine=engine, engine_workers=4)
    texts = [SHORT, "Good morning. See you soon, my friend."]
    results = await asyncio.gather(
        *(
            synthesize(tts.stub, text=text, encoding=audio_pb2.AUDIO_ENCODING_PCM_F32LE)
            for text in texts
        )
    )
    # Sentence by sentence, the two requests went through the model together.
    assert batch_sizes == [2, 2]
    for text, result in zip(texts, results, strict=True):
        received = decode(result.audio, SampleFormat.F32LE)
        expected = direct.speak_whole(text)
        assert received.size == expected.size
        # Float rounding of the batched products only (see tests/tts/engines/test_vits_batching.py).
        assert np.abs(received - expected).max() < 1e-5


async def test_speaking_rate_reaches_the_model(tts: TtsServer, direct: CoquiEngine) -> None:
    slow = await synthesize(tts.stub, text=SHORT, speaking_rate=0.5)
    assert slow.audio == encode(direct.speak_whole(SHORT, speaking_rate=0.5), SampleFormat.S16LE)
    normal = await synthesize(tts.stub, text=SHORT)
    pauses = 2 * 10000  # Coqui's pause after each sentence does not stretch
    assert slow.summary.sample_count - pauses > 1.5 * (normal.summary.sample_count - pauses)


async def test_a_repeated_request_is_served_from_the_cache(tts: TtsServer) -> None:
    first = await synthesize(tts.stub, text=SHORT, chunk_duration_ms=50)
    second = await synthesize(tts.stub, text=SHORT, chunk_duration_ms=50)
    assert not first.summary.cache_hit
    assert second.summary.cache_hit
    assert [c.audio for c in second.chunks] == [c.audio for c in first.chunks]
    assert len(tts.finished_spans("tts.sentence")) == 2  # the hit ran no sentence


async def test_cancelling_mid_stream_stops_the_synthesis(
    start_tts: StartTts, tiny_vits_dir: Path
) -> None:
    engine = HeldEngine(CoquiEngine(str(tiny_vits_dir)))
    tts = await start_tts(engine=engine)
    full = await synthesize(tts.stub, text=LONG, speaking_rate=1.1)
    full_samples = full.summary.sample_count

    made = await samples_made_before_cancel(tts, engine, LONG)
    # Cancelled at the first sentence, out of forty: the engine made no other.
    assert 0 < made < full_samples / 4
    await wait_until(lambda: tts.service.admission.in_flight == 0, "the cancelled slot freed")


@pytest.mark.parametrize(
    ("fields", "field_named"),
    [
        ({"text": ""}, "text"),
        ({"text": "Hi.", "voice": "en-us"}, "voice"),
        ({"text": "Hi.", "language": "de"}, "language"),
        ({"text": "Hi.", "speaking_rate": 9.0}, "speaking_rate"),
    ],
)
async def test_bad_input_is_invalid_argument_naming_the_field(
    tts: TtsServer, fields: dict[str, object], field_named: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await synthesize(tts.stub, **fields)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details(raised.value).startswith(f"{field_named}:")


async def test_list_voices_offers_the_models_speakers(
    start_tts: StartTts, two_speaker_vits_dir: Path
) -> None:
    tts = await start_tts(engine="coqui", coqui_model=str(two_speaker_vits_dir))
    response = await tts.stub.ListVoices(tts_pb2.ListVoicesRequest())
    assert response.engine == "coqui"
    assert [(v.name, list(v.languages)) for v in response.voices] == [
        ("alice", ["en"]),
        ("bob", ["en"]),
    ]
    assert all(v.natural_sample_rate_hz == 22050 for v in response.voices)
    bob = await synthesize(tts.stub, text="Hello there.", voice="bob")
    assert bob.summary.voice == "bob"
    alice = await synthesize(tts.stub, text="Hello there.")
    assert alice.summary.voice == "alice"
    assert bob.audio != alice.audio


async def test_health_turns_serving_only_after_warm_up(
    start_tts: StartTts, tiny_vits_dir: Path
) -> None:
    warming = threading.Event()
    released = threading.Event()

    class SlowWarmUp(CoquiEngine):
        def warm_up(self) -> None:
            warming.set()
            # Bounded, so that a failing test cannot leave the loader blocked for good.
            if not released.wait(WAIT_S):
                raise TimeoutError("the test never released the warm-up")
            super().warm_up()

    tts = await start_tts(engine=SlowWarmUp(str(tiny_vits_dir)), load=False)
    loading = asyncio.create_task(tts.running.load_service())
    try:
        await wait_until(warming.is_set, "the warm-up to start")
        assert await health_status(tts) == {health_pb2.HealthCheckResponse.NOT_SERVING}
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await synthesize(tts.stub, text=SHORT)
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        released.set()
    assert await loading
    assert await health_status(tts) == {health_pb2.HealthCheckResponse.SERVING}
    assert (await synthesize(tts.stub, text=SHORT)).chunks


async def test_a_missing_model_keeps_the_server_unready_naming_it(
    start_tts: StartTts, tmp_path: Path
) -> None:
    missing = tmp_path / "models" / "voice"
    tts = await start_tts(engine="coqui", coqui_model=str(missing), load=False)
    assert not await tts.running.load_service()
    assert await health_status(tts) == {health_pb2.HealthCheckResponse.NOT_SERVING}
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await synthesize(tts.stub, text=SHORT)
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    assert str(missing) in details(raised.value)
    assert "CHORUS_COQUI_MODEL" in details(raised.value)
