"""The prosody engine: analyse and adjust speech with Praat (parselmouth), all in memory.

Pure functions of mono float32 samples and a sample rate, with picklable arguments and
results, so that they run in worker processes (Praat holds the GIL). Pitch and duration
change together through one Manipulation and overlap-add resynthesis; energy is a gain
followed by a peak limiter; ``assess`` measures the result against the request.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import parselmouth
import soxr
from parselmouth.praat import call

Samples = npt.NDArray[np.float32]

PITCH_FLOOR_HZ = 75.0
PITCH_CEILING_HZ = 600.0
TIME_STEP_S = 0.01
ANALYSIS_RATE = 8000
LIMITER_PEAK = 0.98  # about -0.2 dBFS: headroom for the 16-bit rounding of the output
CONTOUR_POINTS = 10
# Below this share of voiced frames there is no speech melody to measure or move.
MIN_VOICED_FRACTION = 0.05


@dataclass(frozen=True)
class ProsodyAnalysis:
    """What Analyze measures."""

    duration_s: float
    f0_median_hz: float
    f0_min_hz: float
    f0_max_hz: float
    f0_range_semitones: float
    f0_contour_semitones: tuple[float, ...]
    voiced_fraction: float
    intensity_mean_db: float
    speaking_rate_syllables_per_s: float
    peak: float


@dataclass(frozen=True)
class AdjustParams:
    """What Adjust changes; the defaults change nothing."""

    pitch_shift_semitones: float = 0.0
    pitch_range_scale: float = 1.0
    tempo: float = 1.0
    energy_db: float = 0.0


@dataclass(frozen=True)
class Stage:
    """One timed stage of the work, in ``time.time_ns`` units, to become a span."""

    name: str
    start_ns: int
    end_ns: int


@dataclass(frozen=True)
class AdjustResult:
    """Adjusted samples at the input's rate, what the limiter took off, and stage times."""

    samples: Samples
    limiter_gain_db: float
    stages: tuple[Stage, ...] = ()


@dataclass(frozen=True)
class ConfidencePart:
    """One measured fact of the result against the request, scored in [0, 1]."""

    name: str
    score: float
    expected: float
    measured: float
    detail: str


@dataclass(frozen=True)
class ConfidenceReport:
    """How far the result can be trusted: the score of its weakest part, and every part."""

    score: float
    parts: tuple[ConfidencePart, ...]


def analyze(samples: Samples, sample_rate: int) -> ProsodyAnalysis:
    """Measure pitch, voicing, intensity and speaking rate of ``samples``."""
    _check(samples)
    sound = _sound(samples, sample_rate)
    f0 = pitch_track(samples, sample_rate)
    voiced = f0[f0 > 0]
    duration = samples.size / sample_rate
    if voiced.size:
        median = float(np.median(voiced))
        low, high = (float(x) for x in np.percentile(voiced, [5, 95]))
        semitones = 12 * np.log2(voiced / median)
        contour = tuple(
            float(np.median(part)) if part.size else 0.0
            for part in np.array_split(semitones, CONTOUR_POINTS)
        )
        range_st = 12 * float(np.log2(high / low))
    else:
        median = low = high = range_st = 0.0
        contour = (0.0,) * CONTOUR_POINTS
    intensity = _intensity_db(sound)
    return ProsodyAnalysis(
        duration_s=duration,
        f0_median_hz=median,
        f0_min_hz=low,
        f0_max_hz=high,
        f0_range_semitones=range_st,
        f0_contour_semitones=contour,
        voiced_fraction=_voiced_fraction(f0),
        intensity_mean_db=float(np.mean(intensity)) if intensity.size else 0.0,
        speaking_rate_syllables_per_s=_syllable_count(intensity, f0) / duration,
        peak=float(np.abs(samples).max()),
    )


