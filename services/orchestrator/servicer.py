"""Orchestrator servicer: maps the orchestrator's messages to its pipelines and back.

What each RPC does is in services.orchestrator.pipelines; this module checks requests,
holds an admission slot per call, ties the pipelines to the call (its CallScope and
deadline) and turns their events into messages.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator

from chorus.orchestrator.v1 import orchestrator_pb2 as pb
from chorus.orchestrator.v1 import orchestrator_pb2_grpc
from chorus.tts.v1 import tts_pb2
from opentelemetry import trace
from opentelemetry.metrics import Meter

from services.common.admission import AdmissionController
from services.common.audio_codecs import output_sample_rate
from services.common.audio_proto import audio_format_proto, encoding_from_proto
from services.common.errors import InvalidArgument
from services.common.grpc_context import Context
from services.common.pcm import SampleFormat, decode
from services.common.stream_timing import StreamMetrics
from services.common.validation import required_text, speaking_rate
from services.common.wav import write_wav
from services.orchestrator.call_scope import CallScope
from services.orchestrator.pipelines.batch import BatchOrder, synthesize_batch
from services.orchestrator.pipelines.compose import (
    Composed,
    ComposeOrder,
    ComposePipeline,
    Stage,
    StageFinished,
    StageStarted,
)
from services.orchestrator.pipelines.speak import Audio, SentenceAdjusted, SpeakOrder, Word, speak
from services.orchestrator.speech import SAMPLE_RATE, SpeechClient
from services.orchestrator.vision_client import VisionClient

_STAGES = {
    Stage.SPEECH: pb.STAGE_SPEECH,
    Stage.PROSODY: pb.STAGE_PROSODY,
    Stage.VISION: pb.STAGE_VISION,
}


class OrchestratorServicer(orchestrator_pb2_grpc.OrchestratorServicer):
    """Serves chorus.orchestrator.v1.Orchestrator over the tts, prosody and vision services."""

    def __init__(
        self,
        *,
        speech: SpeechClient,
        vision: VisionClient,
        admission: AdmissionController,
        tracer: trace.Tracer,
        meter: Meter,
        max_text_chars: int,
        batch_concurrency: int,
        max_batch_segments: int,
    ) -> None:
        self._speech = speech
        self._compose = ComposePipeline(speech, vision, tracer)
        self._admission = admission
        self._max_text_chars = max_text_chars
        self._batch_concurrency = batch_concurrency
        self._max_batch_segments = max_batch_segments
        self._stream_metrics = StreamMetrics(meter, "orchestrator", "Speak")

    async def Speak(
        self, request: pb.SpeakRequest, context: Context
    ) -> AsyncGenerator[pb.SpeakResponse, None]:
        """Speech as it is made; with a preset, reshaped sentence by sentence."""
        # Everything checked before the format goes out: a stream that announced a format
        # must not then end for a request that could never have been served.
        text = required_text(request.text, "text", self._max_text_chars)
        encoding = encoding_from_proto(request.encoding, "encoding")
        # Checked here as tts checks it: a rate tts would refuse is refused before any message.
        rate = speaking_rate(request.speaking_rate)
        order = SpeakOrder(
            text=text,
            voice=request.voice,
            language=request.language,
            preset=request.preset,
            sample_rate=output_sample_rate(encoding, request.sample_rate_hz, SAMPLE_RATE),
            encoding=encoding,
            word_timings=request.word_timings,
            speaking_rate=rate,
        )
        # Word spans index the request's text; the order's is trimmed of this much.
        text_offset = len(request.text) - len(request.text.lstrip())
        started = time.perf_counter()
        scope = CallScope.open(context)
        async with self._admission.slot("Speak"):
            yield pb.SpeakResponse(format=audio_format_proto(order.sample_rate, order.encoding))
            summary = pb.SpeakSummary(preset=request.preset)
            timing = self._stream_metrics.timing(started)
            samples = 0
            async for event in speak(self._speech, order, scope, context.time_remaining):
                if isinstance(event, Audio):
                    timing.sent()
                    samples += event.samples
                    yield pb.SpeakResponse(audio=event.audio)
                elif isinstance(event, Word):
                    yield pb.SpeakResponse(word=_word_proto(event, text_offset))
                else:
                    summary.sentences.append(_sentence_proto(event))
            summary.audio_seconds = samples / order.sample_rate
            summary.first_audio_seconds = timing.first_audio_s
            summary.total_seconds = time.perf_counter() - started
            summary.trace_id = _trace_id()
            yield pb.SpeakResponse(summary=summary)

    async def SpeakStream(
        self, request_iterator: AsyncIterator[pb.SpeakStreamRequest], context: Context
    ) -> AsyncGenerator[pb.SpeakResponse, None]:
        """Text in as it is written, speech out as tts makes it (tts's SynthesizeStream,
        relayed: it checks the messages, and its errors come back as they are)."""
        started = time.perf_counter()
        CallScope.open(context)
        async with self._admission.slot("SpeakStream"):
            responses = self._speech.synthesize_stream(
                _tts_stream_requests(request_iterator), context.time_remaining()
            )
            async with contextlib.aclosing(responses):
                async for response in responses:
                    kind = response.WhichOneof("content")
                    if kind == "chunk":
                        yield pb.SpeakResponse(audio=response.chunk.audio)
                    elif kind == "summary":
                        yield pb.SpeakResponse(
                            summary=pb.SpeakSummary(
                                audio_seconds=response.summary.audio_seconds,
                                # tts's, counted from the first complete clause.
                                first_audio_seconds=response.summary.first_chunk_seconds,
                                total_seconds=time.perf_counter() - started,
                                trace_id=_trace_id(),
                            )
                        )
                    elif kind in ("format", "word", "interrupted"):
                        yield pb.SpeakResponse(**{kind: getattr(response, kind)})

    async def ComposeMessage(
        self, request: pb.ComposeMessageRequest, context: Context
    ) -> AsyncGenerator[pb.ComposeMessageResponse, None]:
        """Speech and cut-out in parallel, progress as stages start and finish."""
        text = required_text(request.text, "text", self._max_text_chars)
        if not request.photo:
            raise InvalidArgument("photo", "is empty")
        order = ComposeOrder(text, request.voice, request.preset, request.photo)
        scope = CallScope.open(context)
        async with self._admission.slot("ComposeMessage"):
            async for event in self._compose.compose(order, scope, context.time_remaining):
                if isinstance(event, Composed):
                    yield pb.ComposeMessageResponse(result=_message_proto(event))
                else:
                    yield pb.ComposeMessageResponse(progress=_progress_proto(event))

    async def SynthesizeBatch(
        self, request: pb.SynthesizeBatchRequest, context: Context
    ) -> AsyncGenerator[pb.SynthesizeBatchResponse, None]:
        """Every segment's audio, each as soon as it is ready, a bounded number at a time."""
        if not request.segments:
            raise InvalidArgument("segments", "is empty")
        if len(request.segments) > self._max_batch_segments:
            raise InvalidArgument(
                "segments",
                f"{len(request.segments)} segments is over the limit of {self._max_batch_segments}",
            )
        texts = [
            required_text(text, f"segments[{i}]", self._max_text_chars)
            for i, text in enumerate(request.segments)
        ]
        if request.max_concurrency < 0:
            raise InvalidArgument("max_concurrency", f"{request.max_concurrency} is negative")
        # The server's setting bounds every batch: beyond it, segments would only crowd tts,
        # which refuses what it cannot take, and take its slots from other callers.
        concurrency = min(
            request.max_concurrency or self._batch_concurrency, self._batch_concurrency
        )
        order = BatchOrder(texts, request.voice, request.preset, concurrency)
        scope = CallScope.open(context)
        async with self._admission.slot("SynthesizeBatch"):
            async for done in synthesize_batch(self._speech, order, scope, context.time_remaining):
                if done.pcm is None:
                    yield pb.SynthesizeBatchResponse(index=done.index, error=done.error)
                else:
                    yield pb.SynthesizeBatchResponse(
                        index=done.index, audio_wav=_wav(done.pcm), seconds=done.seconds
                    )


