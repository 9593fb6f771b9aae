"""Test harness for the prosody service: the server, and speech to send it."""

from __future__ import annotations

from functools import cache

from chorus.prosody.v1 import prosody_pb2, prosody_pb2_grpc

from services.common.wav import write_wav
from services.prosody.server import ProsodyService
from tests.prosody.speech import CONGRATULATIONS, espeak_speech
from tests.support.media import speech_recordings
from tests.support.service_harness import ServerUnderTest


class ProsodyServer(ServerUnderTest[ProsodyService]):
    """A prosody server under test."""

    @property
    def stub(self) -> prosody_pb2_grpc.ProsodyAsyncStub:
        return prosody_pb2_grpc.ProsodyStub(self.channel)


def recordings() -> list[bytes]:
    """The shared recordings of human speech, as WAV bytes."""
    return [path.read_bytes() for path in speech_recordings()]


@cache
def espeak_wav(text: str = CONGRATULATIONS) -> bytes:
    """Speech made by the espeak engine, as a 16-bit WAV at 22050 Hz."""
    return write_wav(*espeak_speech(text))


def wav_audio(data: bytes) -> prosody_pb2.Audio:
    return prosody_pb2.Audio(wav=data)
