"""Speech for the prosody tests: the shared recordings and espeak speech, as samples."""

from __future__ import annotations

from functools import cache

import numpy as np
import soundfile

from services.common.pcm import Samples
from services.tts.engines.espeak import EspeakEngine
from tests.support.media import speech_recordings

RECORDINGS = {path.stem: path for path in speech_recordings()}
SOURCES = [*RECORDINGS, "espeak"]
CONGRATULATIONS = "Congratulations on your new job. We are all very proud of you."


@cache
def espeak_speech(text: str = CONGRATULATIONS) -> tuple[Samples, int]:
    """``text`` spoken by the espeak engine (22050 Hz), as read-only float32 samples and
    their rate."""
    engine = EspeakEngine()
    engine.load()
    samples = engine.speak_whole(text)
    samples.flags.writeable = False
    return samples, engine.sample_rate


@cache
def speech(source: str) -> tuple[Samples, int]:
    """A shared recording (16-bit mono 44.1 kHz) or a sentence of espeak speech (22050 Hz),
    as float32 samples and their rate. Read-only: shared between tests, and the engine
    must not write into its input."""
    if source == "espeak":
        return espeak_speech()
    samples, rate = soundfile.read(RECORDINGS[source], dtype="float32")
    samples.flags.writeable = False
    return samples, int(rate)


def white_noise() -> tuple[Samples, int]:
    """Two seconds of white noise at 22050 Hz: no voice, no pitch to move."""
    rate = 22050
    return (np.random.default_rng(7).normal(size=2 * rate) * 0.1).astype(np.float32), rate
