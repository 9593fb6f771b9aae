"""Making separately synthesised pieces of a sentence join as if spoken in one go.

Each piece comes out of the model as a complete utterance: some silence, the speech, then
the pause its final mark asks for (about 0.2 s after a comma, 0.1 s after a full stop) or,
with no mark, the silence of an utterance's end. At punctuation that pause is the one a
speaker makes, and it stays. At a cut between words it is a gap the speaker would not make,
so there the silence on both sides of the cut is trimmed to a few ms. Every piece then
fades in and out over a few ms, so that no join can click whatever its edge samples are.
A piece may arrive in several windows (services.tts.engines.piper_runner): only a piece's
own edges are shaped, never the joins between its windows, which are seamless already.
"""

from __future__ import annotations

import enum

import numpy as np

from services.tts.engines.base import PcmChunk

FADE_MS = 5
"""Length of the raised-cosine fade at each edge of every piece."""

KEPT_SILENCE_MS = 20
"""Silence kept at a cut between words: the gap between two words spoken together."""

SILENCE_RMS = 0.003
"""Level (RMS, full scale 1.0; about -50 dBFS) below which a frame counts as silence."""

_FRAME_MS = 5


class Edge(enum.Enum):
    """What is on the other side of one edge of a stretch of audio."""

    INSIDE = "inside"
    """More of the same piece: left as it is."""
    PAUSE = "pause"
    """Punctuation, or the sentence's start or end: the model's pause stays; faded."""
    FLOW = "flow"
    """A cut between words: the silence is trimmed to KEPT_SILENCE_MS; faded."""


def join_edges(audio: PcmChunk, sample_rate: int, start: Edge, end: Edge) -> PcmChunk:
    """``audio`` as the model made it, with its ``start`` and ``end`` shaped for what lies
    beyond them. Returns a new array."""
    return shape_edges(audio, sample_rate, start, end)[0]


def shape_edges(audio: PcmChunk, sample_rate: int, start: Edge, end: Edge) -> tuple[PcmChunk, int]:
    """``join_edges``, with how many samples it cut off the start (a FLOW start's
    silence): what was at sample ``n`` of ``audio`` is at ``n`` minus that."""
    first, last = 0, audio.size
    kept = sample_rate * KEPT_SILENCE_MS // 1000
    if start is Edge.FLOW:
        silent = _leading_silence(audio, sample_rate)
        first = max(0, silent - kept)
    if end is Edge.FLOW:
        # Counted from the end, on frames laid from the end: the same cut whichever
        # window of the piece the end lies in.
        silent = _leading_silence(audio[::-1], sample_rate)
        last = min(audio.size, audio.size - silent + kept)
    shaped = audio[first:last].astype(np.float32, copy=True)
    # Fades at both ends of a short stretch must not overlap.
    fade = min(sample_rate * FADE_MS // 1000, shaped.size // 2)
    if fade:
        ramp = _fade_in(fade)
        if start is not Edge.INSIDE:
            shaped[:fade] *= ramp
        if end is not Edge.INSIDE:
            shaped[-fade:] *= ramp[::-1]
    return shaped, first


def _leading_silence(audio: PcmChunk, sample_rate: int) -> int:
    """Samples before the first frame above SILENCE_RMS; 0 when no frame is (nothing to
    trim: all silence, or too short to tell)."""
    frame = max(1, sample_rate * _FRAME_MS // 1000)
    frames = audio.size // frame
    if not frames:
        return 0
    power = np.square(audio[: frames * frame].reshape(frames, frame), dtype=np.float64)
    loud = np.flatnonzero(np.sqrt(power.mean(axis=1)) > SILENCE_RMS)
    return int(loud[0]) * frame if loud.size else 0


def _fade_in(length: int) -> PcmChunk:
    """Raised-cosine gains rising from near 0 to near 1 over ``length`` samples."""
    phase = (np.arange(length, dtype=np.float64) + 0.5) / length
    gains: PcmChunk = (0.5 - 0.5 * np.cos(np.pi * phase)).astype(np.float32)
    return gains
