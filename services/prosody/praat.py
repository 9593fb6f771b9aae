"""The prosody engine: analyse and adjust speech with Praat (parselmouth), all in memory.

Pure functions of mono float32 samples in [-1, 1] and a sample rate, with picklable
arguments and results (frozen dataclasses, numpy arrays), so that they run in worker
processes: Praat holds the GIL, so threads would serialise.

Pitch and duration change together through one Praat Manipulation and its overlap-add
(PSOLA) resynthesis; energy is a gain followed by a peak limiter; ``assess`` measures the
result against the request and the original.

Every pitch measurement (``pitch_track``) runs on an 8 kHz copy of the audio: F0 stays far
below the 4 kHz Nyquist limit, the track comes out the same as at the full rate, and Praat
does a fraction of the work (about 9 ms instead of 46 ms for 5 s at 44.1 kHz). The
Manipulation is built from that same 8 kHz analysis (pitch and glottal pulses, "Sound &
Pitch: To Manipulation") and then given the original full-rate sound to resynthesise:
pulse times do not depend on the rate, and the result measures the same (shift within
0.05 st, harmonicity within 0.5 dB) as from Praat's own "To Manipulation" at the full
rate, which alone takes 60 ms for 5 s at 44.1 kHz where this whole adjust takes 19 ms.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import parselmouth
import soxr
from parselmouth.praat import call

from services.common.pcm import Samples

PitchTrack = npt.NDArray[np.float64]
_Contour = npt.NDArray[np.float64]

PITCH_FLOOR_HZ = 75.0
PITCH_CEILING_HZ = 600.0
TIME_STEP_S = 0.01
ANALYSIS_RATE = 8000
LIMITER_PEAK = 0.98  # about -0.2 dBFS: headroom for the 16-bit rounding of the output
CLIPPED_LEVEL = 0.999
# The largest float32 not above LIMITER_PEAK.
_LIMITER_PEAK_F32 = np.nextafter(np.float32(LIMITER_PEAK), np.float32(0))
CONTOUR_POINTS = 10
# Below this share of voiced frames there is no speech melody to measure or move.
MIN_VOICED_FRACTION = 0.05

# Praat's autocorrelation pitch needs a window of three periods of the pitch floor.
_MIN_PITCH_S = 3 / PITCH_FLOOR_HZ
# Shorter input is padded with silence for the Manipulation, then the padding is cut off.
_MIN_MANIPULATION_S = 0.1
# Syllable nuclei, after de Jong & Wempe (2009): an intensity contour smoothed by a 50 Hz
# minimum pitch (64 ms effective window), peaks that stand above (the 99th percentile
# minus 25 dB) and at least 2 dB above the dip before the next peak, at voiced frames.
_SYLLABLE_MIN_PITCH_HZ = 50.0
_SYLLABLE_SILENCE_DB = 25.0
_SYLLABLE_MIN_DIP_DB = 2.0
# Intensity needs 6.4 periods of its minimum pitch (a Gaussian window of half that width).
_MIN_INTENSITY_S = 6.4 / _SYLLABLE_MIN_PITCH_HZ
# Frames this far below the loudest frame count as silence: below the noise floor of real
# recordings (about 40 dB under their loudest frame), so they are dropouts and digital
# silence, not quiet room noise that sits on either side of a shallower threshold.
_SILENCE_DB = 60.0
_FRAME_S = 0.02
_REFERENCE_POWER = 4e-10  # (2e-5 Pa) ** 2, the reference of Praat's intensity
_SILENCE_POWER = _REFERENCE_POWER * 1e-30  # -300 dB
_SEED = 1
# Offsets, in frames of the original, at which the result's frames are paired with it.
_ALIGNMENT_OFFSETS = np.linspace(-1.0, 1.0, 9)


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


@dataclass(frozen=True)
class AdjustParams:
    """What ``adjust`` changes; the defaults change nothing."""

    pitch_shift_semitones: float = 0.0
    pitch_range_scale: float = 1.0  # scales each frame's distance from the median, in st
    tempo: float = 1.0  # 1.25 plays 25% faster: the duration becomes duration / 1.25
    energy_db: float = 0.0


@dataclass(frozen=True)
class Stage:
    """One timed stage of the work, in ``time.time_ns`` units, to become a span."""

    name: str
    start_ns: int
    end_ns: int


@dataclass(frozen=True)
class AdjustResult:
    """Adjusted samples at the input's rate, what the limiter took off, and stage times.

    ``original_pitch_track`` is the input's ``pitch_track``, which the Manipulation
    measured anyway (None when no pitch or tempo change was asked, or for input under
    0.1 s): pass it to ``assess`` as ``f0_before`` rather than measure it again.
    """

    samples: Samples
    limiter_gain_db: float  # <= 0; 0.0 when the gain left headroom
    stages: tuple[Stage, ...] = ()
    original_pitch_track: PitchTrack | None = None


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
    """Measure pitch, voicing, intensity and speaking rate of ``samples``.

    Audio too short for Praat's windows (under 40 ms for pitch, 128 ms for intensity) or
    without voicing gives zeros for what cannot be measured, never an error.
    Raises ValueError for an empty array.
    """
    _check(samples)
    duration = samples.size / sample_rate
    pitch = _pitch(samples, sample_rate)
    f0 = _frequencies(pitch)
    voiced = f0[f0 > 0]
    if voiced.size:
        median = float(np.median(voiced))
        low, high = (float(x) for x in np.percentile(voiced, [5, 95]))
        range_st = 12 * float(np.log2(high / low))
        contour = _contour(f0, median)
    else:
        median = low = high = range_st = 0.0
        contour = (0.0,) * CONTOUR_POINTS
    syllables = 0
    if pitch is not None and voiced.size:
        intensity_db, intensity_times = _intensity(_sound(samples, sample_rate))
        syllables = _syllable_count(intensity_db, intensity_times, f0, pitch.xs())
    return ProsodyAnalysis(
        duration_s=duration,
        f0_median_hz=median,
        f0_min_hz=low,
        f0_max_hz=high,
        f0_range_semitones=range_st,
        f0_contour_semitones=contour,
        voiced_fraction=_voiced_fraction(f0),
        intensity_mean_db=_intensity_db(samples),
        speaking_rate_syllables_per_s=syllables / duration,
        peak=float(np.abs(samples).max()),
    )


def adjust(samples: Samples, sample_rate: int, params: AdjustParams) -> AdjustResult:
    """Shift pitch, scale its range, change tempo and energy; never clips.

    Pitch and tempo go through one Praat Manipulation and overlap-add resynthesis (skipped
    when neither is asked for, so the samples stay bit-exact). Audio with no voiced frame
    has no pitch points to move: its pitch is left as it is (``assess`` then scores the
    pitch part 0), while tempo still applies, because Praat's overlap-add copies unvoiced
    stretches with pseudo-periods of noise (their level drops about 1 dB). Energy is a gain
    followed by a peak limiter that keeps the peak at or under 0.98.

    Stages timed: ``prosody.pitch`` (pitch analysis and the new pitch contour),
    ``prosody.duration`` (the duration tier and the overlap-add resynthesis that applies
    both), ``prosody.energy`` (gain and limiter). Raises ValueError for an empty array.
    """
    _check(samples)
    stages: list[Stage] = []
    changed, track = samples, None
    if (
        params.pitch_shift_semitones != 0.0
        or params.pitch_range_scale != 1.0
        or params.tempo != 1.0
    ):
        changed, track = _manipulate(samples, sample_rate, params, stages)
    started = time.time_ns()
    gained, limiter_gain_db = _apply_energy(changed, params.energy_db)
    stages.append(Stage("prosody.energy", started, time.time_ns()))
    return AdjustResult(gained, limiter_gain_db, tuple(stages), track)


def assess(
    original: Samples,
    adjusted: Samples,
    sample_rate: int,
    params: AdjustParams,
    f0_before: PitchTrack | None = None,
    f0_after: PitchTrack | None = None,
) -> ConfidenceReport:
    """Score the adjusted audio against the request and the original, part by part.

    Parts: ``pitch`` (shift achieved vs asked), ``duration`` (length ratio vs 1 / tempo),
    ``voicing`` (voiced frames kept), ``clipping`` (samples at full scale) and
    ``silence_noise`` (new silent frames or a flatter, noisier spectrum). The report's
    score is the minimum of the parts: one clearly failed part makes the whole result
    untrustworthy, however good the others are.

    Pitch tracks (``pitch_track``) of either side may be given when already measured
    (the original's comes with ``AdjustResult.original_pitch_track``, or from another
    process in parallel); what is missing is measured here.
    Raises ValueError for an empty array.
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