async def _tts_stream_requests(
    requests: AsyncIterator[pb.SpeakStreamRequest],
) -> AsyncGenerator[tts_pb2.SynthesizeStreamRequest, None]:
    """A SpeakStream's messages as tts's SynthesizeStream takes them (one for one: tts
    judges them, and a message that sets nothing reaches it as one)."""
    async for request in requests:
        kind = request.WhichOneof("content")
        if kind == "config":
            config = request.config
            yield tts_pb2.SynthesizeStreamRequest(
                config=tts_pb2.SynthesisConfig(
                    voice=config.voice,
                    language=config.language,
                    sample_rate_hz=config.sample_rate_hz,
                    encoding=config.encoding,
                    speaking_rate=config.speaking_rate,
                    word_timings=config.word_timings,
                )
            )
        elif kind == "text":
            yield tts_pb2.SynthesizeStreamRequest(text=request.text)
        elif kind is not None:
            yield tts_pb2.SynthesizeStreamRequest(**{kind: getattr(request, kind)})
        else:
            yield tts_pb2.SynthesizeStreamRequest()


def _word_proto(word: Word, text_offset: int) -> tts_pb2.WordTiming:
    return tts_pb2.WordTiming(
        word=word.word,
        char_start=text_offset + word.char_start,
        char_end=text_offset + word.char_end,
        start_sample=word.start_sample,
        end_sample=word.end_sample,
    )


def _sentence_proto(event: SentenceAdjusted) -> pb.SentenceProsody:
    return pb.SentenceProsody(
        index=event.index,
        confidence=event.confidence,
        fallback=event.fallback,
        fallback_reason=event.fallback_reason,
    )


def _progress_proto(event: StageStarted | StageFinished) -> pb.Progress:
    progress = pb.Progress(stage=_STAGES[event.stage], elapsed_seconds=event.elapsed_s)
    if isinstance(event, StageFinished):
        progress.finished = True
        progress.error = event.error
    return progress


def _message_proto(message: Composed) -> pb.ComposedMessage:
    result = pb.ComposedMessage(
        audio_wav=_wav(message.pcm),
        timings=[
            pb.StageTiming(stage=_STAGES[stage], seconds=seconds)
            for stage, seconds in message.stage_seconds.items()
        ],
        partial=bool(message.missing),
        missing=message.missing,
        total_seconds=message.total_s,
        trace_id=_trace_id(),
    )
    if message.adjusted is not None:
        result.prosody_confidence.CopyFrom(message.adjusted.confidence)
        result.prosody_fallback = message.adjusted.fallback
    if message.portrait is not None:
        result.cutout_png = message.portrait.cutout_png
        result.detections.extend(message.portrait.detections)
    return result


def _wav(pcm: bytes) -> bytes:
    return write_wav(decode(pcm, SampleFormat.S16LE), SAMPLE_RATE)


def _trace_id() -> str:
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else ""
