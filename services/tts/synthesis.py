"""Streaming synthesis: runs an engine off the event loop and yields encoded audio chunks.

Transport-free, so the servicer and the in-process benchmark baseline share it. Text is
split into sentences; the engine works on one sentence at a time in an executor thread and
passes PCM back as it is made, so the first chunk leaves long before the text is done.
The engine runs at most ``sentences_ahead`` sentences ahead of what the consumer has taken:
a slow reader holds memory to a few sentences and never holds the engine. Chunks the engine
made while the consumer was busy are merged (up to ``max_merged_ms``) into one, so a fast
engine costs a few messages per sentence instead of one per 20 ms.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass

import numpy as np
from opentelemetry import trace

from services.common.pcm import Rechunker, SampleFormat, StreamResampler, encode
from services.tts.engine_scheduler import EngineScheduler
from services.tts.engines.base import PcmChunk, SpeechEngine, VoiceInfo
from services.common.sentences import split_sentences


@dataclass(frozen=True)
class SynthesisSpec:
    """A validated request: what to say and the exact audio format to produce."""

    text: str
    voice: VoiceInfo
    speaking_rate: float
    sample_rate: int
    sample_format: SampleFormat
    chunk_samples: int


@dataclass
class SynthesisProgress:
    """What the engine has done so far, for spans and summaries."""

    sentences_total: int = 0
    sentences_done: int = 0
    engine_samples: int = 0
    finished_ns: int | None = None
    """Wall-clock time (``time.time_ns``) at which the engine made its last sample."""


class _SentenceEnd:
    """Queue marker: the engine has finished one sentence."""


_SENTENCE_END = _SentenceEnd()
_EMPTY: PcmChunk = np.zeros(0, dtype=np.float32)


class SpeechStreamer:
    """Turns SynthesisSpecs into streams of encoded chunks with one engine."""

    def __init__(
        self,
        engine: SpeechEngine,
        scheduler: EngineScheduler,
        tracer: trace.Tracer,
        sentences_ahead: int = 2,
        max_merged_ms: int = 500,
    ) -> None:
        if sentences_ahead < 1:
            raise ValueError("sentences_ahead must be at least 1")
        if max_merged_ms < 1:
            raise ValueError("max_merged_ms must be at least 1")
        self._engine = engine
        self._scheduler = scheduler
        self._tracer = tracer
        self._sentences_ahead = sentences_ahead
        self._max_merged_ms = max_merged_ms

    async def stream(
        self, spec: SynthesisSpec, progress: SynthesisProgress | None = None
    ) -> AsyncGenerator[bytes, None]:
        """Yield the audio of ``spec`` as encoded chunks, in order, as they are made.

        Closing the iterator early (a cancelled RPC) stops the engine within one chunk.
        """
        progress = progress if progress is not None else SynthesisProgress()
        sentences = split_sentences(spec.text)
        progress.sentences_total = len(sentences)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[PcmChunk | _SentenceEnd | None] = asyncio.Queue()
        stopped = threading.Event()
        room_ahead = asyncio.Semaphore(self._sentences_ahead)

        def sink(chunk: PcmChunk) -> bool:
            # Runs on the engine's thread: hand the chunk to the loop, never block here.
            if stopped.is_set():
                return False
            progress.engine_samples += chunk.size
            loop.call_soon_threadsafe(queue.put_nowait, chunk)
            return True

        async def produce() -> None:
            try:
                for index, sentence in enumerate(sentences):
                    await room_ahead.acquire()
                    with self._tracer.start_as_current_span(
                        "tts.sentence", attributes={"chorus.tts.chars": len(sentence)}
                    ):
                        # The first sentence jumps the engine's queue: it sets the TTFA.
                        await self._scheduler.run(
                            index,
                            self._engine.synthesize,
                            sentence,
                            spec.voice,
                            spec.speaking_rate,
                            sink,
                        )
                    # Chunks were queued by call_soon_threadsafe before the executor's
                    # result arrived, so this marker lands after the sentence's audio.
                    queue.put_nowait(_SENTENCE_END)
                progress.finished_ns = time.time_ns()
            finally:
                queue.put_nowait(None)

        producer = asyncio.create_task(produce(), name="tts-engine")
        resampler = StreamResampler(self._engine.sample_rate, spec.sample_rate)
        rechunker = Rechunker(spec.chunk_samples)
        max_merged_samples = self._engine.sample_rate * self._max_merged_ms // 1000
        try:
            ended = False
            while not ended:
                # Take the next chunk, plus whatever else the engine has made meanwhile:
                # the first chunk leaves alone (low TTFA), later ones in fewer messages.
                pieces: list[PcmChunk] = []
                taken = 0
                item = await queue.get()
                while True:
                    if item is None:
                        ended = True
                    elif isinstance(item, _SentenceEnd):
                        progress.sentences_done += 1
                        room_ahead.release()
                    else:
                        pieces.append(item)
                        taken += item.size
                    if ended or taken >= max_merged_samples or queue.empty():
                        break
                    item = queue.get_nowait()
                if pieces:
                    merged = pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
                    for chunk in rechunker.push(resampler.process(merged)):
                        yield encode(chunk, spec.sample_format)
            # Re-raises an engine failure; a clean end returns None.
            await producer
            for chunk in rechunker.push(resampler.process(_EMPTY, last=True)):
                yield encode(chunk, spec.sample_format)
            for chunk in rechunker.flush():
                yield encode(chunk, spec.sample_format)
        finally:
            stopped.set()
            if not producer.done():
                producer.cancel()
