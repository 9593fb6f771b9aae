"""The streaming Ogg Opus and MP3 encoders, decoded back with the same library (PyAV).

Tolerances (tests.support.compressed_audio says where they come from): a whole Opus
stream decodes to exactly the PCM fed; a whole MP3 stream to that plus LAME's 1105-sample
delay and up to one frame of padding. A stream cut after any chunk decodes, to the PCM fed
up to the cut less what the encoder still held: at most 50 ms for Opus, LAME's delay and
three frames for MP3.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from chorus.audio.v1 import audio_pb2

from services.common.audio_codecs import (
    OPUS_SAMPLE_RATES,
    SMALL_PIECE_MS,
    ChunkEncoder,
    Codec,
    StreamEncoder,
    output_sample_rate,
)
from services.common.audio_proto import (
    audio_format_proto,
    encoding_from_proto,
    sample_format_from_proto,
)
from services.common.errors import InvalidArgument
from services.common.pcm import SampleFormat, Samples, StreamResampler
from services.common.sample_rates import SUPPORTED_SAMPLE_RATES
from services.tts.engines.espeak import EspeakEngine
from tests.support.compressed_audio import (
    MP3_DELAY,
    OPUS_DECODE_RATE,
    OPUS_LAG_S,
    decode_mp3,
    decode_ogg_opus,
    mp3_frame_samples,
    mp3_lag_samples,
)

CHUNK_SIZES = (0, 1, 17, 480, 1323, 4000, 11025)
"""Chunk lengths fed in turn: empty, tiny, shorter and longer than a codec frame."""


@functools.cache
def speech_22050() -> Samples:
    """A few seconds of real speech (espeak-ng) at its own 22050 Hz."""
    engine = EspeakEngine()
    engine.load()
    speech: Samples = engine.speak_whole("Hello there. This is Chorus, speaking in Opus and MP3.")
    return speech.astype(np.float32)


def speech_at(rate: int) -> Samples:
    return StreamResampler(22050, rate).process(speech_22050(), last=True)


def feed(encoder: StreamEncoder, pcm: Samples) -> list[tuple[bytes, int]]:
    """Encode ``pcm`` in chunks of CHUNK_SIZES in turn; each chunk's bytes and the PCM
    samples fed up to its end; the tail last."""
    outputs, fed = [], 0
    for index in range(pcm.size):
        if fed >= pcm.size:
            break
        size = CHUNK_SIZES[index % len(CHUNK_SIZES)]
        outputs.append((encoder.encode(pcm[fed : fed + size]), min(fed + size, pcm.size)))
        fed += size
    outputs.append((encoder.close(), pcm.size))
    return outputs


def decoded_length(codec: Codec, data: bytes, rate: int) -> float:
    """Seconds of audio in ``data``, MP3's delay taken off."""
    if codec is Codec.OGG_OPUS:
        return decode_ogg_opus(data).size / OPUS_DECODE_RATE
    samples, decoded_rate = decode_mp3(data)
    assert decoded_rate == rate
    return (samples.size - MP3_DELAY) / rate


def similarity(a: Samples, b: Samples) -> float:
    """Correlation of two signals' loudness envelopes (10 ms frames)."""
    frames = min(a.size, b.size) // 220
    envelopes = [
        np.sqrt((x[: frames * 220].reshape(frames, 220).astype(np.float64) ** 2).mean(axis=1))
        for x in (a, b)
    ]
    return float(np.corrcoef(*envelopes)[0, 1])


@pytest.mark.parametrize("rate", OPUS_SAMPLE_RATES)
def test_a_whole_opus_stream_decodes_to_exactly_the_pcm_fed(rate: int) -> None:
    pcm = speech_at(rate)
    data = b"".join(out for out, _ in feed(StreamEncoder(Codec.OGG_OPUS, rate), pcm))
    assert data.startswith(b"OggS")
    decoded = decode_ogg_opus(data)
    # Pre-skip and the end granule trim the encoder's look-ahead and padding exactly.
    assert decoded.size == round(pcm.size * OPUS_DECODE_RATE / rate)
    expected = StreamResampler(rate, OPUS_DECODE_RATE).process(pcm, last=True)
    assert similarity(decoded, expected) > 0.95


