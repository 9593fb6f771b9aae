"""Test media: the shared speech recordings beside the checkout (../shared/data)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile
import soxr

from devtools.launcher import REPO_ROOT

SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def speech_recordings() -> list[Path]:
    """The shared recordings of human speech (16-bit mono 44.1 kHz WAV files)."""
    paths = sorted((SHARED_DATA / "speech").glob("*.wav"))
    if not paths:
        raise FileNotFoundError(f"no speech recordings under {SHARED_DATA}: is ../shared there?")
    return paths


def compressed_wav(subtype: str, seconds: float, rate: int = 8000) -> bytes:
    """A WAV file of ``subtype`` (GSM610, IMA_ADPCM, ...) holding ``seconds`` of the first
    shared recording, repeated, at ``rate`` Hz."""
    speech, source_rate = soundfile.read(speech_recordings()[0], dtype="float32")
    speech = soxr.resample(speech, source_rate, rate).astype(np.float32)
    samples = np.resize(speech, round(seconds * rate))
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, subtype=subtype, format="WAV")
    return buffer.getvalue()


def seven_bit_wav() -> bytes:
    """An 8-bit PCM WAV file whose fmt chunk declares 7 bits per sample."""
    data = bytearray(compressed_wav("PCM_U8", seconds=1))
    fmt = data.index(b"fmt ")
    data[fmt + 22 : fmt + 24] = (7).to_bytes(2, "little")
    return bytes(data)
