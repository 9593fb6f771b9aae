"""Adjustment with Praat on real speech (the shared recordings and espeak speech), on
noise, and on audio too short for Praat's analysis windows."""

from __future__ import annotations

import math

import numpy as np
import parselmouth
import pytest

from services.common.pcm import Samples
from services.prosody.adjustment import AdjustParams, adjust
from services.prosody.analysis import analyze
from services.prosody.confidence import assess
from services.prosody.pitch import pitch_track
from tests.prosody.speech import RECORDINGS, SOURCES, speech, white_noise

CALM = AdjustParams(pitch_shift_semitones=-1.0, pitch_range_scale=0.8, tempo=0.92)


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


def test_tempo_still_applies_to_noise() -> None:
    noise, rate = white_noise()
    params = AdjustParams(tempo=1.25)
    result = adjust(noise, rate, params)
    assert result.samples.size / noise.size == pytest.approx(0.8, abs=0.01)
    # Praat's overlap-add copies unvoiced audio in overlapping pieces: about 1 dB quieter.
    level_db = 20 * math.log10(float(np.std(result.samples)) / float(np.std(noise)))
    assert -2.0 < level_db < 0.0
    assert assess(noise, result.samples, rate, params).score >= 0.8


@pytest.mark.parametrize("milliseconds", [1, 30, 50, 80])
def test_very_short_speech_is_adjusted_not_refused(milliseconds: int) -> None:
    speech_samples, rate = speech("espeak")
    start = rate // 5  # inside the first vowel
    samples = speech_samples[start : start + rate * milliseconds // 1000]
    result = adjust(samples, rate, CALM)
    assert result.samples.dtype == np.float32
    assert result.samples.size == round(samples.size / 0.92)
    # Padded for the Manipulation: its pitch track is not the input's, so none is given.
    assert result.original_pitch_track is None


def test_empty_audio_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="no samples"):
        adjust(np.zeros(0, np.float32), 16000, AdjustParams(tempo=1.1))


def test_nothing_asked_changes_nothing() -> None:
    samples, rate = speech("espeak")
    result = adjust(samples, rate, AdjustParams())
    np.testing.assert_array_equal(result.samples, samples)
    assert result.limiter_gain_db == 0.0
    assert result.original_pitch_track is None
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
    result = adjust(samples, rate, CALM)
    assert result.original_pitch_track is not None
    measured = pitch_track(samples, rate)
    np.testing.assert_array_equal(result.original_pitch_track.f0_hz, measured.f0_hz)
    assert result.original_pitch_track.first_frame_s == measured.first_frame_s
    handed_over = assess(samples, result.samples, rate, CALM, result.original_pitch_track)
    assert handed_over == assess(samples, result.samples, rate, CALM)


def test_stages_are_timed_in_order() -> None:
    samples, rate = speech("espeak")
    result = adjust(samples, rate, CALM)
    assert [stage.name for stage in result.stages] == [
        "prosody.pitch",
        "prosody.duration",
        "prosody.energy",
    ]
    assert all(stage.start_ns <= stage.end_ns for stage in result.stages)
    pairs = zip(result.stages, result.stages[1:], strict=False)
    assert all(first.end_ns <= then.start_ns for first, then in pairs)
