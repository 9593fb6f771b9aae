"""The Praat prosody engine on real speech (the shared recordings and espeak speech), on
noise and silence, and on audio too short for Praat's analysis windows."""

from __future__ import annotations

import dataclasses
import math
import pickle
from functools import cache

import numpy as np
import parselmouth
import pytest
import soundfile

from services.common.pcm import Samples
from services.prosody.praat import AdjustParams, adjust, analyze, assess, pitch_track
from services.tts.engines.espeak import EspeakEngine
from tests.support.media import speech_recordings

RECORDINGS = {path.stem: path for path in speech_recordings()}
SOURCES = [*RECORDINGS, "espeak"]
ESPEAK_TEXT = "Congratulations on your new job. We are all very proud of you."

SENSIBLE_REQUESTS = {
    "up_two_semitones": AdjustParams(pitch_shift_semitones=2.0),
    "faster": AdjustParams(tempo=1.25),
    "calm": AdjustParams(pitch_shift_semitones=-1.0, pitch_range_scale=0.8, tempo=0.92),
}


@cache
def speech(source: str) -> tuple[Samples, int]:
    """A shared recording (16-bit mono 44.1 kHz) or a sentence of espeak speech (22050 Hz),
    as float32 samples and their rate. Read-only: shared between tests, and the engine
    must not write into its input."""
    if source == "espeak":
        engine = EspeakEngine()
        engine.load()
        samples, rate = engine.speak_whole(ESPEAK_TEXT), engine.sample_rate
    else:
        samples, rate = soundfile.read(RECORDINGS[source], dtype="float32")
    samples.flags.writeable = False
    return samples, int(rate)


def white_noise() -> tuple[Samples, int]:
    rate = 22050
    return (np.random.default_rng(7).normal(size=2 * rate) * 0.1).astype(np.float32), rate


def measured_shift(before: Samples, after: Samples, rate: int) -> float:
    """Median F0 change over the frames voiced in both, for a result of the same length.

    Measured independently of the engine (Praat's cross-correlation pitch at the full
    rate, where the engine uses autocorrelation at 8 kHz), frame by frame: the medians of
    the two tracks on their own would also measure which frames are voiced at the edges,
    and on a recording whose pitch falls in a step that moves them by 0.7 semitones.
    """
    tracks = [
        parselmouth.Sound(samples.astype(np.float64), rate)
        .to_pitch_cc(time_step=0.01, pitch_floor=75.0, pitch_ceiling=600.0)
        .selected_array["frequency"]
        for samples in (before, after)
    ]
    first, second = tracks
    assert first.size == second.size
    voiced = (first > 0) & (second > 0)
    assert np.count_nonzero(voiced) >= 5
    return float(np.median(12 * np.log2(second[voiced] / first[voiced])))


@pytest.mark.parametrize("source", SOURCES)
def test_two_semitones_up_measures_two(source: str) -> None:
    samples, rate = speech(source)
    result = adjust(samples, rate, AdjustParams(pitch_shift_semitones=2.0))
    assert result.samples.size == samples.size
    assert measured_shift(samples, result.samples, rate) == pytest.approx(2.0, abs=0.3)


@pytest.mark.parametrize("source", SOURCES)
def test_tempo_one_and_a_quarter_gives_four_fifths_of_the_duration(source: str) -> None:
    samples, rate = speech(source)
    result = adjust(samples, rate, AdjustParams(tempo=1.25))
    assert result.samples.size / samples.size == pytest.approx(0.8, abs=0.03)


@pytest.mark.parametrize("source", SOURCES)
def test_range_scale_scales_the_pitch_range(source: str) -> None:
    samples, rate = speech(source)
    before = analyze(samples, rate).f0_range_semitones
    for scale in (0.8, 1.3):
        after = analyze(adjust(samples, rate, AdjustParams(pitch_range_scale=scale)).samples, rate)
        assert after.f0_range_semitones / before == pytest.approx(scale, abs=0.15)


@pytest.mark.parametrize("source", SOURCES)
def test_six_db_louder_never_clips(source: str) -> None:
    samples, rate = speech(source)
    result = adjust(samples, rate, AdjustParams(energy_db=6.0))
    peak = float(np.abs(result.samples).max())
    assert peak <= 0.98
    # One gain for the whole clip: +6 dB plus what the limiter took off.
    total_gain = 10 ** ((6.0 + result.limiter_gain_db) / 20)
    np.testing.assert_allclose(result.samples, samples * total_gain, rtol=1e-5, atol=1e-7)
    if np.abs(samples).max() * 10 ** (6 / 20) > 0.98:
        assert result.limiter_gain_db < 0
        assert peak == pytest.approx(0.98)
    else:
        assert result.limiter_gain_db == 0.0


