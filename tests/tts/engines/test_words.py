"""Word timings from what engines know: the words of a text, marks mapped onto them, and
symbols a model spoke mapped back to the words they say."""

from __future__ import annotations

import unicodedata

from services.tts.engines.base import TimedWord, word_spans
from services.tts.engines.espeak_library import load_espeak_library
from services.tts.engines.piper_phonemes import text_phonemes
from services.tts.engines.words import WordClock, align_words, timed_words, word_symbol_ranges


def words_of(text: str) -> list[str]:
    return [text[start:end] for start, end in word_spans(text)]


def test_words_leave_out_the_punctuation_around_them() -> None:
    text = (
        'He said, "hello" (quietly) - and left... It\'s 3,000 $5.50 U.S.A. well\u2014maybe e-mail'
    )
    assert words_of(text) == [
        "He", "said", "hello", "quietly", "and", "left", "It's", "3,000", "$5.50", "U.S.A",
        "well", "maybe", "e-mail",
    ]  # fmt: skip
    assert word_spans("  \u00dcn\u00efc\u00f6d\u00e9 \U0001f600 ok") == [(2, 9), (12, 14)]


def phonemes(text: str) -> str:
    return unicodedata.normalize("NFD", text_phonemes(load_espeak_library(), "en-us", text))


def aligned(text: str) -> list[str]:
    """Each word of ``text`` and the phonemes of the sentence aligned to it."""
    spoken = phonemes(text)
    spans = word_spans(text)
    alone = [phonemes(text[start:end]) for start, end in spans]
    ranges = word_symbol_ranges(align_words(spoken, alone), len(spans))
    return [spoken[r[0] : r[1]] if r else "" for r in ranges]


def test_words_espeak_runs_together_come_apart() -> None:
    # espeak-ng says "as it is" as one phoneme word, and "on the" too.
    text = "Speech streams out as it is made on the 4th"
    assert " " not in phonemes("as it is").strip()
    parts = aligned(text)
    assert all(parts), parts
    # The one phoneme word espeak said for "as it is", shared out among the three.
    assert "".join(parts[3:6]) in phonemes(text).split()
    # A number is several phoneme words: all of them are its own.
    assert aligned("It costs 3,000 dollars")[2].count(" ") == 1


def test_a_word_said_otherwise_in_context_keeps_its_place() -> None:
    # "a" is said one way in a sentence and another alone: nothing of it matches, and it
    # takes the phonemes between its neighbours.
    spoken = "h\u00e6v \u0250 l\u028ak"
    labels = align_words(spoken, ["h\u00e6v", "e\u026a", "l\u028ak"])
    assert word_symbol_ranges(labels, 3) == [(0, 3), (4, 5), (6, 9)]


def test_the_clock_hands_words_on_once_the_next_starts() -> None:
    text = "He said - and left as it is. Again"
    sent: list[TimedWord] = []
    clock = WordClock(text, sent.append)
    clock.word(0, 0)  # He
    assert clock.pending_start == 0
    assert not sent
    clock.word(3, 100)  # said
    assert [w.start_sample for w in sent] == [0]
    clock.word(8, 300)  # the dash: no word, but it may be where "and" starts
    assert clock.pending_start == 100  # "said" waits: it might share its time
    clock.word(14, 500)  # left: "and" had no mark of its own, the dash's is its start
    clock.word(19, 600)  # "as it is", said as one word, marked at "as"
    clock.pause(1000, 27)  # the clause ends, at the full stop
    assert clock.pending_start == 600
    clock.finish(1200)  # "Again" was never marked: zero-length at the end
    assert [(text[w.char_start : w.char_end], w.start_sample, w.end_sample) for w in sent] == [
        ("He", 0, 100),
        ("said", 100, 300),
        ("and", 300, 500),
        ("left", 500, 600),
        ("as", 600, 733),
        ("it", 733, 866),
        ("is", 866, 1000),
        ("Again", 1200, 1200),
    ]


def test_timed_words_place_a_word_without_symbols_where_the_next_starts() -> None:
    spans = [(0, 2), (3, 5), (6, 8)]
    timed = timed_words(spans, [(0, 2), None, (4, 6)], lambda i: i * 10, lambda i: i * 10 + 10, 5)
    assert [(w.start_sample, w.end_sample) for w in timed] == [(5, 25), (45, 45), (45, 65)]
