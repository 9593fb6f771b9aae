"""WAV files in memory: bytes to mono float samples and back, through libsndfile."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import soundfile

from services.common.pcm import Samples


class NotAudioError(ValueError):
    """The bytes are not a WAV file libsndfile can read."""


@dataclass(frozen=True)
class WavAudio:
    """Decoded WAV: mono samples, their rate, and the sample type to write back."""

    samples: Samples
    sample_rate: int
    subtype: str
    """libsndfile's name for the file's sample type (PCM_16, PCM_24, FLOAT, ...)."""
    channels: int


def read_wav(data: bytes) -> WavAudio:
    """Decode a WAV file; several channels are averaged to mono.

    Raises NotAudioError naming the problem for bytes that are not a readable WAV file,
    including a truncated one.
    """
    try:
        with soundfile.SoundFile(io.BytesIO(data)) as wav:
            if wav.format not in ("WAV", "WAVEX"):
                raise NotAudioError(f"a {wav.format} file, not WAV")
            samples = wav.read(dtype="float32", always_2d=True)
            subtype, channels, rate = wav.subtype, wav.channels, wav.samplerate
    except soundfile.LibsndfileError as error:
        raise NotAudioError(f"not a readable WAV file: {error.error_string}") from error
    # libsndfile quietly reads what a truncated file has; the caller should know.
    declared, present = _data_chunk_sizes(data)
    if declared > present:
        raise NotAudioError(f"truncated: data chunk declares {declared} bytes, has {present}")
    mono = samples.mean(axis=1, dtype=np.float32) if channels > 1 else samples[:, 0]
    return WavAudio(np.ascontiguousarray(mono), rate, subtype, channels)


def _data_chunk_sizes(data: bytes) -> tuple[int, int]:
    """(declared, present) byte sizes of the RIFF ``data`` chunk; (0, 0) if not found."""
    offset = 12  # past "RIFF", the RIFF size and "WAVE"
    while offset + 8 <= len(data):
        chunk_id = data[offset : offset + 4]
        size = int.from_bytes(data[offset + 4 : offset + 8], "little")
        if chunk_id == b"data":
            # 0xFFFFFFFF marks a stream written before its length was known.
            declared = 0 if size == 0xFFFFFFFF else size
            return declared, len(data) - offset - 8
        offset += 8 + size + (size & 1)  # chunks are padded to even sizes
    return 0, 0


def write_wav(samples: Samples, sample_rate: int, subtype: str = "PCM_16") -> bytes:
    """Encode mono samples as a WAV file of ``subtype``."""
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, sample_rate, subtype=subtype, format="WAV")
    return buffer.getvalue()