def pitch_track(samples: Samples, sample_rate: int) -> PitchTrack:
    """F0 per 10 ms frame (0 where unvoiced), as every measurement here uses it.

    Empty for audio under 40 ms, too short for one frame.
    """
    return _frequencies(_pitch(samples, sample_rate))


def paired_shift_semitones(
    before: PitchTrack, after: PitchTrack, tempo: float, range_scale: float = 1.0
) -> float | None:
    """Median pitch shift, in semitones, between frames at the same point of the speech.

    Pairing frames (each frame of the result with the original's F0 at the same point of
    the speech, the time axis scaled by ``tempo``) measures the shift itself; comparing
    two medians would also measure which frames happen to be voiced at the edges, which
    on a falling contour moves the median by more than half a semitone. The asked
    ``range_scale`` is taken out first (each frame's expected move is the shift plus the
    scaled part of its distance from the original's median), so what is left is the shift.

    Praat's analysis windows and PSOLA's pulse placement put the result up to about one
    frame off the scaled time axis, which on a sloping contour biases the pairs by a few
    tenths of a semitone; so the pairing is tried at offsets within one frame, and the
    offset whose pairs agree best (least spread) is taken. None when fewer than three
    frames are voiced in both.
    """
    if np.count_nonzero(before > 0) < 3 or np.count_nonzero(after > 0) < 3:
        return None
    median = float(np.median(before[before > 0]))
    # NaN marks an unvoiced frame; any pair that touches one drops out below.
    before_st, after_st = (
        12 * np.log2(track / median, out=np.full(track.shape, np.nan), where=track > 0)
        for track in (before, after)
    )
    frames = np.arange(after.size) * tempo
    best: tuple[float, float] | None = None  # (spread, shift)
    for offset in _ALIGNMENT_OFFSETS:
        source = frames + offset
        left = np.floor(source).astype(int)
        inside = (left >= 0) & (left + 1 < before.size)
        weight = source[inside] - left[inside]
        # Between two voiced frames only: a pitch halfway into a silence is no pitch.
        paired = (1 - weight) * before_st[left[inside]] + weight * before_st[left[inside] + 1]
        shifts = after_st[inside] - range_scale * paired
        shifts = shifts[~np.isnan(shifts)]
        if shifts.size < 3:
            continue
        shift = float(np.median(shifts))
        spread = float(np.mean(np.abs(shifts - shift)))
        if best is None or spread < best[0]:
            best = (spread, shift)
    return None if best is None else best[1]


