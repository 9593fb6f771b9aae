"""TextToSpeech over a real gRPC channel on loopback, with the piper engine on the packaged
voice (and tiny voices the tests build, for speakers and broken configs).

Servers here run with Piper's noise scales at 0 (as an operator sets them: by settings),
so a second engine with the same settings, loaded in the test's process, makes the same
samples: what the client receives is compared sample for sample with it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import grpc
import pytest
from chorus.audio.v1 import audio_pb2
from chorus.tts.v1 import tts_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devtools.builders.tiny_piper import packaged_config, write_config
from services.common.pcm import SampleFormat, decode, encode
from services.common.sentences import split_sentences
from services.prosody.analysis import analyze
from services.tts.engines.piper import PiperEngine
from services.tts.engines.piper_runner import FIRST_WINDOW_FRAMES
from services.tts.engines.sentence_pieces import split_pieces
from tests.support.waiting import WAIT_S, wait_until
from tests.tts.harness import (
    HeldEngine,
    StartTts,
    TtsServer,
    details,
    samples_made_before_cancel,
    synthesize,
)

SHORT = "Hello there, thanks for calling. Chorus turns text into speech that streams out."
# Forty sentences of four pieces each.
LONG = " ".join(
    f"This is sentence number {i}, of a rather long text, in clauses, that go on."
    for i in range(40)
)
STEADY = {"piper_noise_scale": 0.0, "piper_noise_w": 0.0}
HEALTH_NAMES = ("", "chorus.tts.v1.TextToSpeech")


@pytest.fixture(scope="module")
def direct() -> PiperEngine:
    """The packaged voice loaded in the test's process, as the servers here run it."""
    engine = PiperEngine(noise_scale=0.0, noise_w=0.0)
    engine.load()
    return engine


@pytest.fixture
async def tts(start_tts: StartTts) -> TtsServer:
    """A server configured for the piper engine and its packaged voice, by settings."""
    return await start_tts(engine="piper", **STEADY)


async def health_status(tts: TtsServer) -> set[int]:
    health = health_pb2_grpc.HealthStub(tts.channel)
    return {
        (await health.Check(health_pb2.HealthCheckRequest(service=name))).status
        for name in HEALTH_NAMES
    }


async def test_chunks_arrive_in_order_with_the_voices_audio(
    tts: TtsServer, direct: PiperEngine
) -> None:
    result = await synthesize(tts.stub, text=SHORT)

    assert result.format.sample_rate_hz == 22050
    assert result.format.encoding == audio_pb2.AUDIO_ENCODING_PCM_S16LE
    offset = 0
    for index, chunk in enumerate(result.chunks):
        assert chunk.sequence == index
        assert chunk.sample_offset == offset
        offset += chunk.sample_count
    assert result.audio == encode(direct.speak_whole(SHORT), SampleFormat.S16LE)
    speech = analyze(decode(result.audio, SampleFormat.S16LE), 22050)
    assert speech.voiced_fraction > 0.3

    summary = result.summary
    assert summary.engine == "piper"
    assert summary.model_version == direct.model_version
    assert summary.voice == "en_US-joe-medium"
    assert summary.sample_count == offset
    assert 0 < summary.first_chunk_seconds <= summary.synthesis_seconds
    assert not summary.cache_hit


async def test_first_audio_is_sent_before_the_rest_is_made(
    start_tts: StartTts, direct: PiperEngine
) -> None:
    engine = HeldEngine(PiperEngine(noise_scale=0.0, noise_w=0.0))
    tts = await start_tts(engine=engine)
    engine.arm()
    first_piece = direct.speak_whole(split_pieces(SHORT)[0].text)
    sizes: list[int] = []
    try:
        async for response in tts.stub.Synthesize(
            tts_pb2.SynthesizeRequest(text=SHORT), timeout=WAIT_S
        ):
            if response.HasField("chunk"):
                if not sizes:
                    # Held after its first window, the engine has finished no sentence: a
                    # server that waited for the sentence could not get here.
                    assert engine.finished == 0
                    engine.release.set()
                sizes.append(response.chunk.sample_count)
    finally:
        engine.release.set()
    # The first chunk is the first window of the first piece ("Hello there,") alone.
    assert sizes[0] == FIRST_WINDOW_FRAMES * 256 < first_piece.size
    assert len(sizes) > 1
    assert engine.finished == engine.calls == len(split_sentences(SHORT))


