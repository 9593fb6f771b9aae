"""Engines' word timings, called directly: every word once, each handed on before the
audio its start is in, and the audio the same as without timings."""

from __future__ import annotations

import ctypes
import itertools
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from services.tts.engines.base import (
    PcmChunk,
    SpeechEngine,
    TimedWord,
    collecting_sink,
    word_spans,
)
from services.tts.engines.coqui import CoquiEngine
from services.tts.engines.espeak import EspeakEngine
from services.tts.engines.espeak_library import _Event
from services.tts.engines.piper import PiperEngine

SENTENCE = (
    "Hello there, thanks for calling: it is 10:30 and the U.S.A. \u2014 as it is \u2014 waits!"
)


def timed(engine: SpeechEngine, text: str) -> tuple[list[PcmChunk], list[TimedWord], list[str]]:
    """The chunks and words ``engine`` makes for ``text``, and the order they came in."""
    chunks: list[PcmChunk] = []
    words: list[TimedWord] = []
    order: list[str] = []

    def sink(chunk: PcmChunk) -> bool:
        chunks.append(chunk)
        order.append("chunk")
        return True

    def word(timing: TimedWord) -> None:
        words.append(timing)
        order.append("word")

    engine.synthesize(text, engine.resolve_voice("", ""), 1.0, sink, word)
    return chunks, words, order


def check(text: str, chunks: list[PcmChunk], words: list[TimedWord], order: list[str]) -> None:
    total = sum(chunk.size for chunk in chunks)
    assert [(w.char_start, w.char_end) for w in words] == word_spans(text)
    for before, after in itertools.pairwise(words):
        assert before.start_sample <= before.end_sample <= after.start_sample
    assert words[-1].end_sample <= total
    # Each word before the chunk its start is in.
    ends = np.cumsum([chunk.size for chunk in chunks])
    chunk_positions = [index for index, kind in enumerate(order) if kind == "chunk"]
    word_positions = [index for index, kind in enumerate(order) if kind == "word"]
    for word, position in zip(words, word_positions, strict=True):
        holding = int(np.searchsorted(ends, word.start_sample, side="right"))
        if holding < len(chunks):
            assert position < chunk_positions[holding], word


def test_the_event_mirror_has_espeaks_layout() -> None:
    # speak_lib.h's espeak_EVENT on a 64-bit machine: six 4-byte fields, a pointer, a union
    # of 8 bytes; a wrong layout would read samples from the wrong place.
    assert ctypes.sizeof(_Event) == 40
    assert _Event.sample.offset == 20
    assert _Event.user_data.offset == 24
    assert _Event.id.offset == 32


def test_espeak_hands_each_word_on_before_its_audio() -> None:
    engine = EspeakEngine()
    engine.load()
    assert engine.word_timings
    chunks, words, order = timed(engine, SENTENCE)
    check(SENTENCE, chunks, words, order)
    assert all(word.end_sample > word.start_sample for word in words)


@pytest.fixture(scope="module")
def piper() -> PiperEngine:
    engine = PiperEngine(noise_scale=0.0, noise_w=0.0)
    engine.load()
    return engine


def test_piper_words_come_before_their_windows_and_change_no_sample(piper: PiperEngine) -> None:
    assert piper.word_timings
    chunks, words, order = timed(piper, SENTENCE)
    check(SENTENCE, chunks, words, order)
    assert all(word.end_sample > word.start_sample for word in words)
    plain: list[PcmChunk] = []
    piper.synthesize(SENTENCE, piper.resolve_voice("", ""), 1.0, collecting_sink(plain))
    assert np.array_equal(np.concatenate(chunks), np.concatenate(plain))


def test_piper_speaking_rate_stretches_the_words(piper: PiperEngine) -> None:
    text = "Slow down a little, please."
    _, normal, _ = timed(piper, text)
    slow: list[TimedWord] = []
    piper.synthesize(text, piper.resolve_voice("", ""), 0.5, lambda _c: True, slow.append)
    # Durations are rounded up to whole frames, so not quite twice as long.
    assert 1.5 * normal[-1].end_sample < slow[-1].end_sample < 2.2 * normal[-1].end_sample


def test_a_piper_graph_without_durations_has_no_word_timings(tiny_piper_voice: Path) -> None:
    engine = PiperEngine(str(tiny_piper_voice))
    engine.load()
    assert not engine.word_timings


def test_coqui_vits_places_words_by_its_durations(tiny_vits_dir: Path) -> None:
    engine = CoquiEngine(str(tiny_vits_dir))
    assert not engine.word_timings  # before load
    engine.load()
    assert engine.word_timings
    text = "Hello there, how are you today?"
    chunks, words, order = timed(engine, text)
    check(text, chunks, words, order)
    assert words[0].start_sample < words[-1].start_sample


def first_chunk_only(chunks: list[PcmChunk]) -> Callable[[PcmChunk], bool]:
    def keep(chunk: PcmChunk) -> bool:
        chunks.append(chunk)
        return False

    return keep


def test_a_stopped_sentence_hands_on_no_word_past_its_audio() -> None:
    engine = EspeakEngine()
    engine.load()
    chunks: list[PcmChunk] = []
    words: list[TimedWord] = []
    engine.synthesize(
        SENTENCE, engine.resolve_voice("", ""), 1.0, first_chunk_only(chunks), words.append
    )
    assert len(chunks) == 1
    assert all(word.start_sample < chunks[0].size for word in words)
