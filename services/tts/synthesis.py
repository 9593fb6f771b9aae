"""Streaming synthesis: runs an engine off the event loop and yields encoded audio chunks.

Transport-free, so the servicer and the in-process benchmark baseline share it. Text is
split into sentences; the engine works on one sentence at a time in an executor thread and
passes PCM back as it is made, so the first chunk leaves long before the text is done.
The engine runs at most ``sentences_ahead`` sentences ahead of what the consumer has taken:
a slow reader holds memory to a few sentences and never holds the engine. Chunks the engine
made while the consumer was busy are merged (up to ``max_merged_ms``) into one, so a fast
engine costs a few messages per sentence instead of one per 20 ms.

Asked for word timings (and with an engine that has them), the stream also hands a
SpokenWord for every word of the text to a callback, each before the chunk its start is
in is yielded: the engine's per-sentence timings moved to the sentence's place in the text
and in the audio, and resampled to the output rate. The caller interleaves them with what
it sends (``words_before``), which may be the chunks re-encoded. Not asked, nothing about
words is computed.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass

import numpy as np
from opentelemetry import trace

from services.common.pcm import Rechunker, SampleFormat, StreamResampler, encode
from services.common.sentences import split_sentences
from services.tts.engine_scheduler import EngineScheduler
from services.tts.engines.base import PcmChunk, SpeechEngine, TimedWord, VoiceInfo


@dataclass(frozen=True)
class SynthesisSpec:
    """A validated request: what to say and the exact audio format to produce."""

    text: str
    voice: VoiceInfo
    speaking_rate: float
    sample_rate: int
    sample_format: SampleFormat
    chunk_samples: int
    word_timings: bool = False
    """Hand every word to the stream's ``words`` callback, when the engine has timings."""


@dataclass(frozen=True)
class SpokenWord:
    """A word of the request's text and when it plays in the stream's audio."""

    char_start: int
    char_end: int
    """Its span [char_start, char_end) in the request's text, in code points."""
    start_sample: int
    end_sample: int
    """Its first sample and the sample after its last, in samples of the output (at the
    stream's sample rate) from the stream's first."""


WordCallback = Callable[[SpokenWord], None]
"""Receives a stream's words, in order, each before the chunk its start is in."""


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


def sentence_offsets(text: str, sentences: Sequence[str]) -> list[int]:
    """Where each of ``sentences`` (``split_sentences(text)``: trimmed pieces of ``text``,
    in order) starts in ``text``, in code points."""
    offsets: list[int] = []
    cursor = 0
    for sentence in sentences:
        found = text.find(sentence, cursor)
        if found < 0:
            raise ValueError(f"sentence {sentence[:40]!r} is not in the text after {cursor}")
        offsets.append(found)
        cursor = found + len(sentence)
    return offsets


def words_before(pending: list[SpokenWord], end_sample: int) -> list[SpokenWord]:
    """The words of ``pending`` (in order) that start before ``end_sample``, taken off it:
    what goes out before a chunk that ends there."""
    count = 0
    while count < len(pending) and pending[count].start_sample < end_sample:
        count += 1
    taken = pending[:count]
    del pending[:count]
    return taken


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
        self,
        spec: SynthesisSpec,
        progress: SynthesisProgress | None = None,
        words: WordCallback | None = None,
    ) -> AsyncGenerator[bytes, None]:
        """Yield the audio of ``spec`` as encoded chunks, in order, as they are made.

        With ``spec.word_timings``, an engine that has word timings and ``words``, every
        word of ``spec.text`` goes to ``words`` before the chunk its start is in is
        yielded. Closing the iterator early (a cancelled RPC) stops the engine within one
        chunk.
        """
        progress = progress if progress is not None else SynthesisProgress()
        sentences = split_sentences(spec.text)
        progress.sentences_total = len(sentences)
        timed = spec.word_timings and self._engine.word_timings and words is not None
        offsets = sentence_offsets(spec.text, sentences) if timed else []
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[PcmChunk | TimedWord | _SentenceEnd | None] = asyncio.Queue()
        stopped = threading.Event()
        room_ahead = asyncio.Semaphore(self._sentences_ahead)

        def sink(chunk: PcmChunk) -> bool:
            # Runs on the engine's thread: hand the chunk to the loop, never block here.
            if stopped.is_set():
                return False
            progress.engine_samples += chunk.size
            loop.call_soon_threadsafe(queue.put_nowait, chunk)
            return True

        def word_sink(word: TimedWord) -> None:
            # Also on the engine's thread; queued before the audio its start is in.
            if not stopped.is_set():
                loop.call_soon_threadsafe(queue.put_nowait, word)

        words_arg = (word_sink,) if timed else ()

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
                            *words_arg,
                        )
                    # Chunks were queued by call_soon_threadsafe before the executor's
                    # result arrived, so this marker lands after the sentence's audio.
                    queue.put_nowait(_SENTENCE_END)
                progress.finished_ns = time.time_ns()
            finally:
                queue.put_nowait(None)

        producer = asyncio.create_task(produce(), name="tts-engine")
        in_rate, out_rate = self._engine.sample_rate, spec.sample_rate
        resampler = StreamResampler(in_rate, out_rate)
        rechunker = Rechunker(spec.chunk_samples)
        max_merged_samples = in_rate * self._max_merged_ms // 1000
        taken_samples = 0  # engine samples taken off the queue
        sentence_start = 0  # engine sample where the current sentence's audio starts

        def output_sample(engine_sample: int) -> int:
            # The resampler's output is the input's time at the new rate (soxr makes
            # round(n * out / in) samples of n), so a position scales the same way.
            if in_rate == out_rate:
                return engine_sample
            return round(engine_sample * out_rate / in_rate)

        def place(word: TimedWord) -> SpokenWord:
            offset = offsets[progress.sentences_done]
            return SpokenWord(
                offset + word.char_start,
                offset + word.char_end,
                output_sample(sentence_start + word.start_sample),
                output_sample(sentence_start + word.end_sample),
            )

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
                        sentence_start = taken_samples
                        room_ahead.release()
                    elif isinstance(item, TimedWord):
                        if words is not None:
                            words(place(item))
                    else:
                        pieces.append(item)
                        taken += item.size
                        taken_samples += item.size
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
