"""Test harness: a real TTS server on loopback, what its telemetry saw, stream helpers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from chorus.audio.v1 import audio_pb2
from chorus.tts.v1 import tts_pb2, tts_pb2_grpc

from services.tts.server import TtsService
from tests.support.service_harness import ServerUnderTest


class TtsServer(ServerUnderTest[TtsService]):
    """A TTS server under test."""

    @property
    def stub(self) -> tts_pb2_grpc.TextToSpeechAsyncStub:
        return tts_pb2_grpc.TextToSpeechStub(self.channel)


StartTts = Callable[..., Awaitable[TtsServer]]
"""The ``start_tts`` fixture: starts a server with settings overrides."""


@dataclass
class Synthesis:
    """Everything one Synthesize stream returned."""

    format: audio_pb2.AudioFormat
    chunks: list[tts_pb2.AudioChunk]
    summary: tts_pb2.SynthesisSummary

    @property
    def audio(self) -> bytes:
        return b"".join(chunk.audio for chunk in self.chunks)


async def synthesize(stub: tts_pb2_grpc.TextToSpeechAsyncStub, **fields: Any) -> Synthesis:
    """Run one Synthesize call to the end and sort its messages."""
    formats, chunks, summaries = [], [], []
    async for response in stub.Synthesize(tts_pb2.SynthesizeRequest(**fields), timeout=30):
        kind = response.WhichOneof("content")
        if kind == "format":
            formats.append(response.format)
        elif kind == "chunk":
            chunks.append(response.chunk)
        else:
            summaries.append(response.summary)
    assert len(formats) == 1
    assert len(summaries) == 1
    return Synthesis(formats[0], chunks, summaries[0])
