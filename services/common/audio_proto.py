"""Conversions between chorus.audio.v1 messages and the in-process audio types."""

from __future__ import annotations

from chorus.audio.v1 import audio_pb2

from services.common.audio_codecs import Codec, Encoding
from services.common.errors import InvalidArgument
from services.common.pcm import SampleFormat

_FROM_PROTO: dict[int, Encoding] = {
    audio_pb2.AUDIO_ENCODING_UNSPECIFIED: SampleFormat.S16LE,
    audio_pb2.AUDIO_ENCODING_PCM_S16LE: SampleFormat.S16LE,
    audio_pb2.AUDIO_ENCODING_PCM_F32LE: SampleFormat.F32LE,
    audio_pb2.AUDIO_ENCODING_OGG_OPUS: Codec.OGG_OPUS,
    audio_pb2.AUDIO_ENCODING_MP3: Codec.MP3,
}
_TO_PROTO = {
    SampleFormat.S16LE: audio_pb2.AUDIO_ENCODING_PCM_S16LE,
    SampleFormat.F32LE: audio_pb2.AUDIO_ENCODING_PCM_F32LE,
    Codec.OGG_OPUS: audio_pb2.AUDIO_ENCODING_OGG_OPUS,
    Codec.MP3: audio_pb2.AUDIO_ENCODING_MP3,
}


def encoding_from_proto(encoding: int, field: str) -> Encoding:
    """The output Encoding a request's ``encoding`` asks for (PCM, Ogg Opus or MP3);
    InvalidArgument naming ``field`` for a value the enum does not know."""
    try:
        return _FROM_PROTO[encoding]
    except KeyError:
        raise InvalidArgument(field, f"unknown audio encoding {encoding}") from None


def sample_format_from_proto(encoding: int, field: str) -> SampleFormat:
    """The SampleFormat of raw PCM's ``encoding``; InvalidArgument names ``field`` for an
    unknown value and for a compressed one (raw audio is PCM)."""
    chosen = encoding_from_proto(encoding, field)
    if isinstance(chosen, Codec):
        raise InvalidArgument(
            field, f"{chosen.label} is compressed; raw audio is PCM_S16LE or PCM_F32LE"
        )
    return chosen


def encoding_proto(encoding: Encoding) -> audio_pb2.AudioEncoding.ValueType:
    """The AudioEncoding value of ``encoding``."""
    return _TO_PROTO[encoding]


def audio_format_proto(sample_rate: int, encoding: Encoding) -> audio_pb2.AudioFormat:
    """The AudioFormat message announcing mono audio at ``sample_rate`` in ``encoding``."""
    return audio_pb2.AudioFormat(
        sample_rate_hz=sample_rate, encoding=encoding_proto(encoding), channels=1
    )
