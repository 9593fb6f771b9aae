"""The output sample rates Chorus speaks at, and the check of a requested one.

One list for the services that make speech (tts) and those that announce its format before
it is made (the orchestrator's Speak), so that a rate one accepts the other does too.
"""

from __future__ import annotations

from services.common.errors import InvalidArgument

SUPPORTED_SAMPLE_RATES = (8000, 16000, 22050, 24000, 44100, 48000)


def supported_sample_rate(
    requested: int, default: int, field: str = "sample_rate_hz", zero_means: str = ""
) -> int:
    """``requested``, or ``default`` when it is 0; InvalidArgument naming ``field`` when
    the rate is not one of SUPPORTED_SAMPLE_RATES. ``zero_means`` says what 0 stands for
    in the message (``default`` in hertz unless given)."""
    rate = requested or default
    if rate not in SUPPORTED_SAMPLE_RATES:
        raise InvalidArgument(
            field,
            f"{requested} Hz is not supported; use one of "
            f"{', '.join(map(str, SUPPORTED_SAMPLE_RATES))} or 0 for "
            f"{zero_means or f'{default} Hz'}",
        )
    return rate
