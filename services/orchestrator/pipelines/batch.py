"""SynthesizeBatch: every segment's speech, each as soon as it is ready, a bounded number
at a time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass

from services.common.errors import ChorusError, InvalidArgument
from services.orchestrator.pipelines import Remaining, TaskOwner
from services.orchestrator.speech import SAMPLE_RATE, SpeechClient

# The fields every segment shares, as tts and prosody name them: one of them refused is
# refused for every segment, so the whole batch is.
BATCH_WIDE_FIELDS = frozenset({"voice", "language", "preset"})


@dataclass(frozen=True)
class BatchOrder:
    """The segments and how to speak them all (checked by the servicer)."""

    segments: Sequence[str]
    voice: str
    preset: str
    concurrency: int


@dataclass(frozen=True)
class SegmentDone:
    """One segment's speech (16-bit PCM at SAMPLE_RATE), or why it has none."""

    index: int
    pcm: bytes | None
    error: str
    seconds: float


async def synthesize_batch(
    speech: SpeechClient, order: BatchOrder, tasks: TaskOwner, remaining: Remaining
) -> AsyncGenerator[SegmentDone, None]:
    """Each segment as it is done, in no promised order. A segment refused for its own
    text fails alone; one refused for a batch-wide field (InvalidArgument) ends the batch,
    and no segment still waiting for a slot starts."""
    limit = asyncio.Semaphore(order.concurrency)
    refused = asyncio.Event()

    async def segment(index: int, text: str) -> SegmentDone | None:
        async with limit:
            if refused.is_set():
                return None
            started = time.perf_counter()
            try:
                pcm = await speech.synthesize(text, order.voice, "", SAMPLE_RATE, remaining())
                if order.preset:
                    pcm = (await speech.adjust(pcm, SAMPLE_RATE, order.preset, remaining())).pcm
            except InvalidArgument as error:
                if error.field in BATCH_WIDE_FIELDS:
                    refused.set()
                    raise
                return SegmentDone(index, None, error.message, 0.0)
            except ChorusError as error:
                return SegmentDone(index, None, error.message, 0.0)
            return SegmentDone(index, pcm, "", time.perf_counter() - started)

    running = [tasks.task(segment(i, text)) for i, text in enumerate(order.segments)]
    for finished in asyncio.as_completed(running):
        done = await finished  # a batch-wide refusal raises, ending the batch
        if done is not None:
            yield done
