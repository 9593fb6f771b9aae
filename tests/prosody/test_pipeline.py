"""The Adjust pipeline's worker job, called in-process: adjust, check, decide the fallback;
and the pickling its results need to come back from a worker."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from services.prosody.adjustment import AdjustParams, adjust
from services.prosody.confidence import assess
from services.prosody.pipeline import AdjustSpec, adjust_job, analyze_job
from services.prosody.presets import PRESETS
from tests.prosody.speech import RECORDINGS, speech, white_noise

CELEBRATION = PRESETS["celebration"]
SHIFT_NOISE = AdjustParams(pitch_shift_semitones=3.0)


def test_a_trusted_result_is_the_adjusted_audio_with_its_confidence() -> None:
    samples, rate = speech("espeak")
    outcome = adjust_job(samples, rate, AdjustSpec(CELEBRATION, True, 0.7))
    assert outcome.samples is not None
    np.testing.assert_array_equal(outcome.samples, adjust(samples, rate, CELEBRATION).samples)
    assert outcome.confidence is not None
    assert outcome.confidence == assess(samples, outcome.samples, rate, CELEBRATION)
    assert outcome.confidence.score >= 0.7
    assert not outcome.fallback_reason
    assert not outcome.timed_out
    assert outcome.limiter_gain_db <= 0.0
    assert outcome.worker_pid == os.getpid()
    assert [stage.name for stage in outcome.stages] == [
        "prosody.pitch",
        "prosody.duration",
        "prosody.energy",
        "prosody.pitch_track",
        "prosody.confidence",
    ]


def test_low_confidence_falls_back_with_the_weakest_part_named() -> None:
    noise, rate = white_noise()
    outcome = adjust_job(noise, rate, AdjustSpec(SHIFT_NOISE, True, 0.7))
    assert outcome.samples is None
    assert outcome.confidence is not None
    assert outcome.confidence.score < 0.5
    assert outcome.fallback_reason.startswith(
        f"confidence {outcome.confidence.score:.2f} is below 0.70; weakest: pitch ("
    )
    assert not outcome.timed_out


def test_low_confidence_is_kept_on_request() -> None:
    noise, rate = white_noise()
    spec = AdjustSpec(SHIFT_NOISE, True, 0.7, keep_low_confidence=True)
    outcome = adjust_job(noise, rate, spec)
    assert outcome.samples is not None
    assert outcome.confidence is not None
    assert outcome.confidence.score < 0.5
    assert not outcome.fallback_reason


def test_a_skipped_check_measures_nothing_and_never_falls_back() -> None:
    noise, rate = white_noise()
    outcome = adjust_job(noise, rate, AdjustSpec(SHIFT_NOISE, False, 1.0))
    assert outcome.samples is not None
    assert outcome.confidence is None
    assert not outcome.fallback_reason
    assert "prosody.confidence" not in {stage.name for stage in outcome.stages}
    assert "prosody.pitch_track" not in {stage.name for stage in outcome.stages}


def test_the_threshold_decides() -> None:
    samples, rate = speech("espeak")
    trusted = adjust_job(samples, rate, AdjustSpec(CELEBRATION, True, 0.0))
    assert trusted.confidence is not None
    score = trusted.confidence.score
    # Falls back only strictly below the threshold: a score equal to it is trusted.
    assert adjust_job(samples, rate, AdjustSpec(CELEBRATION, True, score)).samples is not None
    if score < 1.0:
        above = AdjustSpec(CELEBRATION, True, min(1.0, score + 0.01))
        assert adjust_job(samples, rate, above).samples is None


@pytest.mark.parametrize("milliseconds", [30, 80])
def test_very_short_speech_comes_through_the_whole_job(milliseconds: int) -> None:
    """Padded for the Manipulation, so the original's pitch track is measured in the job."""
    speech_samples, rate = speech("espeak")
    start = rate // 5  # inside the first vowel
    samples = speech_samples[start : start + rate * milliseconds // 1000]
    outcome = adjust_job(samples, rate, AdjustSpec(PRESETS["calm"], True, 0.0))
    assert outcome.samples is not None
    assert outcome.confidence is not None
    assert 0.0 <= outcome.confidence.score <= 1.0


def test_empty_audio_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="no samples"):
        adjust_job(np.zeros(0, np.float32), 16000, AdjustSpec(CELEBRATION, True, 0.7))
    with pytest.raises(ValueError, match="no samples"):
        analyze_job(np.zeros(0, np.float32), 16000)


def test_analyze_job_times_the_analysis() -> None:
    samples, rate = speech("espeak")
    outcome = analyze_job(samples, rate)
    assert outcome.analysis.f0_median_hz > 0
    assert [stage.name for stage in outcome.stages] == ["prosody.analyze"]
    assert outcome.worker_pid == os.getpid()


def test_what_crosses_to_and_from_a_worker_survives_pickling() -> None:
    samples, rate = speech(next(iter(RECORDINGS)))
    params = AdjustParams(pitch_shift_semitones=2.0, tempo=1.1, energy_db=3.0)
    spec = AdjustSpec(params, True, 0.7, keep_low_confidence=True)
    assert pickle.loads(pickle.dumps(spec)) == spec
    analyzed = analyze_job(samples, rate)
    assert pickle.loads(pickle.dumps(analyzed)) == analyzed
    outcome = adjust_job(samples, rate, spec)
    unpickled = pickle.loads(pickle.dumps(outcome))
    assert outcome.samples is not None
    np.testing.assert_array_equal(unpickled.samples, outcome.samples)
    assert unpickled.confidence == outcome.confidence
    assert (unpickled.limiter_gain_db, unpickled.stages, unpickled.worker_pid) == (
        outcome.limiter_gain_db,
        outcome.stages,
        outcome.worker_pid,
    )
