"""Analysis with Praat on real speech, on synthetic vowels, and on audio too short or too
quiet for Praat's analysis windows."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from services.common.pcm import Samples
from services.prosody.analysis import analyze
from tests.prosody.speech import RECORDINGS, speech


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


@pytest.mark.parametrize("milliseconds", [1, 30, 50, 80])
def test_very_short_speech_gives_values_not_errors(milliseconds: int) -> None:
    speech_samples, rate = speech("espeak")
    start = rate // 5  # inside the first vowel
    samples = speech_samples[start : start + rate * milliseconds // 1000]
    analysis = analyze(samples, rate)
    floats = [value for value in dataclasses.astuple(analysis) if isinstance(value, float)]
    assert all(math.isfinite(value) for value in floats)
    assert 0.0 <= analysis.voiced_fraction <= 1.0


def test_empty_audio_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="no samples"):
        analyze(np.zeros(0, np.float32), 16000)
