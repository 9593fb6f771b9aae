"""The prosody API's Audio message to mono float samples and back, in the caller's form."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from chorus.prosody.v1 import prosody_pb2

from services.common.audio_proto import audio_format_proto, sample_format_from_proto
from services.common.errors import InvalidArgument
from services.common.pcm import SampleFormat, Samples, decode, encode
from services.common.wav import NotAudioError, read_wav, write_wav

MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 8000, 96000
# -80 dBFS: below this nothing is there to analyse or adjust.
SILENCE_PEAK = 1e-4


@dataclass(frozen=True)
class AudioForm:
    """How the caller sent its audio, so the result goes back the same way."""

    sample_rate: int
    wav_subtype: str | None
    """libsndfile sample type when the caller sent WAV; None for raw PCM."""
    sample_format: SampleFormat = SampleFormat.S16LE
    """Raw PCM sample format (raw input only)."""


def decode_audio(message: prosody_pb2.Audio, max_seconds: float) -> tuple[Samples, AudioForm]:
    """Samples and form of ``message``; InvalidArgument names the field that is wrong."""
    kind = message.WhichOneof("content")
    if kind == "wav":
        field = "audio.wav"
        try:
            wav = read_wav(message.wav, max_seconds)
        except NotAudioError as error:
            raise InvalidArgument(field, str(error)) from None
        samples, form = wav.samples, AudioForm(wav.sample_rate, wav.subtype)
    elif kind == "raw":
        field = "audio.raw.pcm"
        samples, form = _decode_raw(message.raw)
    else:
        raise InvalidArgument("audio", "required: set audio.wav or audio.raw")

    if not MIN_SAMPLE_RATE <= form.sample_rate <= MAX_SAMPLE_RATE:
        raise InvalidArgument(
            "audio",
            f"sample rate {form.sample_rate} Hz is outside {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE}",
        )
    if samples.size == 0:
        raise InvalidArgument(field, "is empty")
    seconds = samples.size / form.sample_rate
    if seconds > max_seconds:
        raise InvalidArgument(field, f"{seconds:.1f} s is over the limit of {max_seconds:g} s")
    if not np.isfinite(samples).all():
        raise InvalidArgument(field, "contains NaN or infinite samples")
    if np.abs(samples).max() < SILENCE_PEAK:
        raise InvalidArgument(field, "is silent: nothing to analyse or adjust")
    return samples, form


def encode_audio(samples: Samples, form: AudioForm) -> prosody_pb2.Audio:
    """``samples`` as an Audio message in the form the caller used."""
    if form.wav_subtype is not None:
        return prosody_pb2.Audio(wav=write_wav(samples, form.sample_rate, form.wav_subtype))
    return prosody_pb2.Audio(
        raw=prosody_pb2.RawAudio(
            pcm=encode(samples, form.sample_format),
            format=audio_format_proto(form.sample_rate, form.sample_format),
        )
    )


def _decode_raw(raw: prosody_pb2.RawAudio) -> tuple[Samples, AudioForm]:
    if raw.format.channels not in (0, 1):
        raise InvalidArgument(
            "audio.raw.format.channels", f"{raw.format.channels} channels; raw audio is mono"
        )
    if not raw.format.sample_rate_hz:
        raise InvalidArgument("audio.raw.format.sample_rate_hz", "required for raw audio")
    sample_format = sample_format_from_proto(raw.format.encoding, "audio.raw.format.encoding")
    try:
        samples = decode(raw.pcm, sample_format)
    except ValueError as error:
        raise InvalidArgument("audio.raw.pcm", str(error)) from None
    return samples, AudioForm(raw.format.sample_rate_hz, None, sample_format)