@pytest.mark.parametrize("rate", SUPPORTED_SAMPLE_RATES)
def test_a_whole_mp3_stream_decodes_to_the_pcm_fed_plus_delay_and_padding(rate: int) -> None:
    pcm = speech_at(rate)
    data = b"".join(out for out, _ in feed(StreamEncoder(Codec.MP3, rate), pcm))
    # Frames from the first byte: no ID3 tag, no Xing header.
    assert data[0] == 0xFF
    assert data[1] & 0xE0 == 0xE0
    decoded, decoded_rate = decode_mp3(data)
    assert decoded_rate == rate
    assert MP3_DELAY <= decoded.size - pcm.size <= MP3_DELAY + mp3_frame_samples(rate)
    assert similarity(decoded[MP3_DELAY:], pcm) > 0.95


@pytest.mark.parametrize(
    ("codec", "rate"),
    [(Codec.OGG_OPUS, 48000), (Codec.OGG_OPUS, 16000), (Codec.MP3, 22050), (Codec.MP3, 48000)],
)
def test_a_stream_cut_after_any_chunk_decodes_up_to_there(codec: Codec, rate: int) -> None:
    pcm = speech_at(rate)
    outputs = feed(StreamEncoder(codec, rate), pcm)
    lag_s = OPUS_LAG_S if codec is Codec.OGG_OPUS else mp3_lag_samples(rate) / rate
    received, previous = b"", 0.0
    cuts = 0
    for data, fed in outputs:
        received += data
        if not data:
            continue
        cuts += 1
        seconds = decoded_length(codec, received, rate)
        fed_s = fed / rate
        assert fed_s - lag_s <= seconds, f"after {fed} samples: {seconds:.4f} s decoded"
        if codec is Codec.OGG_OPUS:
            assert seconds <= fed_s + 1e-9
        assert seconds >= previous
        previous = seconds
    assert cuts > 10


@pytest.mark.parametrize(("codec", "rate"), [(Codec.OGG_OPUS, 48000), (Codec.MP3, 22050)])
def test_a_stream_that_never_had_audio_is_a_short_silence_that_decodes(
    codec: Codec, rate: int
) -> None:
    encoder = StreamEncoder(codec, rate)
    data = encoder.encode(np.zeros(0, np.float32)) + encoder.close()
    decoded = decode_ogg_opus(data) if codec is Codec.OGG_OPUS else decode_mp3(data)[0]
    assert 0 < decoded.size <= 0.1 * (OPUS_DECODE_RATE if codec is Codec.OGG_OPUS else rate)
    assert np.abs(decoded).max() < 1e-3


def test_int16_pcm_encodes_as_its_float_equivalent() -> None:
    pcm = speech_at(16000)
    as_int16 = np.round(np.clip(pcm, -1, 1) * 32767).astype(np.int16)
    encoder = StreamEncoder(Codec.OGG_OPUS, 16000)
    data = encoder.encode(as_int16) + encoder.close()
    decoded = decode_ogg_opus(data)
    assert decoded.size == pcm.size * 3
    assert similarity(decoded, StreamResampler(16000, 48000).process(pcm, last=True)) > 0.95


def test_closing_twice_returns_nothing_and_encoding_after_close_is_an_error() -> None:
    encoder = StreamEncoder(Codec.MP3, 22050)
    encoder.encode(speech_22050()[:5000])
    assert encoder.close()
    assert encoder.close() == b""
    with pytest.raises(ValueError, match="closed"):
        encoder.encode(speech_22050()[:100])


def test_an_opus_encoder_refuses_a_rate_opus_does_not_have() -> None:
    with pytest.raises(ValueError, match="22050"):
        StreamEncoder(Codec.OGG_OPUS, 22050)