def _check(samples: Samples) -> None:
    if samples.size == 0:
        raise ValueError("no samples")


def _sound(samples: Samples, sample_rate: int) -> parselmouth.Sound:
    return parselmouth.Sound(samples.astype(np.float64), sampling_frequency=sample_rate)


def _analysis_sound(samples: Samples, sample_rate: int) -> parselmouth.Sound:
    """The sound at 8 kHz (or its own rate, when lower), for pitch and pulses."""
    if sample_rate > ANALYSIS_RATE:
        return _sound(soxr.resample(samples, sample_rate, ANALYSIS_RATE), ANALYSIS_RATE)
    return _sound(samples, sample_rate)


def _pitch_of(sound: parselmouth.Sound) -> parselmouth.Pitch:
    return sound.to_pitch_ac(
        time_step=TIME_STEP_S, pitch_floor=PITCH_FLOOR_HZ, pitch_ceiling=PITCH_CEILING_HZ
    )


def _pitch(samples: Samples, sample_rate: int) -> parselmouth.Pitch | None:
    """Praat's pitch at 8 kHz; None for audio too short for one frame."""
    if samples.size / sample_rate < _MIN_PITCH_S:
        return None
    return _pitch_of(_analysis_sound(samples, sample_rate))


def _frequencies(pitch: parselmouth.Pitch | None) -> PitchTrack:
    if pitch is None:
        return np.zeros(0)
    frequencies: PitchTrack = pitch.selected_array["frequency"]
    return frequencies


