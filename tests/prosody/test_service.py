"""Prosody over a real gRPC channel, with Praat in real worker processes."""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import parselmouth
import pytest
from chorus.audio.v1 import audio_pb2
from chorus.prosody.v1 import prosody_pb2
from opentelemetry.trace import SpanKind

from services.common.pcm import SampleFormat, encode
from services.common.wav import read_wav, write_wav
from tests.prosody.harness import ProsodyServer, espeak_wav, recordings, wav_audio
from tests.support.media import compressed_wav, seven_bit_wav

pytestmark = pytest.mark.asyncio(loop_scope="module")

SPEECH = [*recordings(), espeak_wav()]


async def analyze(prosody: ProsodyServer, audio: prosody_pb2.Audio) -> prosody_pb2.AnalyzeResponse:
    return await prosody.stub.Analyze(prosody_pb2.AnalyzeRequest(audio=audio), timeout=30)


async def adjust(prosody: ProsodyServer, **fields: object) -> prosody_pb2.AdjustResponse:
    return await prosody.stub.Adjust(prosody_pb2.AdjustRequest(**fields), timeout=30)  # type: ignore[arg-type]


def measured_shift(before: bytes, after: bytes) -> float:
    """Median F0 change between time-aligned frames, measured independently of the
    service (Praat's cross-correlation pitch, where the service uses autocorrelation)."""
    tracks = []
    for wav in (before, after):
        decoded = read_wav(wav)
        sound = parselmouth.Sound(decoded.samples.astype(np.float64), decoded.sample_rate)
        pitch = sound.to_pitch_cc(time_step=0.01, pitch_floor=75.0, pitch_ceiling=600.0)
        tracks.append(pitch.selected_array["frequency"])
    frames = min(len(track) for track in tracks)
    first, second = (track[:frames] for track in tracks)
    voiced = (first > 0) & (second > 0)
    assert np.count_nonzero(voiced) >= 5
    return float(np.median(12 * np.log2(second[voiced] / first[voiced])))


@pytest.mark.parametrize("speech", SPEECH, ids=[*map(str, range(len(SPEECH) - 1)), "espeak"])
async def test_pitch_shift_of_two_semitones_measures_two(
    prosody: ProsodyServer, speech: bytes
) -> None:
    response = await adjust(prosody, audio=wav_audio(speech), pitch_shift_semitones=2.0)
    assert not response.fallback, response.fallback_reason
    assert measured_shift(speech, response.audio.wav) == pytest.approx(2.0, abs=0.3)
    assert response.confidence.measured
    assert response.confidence.score >= 0.7


@pytest.mark.parametrize("speech", SPEECH, ids=[*map(str, range(len(SPEECH) - 1)), "espeak"])
async def test_tempo_one_and_a_quarter_gives_four_fifths_of_the_duration(
    prosody: ProsodyServer, speech: bytes
) -> None:
    response = await adjust(prosody, audio=wav_audio(speech), tempo=1.25)
    assert not response.fallback, response.fallback_reason
    ratio = read_wav(response.audio.wav).samples.size / read_wav(speech).samples.size
    assert ratio == pytest.approx(0.8, abs=0.03)


async def test_wav_comes_back_as_wav_of_the_same_kind(prosody: ProsodyServer) -> None:
    response = await adjust(prosody, audio=wav_audio(SPEECH[0]), preset="celebration")
    original, adjusted = read_wav(SPEECH[0]), read_wav(response.audio.wav)
    assert (adjusted.sample_rate, adjusted.subtype) == (original.sample_rate, original.subtype)
    assert response.adjustment.preset == "celebration"
    assert response.adjustment.pitch_shift_semitones == 2.0
    assert response.adjustment.tempo == pytest.approx(1.08)


async def test_raw_pcm_comes_back_as_raw_pcm_in_the_same_format(prosody: ProsodyServer) -> None:
    wav = read_wav(espeak_wav())
    raw = prosody_pb2.RawAudio(
        pcm=encode(wav.samples, SampleFormat.F32LE),
        format=audio_pb2.AudioFormat(
            sample_rate_hz=wav.sample_rate, encoding=audio_pb2.AUDIO_ENCODING_PCM_F32LE
        ),
    )
    response = await adjust(prosody, audio=prosody_pb2.Audio(raw=raw), preset="calm")
    assert not response.fallback, response.fallback_reason
    assert response.audio.WhichOneof("content") == "raw"
    assert response.audio.raw.format.sample_rate_hz == wav.sample_rate
    assert response.audio.raw.format.encoding == audio_pb2.AUDIO_ENCODING_PCM_F32LE
    samples = np.frombuffer(response.audio.raw.pcm, dtype="<f4")
    assert samples.size == pytest.approx(wav.samples.size / 0.92, rel=0.03)


