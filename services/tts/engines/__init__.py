"""The engines a TTS server can run, by configured name."""

from __future__ import annotations

from services.tts.engines.base import SpeechEngine
from services.tts.settings import TtsSettings

ENGINES = ("piper", "espeak", "coqui")


def create_engine(settings: TtsSettings) -> SpeechEngine:
    """Build (not load) the engine named by ``settings.engine``.

    Raises ValueError naming the known engines when the name is unknown, so a typo stops
    the server at start-up.
    """
    if settings.engine == "piper":
        from services.tts.engines.piper import PiperEngine

        return PiperEngine(
            settings.piper_model,
            sessions=settings.piper_sessions,
            threads=settings.piper_threads,
            device=settings.device,
            noise_scale=settings.piper_noise_scale,
            noise_w=settings.piper_noise_w,
        )
    if settings.engine == "espeak":
        from services.tts.engines.espeak import EspeakEngine

        return EspeakEngine(chunk_ms=settings.espeak_chunk_ms)
    if settings.engine == "coqui":
        # Imported here: the other engines must not pay for (or need) torch.
        from services.tts.engines.coqui import CoquiEngine

        return CoquiEngine.from_settings(settings)
    raise ValueError(f"unknown TTS engine {settings.engine!r}; known: {', '.join(ENGINES)}")