def _voiced_fraction(f0: PitchTrack) -> float:
    return float(np.mean(f0 > 0)) if f0.size else 0.0


def _contour(f0: PitchTrack, median_hz: float) -> tuple[float, ...]:
    """F0 median per tenth of the voiced timeline, in semitones re the overall median."""
    voiced_at = np.flatnonzero(f0 > 0)
    first, span = voiced_at[0], voiced_at[-1] + 1 - voiced_at[0]
    # Frames are evenly spaced, so a frame's index places it in time.
    tenth = (voiced_at - first) * CONTOUR_POINTS // span
    semitones = 12 * np.log2(f0[voiced_at] / median_hz)
    return tuple(
        float(np.median(semitones[tenth == i])) if np.any(tenth == i) else 0.0
        for i in range(CONTOUR_POINTS)
    )


def _intensity(sound: parselmouth.Sound) -> tuple[_Contour, _Contour]:
    """Praat's intensity contour (dB) and its frame times; empty when too short."""
    if sound.duration < _MIN_INTENSITY_S:
        return np.zeros(0), np.zeros(0)
    intensity = sound.to_intensity(minimum_pitch=_SYLLABLE_MIN_PITCH_HZ, time_step=TIME_STEP_S)
    values: _Contour = intensity.values[0]
    times: _Contour = intensity.xs()
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


def _syllable_count(
    intensity_db: _Contour, intensity_times: _Contour, f0: PitchTrack, f0_times: _Contour
) -> int:
    """Syllable nuclei after de Jong & Wempe (2009): voiced intensity peaks above the 99th
    percentile minus 25 dB, each at least 2 dB above the dip that separates it from the
    next peak (the last one from the end)."""
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
    frame = np.rint((intensity_times[peaks] - f0_times[0]) / TIME_STEP_S).astype(int)
    frame = np.clip(frame, 0, f0.size - 1)
    return int(np.count_nonzero(distinct & (f0[frame] > 0)))


def _manipulate(
    samples: Samples, sample_rate: int, params: AdjustParams, stages: list[Stage]
) -> tuple[Samples, PitchTrack | None]:
    """Pitch and tempo through one Manipulation and overlap-add resynthesis; also the
    input's pitch track, unless the input had to be padded (its track would be longer)."""
    started = time.time_ns()
    short_by = round(_MIN_MANIPULATION_S * sample_rate) - samples.size
    padded = np.pad(samples, (0, short_by)) if short_by > 0 else samples
    sound = _sound(padded, sample_rate)
    analysis = _analysis_sound(padded, sample_rate)
    pitch = _pitch_of(analysis)
    manipulation = call([analysis, pitch], "To Manipulation")
    call([manipulation, sound], "Replace original sound")
    f0 = _frequencies(pitch)
    voiced = f0[f0 > 0]
    if voiced.size and (params.pitch_shift_semitones != 0.0 or params.pitch_range_scale != 1.0):
        median = float(np.median(voiced))
        shift = 2 ** (params.pitch_shift_semitones / 12)
        # Scales each point's distance from the median in semitones, and shifts all of
        # them, in one pass over the tier.
        pitch_tier = call(manipulation, "Extract pitch tier")
        call(
            pitch_tier,
            "Formula",
            f"{median * shift:.17g} * (self / {median:.17g}) ^ {params.pitch_range_scale:.17g}",
        )
        call([pitch_tier, manipulation], "Replace pitch tier")
    pitch_done = time.time_ns()
    stages.append(Stage("prosody.pitch", started, pitch_done))
    if params.tempo != 1.0:
        duration_tier = call("Create DurationTier", "tempo", sound.xmin, sound.xmax)
        call(duration_tier, "Add point", sound.xmin, 1.0 / params.tempo)
        call([manipulation, duration_tier], "Replace duration tier")
        # With a duration tier, overlap-add copies unvoiced stretches in pseudo-periods of
        # random length (8 to 12 ms) from Praat's generator: a fixed seed makes the same
        # request give the same samples every time.
        parselmouth.praat.run(f"random_initializeWithSeedUnsafelyButPredictably ({_SEED})")
    resynthesis = call(manipulation, "Get resynthesis (overlap-add)")
    result: Samples = resynthesis.values[0].astype(np.float32)
    stages.append(Stage("prosody.duration", pitch_done, time.time_ns()))
    if short_by > 0:
        return result[: max(1, round(samples.size / params.tempo))], None
    return result, f0