async def test_explicit_fields_override_the_preset(prosody: ProsodyServer) -> None:
    response = await adjust(
        prosody, audio=wav_audio(espeak_wav()), preset="celebration", energy_db=0.0
    )
    assert response.adjustment.energy_db == 0.0
    assert response.adjustment.pitch_range_scale == pytest.approx(1.3)


def white_noise() -> bytes:
    noise = np.random.default_rng(7).normal(0, 0.1, 2 * 22050).astype(np.float32)
    return write_wav(noise, 22050)


async def test_pitch_shift_on_noise_falls_back_to_the_original(prosody: ProsodyServer) -> None:
    noise = white_noise()
    response = await adjust(prosody, audio=wav_audio(noise), pitch_shift_semitones=3.0)
    assert response.fallback
    assert response.audio.wav == noise
    assert response.confidence.measured
    assert response.confidence.score < 0.5
    assert "below 0.70" in response.fallback_reason
    pitch = next(part for part in response.confidence.parts if part.name == "pitch")
    assert pitch.score < 0.5


async def test_low_confidence_audio_can_be_kept_on_request(prosody: ProsodyServer) -> None:
    noise = white_noise()
    response = await adjust(
        prosody, audio=wav_audio(noise), pitch_shift_semitones=3.0, keep_low_confidence=True
    )
    assert not response.fallback
    assert response.audio.wav != noise
    assert response.confidence.score < 0.5


async def test_confidence_can_be_skipped(prosody: ProsodyServer) -> None:
    response = await adjust(
        prosody,
        audio=wav_audio(white_noise()),
        pitch_shift_semitones=3.0,
        confidence_mode=prosody_pb2.CONFIDENCE_MODE_SKIP,
    )
    assert not response.fallback
    assert not response.confidence.measured
    assert not response.confidence.parts


async def test_every_confidence_part_is_reported(prosody: ProsodyServer) -> None:
    response = await adjust(prosody, audio=wav_audio(espeak_wav()), preset="celebration")
    names = {part.name for part in response.confidence.parts}
    assert names == {"pitch", "duration", "voicing", "clipping", "silence_noise"}
    assert all(0.0 <= part.score <= 1.0 and part.detail for part in response.confidence.parts)
    assert response.confidence.threshold == pytest.approx(0.7)


async def test_analysis_of_speech_is_plausible(prosody: ProsodyServer) -> None:
    analysis = await analyze(prosody, wav_audio(espeak_wav()))
    assert 80 < analysis.f0_median_hz < 250
    assert analysis.f0_min_hz <= analysis.f0_median_hz <= analysis.f0_max_hz
    assert 0.3 < analysis.voiced_fraction < 0.95
    assert 1 < analysis.speaking_rate_syllables_per_second < 8
    assert len(analysis.f0_contour_semitones) == 10
    assert analysis.duration_seconds == pytest.approx(
        read_wav(espeak_wav()).samples.size / 22050, rel=0.01
    )


async def test_a_repeated_request_is_a_cache_hit(prosody: ProsodyServer) -> None:
    request = {"audio": wav_audio(SPEECH[1]), "pitch_shift_semitones": -1.5}
    first = await adjust(prosody, **request)
    second = await adjust(prosody, **request)
    assert not first.cache_hit
    assert second.cache_hit
    assert second.audio == first.audio


async def test_parallel_requests_run_in_more_than_one_worker_process(
    prosody: ProsodyServer,
) -> None:
    speech = espeak_wav("A longer passage, so that each request keeps a worker busy for a while.")
    await asyncio.gather(
        *(adjust(prosody, audio=wav_audio(speech), pitch_shift_semitones=0.1 * i) for i in range(8))
    )
    pids = {
        span.attributes["chorus.prosody.worker_pid"]
        for span in prosody.finished_spans("prosody.pitch")
        if span.attributes is not None
    }
    assert len(pids) >= 2
    assert pids <= prosody.service.worker_pids


async def test_stage_spans_share_the_callers_trace(prosody: ProsodyServer) -> None:
    prosody.spans.clear()
    await adjust(prosody, audio=wav_audio(SPEECH[2]), pitch_shift_semitones=1.0, tempo=1.1)
    names = [
        "prosody.decode",
        "cache.get",
        "prosody.pitch",
        "prosody.duration",
        "prosody.energy",
        "prosody.confidence",
        "prosody.encode",
    ]
    spans = {name: prosody.finished_spans(name) for name in names}
    assert all(len(found) == 1 for found in spans.values()), spans
    # The result's pitch, measured in the worker for the confidence.
    assert len(prosody.finished_spans("prosody.pitch_track")) == 1
    rpc_spans = [s for s in prosody.spans.get_finished_spans() if s.name.endswith("/Adjust")]
    assert {s.kind for s in rpc_spans} == {SpanKind.CLIENT, SpanKind.SERVER}
    trace_ids = {found[0].context.trace_id for found in spans.values()}
    assert trace_ids == {s.context.trace_id for s in rpc_spans}
    adjust_span = spans["prosody.duration"][0]
    assert adjust_span.start_time is not None
    assert adjust_span.end_time is not None
    assert adjust_span.start_time < adjust_span.end_time


