"""Orchestrator servicer: maps the orchestrator's messages to its pipelines and back.

What each RPC does is in services.orchestrator.pipelines; this module checks requests,
holds an admission slot per call, ties the pipelines to the call (its CallScope and
deadline) and turns their events into messages.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator

from chorus.audio.v1 import audio_pb2
from chorus.orchestrator.v1 import orchestrator_pb2 as pb
from chorus.orchestrator.v1 import orchestrator_pb2_grpc
from opentelemetry import trace
from opentelemetry.metrics import Meter

from services.common.admission import AdmissionController
from services.common.errors import InvalidArgument
from services.common.grpc_context import Context
from services.common.pcm import SampleFormat, decode
from services.common.sample_rates import supported_sample_rate
from services.common.stream_timing import StreamMetrics
from services.common.validation import required_text
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
from services.orchestrator.pipelines.speak import Audio, SentenceAdjusted, SpeakOrder, speak
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
        order = SpeakOrder(
            text=required_text(request.text, "text", self._max_text_chars),
            voice=request.voice,
            language=request.language,
            preset=request.preset,
            sample_rate=supported_sample_rate(request.sample_rate_hz, SAMPLE_RATE),
        )
        started = time.perf_counter()
        scope = CallScope.open(context)
        async with self._admission.slot("Speak"):
            yield pb.SpeakResponse(
                format=audio_pb2.AudioFormat(
                    sample_rate_hz=order.sample_rate,
                    encoding=audio_pb2.AUDIO_ENCODING_PCM_S16LE,
                    channels=1,
                )
            )
            summary = pb.SpeakSummary(preset=request.preset)
            timing = self._stream_metrics.timing(started)
            samples = 0
            async for event in speak(self._speech, order, scope, context.time_remaining):
                if isinstance(event, Audio):
                    timing.sent()
                    samples += len(event.pcm) // 2
                    yield pb.SpeakResponse(audio=event.pcm)
                else:
                    summary.sentences.append(_sentence_proto(event))
            summary.audio_seconds = samples / order.sample_rate
            summary.first_audio_seconds = timing.first_audio_s
            summary.total_seconds = time.perf_counter() - started
            summary.trace_id = _trace_id()
            yield pb.SpeakResponse(summary=summary)

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
