from pathlib import Path

import numpy as np
import pytest
import soundfile

from services.common.wav import NotAudioError, read_wav, write_wav
from tests.support.media import compressed_wav, seven_bit_wav, speech_recordings

SPEECH = speech_recordings()[0]


def test_reads_a_recording() -> None:
    wav = read_wav(SPEECH.read_bytes())
    assert wav.sample_rate == 44100
    assert wav.subtype == "PCM_16"
    assert wav.channels == 1
    assert wav.samples.dtype == np.float32
    assert 0.5 < wav.samples.size / wav.sample_rate < 1.0


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "FLOAT"])
def test_write_then_read_round_trips(subtype: str) -> None:
    samples = (np.sin(np.linspace(0, 200, 8000)) * 0.5).astype(np.float32)
    wav = read_wav(write_wav(samples, 16000, subtype))
    assert wav.subtype == subtype
    assert wav.sample_rate == 16000
    np.testing.assert_allclose(wav.samples, samples, atol=1 / 32000)


def test_stereo_is_mixed_to_mono(tmp_path: Path) -> None:
    left = np.full(100, 0.5, dtype=np.float32)
    right = np.full(100, -0.1, dtype=np.float32)
    path = tmp_path / "stereo.wav"
    soundfile.write(path, np.stack([left, right], axis=1), 8000)
    wav = read_wav(path.read_bytes())
    assert wav.channels == 2
    np.testing.assert_allclose(wav.samples, 0.2, atol=1e-4)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "not a readable WAV"),
        (b"just some text, not audio", "not a readable WAV"),
        (SPEECH.read_bytes()[:1000], "truncated"),
    ],
)
def test_what_is_not_a_whole_wav_is_refused(data: bytes, problem: str) -> None:
    with pytest.raises(NotAudioError, match=problem):
        read_wav(data)


def test_other_audio_containers_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "audio.flac"
    soundfile.write(path, np.zeros(100, dtype=np.float32), 8000, format="FLAC")
    with pytest.raises(NotAudioError, match="FLAC file, not WAV"):
        read_wav(path.read_bytes())


@pytest.mark.parametrize("subtype", ["GSM610", "IMA_ADPCM", "MS_ADPCM", "ULAW", "ALAW"])
def test_compressed_wav_is_read_even_where_it_cannot_seek(subtype: str) -> None:
    wav = read_wav(compressed_wav(subtype, seconds=1.5))
    assert wav.subtype == subtype
    assert wav.samples.size / wav.sample_rate == pytest.approx(1.5, abs=0.05)
    assert np.abs(wav.samples).max() > 0.01


def test_the_duration_limit_is_checked_from_the_header() -> None:
    data = compressed_wav("IMA_ADPCM", seconds=61)
    with pytest.raises(NotAudioError, match=r"61\.\d s is over the limit of 60 s"):
        read_wav(data, max_seconds=60)
    assert read_wav(data).samples.size > 0


def test_an_odd_sample_size_is_refused() -> None:
    with pytest.raises(NotAudioError, match="7 bits per sample is not supported"):
        read_wav(seven_bit_wav())


def test_too_many_channels_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "many.wav"
    soundfile.write(path, np.zeros((100, 9), dtype=np.float32), 8000)
    with pytest.raises(NotAudioError, match="9 channels"):
        read_wav(path.read_bytes())
