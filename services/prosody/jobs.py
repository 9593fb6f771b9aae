"""The work one prosody request does inside a worker process.

Functions here are top-level and their arguments and results picklable, so that a
ProcessPool can run them. Each result carries wall-clock stage timings, from which the
service process makes spans: one trace shows the Praat stages even though they ran in
another process.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from services.common.pcm import Samples
from services.prosody import praat

PitchTrack = npt.NDArray[np.float64]


@dataclass(frozen=True)
class AdjustOutcome:
    """What Adjust made in the worker, with both pitch tracks when the check needs them."""

    samples: Samples
    limiter_gain_db: float
    original_pitch_track: PitchTrack | None
    pitch_track: PitchTrack | None
    stages: tuple[praat.Stage, ...]
    worker_pid: int


@dataclass(frozen=True)
class AnalyzeOutcome:
    """What Analyze measured in the worker."""

    analysis: praat.ProsodyAnalysis
    stages: tuple[praat.Stage, ...]
    worker_pid: int


def adjust_job(
    samples: Samples, sample_rate: int, params: praat.AdjustParams, track_pitch: bool
) -> AdjustOutcome:
    """Adjust; with ``track_pitch``, also return the pitch tracks the confidence check uses
    (the original's comes free with the Manipulation; the result's is measured here)."""
    result = praat.adjust(samples, sample_rate, params)
    stages = list(result.stages)
    original = after = None
    if track_pitch:
        started = time.time_ns()
        original = result.original_pitch_track
        if original is None:
            original = praat.pitch_track(samples, sample_rate)
        after = praat.pitch_track(result.samples, sample_rate)
        stages.append(praat.Stage("prosody.pitch_track", started, time.time_ns()))
    return AdjustOutcome(
        result.samples, result.limiter_gain_db, original, after, tuple(stages), os.getpid()
    )


def analyze_job(samples: Samples, sample_rate: int) -> AnalyzeOutcome:
    """Measure pitch, voicing, intensity and speaking rate."""
    started = time.time_ns()
    analysis = praat.analyze(samples, sample_rate)
    stage = praat.Stage("prosody.analyze", started, time.time_ns())
    return AnalyzeOutcome(analysis, (stage,), os.getpid())


def warm_up() -> None:
    """Run every Praat path once on a synthetic vowel, so no request pays for first use."""
    rate = 22050
    t = np.arange(rate // 2, dtype=np.float32) / rate
    # A 150 Hz tone with harmonics and a slow vibrato: voiced enough for Praat's pitch.
    phase = 2 * np.pi * (150 * t + 2 * np.sin(2 * np.pi * 3 * t))
    vowel = (0.3 * np.sin(phase) + 0.1 * np.sin(2 * phase) + 0.05 * np.sin(3 * phase)).astype(
        np.float32
    )
    praat.analyze(vowel, rate)
    adjust_job(vowel, rate, praat.AdjustParams(pitch_shift_semitones=1.0, tempo=1.1), True)
