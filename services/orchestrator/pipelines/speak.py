"""Speak: speech as it is made; with a preset, reshaped sentence by sentence.

With word timings, tts's words come through as Word events, each before the audio its
start is in: as tts sends them without a preset; with one, each sentence's words are
scaled by prosody's change of its length (adjusted samples over synthesised ones: prosody
changes the tempo evenly over the sentence, so this is approximate where it does not)
and moved to where the sentence starts in the text and in the output.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from dataclasses import dataclass

import numpy as np
from chorus.tts.v1 import tts_pb2

from services.common.audio_codecs import ChunkEncoder, Codec, EncodedChunk, Encoding
from services.common.pcm import SampleFormat, StreamResampler, decode, encode
from services.common.sample_rates import SUPPORTED_SAMPLE_RATES
from services.common.sentences import split_sentences
from services.orchestrator.pipelines import Remaining, TaskOwner
from services.orchestrator.speech import SpeechClient

# Sentences synthesised ahead of the one being adjusted: the next is ready when needed.
SENTENCES_AHEAD = 2


@dataclass(frozen=True)
class SpeakOrder:
    """What to say and how (checked by the servicer; tts and prosody judge the names)."""

    text: str
    voice: str
    language: str
    preset: str
    sample_rate: int
    encoding: Encoding = SampleFormat.S16LE
    word_timings: bool = False
    speaking_rate: float = 0.0
    """tts's, for every sentence: 0 is the voice's normal rate."""


@dataclass(frozen=True)
class Audio:
    """The next piece of the speech, in the order's encoding at its sample rate, and the
    number of PCM samples it covers."""

    audio: bytes
    samples: int


@dataclass(frozen=True)
class SentenceAdjusted:
    """How prosody treated one sentence (with a preset only), before its audio comes."""

    index: int
    confidence: float
    fallback: bool
    fallback_reason: str


@dataclass(frozen=True)
class Word:
    """A word of the order's text and when it plays, before the audio its start is in."""

    word: str
    char_start: int
    char_end: int
    """Its span [char_start, char_end) in the order's text, in code points."""
    start_sample: int
    end_sample: int
    """In samples of the output, at the order's sample rate."""


SpeakEvent = Audio | SentenceAdjusted | Word


async def speak(
    speech: SpeechClient, order: SpeakOrder, tasks: TaskOwner, remaining: Remaining
) -> AsyncGenerator[SpeakEvent, None]:
    """The speech of ``order``: tts's stream as it comes, or with a preset each sentence
    synthesised, then adjusted, while the next ones are synthesised."""
    if not order.preset and order.word_timings:
        timed = speech.stream_with_words(
            order.text,
            order.voice,
            order.language,
            order.sample_rate,
            remaining(),
            order.encoding,
            order.speaking_rate,
        )
        async with contextlib.aclosing(timed):
            async for item in timed:
                if isinstance(item, EncodedChunk):
                    yield Audio(item.data, item.samples)
                else:
                    yield Word(
                        item.word,
                        item.char_start,
                        item.char_end,
                        item.start_sample,
                        item.end_sample,
                    )
        return
    if not order.preset:
        # tts makes the order's encoding itself.
        pieces = speech.stream(
            order.text,
            order.voice,
            order.language,
            order.sample_rate,
            remaining(),
            order.encoding,
            order.speaking_rate,
        )
        async with contextlib.aclosing(pieces):
            async for piece in pieces:
                yield Audio(piece.data, piece.samples)
        return
    # With a preset, tts and prosody work on 16-bit PCM and the result is encoded here,
    # one encoder for the whole response.
    pcm_rate = _pcm_rate(order.sample_rate)
    output = _Output(order.encoding, pcm_rate, order.sample_rate)
    events = _adjusted(speech, order, pcm_rate, tasks, remaining)
    try:
        async with contextlib.aclosing(events):
            async for event in events:
                if isinstance(event, SentenceAdjusted | Word):
                    yield event
                else:
                    async for audio in output.encode(event):
                        yield audio
        if (tail := await output.finish()) is not None:
            yield tail
    finally:
        output.close()


