"""Splitting text into sentences, the unit of streaming for engines that cannot do better."""

from __future__ import annotations

import re

# A sentence ends at . ! ? (or their CJK forms) followed by space, or at a blank line.
# Abbreviations such as "Dr." may split early: harmless, the audio only gains a pause.
_SENTENCE_END = re.compile(r"(?<=[.!?\u3002\uff01\uff1f])\s+|\n\s*\n")


def split_sentences(text: str) -> list[str]:
    """Non-empty sentences of ``text`` in order, whitespace-trimmed."""
    return [part.strip() for part in _SENTENCE_END.split(text) if part.strip()]
