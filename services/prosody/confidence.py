"""The confidence check: how far an adjusted result can be trusted, measured, not assumed.

The result is measured against the request and against the original, part by part; each
part's error is scored in [0, 1] by a ramp (1 up to a ``good`` error, 0 from a ``bad``
one, linear between), and the report's score is the weakest part's.

The figures quoted with the ramps' thresholds were measured on the shared recordings
and on espeak speech (tests/prosody), for shifts of -3 to +6 st, range scales 0.8 to 2,
tempos 0.8 to 1.25 and the presets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from services.common.pcm import Samples
from services.prosody.adjustment import AdjustParams
from services.prosody.pitch import PitchTrack, pitch_track
from services.prosody.sound import check_samples


@dataclass(frozen=True)
class Ramp:
    """Scores an error: 1 up to ``good``, 0 from ``bad`` on, linear between."""

    good: float
    bad: float

    def score(self, error: float) -> float:
        """The score of ``error``, in [0, 1]."""
        if error <= self.good:
            return 1.0
        if error >= self.bad:
            return 0.0
        return (self.bad - error) / (self.bad - self.good)


# Pitch: semitones between the shift measured and the shift asked. Faithful shifts measure
# within 0.2 st of the request (the pairing of frames is off by up to a frame, which on a
# sloping contour moves it a few tenths), so 0.3 st still scores 1. A miss of 2 st, a
# whole tone, is as large as the "celebration" preset's whole shift: nothing is left of
# the change asked for.
PITCH_RAMP = Ramp(good=0.3, bad=2.0)
# Duration: relative error of the length against 1 / tempo. Overlap-add gives the asked
# length exactly (0.0% off), so any miss is a fault; 2% is a quarter of the presets' 8%
# tempo change, still heard as the tempo asked, and 20%, more than twice that change, is
# a different tempo altogether.
DURATION_RAMP = Ramp(good=0.02, bad=0.2)
# Voicing: share of the original's voiced frames lost. Praat's voicing decision flips at
# the edges of voiced stretches from one analysis to the next: the presets and shifts of
# up to 2 st lose (or gain) up to about 10% of them. With half of them gone the result has
# lost the voice itself (rough or breathy), whatever its pitch.
VOICING_RAMP = Ramp(good=0.1, bad=0.5)
# Clipping: share of samples at full scale. The limiter keeps every sample below it, so
# any clipped sample is a fault; at 0.1% the clicks come every 23 ms on average (44.1 kHz).
CLIPPING_RAMP = Ramp(good=0.0, bad=0.001)
# New silence: share of 20 ms frames that went silent. Sensible adjustments add none (a
# tempo change moves pauses, not their share); 5% leaves room for a frame or two at the
# edges of a short clip, and a result with 30% more of itself silent has dropped out.
NEW_SILENCE_RAMP = Ramp(good=0.05, bad=0.3)
# New noise: rise of the mean spectral flatness (0 for a tone, 1 for white noise) of the
# frames that are not silent. Sensible adjustments move it by at most 0.03 (slower tempo
# lowers it), so 0.05 still scores 1; a rise of 0.25, a quarter of the way to white
# noise, is speech turned to hiss.
NEW_NOISE_RAMP = Ramp(good=0.05, bad=0.25)

CLIPPED_LEVEL = 0.999
# Below this share of voiced frames there is no speech melody to measure or move.
MIN_VOICED_FRACTION = 0.05

# Frames this far below the loudest frame count as silence: below the noise floor of real
# recordings (about 40 dB under their loudest frame), so they are dropouts and digital
# silence, not quiet room noise that sits on either side of a shallower threshold.
_SILENCE_DB = 60.0
_FRAME_S = 0.02
# Offsets, in frames of the original, at which the result's frames are paired with it.
_ALIGNMENT_OFFSETS = np.linspace(-1.0, 1.0, 9)


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

    @property
    def weakest(self) -> ConfidencePart:
        """The part with the lowest score (the first of equals)."""
        return min(self.parts, key=lambda part: part.score)


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

    Pitch tracks of either side may be given when already measured (the original's comes
    with ``AdjustResult.original_pitch_track``); what is missing is measured here.
    Raises ValueError for an empty array.
    """
    check_samples(original)
    check_samples(adjusted)
    if f0_before is None:
        f0_before = pitch_track(original, sample_rate)
    if f0_after is None:
        f0_after = pitch_track(adjusted, sample_rate)
    parts = (
        _pitch_part(f0_before, f0_after, params),
        _duration_part(original.size, adjusted.size, params.tempo),
        _voicing_part(f0_before.voiced_fraction, f0_after.voiced_fraction),
        _clipping_part(adjusted),
        _silence_noise_part(original, adjusted, sample_rate),
    )
    return ConfidenceReport(score=min(part.score for part in parts), parts=parts)


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
    if before.voiced_count < 3 or after.voiced_count < 3:
        return None
    median = float(np.median(before.voiced_hz))
    # NaN marks an unvoiced frame; any pair that touches one drops out below.
    before_st, after_st = (
        12 * np.log2(f0 / median, out=np.full(f0.shape, np.nan), where=f0 > 0)
        for f0 in (before.f0_hz, after.f0_hz)
    )
    frames = np.arange(after.f0_hz.size) * tempo
    best: tuple[float, float] | None = None  # (spread, shift)
    for offset in _ALIGNMENT_OFFSETS:
        source = frames + offset
        left = np.floor(source).astype(int)
        inside = (left >= 0) & (left + 1 < before.f0_hz.size)
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


