"""Word timings in Synthesize streams, over a real gRPC channel, with the real espeak engine:
every word once, in order, before its chunk, where espeak-ng itself says it starts, at any
output rate and from the cache as from the engine."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import pytest
from chorus.audio.v1 import audio_pb2

from services.common.sentences import split_sentences
from services.tts.engines.base import ChunkSink, PcmChunk
from services.tts.engines.espeak import EspeakEngine
from services.tts.engines.espeak_library import (
    EspeakLibrary,
    MarkSink,
    SpeechMark,
    load_espeak_library,
)
from tests.tts.harness import HeldEngine, StartTts, TtsServer
from tests.tts.word_timing_checks import check_timed_synthesis, synthesize_timed

# Leading space, clause and sentence punctuation, a dash, quotes, a number, and words
# outside ASCII: spans must count code points of the text as sent.
TEXT = (
    '  Hello there, thanks for calling. It costs 3,000 dollars \u2014 "or so", I think! '
    "\u00dcn\u00efc\u00f6d\u00e9 words are fine too."
)
RATE = 22050


@dataclass
class Spoken:
    """One sentence as espeak-ng spoke it: its samples and the word marks it reported."""

    samples: int
    marks: list[SpeechMark]


class MarkRecorder:
    """The process's espeak-ng library, recording what espeak-ng itself reported for
    each synthesis (its samples and raw word events) before the engine sees them."""

    def __init__(self, library: EspeakLibrary) -> None:
        self._library = library
        self.spoken: list[Spoken] = []

    def speak(
        self,
        text: bytes,
        voice: str,
        words_per_minute: int,
        chunk_ms: int,
        sink: ChunkSink,
        marks: MarkSink | None = None,
    ) -> None:
        spoken = Spoken(0, [])

        def counting(chunk: PcmChunk) -> bool:
            spoken.samples += chunk.size
            return sink(chunk)

        def recording(mark: SpeechMark) -> None:
            if mark.word:
                spoken.marks.append(mark)
            if marks is not None:
                marks(mark)

        self._library.speak(text, voice, words_per_minute, chunk_ms, counting, recording)
        self.spoken.append(spoken)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._library, name)


class RecordingEspeak(EspeakEngine):
    """The real espeak engine on a MarkRecorder (espeak-ng varies a few samples from one
    synthesis to the next, so the check needs the very synthesis the server sent)."""

    recorder: MarkRecorder

    def load(self) -> None:
        super().load()
        self.recorder = MarkRecorder(load_espeak_library())
        self._library = cast(EspeakLibrary, self.recorder)


async def test_every_word_comes_once_in_order_before_its_chunk(tts: TtsServer) -> None:
    result = await synthesize_timed(tts.stub, text=TEXT, word_timings=True)

    check_timed_synthesis(TEXT, result)
    assert [word.word for word in result.words][:5] == [
        "Hello",
        "there",
        "thanks",
        "for",
        "calling",
    ]
    assert "\u00dcn\u00efc\u00f6d\u00e9" in [word.word for word in result.words]
    assert "3,000" in [word.word for word in result.words]
    # Real durations: every word lasts, and none starts before the one before it ends.
    assert all(word.end_sample > word.start_sample for word in result.words)


@dataclass
class Expected:
    """Where espeak-ng's own reports put each word of a synthesis."""

    starts: list[int]
    """Each word's first mark, in samples of the whole synthesis at espeak's rate."""
    starts_ms: list[float]
    """The same from espeak's ms (its audio_position) of that mark."""
    samples: int


def expected_from_espeak(text: str, spoken: list[Spoken], words: list[Any]) -> Expected:
    """For each of ``words`` (the server's, of ``text``): the first mark espeak-ng reported
    inside it, moved by the sentences before its own."""
    stripped = text.strip()
    lead = len(text) - len(text.lstrip())
    sentences = split_sentences(stripped)
    assert len(spoken) == len(sentences)
    expected = Expected([], [], 0)
    cursor = 0
    for sentence, alone in zip(sentences, spoken, strict=True):
        at = stripped.index(sentence, cursor) + lead
        cursor = at - lead + len(sentence)
        for word in words:
            if not at <= word.char_start < at + len(sentence):
                continue
            inside = [m for m in alone.marks if word.char_start <= at + m.char < word.char_end]
            assert inside, f"espeak marked nothing in {word.word!r}"
            expected.starts.append(expected.samples + inside[0].sample)
            expected.starts_ms.append(expected.samples / RATE * 1000 + inside[0].audio_ms)
        expected.samples += alone.samples
    assert len(expected.starts) == len(words)
    return expected


