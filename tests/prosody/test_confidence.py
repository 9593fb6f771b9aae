"""The confidence check on real speech, on noise and silence, and on results that are not
what was asked for."""

from __future__ import annotations

import numpy as np
import pytest

from services.prosody.adjustment import AdjustParams, adjust
from services.prosody.confidence import (
    PITCH_RAMP,
    Ramp,
    assess,
    paired_shift_semitones,
)
from services.prosody.pitch import PitchTrack
from tests.prosody.speech import SOURCES, speech, white_noise

SENSIBLE_REQUESTS = {
    "up_two_semitones": AdjustParams(pitch_shift_semitones=2.0),
    "faster": AdjustParams(tempo=1.25),
    "calm": AdjustParams(pitch_shift_semitones=-1.0, pitch_range_scale=0.8, tempo=0.92),
}


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
    assert report.weakest.score == 0.0


def test_a_result_without_the_asked_shift_is_not_trusted() -> None:
    """The check measures the result, not the request: a result that is not what was
    asked for (here: the original, unshifted) scores low."""
    samples, rate = speech("espeak")
    report = assess(samples, samples, rate, AdjustParams(pitch_shift_semitones=3.0))
    assert report.score < 0.5
    assert report.weakest.name == "pitch"
    assert report.weakest.measured == pytest.approx(0.0, abs=0.1)


@pytest.mark.parametrize(
    ("seconds", "rate"), [(1.0, 22050), (0.05, 44100), (0.01, 16000), (1 / 16000, 16000)]
)
def test_a_pitch_shift_of_silence_or_very_short_audio_scores_zero(
    seconds: float, rate: int
) -> None:
    samples = np.zeros(round(seconds * rate), np.float32)
    shifted = AdjustParams(pitch_shift_semitones=2.0)
    report = assess(samples, adjust(samples, rate, shifted).samples, rate, shifted)
    assert report.score == 0.0


@pytest.mark.parametrize("milliseconds", [1, 30, 50, 80])
def test_very_short_speech_is_scored_not_refused(milliseconds: int) -> None:
    speech_samples, rate = speech("espeak")
    start = rate // 5  # inside the first vowel
    samples = speech_samples[start : start + rate * milliseconds // 1000]
    params = AdjustParams(pitch_shift_semitones=-1.0, pitch_range_scale=0.8, tempo=0.92)
    result = adjust(samples, rate, params)
    assert 0.0 <= assess(samples, result.samples, rate, params).score <= 1.0


def test_empty_audio_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="no samples"):
        assess(np.zeros(0, np.float32), np.ones(10, np.float32), 16000, AdjustParams())
    with pytest.raises(ValueError, match="no samples"):
        assess(np.ones(10, np.float32), np.zeros(0, np.float32), 16000, AdjustParams())


def test_a_ramp_scores_one_up_to_good_and_zero_from_bad() -> None:
    ramp = Ramp(good=0.5, bad=1.5)
    assert [ramp.score(error) for error in (0.0, 0.5, 1.0, 1.5, 9.0)] == [1.0, 1.0, 0.5, 0.0, 0.0]
    # A ramp with no tolerance (clipping): anything above zero loses score at once.
    assert Ramp(good=0.0, bad=0.001).score(0.0005) == pytest.approx(0.5)
    assert PITCH_RAMP.good < PITCH_RAMP.bad


def test_paired_shift_measures_the_shift_of_a_stretched_track() -> None:
    # A falling contour, shifted up 2 st and played 25% faster: 4 frames become 3 (the
    # pairing reads the original at each result frame's scaled time).
    before = PitchTrack(np.linspace(200.0, 150.0, 101))
    frames = np.arange(81) * 1.25
    after_hz = np.interp(frames, np.arange(101), before.f0_hz) * 2 ** (2 / 12)
    after = PitchTrack(after_hz)
    # Interpolated in Hz here, in semitones by the pairing: a few millionths apart.
    assert paired_shift_semitones(before, after, tempo=1.25) == pytest.approx(2.0, abs=1e-3)


def test_paired_shift_takes_the_range_scale_out() -> None:
    before_hz = np.linspace(200.0, 150.0, 100)
    median = float(np.median(before_hz))
    # Each frame's distance from the median scaled by 1.5, then everything up 1 st.
    after_hz = median * (before_hz / median) ** 1.5 * 2 ** (1 / 12)
    shift = paired_shift_semitones(
        PitchTrack(before_hz), PitchTrack(after_hz), tempo=1.0, range_scale=1.5
    )
    assert shift == pytest.approx(1.0, abs=1e-6)


def test_paired_shift_needs_three_voiced_frames_in_both() -> None:
    voiced = PitchTrack(np.full(50, 120.0))
    almost_silent = PitchTrack(np.array([0.0, 120.0, 0.0, 121.0, 0.0]))
    assert paired_shift_semitones(voiced, almost_silent, tempo=1.0) is None
    assert paired_shift_semitones(almost_silent, voiced, tempo=1.0) is None
