"""TextToSpeech over a real gRPC channel on loopback, with the real espeak engine."""

from __future__ import annotations

import asyncio
import threading

import grpc
import numpy as np
import numpy.typing as npt
import pytest
from chorus.audio.v1 import audio_pb2
from chorus.tts.v1 import tts_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from services.common.pcm import SampleFormat, decode, encode
from services.common.sentences import split_sentences
from services.tts.engines.base import ChunkSink, VoiceInfo, WordSink
from services.tts.engines.espeak import EspeakEngine
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
# About a minute of speech: far more than gRPC's flow-control window and the engine's
# look-ahead hold, so the stream cannot be finished before a slow reader drains it.
LONG = " ".join(f"This is sentence number {i} of a rather long text." for i in range(40))


class RecordingEspeak(EspeakEngine):
    """The real espeak engine, keeping a copy of every chunk it hands to the streamer."""

    def __init__(self) -> None:
        super().__init__()
        self.made: list[np.ndarray] = []

    def synthesize(
        self,
        text: str,
        voice: VoiceInfo,
        speaking_rate: float,
        sink: ChunkSink,
        words: WordSink | None = None,
    ) -> None:
        def recording_sink(chunk: np.ndarray) -> bool:
            self.made.append(chunk.copy())
            return sink(chunk)

        super().synthesize(text, voice, speaking_rate, recording_sink, words)


def loudness_envelope(samples: np.ndarray, frame: int = 220) -> npt.NDArray[np.float64]:
    """RMS per 10 ms frame: what a listener hears, blind to sample-level jitter."""
    frames = samples.size // frame
    squared = samples[: frames * frame].reshape(frames, frame).astype(np.float64) ** 2
    envelope: npt.NDArray[np.float64] = np.sqrt(squared.mean(axis=1))
    return envelope


async def test_chunks_arrive_in_order_and_carry_the_engine_audio(start_tts: StartTts) -> None:
    engine = RecordingEspeak()
    tts = await start_tts(engine=engine)
    engine.made.clear()  # forget the warm-up
    result = await synthesize(tts.stub, text=SHORT)

    assert result.format.sample_rate_hz == 22050
    assert result.format.encoding == audio_pb2.AUDIO_ENCODING_PCM_S16LE
    assert result.format.channels == 1
    assert len(result.chunks) > 1
    offset = 0
    for index, chunk in enumerate(result.chunks):
        assert chunk.sequence == index
        assert chunk.sample_offset == offset
        assert chunk.sample_count * 2 == len(chunk.audio)
        offset += chunk.sample_count

    # Bit-exact: what the engine made is what the client decodes.
    made = np.concatenate(engine.made)
    assert result.audio == encode(made, SampleFormat.S16LE)

    # espeak-ng jitters timing by a few samples from call to call, so a fresh direct
    # call is compared by its loudness envelope: the same speech, frame by frame.
    received = loudness_envelope(decode(result.audio, SampleFormat.S16LE))
    expected = loudness_envelope(engine.speak_whole(SHORT))
    frames = min(received.size, expected.size)
    assert abs(received.size - expected.size) <= 0.02 * expected.size
    assert np.corrcoef(received[:frames], expected[:frames])[0, 1] > 0.9

    summary = result.summary
    assert summary.engine == "espeak"
    assert summary.model_version.startswith("espeak-ng")
    assert summary.chunk_count == len(result.chunks)
    assert summary.sample_count == offset
    assert summary.audio_seconds == pytest.approx(offset / 22050)
    assert 0 < summary.first_chunk_seconds <= summary.synthesis_seconds
    assert not summary.cache_hit


