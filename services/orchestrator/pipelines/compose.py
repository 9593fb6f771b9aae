"""ComposeMessage: speech and a cut-out of the photo made side by side, with progress as
each stage starts and finishes."""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import AsyncGenerator, Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from opentelemetry import trace

from services.common.errors import ChorusError, InvalidArgument
from services.orchestrator.pipelines import Remaining, TaskOwner
from services.orchestrator.speech import SAMPLE_RATE, Adjusted, SpeechClient
from services.orchestrator.vision_client import Portrait, VisionClient

T = TypeVar("T")


class Stage(enum.Enum):
    """The stages of a message; each is a span, ``orchestrator.<value>``."""

    SPEECH = "speech"
    PROSODY = "prosody"
    VISION = "vision"


@dataclass(frozen=True)
class ComposeOrder:
    """The message to make (checked by the servicer)."""

    text: str
    voice: str
    preset: str
    photo: bytes


@dataclass(frozen=True)
class StageStarted:
    """A stage began, ``elapsed_s`` after the request."""

    stage: Stage
    elapsed_s: float


@dataclass(frozen=True)
class StageFinished:
    """A stage ended, ``elapsed_s`` after the request; ``error`` says why it failed."""

    stage: Stage
    elapsed_s: float
    error: str = ""


@dataclass(frozen=True)
class Composed:
    """The message: speech (16-bit PCM at SAMPLE_RATE) and, unless vision failed, the
    cut-out; ``missing`` names the services the message had to do without."""

    pcm: bytes
    adjusted: Adjusted | None
    portrait: Portrait | None
    missing: tuple[str, ...]
    stage_seconds: dict[Stage, float] = field(default_factory=dict)
    total_s: float = 0.0


ComposeEvent = StageStarted | StageFinished | Composed


class ComposePipeline:
    """Makes messages from the tts, prosody and vision services."""

    def __init__(self, speech: SpeechClient, vision: VisionClient, tracer: trace.Tracer) -> None:
        self._speech = speech
        self._vision = vision
        self._tracer = tracer

    async def compose(
        self, order: ComposeOrder, tasks: TaskOwner, remaining: Remaining
    ) -> AsyncGenerator[ComposeEvent, None]:
        """Progress events as the stages run, then the Composed message.

        Speech failing fails the message, and so does vision refusing the photo (the
        caller's mistake: no partial message covers it up); prosody or vision down gives a
        message without them.
        """
        run = _Run(self._speech, self._vision, self._tracer, order, remaining)
        speech_task = tasks.task(run.speech())
        vision_task = tasks.task(run.stage(Stage.VISION, run.portrait()))
        pending: set[asyncio.Task[Any]] = {speech_task, vision_task}
        while pending:
            getter = tasks.task(run.events.get())
            done, _ = await asyncio.wait({getter, *pending}, return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                yield getter.result()
            else:
                getter.cancel()
            pending -= done
            failure = _request_failure(speech_task, vision_task)
            if failure is not None:
                # No message can come of it: the other stage's work is wasted.
                speech_task.cancel()
                vision_task.cancel()
                raise failure
        while not run.events.empty():
            yield run.events.get_nowait()
        pcm, adjusted = speech_task.result()
        missing = ["prosody"] if order.preset and adjusted is None else []
        try:
            portrait: Portrait | None = vision_task.result()
        except ChorusError:
            portrait = None
            missing.append("vision")
        yield Composed(pcm, adjusted, portrait, tuple(missing), run.stage_seconds, run.elapsed())


class _Run:
    """One message in the making: its stages and their progress events."""

    def __init__(
        self,
        speech: SpeechClient,
        vision: VisionClient,
        tracer: trace.Tracer,
        order: ComposeOrder,
        remaining: Remaining,
    ) -> None:
        self._speech = speech
        self._vision = vision
        self._tracer = tracer
        self._order = order
        self._remaining = remaining
        self._started = time.perf_counter()
        self.events: asyncio.Queue[StageStarted | StageFinished] = asyncio.Queue()
        self.stage_seconds: dict[Stage, float] = {}

    def elapsed(self) -> float:
        return time.perf_counter() - self._started

    async def stage(self, stage: Stage, work: Awaitable[T]) -> T:
        """``work`` as ``stage``: announced, spanned, timed."""
        self.events.put_nowait(StageStarted(stage, self.elapsed()))
        stage_started = time.perf_counter()
        # A span per stage, so the services' calls nest under the stage they serve and a
        # waterfall shows speech and vision side by side.
        try:
            with self._tracer.start_as_current_span(f"orchestrator.{stage.value}"):
                result = await work
        except ChorusError as error:
            self.events.put_nowait(StageFinished(stage, self.elapsed(), error.message))
            raise
        self.stage_seconds[stage] = time.perf_counter() - stage_started
        self.events.put_nowait(StageFinished(stage, self.elapsed()))
        return result

    async def speech(self) -> tuple[bytes, Adjusted | None]:
        speech = self._speech
        order = self._order
        pcm = await self.stage(
            Stage.SPEECH,
            speech.synthesize(order.text, order.voice, "", SAMPLE_RATE, self._remaining()),
        )
        if not order.preset:
            return pcm, None
        try:
            adjusted = await self.stage(
                Stage.PROSODY, speech.adjust(pcm, SAMPLE_RATE, order.preset, self._remaining())
            )
        except InvalidArgument:
            raise
        except ChorusError:
            return pcm, None  # prosody down: the unadjusted speech, reported missing
        return adjusted.pcm, adjusted

    async def portrait(self) -> Portrait:
        return await self._vision.portrait(self._order.photo, self._remaining())


def _request_failure(speech: asyncio.Task[Any], vision: asyncio.Task[Any]) -> BaseException | None:
    """Why a message cannot be made, as soon as a stage says so: speech failed (there is
    no message without it), or vision refused the photo."""
    if speech.done() and not speech.cancelled() and speech.exception() is not None:
        return speech.exception()
    error = vision.exception() if vision.done() and not vision.cancelled() else None
    return error if isinstance(error, InvalidArgument) else None
