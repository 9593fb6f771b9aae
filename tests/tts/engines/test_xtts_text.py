"""Cutting sentences for XTTS: parts that fit, nothing lost, cuts after clause marks."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

from services.tts.engines.xtts_text import xtts_parts


def at_most(characters: int) -> Callable[[str], bool]:
    """A limit by length, standing in for XTTS's character and token limits."""
    return lambda text: len(text) <= characters


def test_a_sentence_that_fits_is_left_whole() -> None:
    text = "Short enough, and whole."
    assert xtts_parts(text, at_most(100)) == [text]


def test_a_long_sentence_is_cut_between_words_into_parts_that_fit() -> None:
    words = [f"word{index}" for index in range(60)]
    text = " ".join(words)
    parts = xtts_parts(text, at_most(50))
    assert len(parts) > 1
    assert all(len(part) <= 50 for part in parts)
    assert " ".join(parts).split() == words
    # The longest parts that fit: no two neighbours would have fitted as one.
    assert all(len(f"{a} {b}") > 50 for a, b in itertools.pairwise(parts))


def test_a_cut_falls_after_a_clause_mark_when_one_is_near() -> None:
    text = "one two three four five six seven, eight nine ten eleven twelve thirteen"
    parts = xtts_parts(text, at_most(50))
    assert parts[0] == "one two three four five six seven,"
    assert " ".join(parts) == text


@pytest.mark.parametrize("length", [1, 7, 30])
def test_a_word_too_long_alone_is_cut_into_pieces_that_fit(length: int) -> None:
    word = "abcdefghij" * 10
    parts = xtts_parts(f"Say {word} now", at_most(length))
    assert all(len(part) <= length for part in parts)
    assert "".join(parts).replace(" ", "") == f"Say{word}now"