async def test_resampled_float_output_in_fixed_size_chunks(start_tts: StartTts) -> None:
    engine = RecordingEspeak()
    tts = await start_tts(engine=engine)
    engine.made.clear()
    result = await synthesize(
        tts.stub,
        text=SHORT,
        sample_rate_hz=16000,
        encoding=audio_pb2.AUDIO_ENCODING_PCM_F32LE,
        chunk_duration_ms=100,
    )
    assert result.format.sample_rate_hz == 16000
    assert result.format.encoding == audio_pb2.AUDIO_ENCODING_PCM_F32LE
    sizes = [chunk.sample_count for chunk in result.chunks]
    assert all(size == 1600 for size in sizes[:-1])
    assert 0 < sizes[-1] <= 1600
    assert len(result.audio) == 4 * sum(sizes)
    expected_samples = sum(chunk.size for chunk in engine.made) * 16000 / 22050
    assert abs(sum(sizes) - expected_samples) <= 2
    audio = decode(result.audio, SampleFormat.F32LE)
    assert np.abs(audio).max() <= 1.0
    assert np.sqrt(np.mean(audio**2)) > 0.01


async def test_first_chunk_arrives_before_the_last_is_made(start_tts: StartTts) -> None:
    engine = HeldEngine(EspeakEngine())
    tts = await start_tts(engine=engine)
    engine.arm()
    chunks = 0
    try:
        async for response in tts.stub.Synthesize(
            tts_pb2.SynthesizeRequest(text=SHORT), timeout=WAIT_S
        ):
            if response.HasField("chunk"):
                if chunks == 0:
                    # The engine is held after its first chunk: a server that sent
                    # nothing until the whole text was made could not get here.
                    assert engine.finished == 0
                    engine.release.set()
                chunks += 1
    finally:
        engine.release.set()
    assert chunks > 1
    assert engine.finished == engine.calls == len(split_sentences(SHORT))

    [span] = tts.finished_spans("tts.synthesize")
    assert [event.name for event in span.events if event.name == "tts.synthesis_done"] == [
        "tts.synthesis_done"
    ]


async def test_a_repeated_request_is_served_from_the_cache(tts: TtsServer) -> None:
    first = await synthesize(tts.stub, text=SHORT, chunk_duration_ms=50)
    second = await synthesize(tts.stub, text=SHORT, chunk_duration_ms=50)
    assert not first.summary.cache_hit
    assert second.summary.cache_hit
    assert [c.audio for c in second.chunks] == [c.audio for c in first.chunks]

    other_rate = await synthesize(tts.stub, text=SHORT, chunk_duration_ms=50, speaking_rate=1.5)
    assert not other_rate.summary.cache_hit

    results = {
        point.attributes["chorus.cache.result"]: point.value
        for point in tts.metric_points("chorus.cache.requests")
    }
    assert results == {"miss": 2, "hit_memory": 1}


async def test_list_voices(tts: TtsServer) -> None:
    response = await tts.stub.ListVoices(tts_pb2.ListVoicesRequest())
    assert response.engine == "espeak"
    names = [voice.name for voice in response.voices]
    assert "en-us" in names
    assert len(names) == len(set(names))

    german = await tts.stub.ListVoices(tts_pb2.ListVoicesRequest(language="de"))
    assert german.voices
    assert all(any(lang.startswith("de") for lang in v.languages) for v in german.voices)


async def test_voice_and_language_choose_the_voice(tts: TtsServer) -> None:
    by_language = await synthesize(tts.stub, text="Guten Tag.", language="de")
    assert by_language.summary.voice.startswith("de")
    english = await synthesize(tts.stub, text="Good day.", voice="en-us")
    assert english.summary.voice == "en-us"