async def test_chunk_encoder_counts_every_sample_once_and_sends_no_empty_chunk() -> None:
    pcm = speech_at(22050)
    encoder = ChunkEncoder(Codec.MP3, 22050)
    chunks = []
    try:
        for start in range(0, pcm.size, 300):  # shorter than a frame: some give no bytes
            chunks.extend([chunk async for chunk in encoder.encode(pcm[start : start + 300])])
        tail = await encoder.finish()
    finally:
        encoder.close()
    assert tail is not None
    chunks.append(tail)
    assert all(chunk.data for chunk in chunks)
    assert sum(chunk.samples for chunk in chunks) == pcm.size
    decoded, _ = decode_mp3(b"".join(chunk.data for chunk in chunks))
    assert decoded.size - MP3_DELAY >= pcm.size


async def test_the_first_pcm_goes_out_in_a_short_piece_first() -> None:
    """An engine that hands over half a second at once: its first 100 ms is encoded and
    sent alone, so the first bytes do not wait for the rest to be encoded."""
    pcm = speech_at(48000)
    encoder = ChunkEncoder(Codec.OGG_OPUS, 48000)
    try:
        first = [chunk async for chunk in encoder.encode(pcm[:24000])]
        later = [chunk async for chunk in encoder.encode(pcm[24000:48000])]
    finally:
        encoder.close()
    assert [chunk.samples for chunk in first] == [48000 * SMALL_PIECE_MS // 1000, 19200]
    assert len(later) == 1
    # The first piece alone decodes: headers and its first pages.
    assert decode_ogg_opus(first[0].data).size > 0


@pytest.mark.parametrize(
    ("encoding", "requested", "expected"),
    [
        (Codec.OGG_OPUS, 0, 48000),
        (Codec.OGG_OPUS, 12000, 12000),
        (Codec.OGG_OPUS, 8000, 8000),
        (Codec.MP3, 0, 22050),
        (Codec.MP3, 44100, 44100),
        (SampleFormat.S16LE, 0, 22050),
        (SampleFormat.F32LE, 16000, 16000),
    ],
)
def test_output_sample_rate(encoding: Codec | SampleFormat, requested: int, expected: int) -> None:
    assert output_sample_rate(encoding, requested, 22050) == expected


@pytest.mark.parametrize(
    ("encoding", "requested"),
    [
        (Codec.OGG_OPUS, 22050),
        (Codec.OGG_OPUS, 44100),
        (Codec.OGG_OPUS, -1),
        (Codec.MP3, 12000),
        (SampleFormat.S16LE, 12000),
    ],
)
def test_a_rate_the_encoding_cannot_carry_names_sample_rate_hz(
    encoding: Codec | SampleFormat, requested: int
) -> None:
    with pytest.raises(InvalidArgument) as raised:
        output_sample_rate(encoding, requested, 22050)
    assert raised.value.field == "sample_rate_hz"
    assert str(requested) in raised.value.message


def test_proto_encodings_map_both_ways() -> None:
    for value, encoding in [
        (audio_pb2.AUDIO_ENCODING_UNSPECIFIED, SampleFormat.S16LE),
        (audio_pb2.AUDIO_ENCODING_PCM_S16LE, SampleFormat.S16LE),
        (audio_pb2.AUDIO_ENCODING_PCM_F32LE, SampleFormat.F32LE),
        (audio_pb2.AUDIO_ENCODING_OGG_OPUS, Codec.OGG_OPUS),
        (audio_pb2.AUDIO_ENCODING_MP3, Codec.MP3),
    ]:
        assert encoding_from_proto(value, "encoding") is encoding
    announced = audio_format_proto(48000, Codec.OGG_OPUS)
    assert announced.encoding == audio_pb2.AUDIO_ENCODING_OGG_OPUS
    assert (announced.sample_rate_hz, announced.channels) == (48000, 1)
    assert audio_format_proto(22050, Codec.MP3).encoding == audio_pb2.AUDIO_ENCODING_MP3


def test_an_unknown_encoding_names_the_field() -> None:
    with pytest.raises(InvalidArgument, match=r"^encoding: unknown audio encoding 99$"):
        encoding_from_proto(99, "encoding")


def test_raw_pcm_fields_refuse_a_compressed_encoding() -> None:
    with pytest.raises(InvalidArgument, match=r"^audio\.raw\.format\.encoding: Ogg Opus is"):
        sample_format_from_proto(audio_pb2.AUDIO_ENCODING_OGG_OPUS, "audio.raw.format.encoding")
