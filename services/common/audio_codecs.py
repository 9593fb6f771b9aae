"""Compressed audio out: Ogg Opus and MP3, encoded as a stream, chunk by chunk.

One StreamEncoder serves one whole response: PCM goes in chunk by chunk, and what comes
out of each chunk is the next part of one file (one Ogg Opus stream, or one run of MP3
frames), so the parts joined are a valid file and what has arrived so far always decodes.
The encoders are FFmpeg's libopus and libmp3lame, through PyAV (the ``codecs`` extra; it
is imported only when an encoder is opened, so services that never encode do not need
it). libsndfile writes both formats too, but its Opus writer emits no Ogg page before it
is closed, so it cannot stream.

What lags: an encoder holds back a little audio until more arrives or it is closed (Opus:
the part of its 20 ms frame not yet filled, 6.5 ms of look-ahead, and the Ogg page the
muxer keeps until the next one starts, 20 ms: at most 47 ms; MP3: LAME's delay and two
frames, about 2200 samples, 0.10 s at 22050 Hz and 0.28 s at 8000 Hz), so each chunk's
bytes decode to the audio fed up to a little before its end, and ``close`` returns the
rest.
"""

from __future__ import annotations

import asyncio
import enum
import threading
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt

from services.common.errors import InvalidArgument
from services.common.pcm import SampleFormat, Samples
from services.common.sample_rates import supported_sample_rate

if TYPE_CHECKING:
    from av.audio.stream import AudioStream
    from av.container.output import OutputContainer

OPUS_SAMPLE_RATES = (8000, 12000, 16000, 24000, 48000)
"""The rates libopus encodes at (decoders play every one of them back at 48000)."""

OPUS_DEFAULT_RATE = 48000
OPUS_BIT_RATES = ((24000, 32_000), (16000, 24_000), (0, 16_000))
"""Opus bit rate for mono speech by sample rate (the first whose floor the rate reaches):
fullband and super-wideband 32 kbit/s, wideband 24, narrowband 16. The Ogg pages add
about 11 kbit/s (one page per 20 ms frame, so that every chunk carries its audio):
measured on espeak speech, 45, 34 and 27 kbit/s in all at 48, 16 and 8 kHz."""

OGG_PAGE_DURATION_US = 20_000
"""One Ogg page per Opus frame: the muxer holds the last page until the next begins, so
a page is the audio a chunk's bytes may lag behind its PCM."""

_SILENCE_MS = 20
"""The silence a stream that never had audio holds: one Opus frame."""

MP3_BIT_RATES = ((32000, 64_000), (16000, 48_000), (0, 32_000))
"""MP3 bit rate by sample rate (the first whose floor the rate reaches): MPEG-1 rates
(32 kHz and up) at 64 kbit/s, MPEG-2 (16 to 24 kHz) at 48, MPEG-2.5 (8 to 12 kHz) at 32.
Constant, and without LAME's bit reservoir: every frame carries its own bits, so a frame
goes out as soon as it is encoded (measured: a cut stream lags 0.10 s behind its PCM at
22050 Hz instead of 0.15 s with the reservoir, at the same signal-to-noise ratio)."""


class Codec(enum.Enum):
    """A compressed encoding a caller may ask for instead of raw PCM."""

    OGG_OPUS = "ogg_opus"
    MP3 = "mp3"

    @property
    def label(self) -> str:
        """How messages name it."""
        return "Ogg Opus" if self is Codec.OGG_OPUS else "MP3"


Encoding = SampleFormat | Codec
"""Any output encoding: raw PCM in a sample format, or a codec."""


def output_sample_rate(
    encoding: Encoding,
    requested: int,
    pcm_default: int,
    field: str = "sample_rate_hz",
    zero_means: str = "",
) -> int:
    """The sample rate to produce ``encoding`` at: ``requested``, or for 0 the encoding's
    default (48000 for Ogg Opus, ``pcm_default`` otherwise). InvalidArgument naming
    ``field`` for a rate the encoding cannot carry: Opus runs only at OPUS_SAMPLE_RATES;
    PCM and MP3 at the rates tts makes (SUPPORTED_SAMPLE_RATES), all of which LAME takes.
    """
    if encoding is not Codec.OGG_OPUS:
        return supported_sample_rate(requested, pcm_default, field, zero_means)
    rate = requested or OPUS_DEFAULT_RATE
    if rate not in OPUS_SAMPLE_RATES:
        raise InvalidArgument(
            field,
            f"{requested} Hz is not a rate Opus encodes at; use one of "
            f"{', '.join(map(str, OPUS_SAMPLE_RATES))} or 0 for {OPUS_DEFAULT_RATE}",
        )
    return rate


