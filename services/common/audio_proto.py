"""Conversions between chorus.audio.v1 messages and the in-process PCM types."""

from __future__ import annotations

from chorus.audio.v1 import audio_pb2

from services.common.errors import InvalidArgument
from services.common.pcm import SampleFormat

_FROM_PROTO = {
    audio_pb2.AUDIO_ENCODING_UNSPECIFIED: SampleFormat.S16LE,
    audio_pb2.AUDIO_ENCODING_PCM_S16LE: SampleFormat.S16LE,
    audio_pb2.AUDIO_ENCODING_PCM_F32LE: SampleFormat.F32LE,
}
_TO_PROTO = {
    SampleFormat.S16LE: audio_pb2.AUDIO_ENCODING_PCM_S16LE,
    SampleFormat.F32LE: audio_pb2.AUDIO_ENCODING_PCM_F32LE,
}


def sample_format_from_proto(encoding: int, field: str) -> SampleFormat:
    """The SampleFormat of a request's ``encoding``; InvalidArgument names ``field``."""
    try:
        return _FROM_PROTO[encoding]  # type: ignore[index]  # unknown enum values are ints
    except KeyError:
        raise InvalidArgument(field, f"unknown audio encoding {encoding}") from None


def audio_format_proto(sample_rate: int, sample_format: SampleFormat) -> audio_pb2.AudioFormat:
    """The AudioFormat message announcing mono audio at ``sample_rate`` in ``sample_format``."""
    return audio_pb2.AudioFormat(
        sample_rate_hz=sample_rate, encoding=_TO_PROTO[sample_format], channels=1
    )