async def _adjusted(
    speech: SpeechClient, order: SpeakOrder, pcm_rate: int, tasks: TaskOwner, remaining: Remaining
) -> AsyncGenerator[SentenceAdjusted | Word | bytes, None]:
    """Each sentence's report, then with word timings its words (at the order's sample
    rate), then its adjusted audio (16-bit PCM at ``pcm_rate``)."""
    sentences = split_sentences(order.text)
    offsets = _sentence_offsets(order.text, sentences) if order.word_timings else []
    made: list[asyncio.Task[tuple[bytes, list[tts_pb2.WordTiming]]]] = []
    placed = 0  # samples at pcm_rate of the adjusted sentences before this one
    for index in range(len(sentences)):
        while len(made) < min(len(sentences), index + SENTENCES_AHEAD):
            sentence = sentences[len(made)]
            made.append(tasks.task(_synthesized(speech, sentence, order, pcm_rate, remaining)))
        pcm, words = await made[index]
        adjusted = await speech.adjust(pcm, pcm_rate, order.preset, remaining())
        yield SentenceAdjusted(
            index, adjusted.confidence.score, adjusted.fallback, adjusted.fallback_reason
        )
        # Prosody changes a sentence's tempo: its words move with its length.
        scale = len(adjusted.pcm) / len(pcm) if pcm else 1.0
        for word in words:
            yield Word(
                word.word,
                offsets[index] + word.char_start,
                offsets[index] + word.char_end,
                round((placed + word.start_sample * scale) * order.sample_rate / pcm_rate),
                round((placed + word.end_sample * scale) * order.sample_rate / pcm_rate),
            )
        placed += len(adjusted.pcm) // 2
        yield adjusted.pcm


async def _synthesized(
    speech: SpeechClient, sentence: str, order: SpeakOrder, pcm_rate: int, remaining: Remaining
) -> tuple[bytes, list[tts_pb2.WordTiming]]:
    """A sentence's audio (16-bit PCM at ``pcm_rate``), with its words when asked for."""
    if order.word_timings:
        return await speech.synthesize_with_words(
            sentence, order.voice, order.language, pcm_rate, remaining(), order.speaking_rate
        )
    pcm = await speech.synthesize(
        sentence, order.voice, order.language, pcm_rate, remaining(), order.speaking_rate
    )
    return pcm, []


def _sentence_offsets(text: str, sentences: list[str]) -> list[int]:
    """Where each of ``sentences`` (``split_sentences(text)``, trimmed, in order) starts
    in ``text``."""
    offsets: list[int] = []
    cursor = 0
    for sentence in sentences:
        cursor = text.index(sentence, cursor)
        offsets.append(cursor)
        cursor += len(sentence)
    return offsets


def _pcm_rate(rate: int) -> int:
    """The rate tts and prosody work at for output at ``rate``: the same, unless tts does
    not make it (Opus's 12000), then the next rate up, resampled here at the end."""
    return min(supported for supported in SUPPORTED_SAMPLE_RATES if supported >= rate)


class _Output:
    """16-bit PCM at ``pcm_rate`` in, the order's encoding at ``rate`` out."""

    def __init__(self, encoding: Encoding, pcm_rate: int, rate: int) -> None:
        self._format = encoding if isinstance(encoding, SampleFormat) else None
        self._encoder = ChunkEncoder(encoding, rate) if isinstance(encoding, Codec) else None
        self._resampler = StreamResampler(pcm_rate, rate)

    async def encode(self, pcm: bytes) -> AsyncGenerator[Audio, None]:
        """The audio ready after ``pcm`` (none while an encoder holds it all)."""
        if not pcm:  # a sentence with nothing to say
            return
        if self._format is SampleFormat.S16LE:
            yield Audio(pcm, len(pcm) // 2)
            return
        samples = self._resampler.process(decode(pcm, SampleFormat.S16LE))
        if self._encoder is None:
            yield Audio(encode(samples, SampleFormat.F32LE), samples.size)
            return
        async for chunk in self._encoder.encode(samples):
            yield Audio(chunk.data, chunk.samples)

    async def finish(self) -> Audio | None:
        """What is left at the end: the resampler's and the encoder's tails, as one."""
        if self._encoder is None:
            return None
        last = self._resampler.process(_EMPTY, last=True)
        chunks = [chunk async for chunk in self._encoder.encode(last)]
        if (tail := await self._encoder.finish()) is not None:
            chunks.append(tail)
        if not chunks:
            return None
        return Audio(b"".join(c.data for c in chunks), sum(c.samples for c in chunks))

    def close(self) -> None:
        if self._encoder is not None:
            self._encoder.close()


_EMPTY = np.zeros(0, dtype=np.float32)
