"""Samples to Praat: the one check and the one conversion every prosody stage starts with.

The prosody engine works on mono float32 samples in [-1, 1] with their sample rate, and
hands picklable values (frozen dataclasses, numpy arrays) in and out, so that it can run
in worker processes: Praat holds the GIL, so threads would serialise.
"""

from __future__ import annotations

import numpy as np
import parselmouth

from services.common.pcm import Samples


def check_samples(samples: Samples) -> None:
    """Raise ValueError for an empty array: nothing in it to measure or change."""
    if samples.size == 0:
        raise ValueError("no samples")


def praat_sound(samples: Samples, sample_rate: int) -> parselmouth.Sound:
    """``samples`` as a Praat Sound (Praat computes in float64)."""
    return parselmouth.Sound(samples.astype(np.float64), sampling_frequency=sample_rate)
