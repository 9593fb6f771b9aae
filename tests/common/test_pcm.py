import numpy as np
import pytest

from services.common.pcm import Rechunker, SampleFormat, StreamResampler, decode, encode


@pytest.mark.parametrize("sample_format", list(SampleFormat))
def test_encode_decode_round_trip(sample_format: SampleFormat) -> None:
    samples = np.linspace(-1.0, 1.0, 101, dtype=np.float32)
    data = encode(samples, sample_format)
    assert len(data) == samples.size * sample_format.bytes_per_sample
    np.testing.assert_allclose(decode(data, sample_format), samples, atol=1 / 32767)


def test_encode_clips_instead_of_wrapping() -> None:
    data = encode(np.array([2.0, -2.0], dtype=np.float32), SampleFormat.S16LE)
    assert list(np.frombuffer(data, dtype="<i2")) == [32767, -32767]


def test_decode_refuses_partial_samples() -> None:
    with pytest.raises(ValueError, match="whole number"):
        decode(b"\x00\x01\x02", SampleFormat.S16LE)


def test_rechunker_makes_exact_chunks_and_keeps_every_sample() -> None:
    rechunker = Rechunker(100)
    pieces = [np.arange(n, dtype=np.float32) for n in (30, 250, 7, 90)]
    out = [chunk for piece in pieces for chunk in rechunker.push(piece)]
    out += list(rechunker.flush())
    assert [chunk.size for chunk in out] == [100, 100, 100, 77]
    np.testing.assert_array_equal(np.concatenate(out), np.concatenate(pieces))


def test_rechunker_zero_passes_chunks_through() -> None:
    rechunker = Rechunker(0)
    assert [c.size for c in rechunker.push(np.zeros(5, dtype=np.float32))] == [5]
    assert list(rechunker.flush()) == []


def test_stream_resampling_matches_whole_resampling() -> None:
    rng = np.random.default_rng(0)
    signal = rng.standard_normal(22050).astype(np.float32) * 0.1
    whole = StreamResampler(22050, 16000).process(signal, last=True)
    stream = StreamResampler(22050, 16000)
    pieces = [stream.process(part) for part in np.array_split(signal, 37)]
    pieces.append(stream.process(np.zeros(0, dtype=np.float32), last=True))
    streamed = np.concatenate(pieces)
    assert abs(streamed.size - 16000) <= 1
    np.testing.assert_allclose(streamed, whole[: streamed.size], atol=1e-5)
