"""Orchestrator servicer: the pipelines backend callers and realtime clients use."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Awaitable
from typing import Any, TypeVar

import grpc
from chorus.audio.v1 import audio_pb2
from chorus.orchestrator.v1 import orchestrator_pb2 as pb
from chorus.orchestrator.v1 import orchestrator_pb2_grpc
from chorus.vision.v1 import vision_pb2, vision_pb2_grpc
from opentelemetry import trace
from opentelemetry.metrics import Meter

from services.common.admission import AdmissionController
from services.common.errors import ChorusError, InvalidArgument
from services.common.grpc_context import Context
from services.common.pcm import SampleFormat, decode
from services.common.sample_rates import supported_sample_rate
from services.common.validation import required_text
from services.common.wav import write_wav
from services.orchestrator.call_scope import CallScope
from services.orchestrator.speech import SAMPLE_RATE, Adjusted, SpeechClient
from services.orchestrator.upstreams import Upstream
from services.tts.sentences import split_sentences

T = TypeVar("T")

# Sentences synthesised ahead of the one being adjusted: the next is ready when needed.
_SENTENCES_AHEAD = 2

# vision's names for the caller's fields: vision checks the photo as its `image`.
_VISION_FIELDS = {"image": "photo"}

# The fields of a SynthesizeBatch that every segment shares, as tts and prosody name them:
# one of them refused is refused for every segment, so the whole batch is.
_BATCH_WIDE_FIELDS = frozenset({"voice", "language", "preset"})


class OrchestratorServicer(orchestrator_pb2_grpc.OrchestratorServicer):
    """Serves chorus.orchestrator.v1.Orchestrator over the tts, prosody and vision services."""

    def __init__(
        self,
        *,
        speech: SpeechClient,
        vision: Upstream,
        admission: AdmissionController,
        tracer: trace.Tracer,
        meter: Meter,
        max_text_chars: int,
        batch_concurrency: int,
        max_batch_segments: int,
    ) -> None:
        self._speech = speech
        self._vision = vision
        self._vision_stub = vision_pb2_grpc.VisionStub(vision.channel)
        self._admission = admission
        self._tracer = tracer
        self._max_text_chars = max_text_chars
        self._batch_concurrency = batch_concurrency
        self._max_batch_segments = max_batch_segments
        self._ttfa = meter.create_histogram(
            "chorus.orchestrator.time_to_first_audio",
            unit="s",
            description="Speak: request to the first audio sent",
        )
        self._chunk_gap = meter.create_histogram(
            "chorus.orchestrator.chunk_gap",
            unit="s",
            description="Speak: time between consecutive audio messages",
        )

    async def Speak(
        self, request: pb.SpeakRequest, context: Context
    ) -> AsyncGenerator[pb.SpeakResponse, None]:
        """Speech as it is made; with a preset, reshaped sentence by sentence."""
        # Everything checked before the format goes out: a stream that announced a format
        # must not then end for a request that could never have been served.
        text = required_text(request.text, "text", self._max_text_chars)
        rate = supported_sample_rate(request.sample_rate_hz, SAMPLE_RATE)
        started = time.perf_counter()
        span = trace.get_current_span()
        scope = CallScope.open(context)
        async with self._admission.slot("Speak"):
            yield pb.SpeakResponse(
                format=audio_pb2.AudioFormat(
                    sample_rate_hz=rate, encoding=audio_pb2.AUDIO_ENCODING_PCM_S16LE, channels=1
                )
            )
            summary = pb.SpeakSummary(preset=request.preset)
            samples = 0
            first_at = last_at = 0.0
            if request.preset:
                pieces = self._adjusted_sentences(request, text, rate, context, scope, summary)
            else:
                pieces = self._speech.stream(
                    text, request.voice, request.language, rate, context.time_remaining()
                )
            async with contextlib.aclosing(pieces):
                async for pcm in pieces:
                    now = time.perf_counter()
                    if not samples:
                        first_at = now - started
                        self._ttfa.record(first_at)
                        span.add_event("orchestrator.first_audio")
                    else:
                        self._chunk_gap.record(now - last_at)
                        span.add_event(
                            "orchestrator.chunk_gap",
                            {"chorus.orchestrator.gap_ms": round(1000 * (now - last_at), 3)},
                        )
                    last_at = now
                    samples += len(pcm) // 2
                    yield pb.SpeakResponse(audio=pcm)
            summary.audio_seconds = samples / rate
            summary.first_audio_seconds = first_at
            summary.total_seconds = time.perf_counter() - started
            summary.trace_id = _trace_id()
            yield pb.SpeakResponse(summary=summary)

    async def _adjusted_sentences(
        self,
        request: pb.SpeakRequest,
        text: str,
        rate: int,
        context: Context,
        scope: CallScope,
        summary: pb.SpeakSummary,
    ) -> AsyncGenerator[bytes, None]:
        """Each sentence synthesised then adjusted, later sentences made meanwhile."""
        sentences = split_sentences(text)
        made: list[asyncio.Task[bytes]] = []
        for index in range(len(sentences)):
            while len(made) < min(len(sentences), index + _SENTENCES_AHEAD):
                made.append(
                    scope.task(
                        self._speech.synthesize(
                            sentences[len(made)],
                            request.voice,
                            request.language,
                            rate,
                            context.time_remaining(),
                        )
                    )
                )
            pcm = await made[index]
            adjusted = await self._speech.adjust(
                pcm, rate, request.preset, context.time_remaining()
            )
            summary.sentences.append(
                pb.SentenceProsody(
                    index=index,
                    confidence=adjusted.confidence.score,
                    fallback=adjusted.fallback,
                    fallback_reason=adjusted.fallback_reason,
                )
            )
            yield adjusted.pcm

    async def ComposeMessage(
        self, request: pb.ComposeMessageRequest, context: Context
    ) -> AsyncGenerator[pb.ComposeMessageResponse, None]:
        """Speech and cut-out in parallel, progress as stages start and finish."""
        text = required_text(request.text, "text", self._max_text_chars)
        if not request.photo:
            raise InvalidArgument("photo", "is empty")
        scope = CallScope.open(context)
        started = time.perf_counter()
        events: asyncio.Queue[pb.Progress] = asyncio.Queue()
        timings: dict[pb.Stage.ValueType, float] = {}

        async def stage(kind: pb.Stage.ValueType, work: Awaitable[T]) -> T:
            events.put_nowait(
                pb.Progress(stage=kind, elapsed_seconds=time.perf_counter() - started)
            )
            stage_started = time.perf_counter()
            # A span per stage, so the services' calls nest under the stage they serve and
            # a waterfall shows speech and vision side by side.
            span_name = "orchestrator." + pb.Stage.Name(kind).removeprefix("STAGE_").lower()
            try:
                with self._tracer.start_as_current_span(span_name):
                    result = await work
            except ChorusError as error:
                events.put_nowait(
                    pb.Progress(
                        stage=kind,
                        finished=True,
                        elapsed_seconds=time.perf_counter() - started,
                        error=error.message,
                    )
                )
                raise
            timings[kind] = time.perf_counter() - stage_started
            events.put_nowait(
                pb.Progress(
                    stage=kind,
                    finished=True,
                    elapsed_seconds=time.perf_counter() - started,
                )
            )
            return result

        async def speech() -> tuple[bytes, Adjusted | None]:
            pcm = await stage(
                pb.STAGE_SPEECH,
                self._speech.synthesize(
                    text, request.voice, "", SAMPLE_RATE, context.time_remaining()
                ),
            )
            if not request.preset:
                return pcm, None
            try:
                adjusted = await stage(
                    pb.STAGE_PROSODY,
                    self._speech.adjust(pcm, SAMPLE_RATE, request.preset, context.time_remaining()),
                )
            except InvalidArgument:
                raise
            except ChorusError:
                return pcm, None  # prosody down: the unadjusted speech, flagged below
            return adjusted.pcm, adjusted

        async def vision() -> vision_pb2.PortraitResponse:
            try:
                return await self._vision_stub.Portrait(
                    vision_pb2.PortraitRequest(image=request.photo),
                    timeout=context.time_remaining(),
                )
            except grpc.aio.AioRpcError as error:
                raise self._vision.error(error, _VISION_FIELDS) from None

        async with self._admission.slot("ComposeMessage"):
            speech_task = scope.task(speech())
            vision_task = scope.task(stage(pb.STAGE_VISION, vision()))
            pending: set[asyncio.Task[Any]] = {speech_task, vision_task}
            while pending:
                getter = scope.task(events.get())
                done, _ = await asyncio.wait(
                    {getter, *pending}, return_when=asyncio.FIRST_COMPLETED
                )
                if getter in done:
                    yield pb.ComposeMessageResponse(progress=getter.result())
                else:
                    getter.cancel()
                pending -= done
                failure = _request_failure(speech_task, vision_task)
                if failure is not None:
                    # No message can come of it: the other stage's work is wasted.
                    speech_task.cancel()
                    vision_task.cancel()
                    raise failure
            while not events.empty():
                yield pb.ComposeMessageResponse(progress=events.get_nowait())
            pcm, adjusted = speech_task.result()  # speech failing fails the request
            result = pb.ComposedMessage(
                audio_wav=write_wav(decode(pcm, SampleFormat.S16LE), SAMPLE_RATE),
                timings=[pb.StageTiming(stage=k, seconds=v) for k, v in timings.items()],
            )
            if adjusted is not None:
                result.prosody_confidence.CopyFrom(adjusted.confidence)
                result.prosody_fallback = adjusted.fallback
            elif request.preset:
                result.partial = True
                result.missing.append("prosody")
            try:
                portrait = vision_task.result()
            except ChorusError:
                result.partial = True
                result.missing.append("vision")
            else:
                result.cutout_png = portrait.cutout_png
                result.detections.extend(portrait.detections)
            result.total_seconds = time.perf_counter() - started
            result.trace_id = _trace_id()
            yield pb.ComposeMessageResponse(result=result)

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
        limit = asyncio.Semaphore(
            min(request.max_concurrency or self._batch_concurrency, self._batch_concurrency)
        )
        scope = CallScope.open(context)
        # Set by the first segment refused for a field every segment shares: the batch ends
        # with that error, and no segment waiting for a slot starts.
        refused = asyncio.Event()

        async def segment(index: int, text: str) -> pb.SynthesizeBatchResponse | None:
            async with limit:
                if refused.is_set():
                    return None
                started = time.perf_counter()
                try:
                    pcm = await self._speech.synthesize(
                        text, request.voice, "", SAMPLE_RATE, context.time_remaining()
                    )
                    if request.preset:
                        pcm = (
                            await self._speech.adjust(
                                pcm, SAMPLE_RATE, request.preset, context.time_remaining()
                            )
                        ).pcm
                except InvalidArgument as error:
                    if error.field in _BATCH_WIDE_FIELDS:
                        refused.set()
                        raise
                    return pb.SynthesizeBatchResponse(index=index, error=error.message)
                except ChorusError as error:
                    return pb.SynthesizeBatchResponse(index=index, error=error.message)
                return pb.SynthesizeBatchResponse(
                    index=index,
                    audio_wav=write_wav(decode(pcm, SampleFormat.S16LE), SAMPLE_RATE),
                    seconds=time.perf_counter() - started,
                )

        async with self._admission.slot("SynthesizeBatch"):
            tasks = [scope.task(segment(i, text)) for i, text in enumerate(texts)]
            for finished in asyncio.as_completed(tasks):
                response = await finished  # a batch-wide refusal raises, ending the batch
                if response is not None:
                    yield response


def _request_failure(speech: asyncio.Task[Any], vision: asyncio.Task[Any]) -> BaseException | None:
    """Why a ComposeMessage cannot succeed, as soon as a stage says so: speech failed
    (there is no message without it), or vision refused the photo. A bad photo is the
    caller's mistake, not a failing service: no partial message covers it up."""
    if speech.done() and not speech.cancelled() and speech.exception() is not None:
        return speech.exception()
    error = vision.exception() if vision.done() and not vision.cancelled() else None
    return error if isinstance(error, InvalidArgument) else None


def _trace_id() -> str:
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else ""