def test_the_loud_recording_needs_the_limiter() -> None:
    loudest = max(RECORDINGS, key=lambda source: float(np.abs(speech(source)[0]).max()))
    samples, rate = speech(loudest)
    result = adjust(samples, rate, AdjustParams(energy_db=6.0))
    assert result.limiter_gain_db < 0
    assert np.abs(result.samples).max() <= 0.98


@pytest.mark.parametrize("request_name", SENSIBLE_REQUESTS)
@pytest.mark.parametrize("source", SOURCES)
def test_sensible_requests_are_trusted(source: str, request_name: str) -> None:
    samples, rate = speech(source)
    params = SENSIBLE_REQUESTS[request_name]
    report = assess(samples, adjust(samples, rate, params).samples, rate, params)
    assert report.score >= 0.8, report
    assert [part.name for part in report.parts] == [
        "pitch",
        "duration",
        "voicing",
        "clipping",
        "silence_noise",
    ]
    assert report.score == min(part.score for part in report.parts)
    assert all(0.0 <= part.score <= 1.0 and part.detail for part in report.parts)


def test_pitch_shift_on_white_noise_is_not_trusted() -> None:
    noise, rate = white_noise()
    params = AdjustParams(pitch_shift_semitones=2.0)
    report = assess(noise, adjust(noise, rate, params).samples, rate, params)
    assert report.score < 0.5
    pitch = next(part for part in report.parts if part.name == "pitch")
    assert pitch.score == 0.0
    assert "no voiced speech" in pitch.detail


def test_tempo_still_applies_to_noise() -> None:
    noise, rate = white_noise()
    params = AdjustParams(tempo=1.25)
    result = adjust(noise, rate, params)
    assert result.samples.size / noise.size == pytest.approx(0.8, abs=0.01)
    # Praat's overlap-add copies unvoiced audio in overlapping pieces: about 1 dB quieter.
    level_db = 20 * math.log10(float(np.std(result.samples)) / float(np.std(noise)))
    assert -2.0 < level_db < 0.0
    assert assess(noise, result.samples, rate, params).score >= 0.8


def test_a_result_without_the_asked_shift_is_not_trusted() -> None:
    """The check measures the result, not the request: a result that is not what was
    asked for (here: the original, unshifted) scores low."""
    samples, rate = speech("espeak")
    report = assess(samples, samples, rate, AdjustParams(pitch_shift_semitones=3.0))
    assert report.score < 0.5
    assert next(part for part in report.parts if part.name == "pitch").measured == (
        pytest.approx(0.0, abs=0.1)
    )


def test_analysis_of_espeak_speech_is_plausible() -> None:
    samples, rate = speech("espeak")
    analysis = analyze(samples, rate)
    assert 80 < analysis.f0_median_hz < 250
    assert analysis.f0_min_hz <= analysis.f0_median_hz <= analysis.f0_max_hz
    assert analysis.f0_range_semitones == pytest.approx(
        12 * math.log2(analysis.f0_max_hz / analysis.f0_min_hz)
    )
    assert 0.3 < analysis.voiced_fraction < 0.95
    # 17 syllables in about 4 seconds.
    assert 1 < analysis.speaking_rate_syllables_per_s < 8
    assert len(analysis.f0_contour_semitones) == 10
    assert analysis.duration_s == pytest.approx(samples.size / rate)
    assert analysis.peak == pytest.approx(float(np.abs(samples).max()))
    assert 40 < analysis.intensity_mean_db < 100


@pytest.mark.parametrize("source", RECORDINGS)
def test_a_recorded_word_is_about_one_syllable(source: str) -> None:
    samples, rate = speech(source)
    analysis = analyze(samples, rate)
    assert 1 <= round(analysis.speaking_rate_syllables_per_s * analysis.duration_s) <= 2


def test_contour_follows_the_voiced_timeline_and_is_zero_where_it_has_no_voice() -> None:
    rate = 22050
    t = np.arange(int(0.3 * rate)) / rate

    def vowel(f0: float) -> Samples:
        harmonics = np.stack([0.2 / k * np.sin(2 * np.pi * k * f0 * t) for k in range(1, 6)])
        summed: Samples = harmonics.sum(axis=0).astype(np.float32)
        return summed

    # Low vowel, silence, high vowel: the voiced timeline spans 1 s, its middle is silent.
    samples = np.concatenate([vowel(120.0), np.zeros(int(0.4 * rate), np.float32), vowel(150.0)])
    analysis = analyze(samples, rate)
    contour = analysis.f0_contour_semitones
    assert contour[4:6] == (0.0, 0.0)
    median_hz = analysis.f0_median_hz
    assert contour[0] == pytest.approx(12 * math.log2(120.0 / median_hz), abs=0.2)
    assert contour[9] == pytest.approx(12 * math.log2(150.0 / median_hz), abs=0.2)


