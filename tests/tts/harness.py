"""Test harness: a real TTS server on loopback, what its telemetry saw, stream helpers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from chorus.audio.v1 import audio_pb2
from chorus.tts.v1 import tts_pb2, tts_pb2_grpc
from opentelemetry.sdk.trace import ReadableSpan

from services.tts.engine import PcmChunk, SpeechEngine
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


async def samples_made_before_cancel(tts: TtsServer, text: str) -> int:
    """Cancel a stream of ``text`` at its first chunk; the samples the engine had made.

    Waits for the ``tts.synthesize`` span that records the cancellation (found by its
    attribute, since an earlier request's span may still be ending).
    """

    def cancelled_spans() -> list[ReadableSpan]:
        return [
            span
            for span in tts.finished_spans("tts.synthesize")
            if span.attributes is not None and span.attributes.get("chorus.tts.cancelled")
        ]

    before = len(cancelled_spans())
    call = tts.stub.Synthesize(tts_pb2.SynthesizeRequest(text=text))
    async for response in call:
        if response.HasField("chunk"):
            break
    call.cancel()

    await wait_until(lambda: len(cancelled_spans()) > before)
    span = cancelled_spans()[before]
    assert span.attributes is not None
    made = span.attributes["chorus.tts.engine_samples"]
    assert isinstance(made, int)
    return made


def engine_chunks(
    engine: SpeechEngine, text: str, voice: str = "", speaking_rate: float = 1.0
) -> list[PcmChunk]:
    """Every chunk ``engine`` passes to its sink for one sentence, called directly."""
    chunks: list[PcmChunk] = []

    def keep(chunk: PcmChunk) -> bool:
        chunks.append(chunk)
        return True

    engine.synthesize(text, engine.resolve_voice(voice, ""), speaking_rate, keep)
    return chunks


async def wait_for_span(tts: TtsServer, name: str, count: int = 1) -> ReadableSpan:
    """The ``count``-th finished span called ``name``, once it has ended."""
    await wait_until(lambda: len(tts.finished_spans(name)) >= count)
    return tts.finished_spans(name)[count - 1]


async def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Poll ``condition`` until true; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def details(error: grpc.aio.AioRpcError) -> str:
    """The status message of a failed call."""
    return error.details() or ""
