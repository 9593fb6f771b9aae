"""What a client streaming text in (SynthesizeStream, SpeakStream) can send after its
config, as the services read it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TextIn:
    """More of the text."""

    text: str


@dataclass(frozen=True)
class FlushIn:
    """Speak what is pending, complete or not."""


@dataclass(frozen=True)
class InterruptIn:
    """Drop what is not yet spoken, stop the audio now, and go on with what comes next."""


@dataclass(frozen=True)
class EndIn:
    """No more text."""


TextInput = TextIn | FlushIn | InterruptIn | EndIn