def adjust(samples: Samples, sample_rate: int, params: AdjustParams) -> AdjustResult:
    """Shift pitch, scale its range, change tempo and energy; never clips.

    Stages timed: ``prosody.pitch`` (pitch analysis and the new pitch contour),
    ``prosody.duration`` (the duration tier and the overlap-add resynthesis that applies
    both), ``prosody.energy`` (gain and limiter).
    """
    _check(samples)
    stages: list[Stage] = []
    changed = samples
    if (
        params.pitch_shift_semitones != 0.0
        or params.pitch_range_scale != 1.0
        or params.tempo != 1.0
    ):
        changed = _manipulate(samples, sample_rate, params, stages)
    started = time.time_ns()
    gained, limiter_gain_db = _apply_energy(changed, params.energy_db)
    stages.append(Stage("prosody.energy", started, time.time_ns()))
    return AdjustResult(gained, limiter_gain_db, tuple(stages))


def assess(
    original: Samples,
    adjusted: Samples,
    sample_rate: int,
    params: AdjustParams,
    f0_before: npt.NDArray[np.float64] | None = None,
    f0_after: npt.NDArray[np.float64] | None = None,
) -> ConfidenceReport:
    """Score the adjusted audio against the request and the original, part by part.

    Pitch tracks (``pitch_track``) of either side may be given when already measured,
    for instance in parallel in another process; what is missing is measured here.
    """
    _check(original)
    _check(adjusted)
    if f0_before is None:
        f0_before = pitch_track(original, sample_rate)
    if f0_after is None:
        f0_after = pitch_track(adjusted, sample_rate)
    parts = (
        _pitch_part(f0_before, f0_after, params),
        _duration_part(original.size, adjusted.size, params.tempo),
        _voicing_part(_voiced_fraction(f0_before), _voiced_fraction(f0_after)),
        _clipping_part(adjusted),
        _silence_noise_part(original, adjusted, sample_rate),
    )
    return ConfidenceReport(score=min(part.score for part in parts), parts=parts)


def _check(samples: Samples) -> None:
    if samples.size == 0:
        raise ValueError("no samples")


def _sound(samples: Samples, sample_rate: int) -> parselmouth.Sound:
    return parselmouth.Sound(samples.astype(np.float64), sampling_frequency=sample_rate)


def _f0(sound: parselmouth.Sound) -> npt.NDArray[np.float64]:
    """F0 per 10 ms frame, 0 where unvoiced; empty for audio too short to analyse."""
    # Praat needs three periods of the pitch floor to make one frame.
    if sound.duration < 3 / PITCH_FLOOR_HZ:
        return np.zeros(0)
    pitch = sound.to_pitch_ac(
        time_step=TIME_STEP_S, pitch_floor=PITCH_FLOOR_HZ, pitch_ceiling=PITCH_CEILING_HZ
    )
    frequencies: npt.NDArray[np.float64] = pitch.selected_array["frequency"]
    return frequencies


def _voiced_fraction(f0: npt.NDArray[np.float64]) -> float:
    return float(np.mean(f0 > 0)) if f0.size else 0.0


def _intensity_db(sound: parselmouth.Sound) -> npt.NDArray[np.float64]:
    # Intensity needs 3.2 periods of its minimum pitch as its window.
    if sound.duration < 6.4 / 100.0:
        return np.zeros(0)
    values: npt.NDArray[np.float64] = sound.to_intensity(
        minimum_pitch=100.0, time_step=TIME_STEP_S
    ).values[0]
    return values


def _syllable_count(intensity: npt.NDArray[np.float64], f0: npt.NDArray[np.float64]) -> int:
    """Syllable nuclei, after de Jong & Wempe (2009): voiced intensity peaks above the
    median intensity, each at least 2 dB above the dip that separates it from the last."""
    if intensity.size < 3:
        return 0
    threshold = float(np.median(intensity))
    voiced = np.zeros(intensity.size, dtype=bool)
    frames = min(intensity.size, f0.size)
    voiced[:frames] = f0[:frames] > 0
    count = 0
    last_peak: float | None = None
    dip = float("inf")
    for i in range(1, intensity.size - 1):
        value = intensity[i]
        dip = min(dip, value)
        is_peak = intensity[i - 1] < value >= intensity[i + 1]
        if not is_peak or value < threshold or not voiced[i]:
            continue
        if last_peak is None or (value - dip >= 2.0 and last_peak - dip >= 2.0):
            count += 1
            last_peak, dip = value, value
        elif value > last_peak:
            last_peak, dip = value, value
    return count


