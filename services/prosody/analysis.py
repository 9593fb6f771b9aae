"""Prosody analysis: pitch, voicing, intensity and speaking rate of speech, with Praat."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import parselmouth

from services.common.pcm import Samples
from services.prosody.pitch import TIME_STEP_S, PitchTrack, pitch_track
from services.prosody.sound import check_samples, praat_sound

_Series = npt.NDArray[np.float64]

CONTOUR_POINTS = 10

# Syllable nuclei, after de Jong & Wempe (2009): an intensity contour smoothed by a 50 Hz
# minimum pitch (64 ms effective window), peaks that stand above (the 99th percentile
# minus 25 dB) and at least 2 dB above the dip before the next peak, at voiced frames.
_SYLLABLE_MIN_PITCH_HZ = 50.0
_SYLLABLE_SILENCE_DB = 25.0
_SYLLABLE_MIN_DIP_DB = 2.0
# Intensity needs 6.4 periods of its minimum pitch (a Gaussian window of half that width).
_MIN_INTENSITY_S = 6.4 / _SYLLABLE_MIN_PITCH_HZ
_REFERENCE_POWER = 4e-10  # (2e-5 Pa) ** 2, the reference of Praat's intensity
_SILENCE_POWER = _REFERENCE_POWER * 1e-30  # -300 dB


@dataclass(frozen=True)
class ProsodyAnalysis:
    """What ``analyze`` measures; F0 figures are 0.0 when nothing is voiced."""

    duration_s: float
    f0_median_hz: float
    f0_min_hz: float  # 5th percentile of the voiced frames' F0
    f0_max_hz: float  # 95th percentile
    f0_range_semitones: float  # 12 * log2(max / min) of those percentiles
    # F0 median of each tenth of the span from the first to the last voiced frame, in
    # semitones relative to f0_median_hz; 0.0 for a tenth with no voiced frame.
    f0_contour_semitones: tuple[float, ...]
    voiced_fraction: float
    intensity_mean_db: float  # mean power in dB re 2e-5 Pa (samples as Pa), as Praat's
    speaking_rate_syllables_per_s: float
    peak: float


def analyze(samples: Samples, sample_rate: int) -> ProsodyAnalysis:
    """Measure pitch, voicing, intensity and speaking rate of ``samples``.

    Audio too short for Praat's windows (under 40 ms for pitch, 128 ms for intensity) or
    without voicing gives zeros for what cannot be measured, never an error.
    Raises ValueError for an empty array.
    """
    check_samples(samples)
    duration = samples.size / sample_rate
    track = pitch_track(samples, sample_rate)
    voiced = track.voiced_hz
    if voiced.size:
        median = float(np.median(voiced))
        low, high = (float(x) for x in np.percentile(voiced, [5, 95]))
        range_st = 12 * float(np.log2(high / low))
        contour = _contour(track, median)
    else:
        median = low = high = range_st = 0.0
        contour = (0.0,) * CONTOUR_POINTS
    syllables = 0
    if voiced.size:
        intensity_db, intensity_times = _intensity(praat_sound(samples, sample_rate))
        syllables = _syllable_count(intensity_db, intensity_times, track)
    return ProsodyAnalysis(
        duration_s=duration,
        f0_median_hz=median,
        f0_min_hz=low,
        f0_max_hz=high,
        f0_range_semitones=range_st,
        f0_contour_semitones=contour,
        voiced_fraction=track.voiced_fraction,
        intensity_mean_db=_intensity_db(samples),
        speaking_rate_syllables_per_s=syllables / duration,
        peak=float(np.abs(samples).max()),
    )


def _contour(track: PitchTrack, median_hz: float) -> tuple[float, ...]:
    """F0 median per tenth of the voiced timeline, in semitones re the overall median."""
    voiced_at = np.flatnonzero(track.voiced)
    first, span = voiced_at[0], voiced_at[-1] + 1 - voiced_at[0]
    # Frames are evenly spaced, so a frame's index places it in time.
    tenth = (voiced_at - first) * CONTOUR_POINTS // span
    semitones = 12 * np.log2(track.f0_hz[voiced_at] / median_hz)
    return tuple(
        float(np.median(semitones[tenth == i])) if np.any(tenth == i) else 0.0
        for i in range(CONTOUR_POINTS)
    )


def _intensity(sound: parselmouth.Sound) -> tuple[_Series, _Series]:
    """Praat's intensity contour (dB) and its frame times; empty when too short."""
    if sound.duration < _MIN_INTENSITY_S:
        return np.zeros(0), np.zeros(0)
    intensity = sound.to_intensity(minimum_pitch=_SYLLABLE_MIN_PITCH_HZ, time_step=TIME_STEP_S)
    values: _Series = intensity.values[0]
    times: _Series = intensity.xs()
    return values, times


def _intensity_db(samples: Samples) -> float:
    """Mean power of the whole clip in dB on Praat's intensity scale (re 2e-5 Pa).

    Measured on the samples rather than averaged over Praat's intensity frames, which
    leave out the first and last 64 ms and need 128 ms of audio to exist; digital silence
    gets Praat's floor of -300 dB.
    """
    centred = samples.astype(np.float64) - float(np.mean(samples))
    power = max(float(np.mean(centred**2)), _SILENCE_POWER)
    return 10 * float(np.log10(power / _REFERENCE_POWER))


def _syllable_count(intensity_db: _Series, intensity_times: _Series, track: PitchTrack) -> int:
    """Syllable nuclei after de Jong & Wempe (2009): voiced intensity peaks above the 99th
    percentile minus 25 dB, each at least 2 dB above the dip that separates it from the
    next peak (the last one from the end)."""
    f0 = track.f0_hz
    if intensity_db.size < 3 or f0.size == 0:
        return 0
    threshold = max(
        float(np.quantile(intensity_db, 0.99)) - _SYLLABLE_SILENCE_DB, float(intensity_db.min())
    )
    inner = intensity_db[1:-1]
    is_peak = (inner > intensity_db[:-2]) & (inner >= intensity_db[2:]) & (inner > threshold)
    peaks = np.flatnonzero(is_peak) + 1
    if peaks.size == 0:
        return 0
    dips = np.minimum.reduceat(intensity_db, peaks)
    distinct = intensity_db[peaks] - dips >= _SYLLABLE_MIN_DIP_DB
    # The pitch frame nearest each peak says whether the peak is voiced.
    frame = np.rint((intensity_times[peaks] - track.first_frame_s) / TIME_STEP_S).astype(int)
    frame = np.clip(frame, 0, f0.size - 1)
    return int(np.count_nonzero(distinct & (f0[frame] > 0)))
