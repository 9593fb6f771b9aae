"""Speech through the inner services: tts for the audio, prosody for the mood.

Audio travels between services as raw 16-bit PCM (no WAV headers to parse per sentence);
every call carries what is left of the caller's deadline (``remaining_s``).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass

import grpc
from chorus.audio.v1 import audio_pb2
from chorus.prosody.v1 import prosody_pb2, prosody_pb2_grpc
from chorus.tts.v1 import tts_pb2, tts_pb2_grpc

from services.orchestrator.upstreams import Upstream

SAMPLE_RATE = 22050
ENCODING = audio_pb2.AUDIO_ENCODING_PCM_S16LE


@dataclass(frozen=True)
class Adjusted:
    """A sentence's audio after prosody, and how far prosody trusted it."""

    pcm: bytes
    confidence: prosody_pb2.ConfidenceReport
    fallback: bool
    fallback_reason: str


class SpeechClient:
    """The tts and prosody calls the orchestrator's RPCs are made of."""

    def __init__(self, tts: Upstream, prosody: Upstream) -> None:
        self.tts = tts
        self.prosody = prosody
        self._tts = tts_pb2_grpc.TextToSpeechStub(tts.channel)
        self._prosody = prosody_pb2_grpc.ProsodyStub(prosody.channel)

    async def stream(
        self, text: str, voice: str, language: str, sample_rate: int, remaining_s: float | None
    ) -> AsyncGenerator[bytes, None]:
        """tts audio for ``text`` as it is made (16-bit PCM at ``sample_rate``)."""
        request = tts_pb2.SynthesizeRequest(
            text=text,
            voice=voice,
            language=language,
            sample_rate_hz=sample_rate,
            encoding=ENCODING,
        )
        try:
            async for response in self._tts.Synthesize(request, timeout=remaining_s):
                if response.HasField("chunk"):
                    yield response.chunk.audio
        except grpc.aio.AioRpcError as error:
            raise self.tts.error(error) from None

    async def synthesize(
        self, text: str, voice: str, language: str, sample_rate: int, remaining_s: float | None
    ) -> bytes:
        """tts audio for ``text``, whole."""
        return b"".join(
            [chunk async for chunk in self.stream(text, voice, language, sample_rate, remaining_s)]
        )

    async def adjust(
        self, pcm: bytes, sample_rate: int, preset: str, remaining_s: float | None
    ) -> Adjusted:
        """``pcm`` reshaped by prosody's ``preset`` (the original when prosody is unsure)."""
        request = prosody_pb2.AdjustRequest(
            audio=prosody_pb2.Audio(
                raw=prosody_pb2.RawAudio(
                    pcm=pcm,
                    format=audio_pb2.AudioFormat(
                        sample_rate_hz=sample_rate, encoding=ENCODING, channels=1
                    ),
                )
            ),
            preset=preset,
        )
        try:
            response = await self._prosody.Adjust(request, timeout=remaining_s)
        except grpc.aio.AioRpcError as error:
            raise self.prosody.error(error) from None
        return Adjusted(
            response.audio.raw.pcm, response.confidence, response.fallback, response.fallback_reason
        )