async def test_list_voices_names_the_packaged_voice(tts: TtsServer) -> None:
    response = await tts.stub.ListVoices(tts_pb2.ListVoicesRequest())
    assert response.engine == "piper"
    assert [(v.name, list(v.languages)) for v in response.voices] == [
        ("en_US-joe-medium", ["en-us"])
    ]
    assert response.voices[0].natural_sample_rate_hz == 22050
    english = await tts.stub.ListVoices(tts_pb2.ListVoicesRequest(language="en"))
    assert [v.name for v in english.voices] == ["en_US-joe-medium"]


async def test_speaking_rate_reaches_the_model(tts: TtsServer, direct: PiperEngine) -> None:
    fast = await synthesize(tts.stub, text=SHORT, speaking_rate=2.0)
    normal = await synthesize(tts.stub, text=SHORT)
    assert fast.audio == encode(direct.speak_whole(SHORT, speaking_rate=2.0), SampleFormat.S16LE)
    assert fast.summary.sample_count < 0.7 * normal.summary.sample_count


async def test_cancelling_mid_stream_stops_the_synthesis(start_tts: StartTts) -> None:
    engine = HeldEngine(PiperEngine(noise_scale=0.0, noise_w=0.0))
    tts = await start_tts(engine=engine)
    first_sentence = split_sentences(LONG)[0]
    assert len(split_pieces(first_sentence)) == 4

    made = await samples_made_before_cancel(tts, engine, LONG)
    # Released after the cancel, the engine made its second window, which the stream
    # refused, and stopped there: not the rest of the sentence's four pieces, nor any of
    # the other 39 sentences.
    assert engine.chunks == 2
    assert engine.refused_chunks == 1
    assert 0 < made < engine.inner.speak_whole(first_sentence).size / 2
    await wait_until(lambda: tts.service.admission.in_flight == 0, "the cancelled slot freed")


async def test_a_multi_speaker_voice_serves_each_speaker(
    start_tts: StartTts, two_speaker_piper_voice: Path
) -> None:
    tts = await start_tts(engine="piper", piper_model=str(two_speaker_piper_voice))
    response = await tts.stub.ListVoices(tts_pb2.ListVoicesRequest())
    assert [v.name for v in response.voices] == ["alice", "bob"]
    bob = await synthesize(tts.stub, text="Hello there.", voice="bob")
    alice = await synthesize(tts.stub, text="Hello there.")
    assert (bob.summary.voice, alice.summary.voice) == ("bob", "alice")
    assert bob.audio != alice.audio


async def test_a_missing_model_keeps_the_server_unready_naming_it(
    start_tts: StartTts, tmp_path: Path
) -> None:
    missing = tmp_path / "voices" / "en_US-nobody-medium.onnx"
    tts = await start_tts(engine="piper", piper_model=str(missing), load=False)
    assert not await tts.running.load_service()
    assert await health_status(tts) == {health_pb2.HealthCheckResponse.NOT_SERVING}
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await synthesize(tts.stub, text=SHORT)
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    assert str(missing) in details(raised.value)
    assert "CHORUS_PIPER_MODEL" in details(raised.value)


async def test_a_config_without_phoneme_ids_keeps_the_server_unready_naming_it(
    start_tts: StartTts, tmp_path: Path, tiny_piper_voice: Path
) -> None:
    model = Path(shutil.copy(tiny_piper_voice, tmp_path / tiny_piper_voice.name))
    config = packaged_config()
    del config["phoneme_id_map"]
    path = write_config(model, config)
    tts = await start_tts(engine="piper", piper_model=str(model), load=False)
    assert not await tts.running.load_service()
    assert await health_status(tts) == {health_pb2.HealthCheckResponse.NOT_SERVING}
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await synthesize(tts.stub, text=SHORT)
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    assert str(path) in details(raised.value)
    assert "phoneme_id_map" in details(raised.value)
