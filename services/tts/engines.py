"""The engines a TTS server can run, by configured name."""

from __future__ import annotations

from services.tts.engine import SpeechEngine
from services.tts.settings import TtsSettings


def create_engine(settings: TtsSettings) -> SpeechEngine:
    """Build (not load) the engine named by ``settings.engine``.

    Raises ValueError naming the known engines when the name is unknown, so a typo stops
    the server at start-up.
    """
    if settings.engine == "espeak":
        from services.tts.espeak_engine import EspeakEngine

        return EspeakEngine(chunk_ms=settings.espeak_chunk_ms)
    raise ValueError(f"unknown TTS engine {settings.engine!r}; known: espeak")