def _manipulate(
    samples: Samples, sample_rate: int, params: AdjustParams, stages: list[Stage]
) -> Samples:
    started = time.time_ns()
    sound = _sound(samples, sample_rate)
    manipulation = call(sound, "To Manipulation", TIME_STEP_S, PITCH_FLOOR_HZ, PITCH_CEILING_HZ)
    if params.pitch_shift_semitones != 0.0 or params.pitch_range_scale != 1.0:
        pitch_tier = call(manipulation, "Extract pitch tier")
        if call(pitch_tier, "Get number of points") > 0:
            median = call(pitch_tier, "Get mean (points)", 0, 0)
            shift = 2 ** (params.pitch_shift_semitones / 12)
            # Scales each point's distance from the centre in semitones, then shifts all.
            call(
                pitch_tier,
                "Formula",
                f"{median} * (self / {median}) ^ {params.pitch_range_scale} * {shift}",
            )
            call([pitch_tier, manipulation], "Replace pitch tier")
    pitch_done = time.time_ns()
    stages.append(Stage("prosody.pitch", started, pitch_done))
    if params.tempo != 1.0:
        duration_tier = call("Create DurationTier", "tempo", sound.xmin, sound.xmax)
        call(duration_tier, "Add point", sound.xmin, 1.0 / params.tempo)
        call([manipulation, duration_tier], "Replace duration tier")
    resynthesis = call(manipulation, "Get resynthesis (overlap-add)")
    result: Samples = resynthesis.values[0].astype(np.float32)
    stages.append(Stage("prosody.duration", pitch_done, time.time_ns()))
    return result


def _apply_energy(samples: Samples, energy_db: float) -> tuple[Samples, float]:
    """Samples with the gain applied, and the limiter's extra gain in dB (<= 0)."""
    gained = samples * np.float32(10 ** (energy_db / 20))
    peak = float(np.abs(gained).max())
    if peak <= LIMITER_PEAK:
        return gained.astype(np.float32), 0.0
    reduction = LIMITER_PEAK / peak
    return (gained * reduction).astype(np.float32), 20 * float(np.log10(reduction))


def _ramp(error: float, good: float, bad: float) -> float:
    """1 for an error up to ``good``, 0 from ``bad`` on, linear between."""
    if error <= good:
        return 1.0
    if error >= bad:
        return 0.0
    return (bad - error) / (bad - good)


def _pitch_part(
    before: npt.NDArray[np.float64], after: npt.NDArray[np.float64], params: AdjustParams
) -> ConfidencePart:
    asked = params.pitch_shift_semitones
    moves_pitch = asked != 0.0 or params.pitch_range_scale != 1.0
    if _voiced_fraction(before) < MIN_VOICED_FRACTION:
        if not moves_pitch:
            return ConfidencePart("pitch", 1.0, 0.0, 0.0, "no pitch change asked")
        return ConfidencePart("pitch", 0.0, asked, 0.0, "no voiced speech in the input to shift")
    measured = paired_shift_semitones(before, after, params.tempo)
    if measured is None:
        return ConfidencePart(
            "pitch", 0.0, asked, 0.0, "no voiced speech left in the result (F0 within 75-600 Hz)"
        )
    return ConfidencePart(
        "pitch",
        _ramp(abs(measured - asked), 0.3, 2.0),
        asked,
        measured,
        f"pitch moved {measured:+.2f} st of {asked:+.2f} asked",
    )


def paired_shift_semitones(
    before: npt.NDArray[np.float64], after: npt.NDArray[np.float64], tempo: float
) -> float | None:
    """Median pitch change, in semitones, between frames at the same point of the speech.

    Pairing frames (the result's frame i with the original's frame i * tempo) measures
    the shift itself; comparing two medians would also measure which frames happen to be
    voiced at the edges, which on a falling contour moves the median by a semitone.
    None when fewer than three frames are voiced in both.
    """
    source = np.round(np.arange(after.size) * tempo).astype(int)
    inside = source < before.size
    paired_before, paired_after = before[source[inside]], after[inside]
    both = (paired_before > 0) & (paired_after > 0)
    if np.count_nonzero(both) < 3:
        return None
    return float(np.median(12 * np.log2(paired_after[both] / paired_before[both])))