def _apply_energy(samples: Samples, energy_db: float) -> tuple[Samples, float]:
    """Samples with the gain applied, and the limiter's extra gain in dB (<= 0).

    The limiter scales the whole clip so its peak is LIMITER_PEAK: one constant gain
    keeps the dynamics as they are, where clipping or a fast limiter would distort.
    """
    gained = (samples * np.float32(10 ** (energy_db / 20))).astype(np.float32)
    peak = float(np.abs(gained).max())
    if peak <= LIMITER_PEAK:
        return gained, 0.0
    reduction = LIMITER_PEAK / peak
    limited = gained * np.float32(reduction)
    # 0.98 has no exact float32: rounding could leave the peak a hair above it.
    np.clip(limited, -_LIMITER_PEAK_F32, _LIMITER_PEAK_F32, out=limited)
    return limited, 20 * float(np.log10(reduction))


def _ramp(error: float, good: float, bad: float) -> float:
    """1 for an error up to ``good``, 0 from ``bad`` on, linear between."""
    if error <= good:
        return 1.0
    if error >= bad:
        return 0.0
    return (bad - error) / (bad - good)


def _pitch_part(before: PitchTrack, after: PitchTrack, params: AdjustParams) -> ConfidencePart:
    asked = params.pitch_shift_semitones
    moves_pitch = asked != 0.0 or params.pitch_range_scale != 1.0
    if _voiced_fraction(before) < MIN_VOICED_FRACTION or np.count_nonzero(before > 0) < 3:
        if not moves_pitch:
            return ConfidencePart("pitch", 1.0, 0.0, 0.0, "no pitch change asked")
        return ConfidencePart("pitch", 0.0, asked, 0.0, "no voiced speech in the input to shift")
    measured = paired_shift_semitones(before, after, params.tempo, params.pitch_range_scale)
    if measured is None:
        return ConfidencePart(
            "pitch", 0.0, asked, 0.0, "too few voiced frames left in the result to measure"
        )
    return ConfidencePart(
        "pitch",
        _ramp(abs(measured - asked), 0.3, 2.0),
        asked,
        measured,
        f"pitch moved {measured:+.2f} st of {asked:+.2f} asked",
    )


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
    clipped = float(np.mean(np.abs(adjusted) >= CLIPPED_LEVEL))
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
    the others (0 for a pure tone, 1 for white noise)."""
    frame = max(1, int(_FRAME_S * sample_rate))
    count = samples.size // frame
    if count == 0:
        return 0.0, 0.0
    frames = samples[: count * frame].reshape(count, frame).astype(np.float64)
    rms = np.sqrt(np.mean(frames**2, axis=1)) + 1e-12
    loud = rms >= rms.max() * 10 ** (-_SILENCE_DB / 20)
    # Zero-padded to a power of two: the FFT runs 2.5 times faster than on 882 samples.
    fft_size = 1 << (frame - 1).bit_length()
    spectrum = np.fft.rfft(frames[loud] * np.hanning(frame), n=fft_size, axis=1)
    power = spectrum.real**2 + spectrum.imag**2 + 1e-20
    flatness = np.exp(np.mean(np.log(power), axis=1)) / np.mean(power, axis=1)
    return float(1.0 - np.mean(loud)), float(np.mean(flatness))
