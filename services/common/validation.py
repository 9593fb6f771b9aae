"""Checks of request fields that several services share."""

from __future__ import annotations

import math

from services.common.errors import InvalidArgument

SPEAKING_RATE_RANGE = (0.5, 2.5)
"""The tempo multipliers tts speaks at (SynthesizeRequest.speaking_rate)."""


def required_text(text: str, field: str, max_chars: int) -> str:
    """``text`` without surrounding whitespace; InvalidArgument naming ``field`` when it is
    empty or longer than ``max_chars``."""
    stripped = text.strip()
    if not stripped:
        raise InvalidArgument(field, "must not be empty or only whitespace")
    if len(stripped) > max_chars:
        raise InvalidArgument(field, f"{len(stripped)} characters is over the limit of {max_chars}")
    return stripped


def speaking_rate(rate: float) -> float:
    """The tempo multiplier ``rate`` asks for (0: the voice's normal rate, 1.0);
    InvalidArgument naming ``speaking_rate`` when it is not a number, negative, or outside
    SPEAKING_RATE_RANGE. tts checks it, and the orchestrator before sending anything."""
    if math.isnan(rate):
        raise InvalidArgument("speaking_rate", "must be a number")
    if rate < 0:
        raise InvalidArgument("speaking_rate", f"{rate:g} is negative")
    low, high = SPEAKING_RATE_RANGE
    if not low <= (rate or 1.0) <= high:
        raise InvalidArgument("speaking_rate", f"{rate:g} is outside {low:g} to {high:g}")
    return rate or 1.0
