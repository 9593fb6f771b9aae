"""Speak: speech as it is made; with a preset, reshaped sentence by sentence."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from dataclasses import dataclass

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


@dataclass(frozen=True)
class Audio:
    """The next piece of the speech: 16-bit PCM at the order's sample rate."""

    pcm: bytes


@dataclass(frozen=True)
class SentenceAdjusted:
    """How prosody treated one sentence (with a preset only), before its audio comes."""

    index: int
    confidence: float
    fallback: bool
    fallback_reason: str


SpeakEvent = Audio | SentenceAdjusted


async def speak(
    speech: SpeechClient, order: SpeakOrder, tasks: TaskOwner, remaining: Remaining
) -> AsyncGenerator[SpeakEvent, None]:
    """The speech of ``order``: tts's stream as it comes, or with a preset each sentence
    synthesised, then adjusted, while the next ones are synthesised."""
    if not order.preset:
        pieces = speech.stream(
            order.text, order.voice, order.language, order.sample_rate, remaining()
        )
        async with contextlib.aclosing(pieces):
            async for pcm in pieces:
                yield Audio(pcm)
        return
    sentences = split_sentences(order.text)
    made: list[asyncio.Task[bytes]] = []
    for index in range(len(sentences)):
        while len(made) < min(len(sentences), index + SENTENCES_AHEAD):
            sentence = sentences[len(made)]
            made.append(
                tasks.task(
                    speech.synthesize(
                        sentence, order.voice, order.language, order.sample_rate, remaining()
                    )
                )
            )
        adjusted = await speech.adjust(
            await made[index], order.sample_rate, order.preset, remaining()
        )
        yield SentenceAdjusted(
            index, adjusted.confidence.score, adjusted.fallback, adjusted.fallback_reason
        )
        yield Audio(adjusted.pcm)
