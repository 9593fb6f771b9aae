"""Test harness: a real TTS server on loopback, what its telemetry saw, stream helpers."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from chorus.audio.v1 import audio_pb2
from chorus.tts.v1 import tts_pb2, tts_pb2_grpc
from opentelemetry.sdk.trace import ReadableSpan

from services.tts.engines.base import (
    ChunkSink,
    PcmChunk,
    SpeechEngine,
    VoiceInfo,
    WordSink,
    collecting_sink,
)
from services.tts.server import TtsService
from tests.support.service_harness import ServerUnderTest
from tests.support.waiting import WAIT_S, wait_until


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


class HeldEngine(SpeechEngine):
    """Another engine, held once it has handed over its first chunk, until ``release``.

    With it a test knows how far the engine can have got when something happens (the
    first chunk reaching the client, a cancellation) instead of racing the engine's
    speed. Calls before ``arm`` (the server's warm-up) pass straight through.
    """

    def __init__(self, inner: SpeechEngine) -> None:
        self.inner = inner
        self.name = inner.name
        self.default_voice = inner.default_voice
        self.release = threading.Event()
        self._lock = threading.Lock()
        self._armed = False
        self.calls = 0
        """Sentences asked for since ``arm``."""
        self.finished = 0
        """Of those, how many the engine has made to the end."""
        self.running = 0
        """Of those, how many are being made (or held) now."""
        self.chunks = 0
        """Chunks handed to the stream's sink since ``arm``."""
        self.refused_chunks = 0
        """Of those, how many the sink refused (it refuses once the stream has stopped)."""

    def arm(self) -> None:
        """Start holding: the engine stops after its next chunk until ``release``."""
        with self._lock:
            self._armed = True
            self.release.clear()
            self.calls = self.finished = self.running = self.chunks = self.refused_chunks = 0

    @property
    def model_version(self) -> str:
        return self.inner.model_version

    @property
    def sample_rate(self) -> int:
        return self.inner.sample_rate

    def load(self) -> None:
        self.inner.load()
        self.default_voice = self.inner.default_voice  # some engines pick it as they load

    def warm_up(self) -> None:
        self.inner.warm_up()

    def voices(self) -> Sequence[VoiceInfo]:
        return self.inner.voices()

    def synthesize(
        self,
        text: str,
        voice: VoiceInfo,
        speaking_rate: float,
        sink: ChunkSink,
        words: WordSink | None = None,
    ) -> None:
        # Never given words: this engine says it has no word timings (the base's default).
        if not self._armed:
            self.inner.synthesize(text, voice, speaking_rate, sink)
            return
        with self._lock:
            self.calls += 1
            self.running += 1

        def holding_sink(chunk: PcmChunk) -> bool:
            taken = sink(chunk)
            with self._lock:
                self.chunks += 1
                if not taken:
                    self.refused_chunks += 1
                first = self.chunks == 1
            # Bounded, so that a failing test cannot leave the engine's thread blocked.
            if first and not self.release.wait(WAIT_S):
                raise TimeoutError("the test never released the engine")
            return taken

        try:
            self.inner.synthesize(text, voice, speaking_rate, holding_sink)
            with self._lock:
                self.finished += 1
        finally:
            with self._lock:
                self.running -= 1


async def samples_made_before_cancel(tts: TtsServer, engine: HeldEngine, text: str) -> int:
    """Cancel a stream of ``text`` at its first chunk; the samples the engine had made.

    ``engine``, the server's engine, is held after its first chunk until the server has
    recorded the cancellation; released, it must be stopped there: the stream asks for
    no further sentence. Waits for the ``tts.synthesize`` span that records the
    cancellation (found by its attribute, since an earlier request's span may still be
    ending).
    """

    def cancelled_spans() -> list[ReadableSpan]:
        return [
            span
            for span in tts.finished_spans("tts.synthesize")
            if span.attributes is not None and span.attributes.get("chorus.tts.cancelled")
        ]

    before = len(cancelled_spans())
    engine.arm()
    try:
        call = tts.stub.Synthesize(tts_pb2.SynthesizeRequest(text=text), timeout=WAIT_S)
        async for response in call:
            if response.HasField("chunk"):
                break
        call.cancel()
        await wait_until(lambda: len(cancelled_spans()) > before, "the cancelled stream's span")
    finally:
        engine.release.set()
    span = cancelled_spans()[before]
    assert span.attributes is not None
    made = span.attributes["chorus.tts.engine_samples"]
    assert isinstance(made, int)

    await wait_until(lambda: engine.running == 0, "the released sentence to end")
    assert engine.calls == 1, "the stream asked for another sentence after the cancel"
    return made


def engine_chunks(
    engine: SpeechEngine, text: str, voice: str = "", speaking_rate: float = 1.0
) -> list[PcmChunk]:
    """Every chunk ``engine`` passes to its sink for one sentence, called directly."""
    chunks: list[PcmChunk] = []
    engine.synthesize(text, engine.resolve_voice(voice, ""), speaking_rate, collecting_sink(chunks))
    return chunks


async def wait_for_span(tts: TtsServer, name: str, count: int = 1) -> ReadableSpan:
    """The ``count``-th finished span called ``name``, once it has ended."""
    await wait_until(lambda: len(tts.finished_spans(name)) >= count, f"span {name} #{count}")
    return tts.finished_spans(name)[count - 1]


def details(error: grpc.aio.AioRpcError) -> str:
    """The status message of a failed call."""
    return error.details() or ""