def _pitch_part(before: PitchTrack, after: PitchTrack, params: AdjustParams) -> ConfidencePart:
    asked = params.pitch_shift_semitones
    if before.voiced_fraction < MIN_VOICED_FRACTION or before.voiced_count < 3:
        if not params.moves_pitch:
            return ConfidencePart("pitch", 1.0, 0.0, 0.0, "no pitch change asked")
        return ConfidencePart("pitch", 0.0, asked, 0.0, "no voiced speech in the input to shift")
    measured = paired_shift_semitones(before, after, params.tempo, params.pitch_range_scale)
    if measured is None:
        return ConfidencePart(
            "pitch", 0.0, asked, 0.0, "too few voiced frames left in the result to measure"
        )
    return ConfidencePart(
        "pitch",
        PITCH_RAMP.score(abs(measured - asked)),
        asked,
        measured,
        f"pitch moved {measured:+.2f} st of {asked:+.2f} asked",
    )


def _duration_part(before: int, after: int, tempo: float) -> ConfidencePart:
    expected = 1.0 / tempo
    measured = after / before
    return ConfidencePart(
        "duration",
        DURATION_RAMP.score(abs(measured / expected - 1.0)),
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
        VOICING_RAMP.score(max(0.0, 1.0 - kept)),
        before,
        after,
        f"voiced frames {100 * after:.0f}% of {100 * before:.0f}% before",
    )


def _clipping_part(adjusted: Samples) -> ConfidencePart:
    clipped = float(np.mean(np.abs(adjusted) >= CLIPPED_LEVEL))
    return ConfidencePart(
        "clipping",
        CLIPPING_RAMP.score(clipped),
        0.0,
        clipped,
        f"{100 * clipped:.3f}% of samples at full scale",
    )


def _silence_noise_part(original: Samples, adjusted: Samples, sample_rate: int) -> ConfidencePart:
    silence_before, flatness_before = _silence_and_flatness(original, sample_rate)
    silence_after, flatness_after = _silence_and_flatness(adjusted, sample_rate)
    new_silence = silence_after - silence_before
    new_noise = flatness_after - flatness_before
    score = min(NEW_SILENCE_RAMP.score(new_silence), NEW_NOISE_RAMP.score(new_noise))
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