def pitch_track(samples: Samples, sample_rate: int) -> npt.NDArray[np.float64]:
    """F0 per 10 ms frame (0 where unvoiced), as every measurement here uses it.

    Measured at 8 kHz: F0 stays far below its 4 kHz Nyquist limit, the track comes out
    the same, and Praat does a third less work than at 22 kHz.
    """
    if sample_rate > ANALYSIS_RATE:
        samples = soxr.resample(samples, sample_rate, ANALYSIS_RATE).astype(np.float32)
        sample_rate = ANALYSIS_RATE
    return _f0(_sound(samples, sample_rate))


def _duration_part(before: int, after: int, tempo: float) -> ConfidencePart:
    expected = 1.0 / tempo
    measured = after / before
    return ConfidencePart(
        "duration",
        _ramp(abs(measured / expected - 1.0), 0.02, 0.2),
        expected,
        measured,
        f"duration x{measured:.3f} of x{expected:.3f} asked",
    )


def _voicing_part(before: float, after: float) -> ConfidencePart:
    if before < MIN_VOICED_FRACTION:
        return ConfidencePart("voicing", 1.0, before, after, "no voicing to keep")
    kept = after / before
    return ConfidencePart(
        "voicing",
        _ramp(max(0.0, 1.0 - kept), 0.1, 0.5),
        before,
        after,
        f"voiced frames {100 * after:.0f}% of {100 * before:.0f}% before",
    )


def _clipping_part(adjusted: Samples) -> ConfidencePart:
    clipped = float(np.mean(np.abs(adjusted) >= 0.999))
    return ConfidencePart(
        "clipping",
        _ramp(clipped, 0.0, 0.001),
        0.0,
        clipped,
        f"{100 * clipped:.3f}% of samples at full scale",
    )


def _silence_noise_part(original: Samples, adjusted: Samples, sample_rate: int) -> ConfidencePart:
    silence_before, flatness_before = _silence_and_flatness(original, sample_rate)
    silence_after, flatness_after = _silence_and_flatness(adjusted, sample_rate)
    new_silence = silence_after - silence_before
    new_noise = flatness_after - flatness_before
    score = min(_ramp(new_silence, 0.05, 0.3), _ramp(new_noise, 0.05, 0.25))
    return ConfidencePart(
        "silence_noise",
        score,
        0.0,
        max(new_silence, new_noise),
        f"silent frames {100 * silence_before:.0f}% -> {100 * silence_after:.0f}%, "
        f"spectral flatness {flatness_before:.2f} -> {flatness_after:.2f}",
    )


def _silence_and_flatness(samples: Samples, sample_rate: int) -> tuple[float, float]:
    """Share of 20 ms frames 60 dB below the loudest, and the mean spectral flatness of
    the others (0 for a pure tone, 1 for white noise).

    60 dB is below the noise floor of real recordings (about 40 dB under their loudest
    frame), so it counts dropouts and digital silence, not quiet room noise whose frames
    sit on either side of a shallower threshold from one rendering to the next."""
    frame = max(1, int(0.02 * sample_rate))
    count = samples.size // frame
    if count == 0:
        return 0.0, 0.0
    frames = samples[: count * frame].reshape(count, frame).astype(np.float64)
    rms = np.sqrt(np.mean(frames**2, axis=1)) + 1e-12
    loud = rms >= rms.max() * 10 ** (-60 / 20)
    power = np.abs(np.fft.rfft(frames[loud] * np.hanning(frame), axis=1)) ** 2 + 1e-20
    flatness = np.exp(np.mean(np.log(power), axis=1)) / np.mean(power, axis=1)
    return float(1.0 - np.mean(loud)), float(np.mean(flatness))
