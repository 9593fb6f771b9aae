"""TextToSpeech servicer: validates requests, serves from cache or engine, streams chunks."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator

from chorus.tts.v1 import tts_pb2, tts_pb2_grpc
from opentelemetry import trace
from opentelemetry.metrics import Meter
from opentelemetry.util.types import AttributeValue

from services.common.admission import AdmissionController
from services.common.audio_codecs import ChunkEncoder, EncodedChunk, Encoding, output_sample_rate
from services.common.audio_proto import audio_format_proto, encoding_from_proto
from services.common.cache import ResultCache, cache_key
from services.common.errors import InvalidArgument
from services.common.grpc_context import Context
from services.common.pcm import SampleFormat, decode
from services.common.stream_timing import StreamMetrics, StreamTiming
from services.common.text_inputs import EndIn, FlushIn, InterruptIn, TextIn, TextInput
from services.common.validation import required_text, speaking_rate
from services.tts.cached_audio import (
    LAYOUT,
    pack_chunks,
    pack_timed,
    unpack_chunks,
    unpack_timed,
)
from services.tts.clauses import Clause
from services.tts.engines.base import SpeechEngine, speaks
from services.tts.synthesis import (
    SpeechStreamer,
    SpokenWord,
    SynthesisProgress,
    SynthesisSpec,
    WordCallback,
    words_before,
)
from services.tts.text_stream import ClauseStarted, Spoken, speak_text_stream

logger = logging.getLogger(__name__)

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
        """Stream the format, then audio chunks as they are made (with word timings, each
        after the words that start in it), then a summary."""
        spec, encoding = self._parse(request)
        # Word spans index the request's text; the spec's is trimmed of this much.
        text_offset = len(request.text) - len(request.text.lstrip())
        async with (
            self._admission.slot("Synthesize"),
            contextlib.aclosing(self._synthesize(spec, encoding, text_offset)) as responses,
        ):
            async for response in responses:
                yield response

    async def _synthesize(
        self, spec: SynthesisSpec, encoding: Encoding, text_offset: int = 0
    ) -> AsyncGenerator[tts_pb2.SynthesizeResponse, None]:
        started = time.perf_counter()
        attributes: dict[str, AttributeValue] = {
            "chorus.tts.engine": self._engine.name,
            "chorus.tts.voice": spec.voice.name,
            "chorus.tts.chars": len(spec.text),
            "chorus.tts.sample_rate": spec.sample_rate,
            "chorus.tts.encoding": encoding.value,
        }
        with self._tracer.start_as_current_span("tts.synthesize", attributes=attributes) as span:
            yield tts_pb2.SynthesizeResponse(format=audio_format_proto(spec.sample_rate, encoding))
            timed = self._timed(spec)
            key = self._cache_key(spec, encoding)
            cached = await self._cache.get(key)
            span.set_attribute("chorus.cache.hit", cached is not None)
            progress = SynthesisProgress()
            # Words in the order they come, each sent before the chunk it starts in.
            pending: list[SpokenWord] = []
            sent_words: list[SpokenWord] = []
            if cached is not None:
                cached_chunks, pending = (
                    unpack_timed(cached) if timed else (unpack_chunks(cached), [])
                )
                chunks = _replay(cached_chunks)
            else:
                chunks = self._audio(spec, encoding, progress, pending.append if timed else None)
            made: list[EncodedChunk] = []
            sample_offset = 0
            timing = self._stream_metrics.timing(started, {"chorus.cache.hit": cached is not None})
            try:
                # aclosing: a cancelled RPC must close the engine stream now, not at GC.
                async with contextlib.aclosing(chunks):
                    async for chunk in chunks:
                        for word in words_before(pending, sample_offset + chunk.samples):
                            sent_words.append(word)
                            yield _word_response(spec.text, word, text_offset)
                        timing.sent()
                        yield tts_pb2.SynthesizeResponse(
                            chunk=tts_pb2.AudioChunk(
                                sequence=len(made),
                                sample_offset=sample_offset,
                                audio=chunk.data,
                                sample_count=chunk.samples,
                            )
                        )
                        made.append(chunk)
                        sample_offset += chunk.samples
            except (asyncio.CancelledError, GeneratorExit):
                span.set_attribute("chorus.tts.cancelled", True)
                raise
            finally:
                span.set_attribute("chorus.tts.engine_samples", progress.engine_samples)
                span.set_attribute("chorus.tts.sentences", progress.sentences_total)
                span.set_attribute("chorus.tts.sentences_done", progress.sentences_done)
                if progress.finished_ns is not None:
                    span.add_event("tts.synthesis_done", timestamp=progress.finished_ns)

            # Words starting at the very end (zero-length), in no chunk: after the last.
            for word in pending:
                sent_words.append(word)
                yield _word_response(spec.text, word, text_offset)
            if cached is None:
                await self._cache.put(
                    key, pack_timed(made, sent_words) if timed else pack_chunks(made)
                )
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

    async def SynthesizeStream(
        self, request_iterator: AsyncIterator[tts_pb2.SynthesizeStreamRequest], context: Context
    ) -> AsyncGenerator[tts_pb2.SynthesizeResponse, None]:
        """Speak text as it is written: a config, then fragments, each clause as soon as it
        is complete; flushes, interrupts and an end as the client sends them."""
        requests = aiter(request_iterator)
        first = await anext(requests, None)
        if first is None or first.WhichOneof("content") != "config":
            raise InvalidArgument("config", "must be the stream's first message")
        spec, encoding = self._config_spec(first.config)
        timed = self._timed(spec)
        async with self._admission.slot("SynthesizeStream"):
            yield tts_pb2.SynthesizeResponse(format=audio_format_proto(spec.sample_rate, encoding))

            async def speak(clause: Clause) -> AsyncGenerator[bytes | SpokenWord, None]:
                found: list[SpokenWord] = []
                pcm = self._streamer.stream(
                    dataclasses.replace(spec, text=clause.text),
                    words=found.append if timed else None,
                )
                async with contextlib.aclosing(pcm):
                    async for piece in pcm:
                        # Each word before the audio its start is in, as the streamer says.
                        for word in found:
                            yield word
                        found.clear()
                        yield piece
                for word in found:
                    yield word

            events = speak_text_stream(
                _stream_inputs(requests, self._max_text_chars), speak, self._max_text_chars
            )
            out = _StreamOutput(spec, encoding)
            timing: StreamTiming | None = None
            try:
                async with contextlib.aclosing(events):
                    async for event in events:
                        if isinstance(event, ClauseStarted):
                            # TTFA counts from the first complete clause: before it, the
                            # client had said nothing that could be spoken.
                            timing = timing or self._stream_metrics.timing(
                                event.ready_at, {"rpc.method": "SynthesizeStream"}
                            )
                            out.clause_started(event.clause)
                        elif isinstance(event, Spoken):
                            async for response in out.spoken(event.piece):
                                if response.HasField("chunk") and timing is not None:
                                    timing.sent()
                                yield response
                        else:
                            yield out.interrupted(event.dropped_chars)
                async for response in out.finish():
                    yield response
            finally:
                out.close()
            yield tts_pb2.SynthesizeResponse(
                summary=tts_pb2.SynthesisSummary(
                    engine=self._engine.name,
                    model_version=self._engine.model_version,
                    voice=spec.voice.name,
                    chunk_count=out.chunks,
                    sample_count=out.sent,
                    audio_seconds=out.sent / spec.sample_rate,
                    first_chunk_seconds=timing.first_audio_s if timing else 0.0,
                )
            )

    def _config_spec(self, config: tts_pb2.SynthesisConfig) -> tuple[SynthesisSpec, Encoding]:
        """The spec a stream's clauses are spoken with (their text aside) and its encoding,
        checked as a Synthesize request's fields are."""
        request = tts_pb2.SynthesizeRequest(text=_CONFIG_TEXT)
        for field in config.DESCRIPTOR.fields:
            setattr(request, field.name, getattr(config, field.name))
        spec, encoding = self._parse(request)
        return dataclasses.replace(spec, text=""), encoding

    async def _audio(
        self,
        spec: SynthesisSpec,
        encoding: Encoding,
        progress: SynthesisProgress,
        words: WordCallback | None = None,
    ) -> AsyncGenerator[EncodedChunk, None]:
        """The audio of ``spec`` in ``encoding`` as it is made, each chunk with the PCM
        samples it covers. For a codec, the streamer makes float PCM (``spec``'s sample
        format) and one encoder encodes the whole stream. ``words`` gets the words, each
        before the PCM its start is in (so before any chunk holding it)."""
        pcm = self._streamer.stream(spec, progress, words)
        if isinstance(encoding, SampleFormat):
            async with contextlib.aclosing(pcm):
                async for audio in pcm:
                    yield EncodedChunk(audio, len(audio) // encoding.bytes_per_sample)
            return
        encoder = ChunkEncoder(encoding, spec.sample_rate)
        try:
            async with contextlib.aclosing(pcm):
                async for audio in pcm:
                    async for chunk in encoder.encode(decode(audio, spec.sample_format)):
                        yield chunk
            if (tail := await encoder.finish()) is not None:
                yield tail
        finally:
            encoder.close()

    def _parse(self, request: tts_pb2.SynthesizeRequest) -> tuple[SynthesisSpec, Encoding]:
        """Validate ``request`` into a SynthesisSpec and the encoding to send; InvalidArgument
        names the bad field. For a codec, the spec's sample format is the float PCM the
        codec is fed."""
        text = required_text(request.text, "text", self._max_text_chars)

        voice = self._engine.resolve_voice(request.voice.strip(), request.language.strip())

        encoding = encoding_from_proto(request.encoding, "encoding")
        # Ogg Opus has rates of its own (0: 48000, resampled from the engine's).
        sample_rate = output_sample_rate(
            encoding,
            request.sample_rate_hz,
            self._engine.sample_rate,
            zero_means="the engine's own",
        )
        # A codec is fed float PCM, which it encodes without rounding to 16 bits first.
        sample_format = encoding if isinstance(encoding, SampleFormat) else SampleFormat.F32LE

        rate = speaking_rate(request.speaking_rate)

        chunk_ms = request.chunk_duration_ms
        if not 0 <= chunk_ms <= MAX_CHUNK_DURATION_MS:
            raise InvalidArgument(
                "chunk_duration_ms", f"{chunk_ms} is outside 0 to {MAX_CHUNK_DURATION_MS}"
            )
        spec = SynthesisSpec(
            text=text,
            voice=voice,
            speaking_rate=rate,
            sample_rate=sample_rate,
            sample_format=sample_format,
            chunk_samples=sample_rate * chunk_ms // 1000,
            word_timings=request.word_timings,
        )
        return spec, encoding

    def _timed(self, spec: SynthesisSpec) -> bool:
        """Whether a synthesis of ``spec`` sends word timings: asked for, and the engine
        has them (one that has not, XTTS, sends none, as the API says)."""
        return spec.word_timings and self._engine.word_timings

    def _cache_key(self, spec: SynthesisSpec, encoding: Encoding) -> str:
        """Everything that changes the audio, and nothing that does not. Entries hold the
        bytes sent, in their encoding (services.tts.cached_audio says why)."""
        return cache_key(
            LAYOUT,
            self._engine.name,
            self._engine.model_version,
            spec.text,
            spec.voice.name,
            spec.speaking_rate,
            spec.sample_rate,
            encoding.value,
            spec.chunk_samples,
            # Timed syntheses are stored with their words, under keys of their own: an
            # untimed entry has no words to replay.
            *(("word-timings",) if self._timed(spec) else ()),
        )


def _word_response(text: str, word: SpokenWord, text_offset: int) -> tts_pb2.SynthesizeResponse:
    """A word of the spec's ``text`` as sent: spans moved into the request's text."""
    return tts_pb2.SynthesizeResponse(
        word=tts_pb2.WordTiming(
            word=text[word.char_start : word.char_end],
            char_start=text_offset + word.char_start,
            char_end=text_offset + word.char_end,
            start_sample=word.start_sample,
            end_sample=word.end_sample,
        )
    )


class _StreamOutput:
    """A SynthesizeStream's audio as it goes out: one encoder (for a codec) across every
    clause and interrupt, sample positions counted from the stream's first, and each
    word sent before the chunk its start is in."""

    def __init__(self, spec: SynthesisSpec, encoding: Encoding) -> None:
        self._format = spec.sample_format
        self._encoder = (
            None if isinstance(encoding, SampleFormat) else ChunkEncoder(encoding, spec.sample_rate)
        )
        self._fed = 0
        """PCM samples made so far: where the clause being spoken starts, and its words."""
        self._clause = Clause("", 0)
        self._clause_at = 0
        self._words: list[SpokenWord] = []
        self._texts: dict[int, str] = {}
        """Each pending word's text, by where it starts in the text received."""
        self.sent = 0
        self.chunks = 0

    def clause_started(self, clause: Clause) -> None:
        """``clause``'s audio and words come next."""
        self._clause, self._clause_at = clause, self._fed

    async def spoken(self, piece: bytes | SpokenWord) -> AsyncGenerator[tts_pb2.SynthesizeResponse]:
        """The responses a piece of the clause's speech makes: a chunk (none while a codec
        holds the audio), the words that start in it first."""
        if isinstance(piece, SpokenWord):
            self._texts[self._clause.start + piece.char_start] = self._clause.text[
                piece.char_start : piece.char_end
            ]
            self._words.append(
                dataclasses.replace(
                    piece,
                    char_start=self._clause.start + piece.char_start,
                    char_end=self._clause.start + piece.char_end,
                    start_sample=self._clause_at + piece.start_sample,
                    end_sample=self._clause_at + piece.end_sample,
                )
            )
            return
        samples = len(piece) // self._format.bytes_per_sample
        self._fed += samples
        if self._encoder is None:
            for response in self._chunk(EncodedChunk(piece, samples)):
                yield response
            return
        async for chunk in self._encoder.encode(decode(piece, self._format)):
            for response in self._chunk(chunk):
                yield response

    def interrupted(self, dropped_chars: int) -> tts_pb2.SynthesizeResponse:
        """The marker of a cut; the words of audio that will not play are forgotten."""
        self._words.clear()
        self._texts.clear()
        return tts_pb2.SynthesizeResponse(
            interrupted=tts_pb2.Interrupted(sample_offset=self.sent, dropped_chars=dropped_chars)
        )

    async def finish(self) -> AsyncGenerator[tts_pb2.SynthesizeResponse]:
        """The codec's tail, and the words that start at the very end."""
        if self._encoder is not None and (tail := await self._encoder.finish()) is not None:
            for response in self._chunk(tail):
                yield response
        for word in self._words:
            yield self._word(word)
        self._words.clear()

    def close(self) -> None:
        """Release the encoder."""
        if self._encoder is not None:
            self._encoder.close()

    def _word(self, word: SpokenWord) -> tts_pb2.SynthesizeResponse:
        return tts_pb2.SynthesizeResponse(
            word=tts_pb2.WordTiming(
                word=self._texts.pop(word.char_start, ""),
                char_start=word.char_start,
                char_end=word.char_end,
                start_sample=word.start_sample,
                end_sample=word.end_sample,
            )
        )

    def _chunk(self, chunk: EncodedChunk) -> list[tts_pb2.SynthesizeResponse]:
        responses = [self._word(w) for w in words_before(self._words, self.sent + chunk.samples)]
        responses.append(
            tts_pb2.SynthesizeResponse(
                chunk=tts_pb2.AudioChunk(
                    sequence=self.chunks,
                    sample_offset=self.sent,
                    audio=chunk.data,
                    sample_count=chunk.samples,
                )
            )
        )
        self.chunks += 1
        self.sent += chunk.samples
        return responses


async def _replay(chunks: list[EncodedChunk]) -> AsyncGenerator[EncodedChunk, None]:
    for chunk in chunks:
        yield chunk


# Stands for the text of a stream's config, which has none, when it is checked as a
# Synthesize request is.
_CONFIG_TEXT = "-"


async def _stream_inputs(
    requests: AsyncIterator[tts_pb2.SynthesizeStreamRequest], max_fragment_chars: int
) -> AsyncGenerator[TextInput, None]:
    """A stream's messages after its config, as the text stream's inputs."""
    async for request in requests:
        kind = request.WhichOneof("content")
        if kind == "text":
            if len(request.text) > max_fragment_chars:
                raise InvalidArgument(
                    "text",
                    f"a fragment of {len(request.text)} characters is over the limit "
                    f"of {max_fragment_chars}",
                )
            yield TextIn(request.text)
        elif kind == "flush":
            yield FlushIn()
        elif kind == "interrupt":
            yield InterruptIn()
        elif kind == "end":
            yield EndIn()
        elif kind == "config":
            raise InvalidArgument("config", "only the stream's first message may be one")
        else:
            raise InvalidArgument("content", "the message sets none of its fields")