@pytest.mark.parametrize(
    ("seconds", "rate"), [(1.0, 22050), (0.05, 44100), (0.01, 16000), (1 / 16000, 16000)]
)
def test_silence_and_very_short_audio_give_zeros_not_errors(seconds: float, rate: int) -> None:
    samples = np.zeros(round(seconds * rate), np.float32)
    analysis = analyze(samples, rate)
    assert analysis.duration_s == pytest.approx(seconds)
    assert analysis.f0_median_hz == analysis.f0_range_semitones == 0.0
    assert analysis.voiced_fraction == analysis.speaking_rate_syllables_per_s == 0.0
    assert analysis.f0_contour_semitones == (0.0,) * 10
    assert analysis.peak == 0.0
    shifted = AdjustParams(pitch_shift_semitones=2.0)
    report = assess(samples, adjust(samples, rate, shifted).samples, rate, shifted)
    assert report.score == 0.0


@pytest.mark.parametrize("milliseconds", [1, 30, 50, 80])
def test_very_short_speech_gives_values_not_errors(milliseconds: int) -> None:
    speech_samples, rate = speech("espeak")
    start = rate // 5  # inside the first vowel
    samples = speech_samples[start : start + rate * milliseconds // 1000]
    analysis = analyze(samples, rate)
    floats = [value for value in dataclasses.astuple(analysis) if isinstance(value, float)]
    assert all(math.isfinite(value) for value in floats)
    assert 0.0 <= analysis.voiced_fraction <= 1.0
    params = AdjustParams(pitch_shift_semitones=-1.0, pitch_range_scale=0.8, tempo=0.92)
    result = adjust(samples, rate, params)
    assert result.samples.dtype == np.float32
    assert result.samples.size == round(samples.size / 0.92)
    assert 0.0 <= assess(samples, result.samples, rate, params).score <= 1.0


def test_empty_audio_is_a_value_error() -> None:
    empty = np.zeros(0, np.float32)
    with pytest.raises(ValueError, match="no samples"):
        analyze(empty, 16000)
    with pytest.raises(ValueError, match="no samples"):
        adjust(empty, 16000, AdjustParams(tempo=1.1))
    with pytest.raises(ValueError, match="no samples"):
        assess(empty, np.ones(10, np.float32), 16000, AdjustParams())


def test_nothing_asked_changes_nothing() -> None:
    samples, rate = speech("espeak")
    result = adjust(samples, rate, AdjustParams())
    np.testing.assert_array_equal(result.samples, samples)
    assert result.limiter_gain_db == 0.0
    assert assess(samples, result.samples, rate, AdjustParams()).score == 1.0


def test_the_same_request_gives_the_same_samples() -> None:
    """Praat copies unvoiced stretches in pieces of random length when the tempo changes;
    the engine seeds Praat's generator, so results can be cached and compared."""
    samples, rate = speech(next(iter(RECORDINGS)))
    params = AdjustParams(pitch_shift_semitones=1.0, tempo=1.1)
    first, second = (adjust(samples, rate, params).samples for _ in range(2))
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("source", SOURCES)
def test_adjust_hands_over_the_pitch_track_assess_needs(source: str) -> None:
    samples, rate = speech(source)
    params = SENSIBLE_REQUESTS["calm"]
    result = adjust(samples, rate, params)
    assert result.original_pitch_track is not None
    np.testing.assert_array_equal(result.original_pitch_track, pitch_track(samples, rate))
    handed_over = assess(samples, result.samples, rate, params, result.original_pitch_track)
    assert handed_over == assess(samples, result.samples, rate, params)


def test_results_survive_pickling() -> None:
    samples, rate = speech(next(iter(RECORDINGS)))
    params = AdjustParams(pitch_shift_semitones=2.0, tempo=1.1, energy_db=3.0)
    analysis = analyze(samples, rate)
    result = adjust(samples, rate, params)
    report = assess(samples, result.samples, rate, params)
    assert pickle.loads(pickle.dumps(params)) == params
    assert pickle.loads(pickle.dumps(analysis)) == analysis
    assert pickle.loads(pickle.dumps(report)) == report
    unpickled = pickle.loads(pickle.dumps(result))
    np.testing.assert_array_equal(unpickled.samples, result.samples)
    assert result.original_pitch_track is not None
    np.testing.assert_array_equal(unpickled.original_pitch_track, result.original_pitch_track)
    assert (unpickled.limiter_gain_db, unpickled.stages) == (result.limiter_gain_db, result.stages)
