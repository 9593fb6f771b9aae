"""Decoding the Ogg Opus and MP3 streams the services send, with the library that encodes
them (PyAV's FFmpeg), as a client that plays what has arrived would.

What the codecs add or hold back, for the tests' tolerances:
- Ogg Opus: decoders play every rate at 48000 Hz. The stream's pre-skip and end granule
  trim the encoder's look-ahead and padding, so a whole stream decodes to exactly the PCM
  fed. A stream cut short decodes up to a little before the cut: the encoder holds the
  part of its 20 ms frame not filled yet plus 6.5 ms of look-ahead, and the muxer the
  last 20 ms page until the next one begins (OPUS_LAG_S).
- MP3: the decoded audio is longer than the PCM fed by LAME's delay (576 samples of
  encoder delay and 529 of decoder delay) and up to one frame of padding at the end (576
  samples per frame below 32 kHz, 1152 from 32 kHz): a stream written as it is made has no
  Xing/LAME header to trim them. A stream cut short decodes up to a little before the
  cut, by a number of samples, so longer in time at lower rates: LAME's delay and two
  frames (measured: 2225 samples, 0.10 s at 22050 Hz and 0.28 s at 8000 Hz; 3394, 0.07 s,
  at 48000 Hz), within mp3_lag_samples.
"""

from __future__ import annotations

import io

import av
import numpy as np

from services.common.pcm import Samples

OPUS_DECODE_RATE = 48000
OPUS_LAG_S = 0.05
"""Most a cut Opus stream's audio may end before the PCM fed up to the cut: 20 ms frame,
20 ms page and 6.5 ms of look-ahead, with a little room."""

MP3_DELAY = 576 + 529
"""Samples LAME's encoder and decoder delays add before the audio."""


def mp3_frame_samples(sample_rate: int) -> int:
    """Samples in one MP3 frame at ``sample_rate`` (MPEG-1 from 32 kHz, else MPEG-2/2.5)."""
    return 1152 if sample_rate >= 32000 else 576


def mp3_lag_samples(sample_rate: int) -> int:
    """Most samples a cut MP3 stream's audio, its delay taken off, may end before the PCM
    fed up to the cut: the delay and three frames (two measured, one of room)."""
    return MP3_DELAY + 3 * mp3_frame_samples(sample_rate)


def decode_ogg_opus(data: bytes) -> Samples:
    """The audio of an Ogg Opus stream (whole, or cut at a page boundary), at 48000 Hz."""
    with av.open(io.BytesIO(data), mode="r", format="ogg") as container:
        pieces = [_floats(frame) for frame in container.decode(audio=0)]
        assert all(
            frame_rate == OPUS_DECODE_RATE
            for frame_rate in {stream.sample_rate for stream in container.streams.audio}
        )
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)


def decode_mp3(data: bytes) -> tuple[Samples, int]:
    """The audio of MP3 frames (whole, or cut after any frame) and its sample rate, found
    frame by frame by FFmpeg's parser as a streaming player does (its file reader wants
    several frames before it believes a stream is MP3)."""
    context = av.CodecContext.create("mp3", "r")
    pieces: list[Samples] = []
    rate = 0
    for packet in [*context.parse(data), *context.parse(None)]:
        for frame in context.decode(packet):
            assert isinstance(frame, av.AudioFrame)
            pieces.append(_floats(frame))
            rate = frame.sample_rate
    for frame in context.decode(None):
        assert isinstance(frame, av.AudioFrame)
        pieces.append(_floats(frame))
    samples = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
    return samples, rate


def _floats(frame: av.AudioFrame) -> Samples:
    """A mono frame's samples as floats in [-1, 1] (FFmpeg's MP3 decoder makes integers)."""
    samples = frame.to_ndarray().reshape(-1)
    if samples.dtype == np.int16:
        return samples.astype(np.float32) / np.float32(32768.0)
    return samples.astype(np.float32)
