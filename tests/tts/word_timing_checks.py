"""What every stream of word timings must be, whichever service sends it: each word of
the text exactly once, in order, inside the audio, each before the chunk it starts in."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from chorus.audio.v1 import audio_pb2
from chorus.tts.v1 import tts_pb2, tts_pb2_grpc

from services.tts.engines.base import word_spans


@dataclass
class TimedSynthesis:
    """Everything one Synthesize stream returned, and in which order."""

    format: audio_pb2.AudioFormat
    chunks: list[tts_pb2.AudioChunk]
    words: list[tts_pb2.WordTiming]
    summary: tts_pb2.SynthesisSummary
    order: list[tuple[str, int]]
    """("chunk" or "word", its index among its kind), in the order the stream sent them."""

    @property
    def audio(self) -> bytes:
        return b"".join(chunk.audio for chunk in self.chunks)

    @property
    def chunk_ends(self) -> list[int]:
        """The sample after each chunk's last."""
        return [chunk.sample_offset + chunk.sample_count for chunk in self.chunks]


async def synthesize_timed(
    stub: tts_pb2_grpc.TextToSpeechAsyncStub, **fields: Any
) -> TimedSynthesis:
    """Run one Synthesize call to the end and sort its messages, keeping their order."""
    formats: list[audio_pb2.AudioFormat] = []
    chunks: list[tts_pb2.AudioChunk] = []
    words: list[tts_pb2.WordTiming] = []
    summaries: list[tts_pb2.SynthesisSummary] = []
    order: list[tuple[str, int]] = []
    async for response in stub.Synthesize(tts_pb2.SynthesizeRequest(**fields), timeout=60):
        kind = response.WhichOneof("content")
        if kind == "format":
            formats.append(response.format)
        elif kind == "chunk":
            order.append(("chunk", len(chunks)))
            chunks.append(response.chunk)
        elif kind == "word":
            order.append(("word", len(words)))
            words.append(response.word)
        elif kind == "summary":
            summaries.append(response.summary)
        else:
            raise AssertionError(f"unexpected message {kind}")
    assert len(formats) == 1
    assert len(summaries) == 1
    return TimedSynthesis(formats[0], chunks, words, summaries[0], order)


def check_words(text: str, words: Sequence[tts_pb2.WordTiming], total_samples: int) -> None:
    """Every word of ``text`` exactly once, in order, its span naming it; starts never go
    back, words do not overlap, and all lie within ``total_samples``."""
    assert [(w.char_start, w.char_end) for w in words] == word_spans(text)
    for word in words:
        assert text[word.char_start : word.char_end] == word.word
        assert word.start_sample <= word.end_sample <= total_samples
    for before, after in itertools.pairwise(words):
        assert before.end_sample <= after.start_sample, (before, after)


def check_sent_before_their_chunks(result: TimedSynthesis) -> None:
    """Each word went out before the chunk its start is in (a word starting at the very
    end, in no chunk, after the last)."""
    ends = result.chunk_ends
    position = {entry: index for index, entry in enumerate(result.order)}
    for index, word in enumerate(result.words):
        holding = next((i for i, end in enumerate(ends) if word.start_sample < end), None)
        if holding is None:
            continue
        assert position[("word", index)] < position[("chunk", holding)], word


def check_timed_synthesis(text: str, result: TimedSynthesis) -> None:
    """``check_words`` on the stream's audio, and ``check_sent_before_their_chunks``."""
    total = sum(chunk.sample_count for chunk in result.chunks)
    assert total == result.summary.sample_count
    check_words(text, result.words, total)
    check_sent_before_their_chunks(result)
