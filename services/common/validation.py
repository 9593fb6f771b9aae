"""Checks of request fields that several services share."""

from __future__ import annotations

from services.common.errors import InvalidArgument


def required_text(text: str, field: str, max_chars: int) -> str:
    """``text`` without surrounding whitespace; InvalidArgument naming ``field`` when it is
    empty or longer than ``max_chars``."""
    stripped = text.strip()
    if not stripped:
        raise InvalidArgument(field, "must not be empty or only whitespace")
    if len(stripped) > max_chars:
        raise InvalidArgument(field, f"{len(stripped)} characters is over the limit of {max_chars}")
    return stripped
