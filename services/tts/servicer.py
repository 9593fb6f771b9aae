"""TextToSpeech servicer: validates requests, serves from cache or engine, streams chunks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncGenerator

from chorus.tts.v1 import tts_pb2, tts_pb2_grpc
from opentelemetry import trace
from opentelemetry.metrics import Meter
from opentelemetry.util.types import AttributeValue

from services.common.admission import AdmissionController
from services.common.audio_proto import audio_format_proto, sample_format_from_proto
from services.common.cache import ResultCache, cache_key
from services.common.errors import InvalidArgument
from services.common.grpc_context import Context
from services.common.sample_rates import supported_sample_rate
from services.common.stream_timing import StreamMetrics
from services.common.validation import required_text
from services.tts.cached_audio import pack_chunks, unpack_chunks
from services.tts.engines.base import SpeechEngine, speaks
from services.tts.synthesis import SpeechStreamer, SynthesisProgress, SynthesisSpec

logger = logging.getLogger(__name__)

SPEAKING_RATE_RANGE = (0.5, 2.5)
MAX_CHUNK_DURATION_MS = 1000


class TextToSpeechServicer(tts_pb2_grpc.TextToSpeechServicer):
    """Serves chorus.tts.v1.TextToSpeech over one resident engine."""

    def __init__(
        self,
        *,
        engine: SpeechEngine,
        streamer: SpeechStreamer,
        cache: ResultCache,
        admission: AdmissionController,
        tracer: trace.Tracer,
        meter: Meter,
        max_text_chars: int,
    ) -> None:
        self._engine = engine
        self._streamer = streamer
        self._cache = cache
        self._admission = admission
        self._tracer = tracer
        self._max_text_chars = max_text_chars
        self._stream_metrics = StreamMetrics(meter, "tts", "a Synthesize")

    async def ListVoices(
        self, request: tts_pb2.ListVoicesRequest, context: Context
    ) -> tts_pb2.ListVoicesResponse:
        """List the engine's voices, optionally only those speaking a language."""
        voices = self._engine.voices()
        if request.language:
            voices = [v for v in voices if speaks(v, request.language)]
        return tts_pb2.ListVoicesResponse(
            engine=self._engine.name,
            voices=[
                tts_pb2.Voice(
                    name=v.name,
                    languages=v.languages,
                    gender=v.gender,
                    natural_sample_rate_hz=self._engine.sample_rate,
                )
                for v in voices
            ],
        )

    async def Synthesize(
        self, request: tts_pb2.SynthesizeRequest, context: Context
    ) -> AsyncGenerator[tts_pb2.SynthesizeResponse, None]:
        """Stream the format, then audio chunks as they are made, then a summary."""
        spec = self._parse(request)
        async with (
            self._admission.slot("Synthesize"),
            contextlib.aclosing(self._synthesize(spec)) as responses,
        ):
            async for response in responses:
                yield response

    async def _synthesize(
        self, spec: SynthesisSpec
    ) -> AsyncGenerator[tts_pb2.SynthesizeResponse, None]:
        started = time.perf_counter()
        attributes: dict[str, AttributeValue] = {
            "chorus.tts.engine": self._engine.name,
            "chorus.tts.voice": spec.voice.name,
            "chorus.tts.chars": len(spec.text),
            "chorus.tts.sample_rate": spec.sample_rate,
            "chorus.tts.encoding": spec.sample_format.value,
        }
        with self._tracer.start_as_current_span("tts.synthesize", attributes=attributes) as span:
            yield tts_pb2.SynthesizeResponse(
                format=audio_format_proto(spec.sample_rate, spec.sample_format)
            )
            key = self._cache_key(spec)
            cached = await self._cache.get(key)
            span.set_attribute("chorus.cache.hit", cached is not None)
            progress = SynthesisProgress()
            chunks = (
                _replay(unpack_chunks(cached))
                if cached is not None
                else self._streamer.stream(spec, progress)
            )
            made: list[bytes] = []
            sample_offset = 0
            timing = self._stream_metrics.timing(started, {"chorus.cache.hit": cached is not None})
            try:
                # aclosing: a cancelled RPC must close the engine stream now, not at GC.
                async with contextlib.aclosing(chunks):
                    async for audio in chunks:
                        timing.sent()
                        samples = len(audio) // spec.sample_format.bytes_per_sample
                        yield tts_pb2.SynthesizeResponse(
                            chunk=tts_pb2.AudioChunk(
                                sequence=len(made),
                                sample_offset=sample_offset,
                                audio=audio,
                                sample_count=samples,
                            )
                        )
                        made.append(audio)
                        sample_offset += samples
            except (asyncio.CancelledError, GeneratorExit):
                span.set_attribute("chorus.tts.cancelled", True)
                raise
            finally:
                span.set_attribute("chorus.tts.engine_samples", progress.engine_samples)
                span.set_attribute("chorus.tts.sentences", progress.sentences_total)
                span.set_attribute("chorus.tts.sentences_done", progress.sentences_done)
                if progress.finished_ns is not None:
                    span.add_event("tts.synthesis_done", timestamp=progress.finished_ns)

            if cached is None:
                await self._cache.put(key, pack_chunks(made))
            audio_seconds = sample_offset / spec.sample_rate
            span.set_attribute("chorus.tts.chunks", len(made))
            span.set_attribute("chorus.tts.audio_seconds", audio_seconds)
            yield tts_pb2.SynthesizeResponse(
                summary=tts_pb2.SynthesisSummary(
                    engine=self._engine.name,
                    model_version=self._engine.model_version,
                    voice=spec.voice.name,
                    cache_hit=cached is not None,
                    chunk_count=len(made),
                    sample_count=sample_offset,
                    audio_seconds=audio_seconds,
                    synthesis_seconds=time.perf_counter() - started,
                    first_chunk_seconds=timing.first_audio_s,
                )
            )

    def _parse(self, request: tts_pb2.SynthesizeRequest) -> SynthesisSpec:
        """Validate ``request`` into a SynthesisSpec; InvalidArgument names the bad field."""
        text = required_text(request.text, "text", self._max_text_chars)

        voice = self._engine.resolve_voice(request.voice.strip(), request.language.strip())

        sample_rate = supported_sample_rate(
            request.sample_rate_hz, self._engine.sample_rate, zero_means="the engine's own"
        )

        sample_format = sample_format_from_proto(request.encoding, "encoding")

        rate = request.speaking_rate
        if math.isnan(rate):
            raise InvalidArgument("speaking_rate", "must be a number")
        if rate < 0:
            raise InvalidArgument("speaking_rate", f"{rate:g} is negative")
        rate = rate or 1.0
        low, high = SPEAKING_RATE_RANGE
        if not low <= rate <= high:
            raise InvalidArgument("speaking_rate", f"{rate:g} is outside {low:g} to {high:g}")

        chunk_ms = request.chunk_duration_ms
        if not 0 <= chunk_ms <= MAX_CHUNK_DURATION_MS:
            raise InvalidArgument(
                "chunk_duration_ms", f"{chunk_ms} is outside 0 to {MAX_CHUNK_DURATION_MS}"
            )
        return SynthesisSpec(
            text=text,
            voice=voice,
            speaking_rate=rate,
            sample_rate=sample_rate,
            sample_format=sample_format,
            chunk_samples=sample_rate * chunk_ms // 1000,
        )

    def _cache_key(self, spec: SynthesisSpec) -> str:
        """Everything that changes the audio, and nothing that does not."""
        return cache_key(
            self._engine.name,
            self._engine.model_version,
            spec.text,
            spec.voice.name,
            spec.speaking_rate,
            spec.sample_rate,
            spec.sample_format.value,
            spec.chunk_samples,
        )


async def _replay(chunks: list[bytes]) -> AsyncGenerator[bytes, None]:
    for chunk in chunks:
        yield chunk
