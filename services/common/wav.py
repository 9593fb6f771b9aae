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


MAX_CHANNELS = 8
"""More channels than any speech recording has; the limit bounds a request's memory."""

# What libsndfile reads in a WAV file that Chorus accepts; anything else is refused by name.
SUPPORTED_SUBTYPES = frozenset(
    {"PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE", "ULAW", "ALAW"}
    | {"IMA_ADPCM", "MS_ADPCM", "GSM610", "G721_32", "G723_24", "G723_40"}
)
_PCM_BITS = (8, 16, 24, 32)
_FLOAT_BITS = (32, 64)


def read_wav(data: bytes, max_seconds: float | None = None) -> WavAudio:
    """Decode a WAV file; several channels are averaged to mono.

    The header is checked before anything is decoded: the sample type, the bits per
    sample, the channel count and, when ``max_seconds`` is given, the duration, so that a
    small compressed file claiming an hour of audio costs nothing to refuse.

    Raises NotAudioError naming the problem for bytes that are not a readable WAV file,
    including a truncated one.
    """
    _check_bits_per_sample(data)
    try:
        with soundfile.SoundFile(io.BytesIO(data)) as wav:
            if wav.format not in ("WAV", "WAVEX"):
                raise NotAudioError(f"a {wav.format} file, not WAV")
            subtype, channels, rate, frames = wav.subtype, wav.channels, wav.samplerate, wav.frames
            if subtype not in SUPPORTED_SUBTYPES:
                raise NotAudioError(f"sample type {subtype} is not supported")
            if not 1 <= channels <= MAX_CHANNELS:
                raise NotAudioError(f"{channels} channels; at most {MAX_CHANNELS} are read")
            if rate <= 0:
                raise NotAudioError(f"sample rate {rate} Hz is not a rate")
            if max_seconds is not None and frames / rate > max_seconds:
                raise NotAudioError(f"{frames / rate:.1f} s is over the limit of {max_seconds:g} s")
            # Some compressed types (GSM 6.10) cannot seek: they are read by frame count.
            samples = wav.read(frames, dtype="float32", always_2d=True)
    except soundfile.LibsndfileError as error:
        raise NotAudioError(f"not a readable WAV file: {error.error_string}") from error
    # libsndfile quietly reads what a truncated file has; the caller should know.
    declared, present = _data_chunk_sizes(data)
    if declared > present:
        raise NotAudioError(f"truncated: data chunk declares {declared} bytes, has {present}")
    mono = samples.mean(axis=1, dtype=np.float32) if channels > 1 else samples[:, 0]
    return WavAudio(np.ascontiguousarray(mono), rate, subtype, channels)


def _check_bits_per_sample(data: bytes) -> None:
    """Refuse integer PCM or float WAV whose fmt chunk declares an odd sample size (libsndfile
    reads a 7-bit file as if it were 8-bit)."""
    offset = 12  # past "RIFF", the RIFF size and "WAVE"
    while offset + 8 <= len(data):
        chunk_id = data[offset : offset + 4]
        size = int.from_bytes(data[offset + 4 : offset + 8], "little")
        if chunk_id == b"fmt " and size >= 16 and offset + 24 <= len(data):
            tag = int.from_bytes(data[offset + 8 : offset + 10], "little")
            bits = int.from_bytes(data[offset + 22 : offset + 24], "little")
            allowed = {1: _PCM_BITS, 3: _FLOAT_BITS}.get(tag)
            if allowed is not None and bits not in allowed:
                raise NotAudioError(f"{bits} bits per sample is not supported")
            return
        offset += 8 + size + (size & 1)


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
