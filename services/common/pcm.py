"""Raw PCM audio: sample formats, encoding, streaming resampling and re-chunking.

Everything inside Chorus works on mono float32 samples in [-1, 1]; bytes exist only at
the edges, in the caller's chosen sample format.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt
import soxr

Samples = npt.NDArray[np.float32]


class SampleFormat(enum.Enum):
    """Little-endian mono sample formats a caller may ask for."""

    S16LE = "s16le"
    F32LE = "f32le"

    @property
    def bytes_per_sample(self) -> int:
        """Size of one sample in bytes."""
        return 2 if self is SampleFormat.S16LE else 4


def encode(samples: Samples, sample_format: SampleFormat) -> bytes:
    """Float samples to bytes; values outside [-1, 1] are clipped, never wrapped."""
    clipped = np.clip(samples, -1.0, 1.0)
    if sample_format is SampleFormat.S16LE:
        return (np.round(clipped * 32767.0)).astype("<i2").tobytes()
    return clipped.astype("<f4").tobytes()


def decode(data: bytes, sample_format: SampleFormat) -> Samples:
    """Bytes in ``sample_format`` to float samples."""
    if len(data) % sample_format.bytes_per_sample:
        raise ValueError(
            f"{len(data)} bytes is not a whole number of {sample_format.value} samples"
        )
    if sample_format is SampleFormat.S16LE:
        return (np.frombuffer(data, dtype="<i2").astype(np.float32)) / np.float32(32767.0)
    return np.frombuffer(data, dtype="<f4").astype(np.float32)


class StreamResampler:
    """Resamples a stream chunk by chunk with the same result as resampling it whole.

    soxr keeps the filter state between chunks, so chunk boundaries leave no clicks.
    """

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self._stream = (
            None
            if in_rate == out_rate
            else soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality="HQ")
        )

    def process(self, samples: Samples, last: bool = False) -> Samples:
        """Resample the next chunk; ``last`` flushes the filter's tail."""
        if self._stream is None:
            return samples
        out: Samples = self._stream.resample_chunk(samples, last=last)
        return out


class Rechunker:
    """Cuts a stream of arbitrary-sized arrays into chunks of exactly ``chunk_samples``.

    ``chunk_samples`` 0 passes chunks through as they come (lowest latency).
    """

    def __init__(self, chunk_samples: int) -> None:
        self._chunk_samples = chunk_samples
        self._pending: list[Samples] = []
        self._pending_count = 0

    def push(self, samples: Samples) -> Iterator[Samples]:
        """Add samples; yield every full chunk now available."""
        if not self._chunk_samples:
            if samples.size:
                yield samples
            return
        self._pending.append(samples)
        self._pending_count += samples.size
        if self._pending_count < self._chunk_samples:
            return
        joined = np.concatenate(self._pending)
        full = (joined.size // self._chunk_samples) * self._chunk_samples
        for start in range(0, full, self._chunk_samples):
            yield joined[start : start + self._chunk_samples]
        rest = joined[full:]
        self._pending = [rest] if rest.size else []
        self._pending_count = rest.size

    def flush(self) -> Iterator[Samples]:
        """Yield what is left as one final, shorter chunk."""
        if self._pending_count:
            yield np.concatenate(self._pending)
        self._pending, self._pending_count = [], 0