@pytest.mark.parametrize(
    ("fields", "field_named"),
    [
        ({"text": ""}, "text"),
        ({"text": " \n\t "}, "text"),
        ({"text": "x" * 5001}, "text"),
        ({"text": "Hi.", "voice": "no-such-voice"}, "voice"),
        ({"text": "Hi.", "language": "xx-nowhere"}, "language"),
        ({"text": "Hi.", "sample_rate_hz": 11025}, "sample_rate_hz"),
        ({"text": "Hi.", "sample_rate_hz": -16000}, "sample_rate_hz"),
        ({"text": "Hi.", "encoding": 42}, "encoding"),
        ({"text": "Hi.", "speaking_rate": -1.0}, "speaking_rate"),
        ({"text": "Hi.", "speaking_rate": float("nan")}, "speaking_rate"),
        ({"text": "Hi.", "speaking_rate": 9.0}, "speaking_rate"),
        ({"text": "Hi.", "chunk_duration_ms": -5}, "chunk_duration_ms"),
        ({"text": "Hi.", "chunk_duration_ms": 60000}, "chunk_duration_ms"),
    ],
)
async def test_bad_input_is_invalid_argument_naming_the_field(
    tts: TtsServer, fields: dict[str, object], field_named: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await synthesize(tts.stub, **fields)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details(raised.value).startswith(f"{field_named}:")
    assert tts.service.admission.in_flight == 0


async def test_cancelling_mid_stream_stops_the_synthesis(start_tts: StartTts) -> None:
    engine = HeldEngine(EspeakEngine())
    tts = await start_tts(engine=engine)
    full = await synthesize(tts.stub, text=LONG, speaking_rate=1.1)
    full_samples = full.summary.sample_count

    made = await samples_made_before_cancel(tts, engine, LONG)
    assert 0 < made < full_samples / 2
    # Released after the cancel, espeak's next chunk was refused and it stopped there.
    assert engine.refused_chunks == 1
    assert engine.chunks == 2
    await wait_until(lambda: tts.service.admission.in_flight == 0, "the cancelled slot freed")


async def test_overload_is_refused_at_once_with_resource_exhausted(start_tts: StartTts) -> None:
    tts = await start_tts(max_in_flight=1, max_queue=0)
    holder = tts.stub.Synthesize(tts_pb2.SynthesizeRequest(text=LONG))
    async for response in holder:
        if response.HasField("chunk"):
            break
    # The holder reads no further: its stream stays open, held by flow control.
    assert tts.service.admission.in_flight == 1

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await synthesize(tts.stub, text=SHORT)
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "capacity" in details(raised.value)
    # Refused at once, not queued until a slot came free: the holder still holds it.
    assert tts.service.admission.in_flight == 1

    holder.cancel()
    await wait_until(lambda: tts.service.admission.in_flight == 0, "the holder's slot freed")
    assert (await synthesize(tts.stub, text=SHORT)).chunks


async def test_spans_cover_each_stage_in_one_trace(tts: TtsServer) -> None:
    await synthesize(tts.stub, text=SHORT)

    [client_span] = [
        s
        for s in tts.spans.get_finished_spans()
        if s.name.endswith("Synthesize") and s.kind.name == "CLIENT"
    ]
    [server_span] = [
        s
        for s in tts.spans.get_finished_spans()
        if s.name.endswith("Synthesize") and s.kind.name == "SERVER"
    ]
    [synth] = tts.finished_spans("tts.synthesize")
    [cache_get] = tts.finished_spans("cache.get")
    sentences = tts.finished_spans("tts.sentence")
    trace_ids = {
        s.context.trace_id for s in (client_span, server_span, synth, cache_get, *sentences)
    }
    assert len(trace_ids) == 1
    assert synth.parent is not None
    assert synth.parent.span_id == server_span.context.span_id
    assert cache_get.parent is not None
    assert cache_get.parent.span_id == synth.context.span_id
    assert len(sentences) == 2
    assert synth.attributes is not None
    assert synth.attributes["chorus.tts.chars"] == len(SHORT)
    assert synth.attributes["chorus.cache.hit"] is False
    assert synth.attributes["chorus.tts.engine"] == "espeak"
    assert [e.name for e in synth.events][:1] == ["tts.first_audio"]


async def test_health_turns_serving_only_after_warm_up(start_tts: StartTts) -> None:
    warming = threading.Event()
    released = threading.Event()

    class SlowWarmUp(EspeakEngine):
        def warm_up(self) -> None:
            warming.set()
            # Bounded, so that a failing test cannot leave the loader blocked for good.
            if not released.wait(WAIT_S):
                raise TimeoutError("the test never released the warm-up")
            super().warm_up()

    tts = await start_tts(engine=SlowWarmUp(), load=False)
    health = health_pb2_grpc.HealthStub(tts.channel)
    loading = asyncio.create_task(tts.running.load_service())
    try:
        await wait_until(warming.is_set, "the warm-up to start")
        for service in ("", "chorus.tts.v1.TextToSpeech"):
            response = await health.Check(health_pb2.HealthCheckRequest(service=service))
            assert response.status == health_pb2.HealthCheckResponse.NOT_SERVING
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await synthesize(tts.stub, text=SHORT)
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "not ready" in details(raised.value)
    finally:
        released.set()
    assert await loading
    response = await health.Check(
        health_pb2.HealthCheckRequest(service="chorus.tts.v1.TextToSpeech")
    )
    assert response.status == health_pb2.HealthCheckResponse.SERVING
    assert (await synthesize(tts.stub, text=SHORT)).chunks


async def test_a_failed_load_keeps_the_service_unready_with_the_reason(start_tts: StartTts) -> None:
    class MissingModel(EspeakEngine):
        def load(self) -> None:
            raise FileNotFoundError("model file /models/voice.pth not found")

    tts = await start_tts(engine=MissingModel(), load=False)
    assert not await tts.running.load_service()
    health = health_pb2_grpc.HealthStub(tts.channel)
    response = await health.Check(health_pb2.HealthCheckRequest(service=""))
    assert response.status == health_pb2.HealthCheckResponse.NOT_SERVING
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await synthesize(tts.stub, text=SHORT)
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "/models/voice.pth not found" in details(raised.value)


async def test_an_engine_crash_is_internal_without_a_traceback(start_tts: StartTts) -> None:
    class Crashing(EspeakEngine):
        def synthesize(
            self,
            text: str,
            voice: VoiceInfo,
            speaking_rate: float,
            sink: ChunkSink,
            words: WordSink | None = None,
        ) -> None:
            if "crash" in text:
                raise RuntimeError("secret internal detail")
            super().synthesize(text, voice, speaking_rate, sink, words)

    tts = await start_tts(engine=Crashing())
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await synthesize(tts.stub, text="Fine. Now crash.")
    assert raised.value.code() == grpc.StatusCode.INTERNAL
    assert "secret" not in details(raised.value)
    assert tts.service.admission.in_flight == 0
    assert (await synthesize(tts.stub, text=SHORT)).chunks


async def test_streams_in_flight_finish_during_graceful_shutdown(tts: TtsServer) -> None:
    health = health_pb2_grpc.HealthStub(tts.channel)
    watch = health.Watch(health_pb2.HealthCheckRequest(service=""))
    serving = await watch.read()
    assert isinstance(serving, health_pb2.HealthCheckResponse)
    assert serving.status == health_pb2.HealthCheckResponse.SERVING

    call = tts.stub.Synthesize(tts_pb2.SynthesizeRequest(text=LONG))
    first = await call.read()
    assert isinstance(first, tts_pb2.SynthesizeResponse)
    responses = [first]
    # A grace far beyond the stream's length: stop() returns as soon as the stream ends.
    stopping = asyncio.create_task(tts.running.stop(WAIT_S))
    # Health turns NOT_SERVING as the graceful stop begins: from here on it is draining.
    draining = await watch.read()
    assert isinstance(draining, health_pb2.HealthCheckResponse)
    assert draining.status == health_pb2.HealthCheckResponse.NOT_SERVING
    watch.cancel()  # the watch is an RPC in flight too: it would hold the stop to its grace
    while isinstance(response := await call.read(), tts_pb2.SynthesizeResponse):
        responses.append(response)
    await stopping
    assert responses[-1].HasField("summary")
    chunks = [r.chunk for r in responses if r.HasField("chunk")]
    assert sum(c.sample_count for c in chunks) == responses[-1].summary.sample_count


async def test_reflection_lists_the_services(tts: TtsServer) -> None:
    def list_services() -> list[str]:
        with grpc.insecure_channel(tts.address) as channel:
            return list(ProtoReflectionDescriptorDatabase(channel).get_services())

    services = await asyncio.to_thread(list_services)
    assert "chorus.tts.v1.TextToSpeech" in services
    assert "grpc.health.v1.Health" in services


async def test_health_watch_streams_the_status(tts: TtsServer) -> None:
    health = health_pb2_grpc.HealthStub(tts.channel)
    watch = health.Watch(health_pb2.HealthCheckRequest(service="chorus.tts.v1.TextToSpeech"))
    first = await watch.read()
    assert isinstance(first, health_pb2.HealthCheckResponse)
    assert first.status == health_pb2.HealthCheckResponse.SERVING
    watch.cancel()
