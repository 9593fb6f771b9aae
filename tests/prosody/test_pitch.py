"""Pitch tracks: what Praat measures, in the one form every stage uses."""

from __future__ import annotations

import pickle

import numpy as np
import parselmouth
import pytest

from services.common.pcm import Samples
from services.prosody.pitch import TIME_STEP_S, PitchTrack, pitch_track
from tests.prosody.speech import speech


def vowel(f0: float, seconds: float, rate: int = 22050) -> Samples:
    """Five harmonics of ``f0``: voiced throughout, at ``f0``."""
    t = np.arange(int(seconds * rate)) / rate
    harmonics = np.stack([0.2 / k * np.sin(2 * np.pi * k * f0 * t) for k in range(1, 6)])
    summed: Samples = harmonics.sum(axis=0).astype(np.float32)
    return summed


def test_a_steady_vowel_is_voiced_at_its_pitch() -> None:
    track = pitch_track(vowel(150.0, 0.5), 22050)
    assert track.voiced_fraction > 0.8
    assert track.voiced_count == np.count_nonzero(track.f0_hz > 0)
    assert np.median(track.voiced_hz) == pytest.approx(150.0, rel=0.01)
    # Frames every 10 ms over the half second, the first a window's half into it.
    assert track.f0_hz.size == pytest.approx(0.5 / TIME_STEP_S, abs=5)
    assert 0.0 < track.first_frame_s < 0.05


def test_the_track_is_the_same_as_praats_at_the_full_rate() -> None:
    """Measured on an 8 kHz copy for speed: the voiced frames agree with Praat's own
    pitch of the full-rate sound."""
    samples, rate = speech("espeak")
    track = pitch_track(samples, rate)
    full = (
        parselmouth.Sound(samples.astype(np.float64), rate)
        .to_pitch_ac(time_step=TIME_STEP_S, pitch_floor=75.0, pitch_ceiling=600.0)
        .selected_array["frequency"]
    )
    frames = min(full.size, track.f0_hz.size)
    both = (full[:frames] > 0) & (track.f0_hz[:frames] > 0)
    assert np.count_nonzero(both) > 100
    cents = 1200 * np.log2(track.f0_hz[:frames][both] / full[:frames][both])
    assert float(np.median(np.abs(cents))) < 10


@pytest.mark.parametrize("samples", [0, 100, 600])
def test_audio_too_short_for_one_frame_has_an_empty_track(samples: int) -> None:
    track = pitch_track(np.full(samples, 0.1, np.float32), 16000)
    assert track.f0_hz.size == 0
    assert track.voiced_fraction == 0.0
    assert track.voiced_count == 0


def test_silence_is_unvoiced() -> None:
    track = pitch_track(np.zeros(22050, np.float32), 22050)
    assert track.f0_hz.size > 0
    assert track.voiced_fraction == 0.0
    assert track.voiced_hz.size == 0


def test_a_track_survives_pickling() -> None:
    track = pitch_track(vowel(120.0, 0.3), 22050)
    unpickled = pickle.loads(pickle.dumps(track))
    np.testing.assert_array_equal(unpickled.f0_hz, track.f0_hz)
    assert unpickled.first_frame_s == track.first_frame_s
    assert isinstance(unpickled, PitchTrack)