async def test_word_starts_are_where_espeak_reports_them(start_tts: StartTts) -> None:
    """espeak-ng reports where it starts each word, in samples and in ms (its
    audio_position); each word must start at its first mark, moved by the sentences
    before it: to the sample, and to espeak's own ms within their rounding."""
    engine = RecordingEspeak()
    tts = await start_tts(engine=engine)
    before = len(engine.recorder.spoken)
    result = await synthesize_timed(tts.stub, text=TEXT, word_timings=True)
    expected = expected_from_espeak(TEXT, engine.recorder.spoken[before:], result.words)

    assert [word.start_sample for word in result.words] == expected.starts
    for word, ms in zip(result.words, expected.starts_ms, strict=True):
        assert word.start_sample / RATE * 1000 == pytest.approx(ms, abs=1.05)
    # The server's audio is those sentences back to back.
    assert result.summary.sample_count == expected.samples


@pytest.mark.parametrize("rate", [48000, 16000])
async def test_resampled_output_scales_the_positions(start_tts: StartTts, rate: int) -> None:
    engine = RecordingEspeak()
    tts = await start_tts(engine=engine)
    before = len(engine.recorder.spoken)
    result = await synthesize_timed(tts.stub, text=TEXT, word_timings=True, sample_rate_hz=rate)
    expected = expected_from_espeak(TEXT, engine.recorder.spoken[before:], result.words)

    check_timed_synthesis(TEXT, result)
    assert result.format.sample_rate_hz == rate
    assert result.summary.sample_count == round(expected.samples * rate / RATE)
    assert [word.start_sample for word in result.words] == [
        round(start * rate / RATE) for start in expected.starts
    ]


async def test_a_cache_hit_sends_the_same_words(tts: TtsServer) -> None:
    text = "Cached words come back. Every one of them."
    untimed = await synthesize_timed(tts.stub, text=text)
    first = await synthesize_timed(tts.stub, text=text, word_timings=True)
    again = await synthesize_timed(tts.stub, text=text, word_timings=True)
    untimed_again = await synthesize_timed(tts.stub, text=text)

    # The untimed entry holds no words: the first timed request is synthesised, and
    # stored with its words under a key of its own.
    assert not first.summary.cache_hit
    assert again.summary.cache_hit
    assert untimed_again.summary.cache_hit
    assert again.words == first.words
    assert again.order == first.order
    assert again.audio == first.audio
    assert untimed_again.audio == untimed.audio
    check_timed_synthesis(text, again)
    assert not untimed_again.words


async def test_no_words_unless_asked(tts: TtsServer) -> None:
    result = await synthesize_timed(tts.stub, text=TEXT)

    assert not result.words
    assert result.chunks


async def test_an_engine_without_word_timings_sends_none(start_tts: StartTts) -> None:
    # The wrapper says what the base says: no word timings (as XTTS).
    tts = await start_tts(engine=HeldEngine(EspeakEngine()))

    result = await synthesize_timed(tts.stub, text=TEXT, word_timings=True)

    assert not result.words
    assert result.chunks


async def test_words_come_before_their_compressed_chunks(tts: TtsServer) -> None:
    """Ogg Opus chunks lag the PCM they encode; words still go before the chunk whose
    samples hold their start, at Opus's 48000 Hz."""
    opus = await synthesize_timed(
        tts.stub,
        text=TEXT,
        word_timings=True,
        encoding=audio_pb2.AUDIO_ENCODING_OGG_OPUS,
    )

    assert opus.format.sample_rate_hz == 48000
    check_timed_synthesis(TEXT, opus)
