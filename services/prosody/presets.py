"""Named prosody adjustments: the moods a caller can ask for by name."""

from __future__ import annotations

from services.prosody.adjustment import AdjustParams

PRESETS: dict[str, AdjustParams] = {
    "neutral": AdjustParams(),
    # Brighter and livelier: higher, wider-ranging pitch, a little faster and louder.
    "celebration": AdjustParams(
        pitch_shift_semitones=2.0, pitch_range_scale=1.3, tempo=1.08, energy_db=3.0
    ),
    # Softer and slower: lower, flatter pitch, a little slower and quieter.
    "calm": AdjustParams(
        pitch_shift_semitones=-1.0, pitch_range_scale=0.8, tempo=0.92, energy_db=-2.0
    ),
}
DEFAULT_PRESET = "neutral"