def raw(pcm: bytes, rate: int = 16000, channels: int = 0, encoding: int = 0) -> prosody_pb2.Audio:
    audio_format = audio_pb2.AudioFormat(sample_rate_hz=rate, channels=channels)
    audio_format.encoding = encoding  # type: ignore[assignment]  # unknown values on purpose
    return prosody_pb2.Audio(raw=prosody_pb2.RawAudio(pcm=pcm, format=audio_format))


TONE = encode((np.sin(np.arange(16000) / 5) * 0.3).astype(np.float32), SampleFormat.S16LE)


@pytest.mark.parametrize(
    ("fields", "field_named"),
    [
        ({"audio": wav_audio(b"this is not audio at all")}, "audio.wav"),
        ({"audio": wav_audio(recordings()[0][:2000])}, "audio.wav"),
        ({"audio": wav_audio(write_wav(np.zeros(0, np.float32), 16000))}, "audio.wav"),
        ({"audio": wav_audio(write_wav(np.zeros(16000, np.float32), 16000))}, "audio.wav"),
        ({"audio": wav_audio(write_wav(np.full(61 * 8000, 0.1, np.float32), 8000))}, "audio.wav"),
        ({}, "audio"),
        ({"audio": raw(b"")}, "audio.raw.pcm"),
        ({"audio": raw(TONE[:-1])}, "audio.raw.pcm"),
        ({"audio": raw(TONE, rate=0)}, "audio.raw.format.sample_rate_hz"),
        ({"audio": raw(TONE, rate=4000)}, "audio"),
        ({"audio": raw(TONE, channels=2)}, "audio.raw.format.channels"),
        ({"audio": raw(TONE, encoding=9)}, "audio.raw.format.encoding"),
        (
            {
                "audio": raw(
                    np.array([0.1, float("nan")], "<f4").tobytes(),
                    encoding=audio_pb2.AUDIO_ENCODING_PCM_F32LE,
                )
            },
            "audio.raw.pcm",
        ),
        ({"audio": raw(TONE), "pitch_shift_semitones": 12.5}, "pitch_shift_semitones"),
        ({"audio": raw(TONE), "pitch_shift_semitones": float("nan")}, "pitch_shift_semitones"),
        ({"audio": raw(TONE), "tempo": 0.4}, "tempo"),
        ({"audio": raw(TONE), "tempo": 2.5}, "tempo"),
        ({"audio": raw(TONE), "pitch_range_scale": -1.0}, "pitch_range_scale"),
        ({"audio": raw(TONE), "energy_db": 40.0}, "energy_db"),
        ({"audio": raw(TONE), "preset": "party"}, "preset"),
        ({"audio": raw(TONE), "min_confidence": 1.5}, "min_confidence"),
        ({"audio": raw(TONE), "confidence_mode": 99}, "confidence_mode"),
        ({"audio": wav_audio(seven_bit_wav())}, "audio.wav"),
        ({"audio": wav_audio(compressed_wav("IMA_ADPCM", seconds=61))}, "audio.wav"),
    ],
)
async def test_bad_input_is_invalid_argument_naming_the_field(
    prosody: ProsodyServer, fields: dict[str, object], field_named: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await adjust(prosody, **fields)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (raised.value.details() or "").startswith(f"{field_named}:")
    assert prosody.service.admission.in_flight == 0


@pytest.mark.parametrize("subtype", ["GSM610", "IMA_ADPCM", "MS_ADPCM", "ULAW"])
async def test_compressed_wav_is_adjusted_and_comes_back_in_its_form(
    prosody: ProsodyServer, subtype: str
) -> None:
    """GSM 6.10 cannot seek: it is read by frame count, not refused as INTERNAL."""
    response = await adjust(prosody, audio=wav_audio(compressed_wav(subtype, seconds=2)))
    back = read_wav(response.audio.wav)
    assert back.subtype == subtype
    assert back.sample_rate == 8000
    analysis = await analyze(prosody, wav_audio(compressed_wav(subtype, seconds=2)))
    assert analysis.duration_seconds == pytest.approx(2.0, abs=0.05)


async def test_analyze_refuses_what_is_not_audio(prosody: ProsodyServer) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await analyze(prosody, wav_audio(b"RIFF nonsense"))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("preset", ["celebration", "calm"])
@pytest.mark.parametrize("speech", SPEECH, ids=[*map(str, range(len(SPEECH) - 1)), "espeak"])
async def test_presets_on_real_speech_are_trusted(
    prosody: ProsodyServer, speech: bytes, preset: str
) -> None:
    response = await adjust(prosody, audio=wav_audio(speech), preset=preset)
    assert not response.fallback, response.fallback_reason
    assert response.confidence.score >= 0.7
    duration = next(p for p in response.confidence.parts if p.name == "duration")
    assert duration.score == 1.0