class _Collector:
    """The file PyAV's muxer writes to: keeps what it is given until taken.

    Not seekable, so the muxers write a pure stream (no header to patch at the end)."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def seekable(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


@dataclass(frozen=True)
class _Setup:
    muxer: str
    codec: Literal["libopus", "libmp3lame"]
    sample_format: str
    muxer_options: dict[str, str]
    codec_options: dict[str, str]


def _setup(codec: Codec) -> _Setup:
    # flush_packets: the muxer hands every packet's bytes over at once, not per 32 KB.
    if codec is Codec.OGG_OPUS:
        return _Setup(
            "ogg",
            "libopus",
            "flt",
            {"page_duration": str(OGG_PAGE_DURATION_US), "flush_packets": "1"},
            {},
        )
    # No ID3 tag and no Xing header: the stream is MP3 frames alone, from the first byte.
    return _Setup(
        "mp3",
        "libmp3lame",
        "fltp",
        {"id3v2_version": "0", "write_xing": "0", "flush_packets": "1"},
        {"reservoir": "0"},
    )


def _bit_rate(codec: Codec, sample_rate: int) -> int:
    rates = OPUS_BIT_RATES if codec is Codec.OGG_OPUS else MP3_BIT_RATES
    return next(bits for floor, bits in rates if sample_rate >= floor)


class StreamEncoder:
    """Encodes one stream of mono PCM, chunk by chunk, into one Ogg Opus or MP3 stream.

    ``encode`` takes the next PCM chunk (float32 in [-1, 1], or int16) and returns the bytes
    that are ready: with what came before, a stream that decodes up to (a little before)
    the chunk's end; ``close`` returns the rest. Safe to call from one thread at a time
    (an executor thread while the event loop goes on); ``close`` waits for an ``encode``
    under way, so a cancelled call can close its encoder at once. The encoders release the
    GIL while they work.
    """

    def __init__(self, codec: Codec, sample_rate: int) -> None:
        import av  # the `codecs` extra: only services that encode install it

        if codec is Codec.OGG_OPUS and sample_rate not in OPUS_SAMPLE_RATES:
            raise ValueError(f"Opus does not encode at {sample_rate} Hz")
        setup = _setup(codec)
        self.codec = codec
        self.sample_rate = sample_rate
        self._sample_format = setup.sample_format
        self._lock = threading.Lock()
        self._out = _Collector()
        self._container: OutputContainer | None = av.open(
            self._out, mode="w", format=setup.muxer, container_options=setup.muxer_options
        )
        self._stream: AudioStream = self._container.add_stream(
            setup.codec,
            rate=sample_rate,
            options=setup.codec_options,
            layout="mono",
            format=setup.sample_format,
        )
        self._stream.codec_context.bit_rate = _bit_rate(codec, sample_rate)
        self._time_base = Fraction(1, sample_rate)
        self._samples = 0
        # The stream's headers (Ogg Opus: OpusHead and OpusTags pages; MP3: none) go out
        # with the first audio, so that every piece of output carries sound.
        self._container.start_encoding()
        self._header = self._out.take()

    @property
    def samples_in(self) -> int:
        """PCM samples encoded so far."""
        return self._samples

    def encode(self, pcm: Samples | npt.NDArray[np.int16]) -> bytes:
        """Encode the next chunk of PCM; the bytes ready now (possibly none yet)."""
        samples = _as_float(pcm)
        with self._lock:
            if self._container is None:
                raise ValueError("the encoder is closed")
            if samples.size:
                self._mux_frame(self._container, samples)
            return self._take()

    def _mux_frame(self, container: OutputContainer, samples: Samples) -> None:
        """Encode ``samples`` as the next frame into ``container`` (the lock held)."""
        import av

        frame = av.AudioFrame.from_ndarray(
            samples.reshape(1, -1), format=self._sample_format, layout="mono"
        )
        frame.sample_rate = self.sample_rate
        frame.pts = self._samples
        frame.time_base = self._time_base
        self._samples += samples.size
        container.mux(self._stream.encode(frame))

    def close(self) -> bytes:
        """Flush the encoder and end the stream; the last bytes. Closing again returns
        nothing."""
        with self._lock:
            container, self._container = self._container, None
            if container is None:
                return b""
            try:
                if self._samples == 0:
                    # Text with nothing to say makes no audio, and a stream of no frames is
                    # no file a decoder opens (0 bytes of MP3; Ogg Opus headers alone,
                    # which FFmpeg refuses): it holds a frame of silence instead.
                    silence = self.sample_rate * _SILENCE_MS // 1000
                    self._mux_frame(container, np.zeros(silence, np.float32))
                container.mux(self._stream.encode(None))
            finally:
                container.close()
            return self._take()

    def _take(self) -> bytes:
        data = self._out.take()
        if data and self._header:
            data, self._header = self._header + data, b""
        return data


def _as_float(pcm: Samples | npt.NDArray[np.int16]) -> Samples:
    if pcm.dtype == np.int16:
        scaled: Samples = pcm.astype(np.float32) / np.float32(32767.0)
        return np.clip(scaled, -1.0, 1.0)
    return np.clip(np.ascontiguousarray(pcm, dtype=np.float32), -1.0, 1.0)


@dataclass(frozen=True)
class EncodedChunk:
    """Encoded bytes and the number of PCM samples they cover (fed since the last one)."""

    data: bytes
    samples: int


SMALL_PIECE_MS = 100
"""PCM up to this long (about 1 ms of encoding) is encoded on the event loop; longer, on
a worker thread. The hop to a thread and back costs more than that while an engine thread
holds the GIL (measured: 7 to 14 ms to the first chunk through a thread, against PCM's
1 ms). The stream's first PCM is encoded in two, its first SMALL_PIECE_MS alone, so the
first bytes leave after about a millisecond even when a fast engine hands over half a
second at once."""


class ChunkEncoder:
    """A StreamEncoder driven from the event loop, for a stream sent in chunks.

    Encoding (about 10 ms per second of audio; 20 for MP3 at 44.1 kHz and up) runs on a
    worker thread, but for short pieces (SMALL_PIECE_MS). Each chunk out says how many
    PCM samples it covers: a PCM chunk that
    produced no bytes yet (the encoder holds it) adds its samples to the next, so the
    counts add up to the PCM fed.
    """

    def __init__(self, codec: Codec, sample_rate: int) -> None:
        self._encoder = StreamEncoder(codec, sample_rate)
        self._pending = 0
        self._small_piece = sample_rate * SMALL_PIECE_MS // 1000

    async def encode(self, pcm: Samples) -> AsyncGenerator[EncodedChunk, None]:
        """The chunks of bytes ready after ``pcm`` (none while the encoder holds it all;
        two for the stream's first PCM, which goes in SMALL_PIECE_MS first)."""
        pieces = [pcm]
        if not self._encoder.samples_in and pcm.size > self._small_piece:
            pieces = [pcm[: self._small_piece], pcm[self._small_piece :]]
        for piece in pieces:
            if piece.size <= self._small_piece:
                data = self._encoder.encode(piece)
            else:
                data = await asyncio.to_thread(self._encoder.encode, piece)
            self._pending += piece.size
            if (chunk := self._chunk(data)) is not None:
                yield chunk

    async def finish(self) -> EncodedChunk | None:
        """The encoder's tail, ending the stream (None when there is nothing left)."""
        return self._chunk(await asyncio.to_thread(self._encoder.close), last=True)

    def close(self) -> None:
        """Release the encoder (after ``finish``, or when the stream is abandoned)."""
        self._encoder.close()

    def _chunk(self, data: bytes, last: bool = False) -> EncodedChunk | None:
        # Samples whose bytes have not come out yet wait for the next chunk; at the end
        # they go out even with no bytes, so that the counts still add up.
        if not data and not (last and self._pending):
            return None
        chunk = EncodedChunk(data, self._pending)
        self._pending = 0
        return chunk


def preload() -> None:
    """Import the codec library and open and close each encoder once, so that the first
    request pays for neither (about 80 ms, the import mostly). Blocking: run it in a
    thread while a service loads."""
    for codec in Codec:
        StreamEncoder(codec, OPUS_DEFAULT_RATE).close()
